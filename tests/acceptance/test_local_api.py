"""Drive `segctl local start-api` over HTTP as a shop would (the Done-when of the walking skeleton)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from segctl.demo import http as request
from segctl.signing import demo_keys
from support import ROOT, signed_shopify

pytestmark = pytest.mark.acceptance
NOW = datetime.now(UTC).replace(microsecond=0)


# SendGrid (ECDSA) and Adobe (RSA) sign with private keys: the runner (base_url, conftest.py) gets the public ones.
KEYS = demo_keys()


def post_shopify(base_url, payload, topic="orders/create", event_id=None, secret=None):
    event_id = event_id or f"evt-{topic}-{payload['id']}"
    kwargs = {"secret": secret} if secret else {}
    body, headers = signed_shopify(payload, topic=topic, event_id=event_id, **kwargs)
    return request("POST", f"{base_url}/webhooks/shopify", body, headers)[0]


def order(order_id, email, hours_ago=1.0, total="40.00"):
    at = (NOW - timedelta(hours=hours_ago)).isoformat()
    return {"id": order_id, "email": email, "created_at": at, "updated_at": at, "total_price": total,
            "customer": {"id": order_id * 7, "email": email}}


def eventually(base_url, email, predicate, timeout=30.0):
    """The profile once processing (asynchronous, through the bus and the queue) has caught up."""
    deadline = time.monotonic() + timeout
    body = {}
    while time.monotonic() < deadline:
        status, body = request("GET", f"{base_url}/profiles?email={email}")
        if status == 200 and predicate(body):
            return body
        time.sleep(0.2)
    pytest.fail(f"profile {email} never satisfied the condition; last: {body}")


def test_two_signed_orders_make_a_recent_repeat_buyer(base_url):
    assert post_shopify(base_url, order(101, "two@example.com", hours_ago=30)) == 200
    assert post_shopify(base_url, order(102, "two@example.com")) == 200
    body = eventually(base_url, "two@example.com", lambda b: b["traits"]["order_count"] == 2)
    assert {"repeat-buyers", "recent-buyers"} <= set(body["segments"])


def test_the_same_delivery_twice_counts_once(base_url):
    assert post_shopify(base_url, order(201, "dup@example.com"), event_id="evt-same") == 200
    assert post_shopify(base_url, order(201, "dup@example.com"), event_id="evt-same") == 200
    # A later order acts as a marker: once it is applied, the duplicate would have been too.
    assert post_shopify(base_url, order(202, "dup@example.com")) == 200
    body = eventually(base_url, "dup@example.com", lambda b: b["traits"]["order_count"] >= 2)
    assert body["traits"]["order_count"] == 2


def test_bad_signature_is_401_and_creates_nothing(base_url):
    assert post_shopify(base_url, order(301, "forged@example.com"), secret="wrong-secret") == 401
    assert post_shopify(base_url, order(302, "marker@example.com")) == 200
    eventually(base_url, "marker@example.com", lambda b: True)
    assert request("GET", f"{base_url}/profiles?email=forged@example.com")[0] == 404


def test_checkout_over_an_hour_old_is_cart_abandoner_and_the_order_clears_it(base_url):
    started = (NOW - timedelta(hours=2)).isoformat()
    checkout = {"id": 1, "token": "co-accept", "email": "cart@example.com", "created_at": started,
                "updated_at": started, "total_price": "30.00", "completed_at": None}
    assert post_shopify(base_url, checkout, topic="checkouts/create") == 200
    eventually(base_url, "cart@example.com", lambda b: "cart-abandoners" in b["segments"])
    assert post_shopify(base_url, order(401, "cart@example.com", hours_ago=0.1)) == 200
    body = eventually(base_url, "cart@example.com", lambda b: b["traits"]["order_count"] == 1)
    assert "cart-abandoners" not in body["segments"]


def test_segments_report_and_unknown_routes(base_url):
    status, body = request("GET", f"{base_url}/segments")
    assert status == 200 and {s["id"] for s in body["segments"]} >= {"recent-buyers", "cart-abandoners"}
    assert request("GET", f"{base_url}/nothing-here")[0] == 404


def test_segments_explain_shows_each_segment_and_its_conditions(base_url):
    assert post_shopify(base_url, order(501, "explain@example.com", total="600.00")) == 200
    eventually(base_url, "explain@example.com", lambda b: "high-value" in b["segments"])
    out = subprocess.run(
        [sys.executable, "-m", "segctl.cli", "segments", "explain", "--email", "explain@example.com", "--url", base_url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("MEMBER" in line and line.endswith("high-value") for line in lines)
    assert any("not member" in line and line.endswith("repeat-buyers") for line in lines)
    assert any("sum of order_placed in lifetime = 600.00 (wants >= 500)" in line for line in lines)
    missing = subprocess.run(
        [sys.executable, "-m", "segctl.cli", "segments", "explain", "--email", "nobody@example.com", "--url", base_url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert missing.returncode == 1 and "no profile" in missing.stderr


def test_browse_in_segment_buy_in_shopify_open_in_mandrill_is_one_profile(base_url):
    import json as _json

    from segctl.provision import dev_secret_values
    from segctl.signing import mandrill_delivery, segment_headers

    secrets = dev_secret_values({})
    at = (NOW - timedelta(hours=3)).isoformat()
    for i, event in enumerate(["Product Viewed", "Product Viewed", "Product Viewed"]):
        body = _json.dumps({"type": "track", "event": event, "anonymousId": "anon-x", "messageId": f"m-x-{i}",
                            "timestamp": at, "properties": {"category": "Shoes", "product_id": "1"}}).encode()
        assert request("POST", f"{base_url}/webhooks/segment", body, segment_headers(secrets["segment"], body))[0] == 200
    ident = _json.dumps({"type": "identify", "anonymousId": "anon-x", "userId": "u-x", "messageId": "m-x-id",
                         "timestamp": at, "traits": {"email": "three@example.com"}}).encode()
    assert request("POST", f"{base_url}/webhooks/segment", ident, segment_headers(secrets["segment"], ident))[0] == 200
    assert post_shopify(base_url, order(601, "three@example.com", hours_ago=1)) == 200
    ts = int((NOW - timedelta(hours=2)).timestamp())
    events = _json.dumps([{"event": "send", "_id": "msg-three", "ts": ts, "msg": {"email": "three@example.com"}},
                          {"event": "open", "_id": "msg-three", "ts": ts + 60, "msg": {"email": "three@example.com"}}])
    body, headers = mandrill_delivery(secrets["mandrill"], secrets["mandrill_url"], events)
    assert request("POST", f"{base_url}/webhooks/mandrill", body, headers)[0] == 200
    profile = eventually(base_url, "three@example.com",
                         lambda b: b["traits"]["order_count"] == 1 and b["traits"]["email_open_rate_30d"] == 1.0
                         and b["traits"]["preferred_category"] == "shoes")
    assert {"recent-browsers", "recent-buyers"} <= set(profile["segments"])
    # The anonymous visitor is that same profile now.
    status, body = request("GET", f"{base_url}/profiles/{profile['profile_id']}")
    assert status == 200 and body["email"] == "three@example.com"


def test_provider_handshakes_answer_without_writing(base_url):
    for method, path in (("GET", "/webhooks/mailchimp"), ("HEAD", "/webhooks/mandrill"),
                         ("GET", "/webhooks/magento?challenge=abc123")):
        with urllib.request.urlopen(urllib.request.Request(f"{base_url}{path}", method=method), timeout=10) as resp:
            assert resp.status == 200
            if path.endswith("abc123"):
                assert b"abc123" in resp.read()
    ping = urllib.request.Request(f"{base_url}/webhooks/woocommerce", data=b"webhook_id=17", method="POST",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(ping, timeout=10) as resp:
        assert resp.status == 200
    assert request("POST", f"{base_url}/webhooks/mailchimp?token=wrong", b"type=subscribe&data[email]=x@example.com",
                   {"Content-Type": "application/x-www-form-urlencoded"})[0] == 401


def test_every_source_is_accepted_with_its_real_signature_scheme(base_url):
    """The demo's mixed stream (Segment, Shopify, Mandrill, Mailchimp, WooCommerce, Klaviyo, SendGrid,
    Adobe Commerce), each delivery signed as its provider signs, over HTTP."""
    import json as _json

    from segctl.demo import signed_request
    from segctl.provision import dev_secret_values

    doc = _json.loads((ROOT / "events" / "demo" / "mixed-stream.json").read_text())
    secrets = {**dev_secret_values({}), "_sendgrid_private": KEYS[0], "_magento_private": KEYS[2]}
    sources = set()
    for d in doc["deliveries"]:
        path, body, headers = signed_request(d, doc, secrets, datetime.now(UTC))  # Klaviyo signs a time: within 300 s of now
        status, answer = request("POST", f"{base_url}{path}", body, headers)
        assert status == 200 and answer["accepted"] >= 1, (d.get("source", "shopify"), status, answer)
        sources.add(path.split("?")[0].rsplit("/", 1)[1])
    assert len(sources) == 8
    body = eventually(base_url, "tara.nguyen@example.com", lambda b: b["traits"]["order_count"] == 1)  # Adobe Commerce
    assert "recent-buyers" in body["segments"]
    eventually(base_url, "sam.lee@example.com", lambda b: b["traits"]["email_open_rate_30d"] == 1.0)  # SendGrid
    eventually(base_url, "rosa.costa@example.com",  # WooCommerce order + Klaviyo email
               lambda b: b["traits"]["order_count"] == 1 and b["traits"]["email_open_rate_30d"] == 1.0)
