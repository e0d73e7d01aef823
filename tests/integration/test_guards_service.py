"""Guards the mutation check of issue 11 found unguarded, through the functions' entrypoints.

Everything here goes through what a user or an operator sees: the webhook route, the ProfileFunction
and InactivitySweepFunction handlers as Lambda calls them, the management API (``GET /profiles``)
and what the bus publishes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, quote

import boto3
import pytest
from segctl.provision import dev_secret_values
from segctl.runtime import context_for, load_handler, scheduled_event
from segctl.signing import klaviyo_headers, segment_headers, shopify_headers, woocommerce_headers
from segmentation.domain.events import (
    CustomerEvent,
    EmailProperties,
    EventType,
    Identity,
    OrderProperties,
)
from segmentation.domain.profile import Profile
from support import sqs_batch

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
DAY = 86400


def now_s() -> int:
    return int(datetime.now(UTC).timestamp())


def dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def order(order_id: str, at: int, email: str = "ana@example.com", total: str = "50.00") -> CustomerEvent:
    return CustomerEvent(
        event_id=CustomerEvent.make_id("shopify", "shop", "order", order_id, at), source="shopify",
        type=EventType.ORDER, occurred_at=dt(at), shop="shop", identity=Identity(email=email),
        properties=OrderProperties(order_id=order_id, total=Decimal(total), currency="EUR", updated_at=dt(at)),
    )


def mail(type_: EventType, message: str, at: int, email: str = "ana@example.com") -> CustomerEvent:
    return CustomerEvent(
        event_id=CustomerEvent.make_id("mandrill", type_, message, at), source="mandrill", type=type_,
        occurred_at=dt(at), identity=Identity(email=email), properties=EmailProperties(message_id=message),
    )


@pytest.fixture
def profile_function(aws):
    handler = load_handler(aws.functions()["ProfileFunction"])
    return lambda *events: handler(sqs_batch(*events), context_for(aws, "ProfileFunction"))


@pytest.fixture
def sweep_at(aws):
    handler = load_handler(aws.functions()["InactivitySweepFunction"])

    def run(ts: int) -> dict:
        return handler(scheduled_event(dt(ts), "arn:aws:events:us-east-1:123456789012:rule/sweep"),
                       context_for(aws, "InactivitySweepFunction"))

    return run


def profile(api, email: str = "ana@example.com") -> dict | None:
    resp = api("GET", "/profiles?email=" + quote(email))
    if resp.status == 404:
        return None
    assert resp.status == 200, resp.text
    return resp.json()


def epoch_of(iso_text: str) -> int:
    return int(datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp())


def published(outbox, detail_type: str) -> list[tuple[str, str, str]]:
    return [(m["detail"]["segment_id"], m["detail"]["cause"], m["detail"]["at"])
            for m in outbox.drain() if m["detail-type"] == detail_type]


# -- 1. a sweep exactly at next_due_at ---------------------------------------------------------------


def test_a_sweep_run_exactly_at_next_due_at_applies_the_change_and_one_second_earlier_does_not(
        api, profile_function, sweep_at, outbox):
    placed = now_s()
    assert profile_function(order("o1", placed)) == {"batchItemFailures": []}
    before = profile(api)
    assert "recent-buyers" in before["segments"]
    due = epoch_of(before["next_due_at"])
    assert due == placed + 14 * DAY  # exactly 14 days old is out
    outbox.drain()

    early = sweep_at(due - 1)
    assert early["due_read"] == 0 and early["evaluated"] == 0  # not read, let alone evaluated
    assert "recent-buyers" in profile(api)["segments"]

    on_time = sweep_at(due)
    assert on_time["due_read"] == 1 and on_time["evaluated"] == 1
    assert "recent-buyers" not in profile(api)["segments"]
    assert published(outbox, "SegmentExited") == [("recent-buyers", "time", before["next_due_at"])]


# -- 4. an at-risk profile that opens an email ---------------------------------------------------------


@pytest.mark.parametrize("kind", [EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED])
def test_an_at_risk_customer_who_opens_or_clicks_an_email_leaves_at_risk_at_once(api, profile_function, outbox, kind):
    now = now_s()
    assert profile_function(order("o1", now - 35 * DAY)) == {"batchItemFailures": []}
    assert profile_function(mail(EventType.EMAIL_DELIVERED, "m1", now - 2 * DAY)) == {"batchItemFailures": []}
    assert "at-risk" in profile(api)["segments"]  # a delivery is not activity
    outbox.drain()
    opened = mail(kind, "m1", now)
    assert profile_function(opened) == {"batchItemFailures": []}
    after = profile(api)
    assert "at-risk" not in after["segments"]
    assert epoch_of(after["traits"]["last_activity_at"]) == now
    assert [(s, c) for s, c, _ in published(outbox, "SegmentExited")] == [("at-risk", opened.event_id)]


# -- 6. every source compares signatures in constant time, every secret ------------------------------------


def _sample(path: str) -> bytes:
    return (EVENTS / path).read_bytes()


def _shopify_order() -> dict:
    """The Shopify sample delivery (an API Gateway event) carries the order JSON as its body."""
    return json.loads(json.loads(_sample("shopify/orders-create.json"))["body"])


def _shopify(secret: str) -> tuple[str, bytes, dict]:
    body = json.dumps(_shopify_order(), separators=(",", ":")).encode()
    return "/webhooks/shopify", body, shopify_headers(secret, body, "orders/create", "evt-ct-1")


def _woocommerce(secret: str) -> tuple[str, bytes, dict]:
    body = _sample("woocommerce/order-created.json")
    return "/webhooks/woocommerce", body, woocommerce_headers(secret, body, "order.created")


def _klaviyo(secret: str) -> tuple[str, bytes, dict]:
    body = _sample("klaviyo/opened.json")
    stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    return "/webhooks/klaviyo", body, klaviyo_headers(secret, body, stamp, json.loads(body)["meta"]["klaviyo_webhook_id"])


def _mandrill(secret: str) -> tuple[str, bytes, dict]:
    body = _sample("mandrill/events.txt").strip()
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    url = dev_secret_values({})["mandrill_url"]
    signed = (url + "".join(k + v for k, v in sorted(params.items()))).encode()
    signature = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha1).digest()).decode()
    return "/webhooks/mandrill", body, {"Content-Type": "application/x-www-form-urlencoded",
                                        "X-Mandrill-Signature": signature}


def _segment(secret: str) -> tuple[str, bytes, dict]:
    body = _sample("segment/page.json")
    return "/webhooks/segment", body, segment_headers(secret, body)


def _mailchimp(secret: str) -> tuple[str, bytes, dict]:
    body = _sample("mailchimp/subscribe.txt").strip()
    return f"/webhooks/mailchimp?token={quote(secret)}", body, {"Content-Type": "application/x-www-form-urlencoded"}


SIGNED = {"shopify": _shopify, "woocommerce": _woocommerce, "klaviyo": _klaviyo, "mandrill": _mandrill,
          "segment": _segment, "mailchimp": _mailchimp}


@pytest.mark.parametrize("source", list(SIGNED))
def test_each_source_compares_the_signature_with_every_secret_in_constant_time(aws, api, compare_calls, source):
    """Two secrets configured (one rotating in); the delivery is signed with the first. It is accepted,
    and both secrets were compared with hmac.compare_digest: no early exit, no ``==``."""
    secrets = {**dev_secret_values({}), source: [f"{source}-current-secret", f"{source}-previous-secret"]}
    boto3.client("secretsmanager").put_secret_value(SecretId=aws.physical_name("WebhookSecret"),
                                                     SecretString=json.dumps(secrets))
    results = compare_calls
    path, body, headers = SIGNED[source](secrets[source][0])
    resp = api("POST", path, body, headers)
    assert resp.status == 200, resp.text
    assert results == [True, False], f"{source}: compare_digest results {results}"

    # The other secret verifies too (rotation), and a third does not.
    results.clear()
    path, body, headers = SIGNED[source](secrets[source][1])
    assert api("POST", path, body, headers).status == 200
    assert results == [False, True]
    path, body, headers = SIGNED[source]("not-a-configured-secret")
    assert api("POST", path, body, headers).status == 401


# -- 8. a fault inside apply() fails its record only ---------------------------------------------------


class Collect(logging.Handler):
    """ERROR (and worse) records from the root logger and every logger that does not propagate to it
    (Powertools' loggers)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.loggers: list[logging.Logger] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Collect:
        self.loggers = [logging.getLogger()] + [
            lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger) and not lg.propagate]
        for lg in self.loggers:
            lg.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for lg in self.loggers:
            lg.removeHandler(self)


class InjectedFault(RuntimeError):
    pass


@pytest.fixture
def batch_with_a_fault(aws, monkeypatch):
    """A batch of three orders whose second one faults inside apply() (as a storage or code fault
    would), run through ProfileFunction; returns (its answer, the ERROR records logged meanwhile)."""
    first, poison, last = (order("o1", now_s(), "a@example.com"), order("o2", now_s(), "b@example.com"),
                           order("o3", now_s(), "c@example.com"))
    real_apply = Profile.apply

    def apply(self, event, aliases, *rest):
        if event.event_id == poison.event_id:
            raise InjectedFault("fault while applying the event")
        return real_apply(self, event, aliases, *rest)

    monkeypatch.setattr(Profile, "apply", apply)
    handler = load_handler(aws.functions()["ProfileFunction"])  # its loggers exist before we listen
    with Collect() as errors:
        result = handler(sqs_batch(first, poison, last), context_for(aws, "ProfileFunction"))
    return result, errors.records


def test_a_fault_inside_apply_fails_that_record_only(api, batch_with_a_fault):
    result, _ = batch_with_a_fault
    # Only the failing record goes back to the queue (then to the DLQ after five receives) ...
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    # ... the others are applied, and the failing one stored nothing.
    assert profile(api, "a@example.com")["traits"]["order_count"] == 1
    assert profile(api, "c@example.com")["traits"]["order_count"] == 1
    assert profile(api, "b@example.com") is None


def test_a_fault_inside_apply_is_logged_at_error(batch_with_a_fault):
    _, errors = batch_with_a_fault
    assert errors, "a record that failed was not logged at ERROR"
    assert any(r.exc_info and r.exc_info[0] is InjectedFault for r in errors) or \
        any("fault while applying the event" in r.getMessage() for r in errors)


# -- 9. the webhook body-size limit ---------------------------------------------------------------------


def _order_of_size(size: int, event_id: str) -> tuple[bytes, dict]:
    """A signed Shopify orders/create delivery whose body is exactly ``size`` bytes."""
    base = _shopify_order()
    base["note"] = ""
    empty = json.dumps(base, separators=(",", ":")).encode()
    base["note"] = "x" * (size - len(empty))
    body = json.dumps(base, separators=(",", ":")).encode()
    assert len(body) == size
    return body, shopify_headers(dev_secret_values({})["shopify"], body, "orders/create", event_id)


def test_a_body_of_exactly_max_body_bytes_is_accepted_and_one_byte_more_is_413(aws, api):
    limit = int(os.environ["MAX_BODY_BYTES"])  # the function's environment, from template.yaml
    assert limit == int(aws.parameters["MaxBodyBytes"])
    body, headers = _order_of_size(limit, "evt-size-at")
    resp = api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 200, resp.text
    assert resp.json()["accepted"] == 1
    body, headers = _order_of_size(limit + 1, "evt-size-over")
    resp = api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 413, resp.text
    assert resp.json()["error"] == "PayloadTooLargeError"
