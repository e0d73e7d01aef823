"""Every file under events/ goes through `segctl local invoke` of the function it belongs to.

The Lambda events (events/shopify/orders-create.json, events/profile/sqs-customer-event.json) are
invoked as they are, as the README prints them. The providers' payload samples are delivered through
WebhookFunction as their provider sends them: an API Gateway (HTTP API) event for
POST /webhooks/{source}, signed with the local runner's secrets (tools/segctl/signing.py), written to a
file and handed to `segctl local invoke WebhookFunction --event FILE`. The demo's files belong to
`segctl demo` (DEMO).

The cases are keyed by path and checked against the tree: a new file under events/ without a case
fails test_every_file_under_events_has_a_case.

All cases share one moto server (AWS_ENDPOINT_URL), as `segctl local invoke` against the endpoint of
a running `segctl local start-api` does; each file is delivered once, so no case is a duplicate of
another.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote

import boto3
import pytest
from segctl.cli import main
from segctl.provision import dev_secret_values
from segctl.server import Router, request_event
from segctl.signing import (
    adobe_headers,
    klaviyo_headers,
    mailchimp_delivery,
    mandrill_delivery,
    segment_headers,
    sendgrid_headers,
    woocommerce_headers,
)
from segctl.template import Template
from segmentation import bootstrap
from support import ROOT, TEMPLATE, webhook_keys

EVENTS = ROOT / "events"


keys = webhook_keys  # () -> (SendGrid EC private, its public, Adobe RSA private, its public)


@pytest.fixture(scope="module")
def endpoint():
    """A moto server holding template.yaml's resources, as `segctl local start-api` runs one; the
    SendGrid and Adobe public keys of the local WebhookSecret are the test's (their private halves
    sign the samples). The process environment is restored afterwards."""
    from moto.server import ThreadedMotoServer

    saved = dict(os.environ)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL_SQS", "CATALOG_FILE", "DESTINATIONS_FILE"):
        os.environ.pop(var, None)
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "local",
                       "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "SENDGRID_PUBLIC_KEY": keys()[1], "MAGENTO_PUBLIC_KEY": keys()[3]})
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)
        bootstrap.reset()


def invoke(function: str, event: dict | Path, tmp_path: Path, capsys) -> dict:
    """`segctl local invoke FUNCTION --event FILE`; its printed result."""
    path = event if isinstance(event, Path) else tmp_path / "event.json"
    if not isinstance(event, Path):
        path.write_text(json.dumps(event))
    capsys.readouterr()
    assert main(["--template", str(TEMPLATE), "local", "invoke", function, "--event", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def webhook_event(source: str, body: bytes, headers: dict, query: str = "") -> dict:
    """What API Gateway hands WebhookFunction for ``POST /webhooks/<source>[?query]``."""
    function, event = request_event(Router(Template(TEMPLATE).routes()), "POST",
                                    f"/webhooks/{source}" + (f"?{query}" if query else ""), body, headers)
    assert function == "WebhookFunction"
    return event


# -- each provider's delivery of a sample file, signed as that provider signs -------------------------
def _now() -> datetime:
    return datetime.now(UTC)


def klaviyo(path: Path) -> dict:
    body = path.read_bytes()
    stamp = _now().strftime("%a, %d %b %Y %H:%M:%S GMT")
    headers = klaviyo_headers(dev_secret_values()["klaviyo"], body, stamp, json.loads(body)["meta"]["klaviyo_webhook_id"])
    return webhook_event("klaviyo", body, headers)


def sendgrid(path: Path) -> dict:
    body = path.read_bytes()
    return webhook_event("sendgrid", body, sendgrid_headers(keys()[0], body, str(int(_now().timestamp()))))


def segment(path: Path) -> dict:
    body = path.read_bytes()
    return webhook_event("segment", body, segment_headers(dev_secret_values()["segment"], body))


def magento(path: Path) -> dict:
    body = path.read_bytes()
    return webhook_event("magento", body, adobe_headers(keys()[2], body))


WOOCOMMERCE_TOPICS = {"customer-created": "customer.created", "order-created": "order.created",
                      "order-created-pending": "order.created", "order-updated-cancelled": "order.updated",
                      "order-updated-partial-refund": "order.updated"}


def woocommerce(path: Path) -> dict:
    body = path.read_bytes()
    if path.suffix == ".txt":  # the creation ping: unsigned, a form body
        return webhook_event("woocommerce", body.strip(), {"Content-Type": "application/x-www-form-urlencoded"})
    headers = woocommerce_headers(dev_secret_values()["woocommerce"], body, WOOCOMMERCE_TOPICS[path.stem])
    return webhook_event("woocommerce", body, headers)


def mailchimp(path: Path) -> dict:
    body, headers = mailchimp_delivery(dict(parse_qsl(path.read_text().strip(), keep_blank_values=True)))
    return webhook_event("mailchimp", body, headers, f"token={quote(dev_secret_values()['mailchimp'])}")


def mandrill(path: Path) -> dict:
    events_json = dict(parse_qsl(path.read_text().strip()))["mandrill_events"]
    secrets = dev_secret_values()
    body, headers = mandrill_delivery(secrets["mandrill"], secrets["mandrill_url"], events_json)
    return webhook_event("mandrill", body, headers)


BUILDERS = {"klaviyo": klaviyo, "sendgrid": sendgrid, "segment": segment, "magento": magento,
            "woocommerce": woocommerce, "mailchimp": mailchimp, "mandrill": mandrill}

#: provider samples -> (events WebhookFunction accepts from it, what its answer says it ignored);
#: (None, None): a handshake, answered 200 with no body (docs/webhooks.md)
ACCEPTED = {
    **{f"klaviyo/{n}.json": (1, None) for n in ("bounced", "clicked", "opened", "received", "spam", "subscribed",
                                                "unsubscribed")},
    "klaviyo/batch.json": (3, None),
    **{f"sendgrid/{n}.json": (1, None) for n in ("bounce", "click", "delivered", "open", "spamreport", "unsubscribe")},
    "sendgrid/batch.json": (3, "ignored 1 of 4 events: processed (1)"),
    **{f"segment/{n}.json": (1, None) for n in ("cart-viewed", "checkout-started", "identify", "order-completed",
                                                "order-refunded", "page-engaged", "page-scrolled", "page",
                                                "product-added", "product-list-viewed", "product-viewed")},
    "segment/batch.json": (3, None),
    **{f"magento/{n}.json": (1, None) for n in ("customer-saved", "newsletter-subscribed", "newsletter-unsubscribed",
                                                "order-canceled", "order-placed")},
    **{f"woocommerce/{n}.json": (1, None) for n in WOOCOMMERCE_TOPICS},
    "woocommerce/order-created-pending.json": (1, "order is not paid yet: identity only, not a purchase"),
    "woocommerce/ping.txt": (None, None),
    **{f"mailchimp/{n}.txt": (1, None) for n in ("cleaned", "profile", "subscribe", "unsubscribe", "upemail")},
    "mailchimp/campaign.txt": (0, "campaign events are not used"),
    **{f"mandrill/{n}.txt": (1, None) for n in ("hard-bounce", "spam", "unsub")},
    "mandrill/events.txt": (4, None),
    "mandrill/test-batch.txt": (None, None),  # the empty batch Mandrill sends when the webhook is saved
}

#: Lambda events, invoked as they are
LAMBDA_EVENTS = {"shopify/orders-create.json": "WebhookFunction", "profile/sqs-customer-event.json": "ProfileFunction"}

#: the demo's files: what uses them, and the test that runs it
DEMO = {
    "demo/shopify-stream.json": "tests/integration/test_demo_streams.py",
    "demo/mixed-stream.json": "tests/integration/test_demo_streams.py",
    "demo/history/customers.csv": "tests/integration/test_segctl_import.py",
    "demo/history/orders.csv": "tests/integration/test_segctl_import.py",
    "demo/destinations.yaml": "test_demo_destinations_file_is_valid (below)",
}


def test_every_file_under_events_has_a_case():
    files = {p.relative_to(EVENTS).as_posix() for p in EVENTS.rglob("*") if p.is_file()}
    cases = set(ACCEPTED) | set(LAMBDA_EVENTS) | set(DEMO)
    assert files - cases == set(), "files under events/ that no test invokes: add a case here"
    assert cases - files == set(), "cases for files that are gone"


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_a_provider_sample_is_accepted_by_the_webhook_function(endpoint, name, tmp_path, capsys):
    path = EVENTS / name
    event = BUILDERS[name.split("/")[0]](path)
    result = invoke("WebhookFunction", event, tmp_path, capsys)
    assert result["statusCode"] == 200, result
    accepted, ignored = ACCEPTED[name]
    if accepted is None:
        assert not result.get("body"), result
        return
    body = json.loads(result["body"])
    assert (body["accepted"], body.get("ignored")) == (accepted, ignored), result


def test_the_shopify_order_event_is_accepted_and_publishes_what_the_profile_event_holds(endpoint, tmp_path, capsys):
    """events/profile/sqs-customer-event.json is what ProfileQueue receives after
    events/shopify/orders-create.json: it cannot go stale when the domain model changes."""
    result = invoke("WebhookFunction", EVENTS / "shopify/orders-create.json", tmp_path, capsys)
    assert result["statusCode"] == 200 and json.loads(result["body"])["accepted"] == 1, result
    template = Template(TEMPLATE)
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    url = template.queue_url("ProfileQueue", endpoint)
    published = []  # the other cases' events are there too
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        published += [json.loads(m["Body"])["detail"] for m in got]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(got)])
    sample = json.loads((EVENTS / "profile/sqs-customer-event.json").read_text())
    expected = json.loads(sample["Records"][0]["body"])["detail"]
    assert expected in published


def test_the_profile_event_is_applied_by_the_profile_function(endpoint, tmp_path, capsys):
    result = invoke("ProfileFunction", EVENTS / "profile/sqs-customer-event.json", tmp_path, capsys)
    assert result == {"batchItemFailures": []}
    profile = bootstrap.repository().find("email#ana.lopez@example.com")
    assert profile is not None and profile.traits["order_count"] >= 1


def test_the_demo_files_are_used_by_the_demo_and_replayed_by_its_tests():
    """events/demo/ is `segctl demo`'s: its streams are replayed, signed, by test_demo_streams.py, its
    history imported by test_segctl_import.py; both name what they use."""
    from segctl import demo

    assert (ROOT / demo.DEMO_HISTORY).resolve() == (EVENTS / "demo/history").resolve()
    assert demo.DEMO_DESTINATIONS == "events/demo/destinations.yaml"
    for name, test in DEMO.items():
        if test.startswith("tests/"):
            text = (ROOT / test).read_text()
            assert Path(name).name in text or "DEMO_HISTORY" in text, (name, test)


def test_demo_destinations_file_is_valid(capsys):
    assert main(["destinations", "validate", str(EVENTS / "demo/destinations.yaml")]) == 0
    assert "valid" in capsys.readouterr().out
