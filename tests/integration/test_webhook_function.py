"""WebhookFunction through its template route.

On the in-memory fakes (tests/fakes.py: what is published, what the dedupe holds, the shop's products
and carts) where the webhook service's answers are checked. On moto resources built from template.yaml
where the bus is: a CustomerEvent reaching ProfileQueue through the template's rule, and a failing
PutEvents. The dedupe table's items under faults: test_dedupe_faults.py."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from segmentation import bootstrap
from support import ROOT, signed_shopify

ORDER = {
    "id": 5551234567890, "email": "Ana.Lopez@Example.com", "created_at": "2024-05-14T10:22:31-04:00",
    "currency": "EUR", "total_price": "59.90",
    "customer": {"id": 7001002003, "email": "ana.lopez@example.com", "phone": "+34600111222"},
    "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "49.90"}],
}


def queued(template) -> list[dict]:
    """Messages the CustomerEvent rule delivered to the profile queue (received, then left visible)."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=template.physical_name("ProfileQueue"))["QueueUrl"]
    seen: dict[str, dict] = {}
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        new = [m for m in msgs if m["MessageId"] not in seen]
        if not new:
            return list(seen.values())
        seen.update({m["MessageId"]: json.loads(m["Body"]) for m in new})


def test_signed_order_is_published_as_one_customer_event(api, aws):
    """On moto: the webhook's CustomerEvent reaches ProfileQueue through the template's bus and rule."""
    body, headers = signed_shopify(ORDER)
    resp = api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 200, resp.text
    [message] = queued(aws)
    assert message["detail-type"] == "CustomerEvent"
    detail = message["detail"]
    assert detail["type"] == "order"
    assert detail["identity"]["email"] == "ana.lopez@example.com"
    assert detail["identity"]["customer_ids"] == {"shopify": "7001002003"}
    assert detail["occurred_at"].startswith("2024-05-14T14:22:31")


def test_a_redelivery_is_published_again_with_the_same_event_ids_and_the_profile_counts_it_once(fake_api, fakes):
    """No dedupe table (issue 13): a provider's retry is accepted and published again, with the event
    ids the adapters derive from the signed content, and the profile path applies it once. A page
    view is the case that matters: orders, checkouts and email events are also keyed by their own ids
    inside the profile, browsing is not."""
    from datetime import UTC, datetime

    from segctl.signing import segment_headers

    view = json.loads((ROOT / "events/segment/product-viewed.json").read_text())
    view["timestamp"] = datetime.now(UTC).isoformat()
    view["context"]["traits"] = {"email": ORDER["customer"]["email"]}
    body = json.dumps(view).encode()
    headers = segment_headers(fakes.secrets.values["segment"], body)
    order, order_headers = signed_shopify(ORDER, event_id="evt-dup")
    for _ in range(2):
        assert fake_api("POST", "/webhooks/segment", body, headers).status == 200
        assert fake_api("POST", "/webhooks/shopify", order, order_headers).status == 200
    queued = fakes.queued()
    assert len(queued) == 4 and len({m["detail"]["event_id"] for m in queued}) == 2
    fakes.deliver()
    profile = fakes.store.find(f"email#{ORDER['customer']['email']}")
    assert len(profile.orders) == 1
    assert profile.totals["product_viewed"].n == 1 and len(profile.browse["product_viewed"].t) == 1


def test_base64_encoded_body_from_api_gateway_verifies(fake_api, fakes):
    body, headers = signed_shopify(ORDER)
    headers["Content-Type"] = "application/json"
    # The local router sends JSON as text; send it as API Gateway does for other types too.
    from segctl.server import Router, request_event

    template = fakes.template
    function, event = request_event(Router(template.routes()), "POST", "/webhooks/shopify", body, headers)
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    handler = fake_api._load(template.functions()[function])
    result = handler(event, fake_api._context(template, function))
    assert result["statusCode"] == 200
    assert len(fakes.queued()) == 1


@pytest.mark.parametrize("tamper", ["flip-bit", "no-header", "other-secret", "not-base64"])
def test_bad_signature_is_401_and_stores_nothing(fake_api, fakes, tamper):
    body, headers = signed_shopify(ORDER)
    if tamper == "flip-bit":
        body = body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]
    elif tamper == "no-header":
        del headers["X-Shopify-Hmac-Sha256"]
    elif tamper == "other-secret":
        body, headers = signed_shopify(ORDER, secret="not-the-configured-secret")
    else:
        headers["X-Shopify-Hmac-Sha256"] = "%%%"
    resp = fake_api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 401
    assert "error" in resp.json()
    assert fakes.nothing_stored()


@pytest.mark.parametrize("payload", [b"{not json", b"[1,2]", json.dumps({**ORDER, "total_price": "abc"}).encode(),
                                     json.dumps({k: v for k, v in ORDER.items() if k != "created_at"}).encode()])
def test_malformed_signed_body_is_400_with_reason_and_stores_nothing(fake_api, fakes, payload):
    body, headers = signed_shopify(payload)
    resp = fake_api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 400
    assert resp.json()["reason"]
    assert fakes.nothing_stored()


def test_wrong_content_type_is_415(fake_api, fakes):
    body, headers = signed_shopify(ORDER)
    headers["Content-Type"] = "text/plain"
    assert fake_api("POST", "/webhooks/shopify", body, headers).status == 415


def test_oversize_body_is_413(fake_api, fakes, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "1024")
    bootstrap.reset()  # settings are read again; the fakes stay in place
    body, headers = signed_shopify({**ORDER, "note": "x" * 2000})
    assert fake_api("POST", "/webhooks/shopify", body, headers).status == 413
    assert fakes.queued() == []


def test_unknown_source_is_404_and_wrong_method_is_405(fake_api, fakes):
    assert fake_api("POST", "/webhooks/nosuchshop", b"{}", {"Content-Type": "application/json"}).status == 404
    assert fake_api("PUT", "/webhooks/shopify", b"{}", {"Content-Type": "application/json"}).status == 405


def test_unused_topic_is_acknowledged_without_publishing(fake_api, fakes):
    body, headers = signed_shopify({"id": 1, "title": "Linen Shirt"}, topic="app/uninstalled")
    resp = fake_api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 200 and "ignored" in resp.json()
    assert fakes.queued() == []


def test_publish_failure_answers_503_and_the_retry_is_not_a_duplicate(api, aws, monkeypatch):
    """On moto: PutEvents to a bus that does not exist fails; the claim is released for the retry."""
    body, headers = signed_shopify(ORDER, event_id="evt-retry")
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    bootstrap.reset()
    assert api("POST", "/webhooks/shopify", body, headers).status == 503
    monkeypatch.setenv("EVENT_BUS_NAME", aws.physical_name("EventBus"))
    bootstrap.reset()
    assert api("POST", "/webhooks/shopify", body, headers).status == 200
    assert len(queued(aws)) == 1


def test_rotated_secret_both_values_verify(fake_api, fakes):
    # Secrets Manager's JSON read into lists on moto: test_guards_service.py (every signed source).
    fakes.secrets.values = {"shopify": ["old-secret", "new-secret"]}
    for i, secret in enumerate(["old-secret", "new-secret"]):
        body, headers = signed_shopify(ORDER, event_id=f"evt-rot-{i}", secret=secret)
        assert fake_api("POST", "/webhooks/shopify", body, headers).status == 200
    body, headers = signed_shopify(ORDER, event_id="evt-rot-x", secret="third-secret")
    assert fake_api("POST", "/webhooks/shopify", body, headers).status == 401


def test_shopify_through_eventbridge_is_normalised_and_published_like_https(fakes):
    from segctl.runtime import context_for, load_handler

    template = fakes.template
    handler = load_handler(template.functions()["WebhookFunction"])
    event = {"version": "0", "id": "eb-1", "detail-type": "shopifyWebhook",
             "source": "aws.partner/shopify.com/123/segmentation", "account": "123456789012",
             "time": "2024-05-14T14:22:31Z", "region": "us-east-1", "resources": [],
             "detail": {"metadata": {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
                                     "X-Shopify-Shop-Domain": "example-shop.myshopify.com",
                                     "X-Shopify-Event-Id": "evt-eb-1"},
                        "payload": ORDER}}
    assert handler(event, context_for(template, "WebhookFunction"))["accepted"] == 1
    assert handler(event, context_for(template, "WebhookFunction"))["status"] == "accepted"  # a retry
    message, again = fakes.queued()  # published again, with the same event id (the profile path dedupes)
    assert message["detail"]["event_id"] == again["detail"]["event_id"]
    assert message["detail"]["identity"]["email"] == "ana.lopez@example.com"
    bad = {**event, "detail": {"metadata": {}, "payload": ORDER}, "detail-type": ""}
    assert handler(bad, context_for(template, "WebhookFunction"))["status"] == "rejected"
    assert len(fakes.queued()) == 2


def test_the_partner_rule_exists_only_when_a_source_is_configured():
    from segctl.template import Template
    from support import TEMPLATE

    assert "ShopifyPartnerRule" not in Template(TEMPLATE).of_type("AWS::Events::Rule")
    configured = Template(TEMPLATE, parameters={"ShopifyPartnerEventSource": "aws.partner/shopify.com/1/x"})
    rule = configured.resolve(configured.of_type("AWS::Events::Rule")["ShopifyPartnerRule"]["Properties"])
    assert rule["EventBusName"] == "aws.partner/shopify.com/1/x"


def test_a_signed_body_with_a_lone_surrogate_is_400_not_a_fault(fake_api, fakes):
    raw = json.dumps({**ORDER, "email": "a\ud800@example.com"}, ensure_ascii=True).encode()
    body, headers = signed_shopify(raw)
    resp = fake_api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 400, resp.text
    assert fakes.nothing_stored()


def _post(api, payload, topic, event_id):
    body, headers = signed_shopify(payload, topic=topic, event_id=event_id)
    resp = api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 200, resp.text
    return resp


def test_products_teach_categories_to_order_line_items(fake_api, fakes):
    _post(fake_api, {"id": 8801, "title": "Linen Shirt", "product_type": "Shirts", "tags": "summer, linen"},
          "products/create", "evt-p1")
    _post(fake_api, {"id": 8802, "title": "Cotton Socks", "product_type": "", "tags": "Accessories, cotton"},
          "products/update", "evt-p2")
    assert fakes.queued() == []  # a product is about the shop, not a customer
    _post(fake_api, {**ORDER, "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "49.90"},
                                        {"product_id": 8802, "title": "Cotton Socks", "quantity": 2, "price": "5.00"},
                                        {"product_id": 9999, "title": "Unknown", "quantity": 1, "price": "5.00"}]},
          "orders/create", "evt-o1")
    [message] = fakes.queued()
    assert [i.get("category") for i in message["detail"]["properties"]["items"]] == ["shirts", "accessories", None]


def test_a_cart_becomes_added_to_cart_once_a_checkout_names_its_owner(fake_api, fakes):
    cart = {"id": "c1", "token": "cart-tok-1", "created_at": "2024-05-14T10:00:00Z", "updated_at": "2024-05-14T10:05:00Z",
            "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "49.90"}]}
    _post(fake_api, cart, "carts/create", "evt-c1")
    assert fakes.queued() == []  # nobody to attribute it to yet
    checkout = {"id": 1, "token": "co-1", "cart_token": "cart-tok-1", "email": "ana@example.com",
                "created_at": "2024-05-14T10:06:00Z", "updated_at": "2024-05-14T10:06:00Z", "total_price": "49.90",
                "completed_at": None}
    _post(fake_api, checkout, "checkouts/create", "evt-co1")
    types = sorted(m["detail"]["type"] for m in fakes.queued())
    assert types == ["checkout", "product_added"]
    added = next(m["detail"] for m in fakes.queued() if m["detail"]["type"] == "product_added")
    assert added["identity"]["email"] == "ana@example.com" and added["properties"]["product_id"] == "8801"
    # A later cart update adds a product: attributed straight away; the known product keeps its event id.
    _post(fake_api, {**cart, "updated_at": "2024-05-14T10:09:00Z", "line_items": cart["line_items"] + [
        {"product_id": 8803, "title": "Waxed Jacket", "quantity": 1, "price": "289.00"}]}, "carts/update", "evt-c2")
    ids = [m["detail"]["event_id"] for m in fakes.queued() if m["detail"]["type"] == "product_added"]
    assert len(ids) == 3 and len(set(ids)) == 2  # the shirt twice with one id: the profile counts it once
