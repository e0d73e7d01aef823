"""The error bodies docs/webhooks.md and docs/api.md promise, and what a duplicate delivery gets.

Webhook errors are `{"error", "reason"}` with the names of docs/webhooks.md's table (read from the
doc, so doc and code cannot drift apart); management API errors are `{"statusCode", "message"}`
(`detail` too for a validation error); a duplicate delivery gets the first answer again, and is
told apart only by its delivery key in the log and by the profile counting it once.
"""

from __future__ import annotations

import re
import sys

from segmentation import bootstrap
from support import ROOT, signed_shopify

ORDER = {
    "id": 5559000001, "email": "ana.lopez@example.com", "created_at": "2026-11-20T10:00:00Z",
    "currency": "EUR", "total_price": "59.90",
    "customer": {"id": 7001002003, "email": "ana.lopez@example.com"},
    "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "59.90"}],
}
JSON = {"Content-Type": "application/json"}


def documented_webhook_errors() -> set[tuple[int, str]]:
    """(status, error) of each row of the table under "## Answers" in docs/webhooks.md."""
    section = (ROOT / "docs" / "webhooks.md").read_text().split("## Answers", 1)[1].split("\n## ", 1)[0]
    return {(int(status), name) for status, name in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", section, re.M)}


def test_every_webhook_error_is_error_and_reason_with_a_documented_name(api, aws, monkeypatch):
    body, headers = signed_shopify(ORDER)
    bad_signature = {**headers, "X-Shopify-Hmac-Sha256": "AAAA" + headers["X-Shopify-Hmac-Sha256"][4:]}
    malformed, malformed_headers = signed_shopify(b"{not json")
    cases = {
        "malformed": lambda: api("POST", "/webhooks/shopify", malformed, malformed_headers),
        "bad signature": lambda: api("POST", "/webhooks/shopify", body, bad_signature),
        # SendGrid has no key in the development secrets: nothing can verify its deliveries
        "no secret": lambda: api("POST", "/webhooks/sendgrid", b"[]", JSON),
        "unknown source": lambda: api("POST", "/webhooks/nosuchshop", b"{}", JSON),
        "wrong method": lambda: api("PUT", "/webhooks/shopify", b"{}", JSON),
        "wrong content type": lambda: api("POST", "/webhooks/shopify", body, {**headers, "Content-Type": "text/plain"}),
    }
    seen = {}
    for what, send in cases.items():
        resp = send()
        seen[what] = (resp.status, resp.json())
    monkeypatch.setenv("MAX_BODY_BYTES", "64")
    bootstrap.reset()
    resp = api("POST", "/webhooks/shopify", body, headers)
    seen["too large"] = (resp.status, resp.json())
    monkeypatch.setenv("MAX_BODY_BYTES", str(1024 * 1024))
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")  # PutEvents fails: a fault on our side
    bootstrap.reset()
    resp = api("POST", "/webhooks/shopify", body, headers)
    seen["fault"] = (resp.status, resp.json())

    for what, (_, answer) in seen.items():
        assert set(answer) == {"error", "reason"}, (what, answer)
        assert isinstance(answer["reason"], str) and answer["reason"], (what, answer)
    assert {(status, answer["error"]) for status, answer in seen.values()} == documented_webhook_errors()


def test_management_api_errors_are_status_code_and_message(api, aws):
    resp = api("GET", "/profiles/0123456789abcdef0123456789abcdef")
    assert resp.status == 404 and resp.json() == {"statusCode": 404, "message": resp.json()["message"]}
    assert resp.json()["message"]

    resp = api("GET", "/segments/recent-buyers/members?limit=0")
    answer = resp.json()
    assert resp.status == 400 and set(answer) == {"statusCode", "message", "detail"} and answer["statusCode"] == 400
    assert "limit" in answer["message"] and all(set(d) == {"loc", "msg"} for d in answer["detail"])

    resp = api("POST", "/segments/preview", b"segment_id=x", {"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415 and set(resp.json()) == {"statusCode", "message"} and resp.json()["statusCode"] == 415


def test_a_duplicate_delivery_gets_the_first_answer_and_is_recognised_by_its_profile(fake_api, fakes, caplog):
    """What docs/webhooks.md, "Duplicate deliveries", says: 200 and the same body again (nothing on the
    webhook path can know); the same delivery key in both log lines; the profile counts one order."""
    body, headers = signed_shopify(ORDER, event_id="evt-duplicate")
    first = fake_api("POST", "/webhooks/shopify", body, headers)
    webhook = sys.modules["webhook_handler"]
    webhook.logger.setLevel("INFO")
    caplog.clear()
    try:
        answers = [fake_api("POST", "/webhooks/shopify", body, headers) for _ in range(2)]
    finally:
        webhook.logger.setLevel("WARNING")
    assert first.status == 200 and first.json() == {"status": "accepted", "accepted": 1}
    assert [(a.status, a.text) for a in answers] == [(first.status, first.text)] * 2

    keys = [r.delivery for r in caplog.records if r.getMessage() == "webhook"]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("shopify#")

    fakes.deliver()
    profile = fakes.store.find("email#ana.lopez@example.com")
    assert len(profile.orders) == 1 and profile.traits["order_count"] == 1


def test_the_api_reference_says_why_webhook_errors_differ():
    text = (ROOT / "docs" / "api.md").read_text()
    errors = text.split("* **Errors:**", 1)[1].split("\n* **", 1)[0]
    assert '{"statusCode": 4xx, "message": "...", "detail": [...]}' in errors
    assert '{"error", "reason"}' in errors and "webhooks.md#answers" in errors
