"""Shopify adapter: signature verification (docs/webhooks.md#shopify) and normalisation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from segmentation.domain.events import (
    CheckoutProperties,
    CustomerProperties,
    EventType,
    OrderProperties,
)
from segmentation.sources import shopify
from segmentation.sources.errors import (
    MalformedPayloadError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
)
from segmentation.sources.request import Normalised, WebhookRequest

# -- the worked vector of docs/webhooks.md#test-vectors, byte for byte -----------------------------

VECTOR_SECRET = "shpss_example_client_secret_0001"
VECTOR_BODY = (
    b'{"id":5551234567890,"email":"ana.lopez@example.com","created_at":"2024-05-14T10:22:31-04:00",'
    b'"currency":"EUR","total_price":"59.90","customer":{"id":7001002003,"email":"ana.lopez@example.com",'
    b'"phone":"+34600111222"},"line_items":[{"product_id":8801,"variant_id":99001,"title":"Linen Shirt",'
    b'"quantity":1,"price":"49.90","sku":"LS-BLU-M"},{"product_id":8802,"variant_id":99002,'
    b'"title":"Cotton Socks","quantity":2,"price":"5.00","sku":"CS-WHT"}]}'
)
VECTOR_SHA256 = "b200cfc89e387f071f8d56326e03f691448df4f04aadb01d8c0fbeb134e8c578"
VECTOR_HMAC = "6iX9lIwh8RocMKUgHQXWRT3fxh58FwKFvVhm+IblUWw="
VECTOR_NEGATIVE_HMAC = "uXuapID3v5wZ7FGUK1p1mfi/OEdpxhHAzAryRsyv2Ps="
SECRETS = [VECTOR_SECRET.encode()]
SHOP = "example-shop.myshopify.com"


def flipped_body() -> bytes:
    """The vector body with one bit (the lowest) of the second-to-last byte flipped."""
    return VECTOR_BODY[:-2] + bytes([VECTOR_BODY[-2] ^ 0x01]) + VECTOR_BODY[-1:]


def sign(body: bytes, secret: bytes = SECRETS[0]) -> str:
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def request(body: bytes | dict, topic: str | None = "orders/create", *, signature: str | None = None,
            event_id: str | None = "evt-1", webhook_id: str | None = "wh-1",
            content_type: str | None = "application/json", **extra: str) -> WebhookRequest:
    """A delivery as the webhook entrypoint hands it over (header names lower-cased)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {
        "content-type": content_type,
        "x-shopify-hmac-sha256": sign(raw) if signature is None else signature,
        "x-shopify-topic": topic,
        "x-shopify-shop-domain": SHOP,
        "x-shopify-api-version": "2024-04",
        "x-shopify-webhook-id": webhook_id,
        "x-shopify-event-id": event_id,
        "x-shopify-triggered-at": "2024-05-14T14:22:31.000Z",
        **extra,
    }
    return WebhookRequest(method="POST", source="shopify", body=raw,
                          headers={k: v for k, v in headers.items() if v is not None})


def parse(req: WebhookRequest) -> Normalised:
    return shopify.parse(req, lambda name: list(SECRETS), 0)


def only_event(result: Normalised):
    assert result.ignored_reason is None
    assert len(result.events) == 1
    return result.events[0]


ORDER = {
    "id": 42, "email": "Ana.Lopez@Example.COM", "created_at": "2024-05-14T10:22:31-04:00",
    "updated_at": "2024-05-14T10:25:00-04:00", "currency": "EUR", "total_price": "59.90",
    "financial_status": "paid", "customer": {"id": 7001002003, "email": "ana.lopez@example.com"},
    "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "49.90"}],
}
CHECKOUT = {
    "id": 9001, "token": "tok-abc", "cart_token": "cart-1", "email": "Ana@Example.com",
    "created_at": "2024-05-14T12:00:00Z", "updated_at": "2024-05-14T12:05:00Z", "completed_at": None,
    "total_price": "10.00", "currency": "EUR", "line_items": [],
}
CUSTOMER = {
    "id": 7001002003, "email": "Ana.Lopez@Example.com", "first_name": "Ana", "last_name": "Lopez",
    "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-05-14T14:00:00Z", "tags": "vip, eu",
}


# -- verify: the Shopify vector --------------------------------------------------------------------


def test_vector_body_is_the_documented_bytes():
    assert len(VECTOR_BODY) == 443
    assert hashlib.sha256(VECTOR_BODY).hexdigest() == VECTOR_SHA256


def test_vector_signature_verifies():
    shopify.verify(SECRETS, VECTOR_BODY, VECTOR_HMAC)  # raises if rejected


def test_vector_negative_header_is_the_mac_of_the_flipped_body():
    assert sign(flipped_body()) == VECTOR_NEGATIVE_HMAC


def test_flipped_bit_body_is_rejected():
    with pytest.raises(SignatureMismatchError) as exc:
        shopify.verify(SECRETS, flipped_body(), VECTOR_HMAC)
    assert exc.value.status == 401


def test_documented_negative_header_is_rejected():
    with pytest.raises(SignatureMismatchError):
        shopify.verify(SECRETS, VECTOR_BODY, VECTOR_NEGATIVE_HMAC)


@pytest.mark.parametrize("header", [None, "", "not base64!!", "6iX9lIwh8RocMKUgHQXWRT3fxh58FwKFvVhm+IblUWw",
                                    "6iX9 lIwh8RocMKUgHQXWRT3fxh58FwKFvVhm+IblUWw=", "ÿÿÿÿ"])
def test_missing_empty_or_non_base64_header_is_rejected(header):
    with pytest.raises(SignatureMismatchError):
        shopify.verify(SECRETS, VECTOR_BODY, header)


def test_hex_encoded_mac_is_rejected():
    hex_mac = hmac.new(SECRETS[0], VECTOR_BODY, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureMismatchError):
        shopify.verify(SECRETS, VECTOR_BODY, hex_mac)


def test_wrong_secret_is_rejected():
    with pytest.raises(SignatureMismatchError):
        shopify.verify([b"shpss_some_other_secret"], VECTOR_BODY, VECTOR_HMAC)


def test_no_configured_secret_rejects_everything():
    with pytest.raises(SignatureMismatchError):
        shopify.verify([], VECTOR_BODY, VECTOR_HMAC)


@pytest.mark.parametrize("secrets", [
    [b"shpss_new_secret", VECTOR_SECRET.encode()],
    [VECTOR_SECRET.encode(), b"shpss_new_secret"],
])
def test_either_secret_verifies_during_rotation(secrets):
    shopify.verify(secrets, VECTOR_BODY, VECTOR_HMAC)
    shopify.verify(secrets, VECTOR_BODY, sign(VECTOR_BODY, b"shpss_new_secret"))
    with pytest.raises(SignatureMismatchError):
        shopify.verify(secrets, VECTOR_BODY, sign(VECTOR_BODY, b"shpss_third_secret"))


# -- parse: orders ------------------------------------------------------------------------------


def test_vector_order_create_end_to_end():
    req = request(VECTOR_BODY, signature=VECTOR_HMAC, event_id="evt-9.1")
    event = only_event(parse(req))
    assert event.type == EventType.ORDER
    assert event.source == "shopify"
    assert event.shop == SHOP
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids["shopify"] == "7001002003"
    assert event.identity.phone == "+34600111222"
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    assert event.occurred_at.utcoffset().total_seconds() == 0
    props = event.properties
    assert isinstance(props, OrderProperties)
    assert props.order_id == "5551234567890"
    assert props.status == "placed"
    assert props.total == Decimal("59.90") and isinstance(props.total, Decimal)
    assert props.currency == "EUR"
    assert [(i.product_id, i.quantity, i.price) for i in props.items] == [
        ("8801", 1, Decimal("49.90")), ("8802", 2, Decimal("5.00"))]


def test_order_email_is_lower_cased_and_customer_id_is_a_string():
    event = only_event(parse(request(ORDER)))
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids["shopify"] == "7001002003"
    assert event.properties.order_id == "42"
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    assert event.properties.updated_at == datetime(2024, 5, 14, 14, 25, tzinfo=UTC)


def test_occurred_at_comes_from_the_payload_not_the_delivery_headers():
    req = request(ORDER, **{"x-shopify-triggered-at": "2030-01-01T00:00:00.000Z"})
    assert only_event(parse(req)).occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)


def test_same_delivery_twice_gives_same_event_id_and_delivery_key():
    first, second = parse(request(VECTOR_BODY)), parse(request(VECTOR_BODY))
    assert first.delivery_key == second.delivery_key
    assert only_event(first).event_id == only_event(second).event_id


def test_delivery_key_uses_event_id_across_deliveries():
    a = parse(request(VECTOR_BODY, event_id="evt-1", webhook_id="wh-1"))
    b = parse(request(VECTOR_BODY, event_id="evt-1", webhook_id="wh-2"))
    c = parse(request(VECTOR_BODY, event_id="evt-2", webhook_id="wh-1"))
    assert "evt-1" in a.delivery_key
    assert a.delivery_key == b.delivery_key
    assert a.delivery_key != c.delivery_key


def test_delivery_key_falls_back_to_webhook_id():
    a = parse(request(VECTOR_BODY, event_id=None, webhook_id="wh-1"))
    b = parse(request(VECTOR_BODY, event_id=None, webhook_id="wh-2"))
    assert "wh-1" in a.delivery_key
    assert a.delivery_key != b.delivery_key


def test_delivery_key_separates_shops_and_topics():
    base = parse(request(VECTOR_BODY))
    other_shop = parse(request(VECTOR_BODY, **{"x-shopify-shop-domain": "other.myshopify.com"}))
    other_topic = parse(request(VECTOR_BODY, topic="orders/updated"))
    assert len({base.delivery_key, other_shop.delivery_key, other_topic.delivery_key}) == 3


def test_new_version_of_an_order_gets_a_new_event_id():
    newer = dict(ORDER, updated_at="2024-05-14T11:00:00-04:00")
    first = only_event(parse(request(ORDER, topic="orders/updated")))
    second = only_event(parse(request(newer, topic="orders/updated")))
    assert first.event_id != second.event_id
    assert first.properties.order_id == second.properties.order_id


def test_the_body_cancels_an_order_not_the_unsigned_topic_header():
    cancelled = dict(ORDER, cancelled_at="2024-05-15T09:00:00Z")
    assert only_event(parse(request(cancelled, topic="orders/cancelled"))).properties.status == "cancelled"
    # A placed order's signed body re-sent as orders/cancelled is still a placed order.
    assert only_event(parse(request(ORDER, topic="orders/cancelled"))).properties.status == "placed"


def test_cancelled_at_on_an_update_gives_cancelled_status_and_version():
    body = dict(ORDER, updated_at=None, cancelled_at="2024-05-15T09:00:00Z")
    event = only_event(parse(request(body, topic="orders/updated")))
    assert event.properties.status == "cancelled"
    assert event.properties.updated_at == datetime(2024, 5, 15, 9, tzinfo=UTC)


def test_refunded_financial_status_gives_refunded():
    body = dict(ORDER, financial_status="refunded")
    assert only_event(parse(request(body, topic="orders/updated"))).properties.status == "refunded"


def test_partially_refunded_order_still_counts_at_its_current_total():
    body = dict(ORDER, financial_status="partially_refunded", current_total_price="9.90")
    props = only_event(parse(request(body, topic="orders/updated"))).properties
    assert props.status == "placed"
    assert props.total == Decimal("9.90")


def test_order_without_any_identity_is_acknowledged_without_events():
    body = {k: v for k, v in ORDER.items() if k not in ("email", "customer")}
    result = parse(request(body))
    assert result.events == []
    assert result.ignored_reason


# -- parse: checkouts and customers ---------------------------------------------------------------


def test_checkout_create_is_a_checkout_event_keyed_by_token():
    event = only_event(parse(request(CHECKOUT, topic="checkouts/create")))
    assert event.type == EventType.CHECKOUT
    props = event.properties
    assert isinstance(props, CheckoutProperties)
    assert props.checkout_id == "tok-abc"
    assert props.cart_token == "cart-1"
    assert props.completed_at is None
    assert event.identity.email == "ana@example.com"
    assert event.occurred_at == datetime(2024, 5, 14, 12, tzinfo=UTC)


def test_checkout_create_and_update_share_the_checkout_id():
    created = only_event(parse(request(CHECKOUT, topic="checkouts/create")))
    update = dict(CHECKOUT, id=9002, updated_at="2024-05-14T12:30:00Z", completed_at="2024-05-14T12:30:00Z")
    updated = only_event(parse(request(update, topic="checkouts/update")))
    assert updated.properties.checkout_id == created.properties.checkout_id
    assert updated.properties.completed_at == datetime(2024, 5, 14, 12, 30, tzinfo=UTC)
    assert updated.occurred_at == created.occurred_at  # the start, not the update


def test_customer_update_with_email_marketing_consent():
    body = dict(CUSTOMER, email_marketing_consent={
        "state": "subscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2024-05-14T13:00:00Z"})
    event = only_event(parse(request(body, topic="customers/update")))
    assert event.type == EventType.CUSTOMER
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids["shopify"] == "7001002003"
    props = event.properties
    assert isinstance(props, CustomerProperties)
    assert props.email_consent.state == "subscribed"
    assert props.email_consent.updated_at == datetime(2024, 5, 14, 13, tzinfo=UTC)
    assert props.tags == ["vip", "eu"]
    assert props.first_name == "Ana"


def test_customer_unsubscribed_consent_state():
    body = dict(CUSTOMER, email_marketing_consent={"state": "unsubscribed", "consent_updated_at": None})
    props = only_event(parse(request(body, topic="customers/update"))).properties
    assert props.email_consent.state == "unsubscribed"


@pytest.mark.parametrize(("accepts", "state"), [(True, "subscribed"), (False, "not_subscribed")])
def test_legacy_accepts_marketing_fallback(accepts, state):
    body = dict(CUSTOMER, accepts_marketing=accepts, accepts_marketing_updated_at="2024-05-14T13:00:00Z")
    consent = only_event(parse(request(body, topic="customers/update"))).properties.email_consent
    assert consent.state == state
    assert consent.updated_at == datetime(2024, 5, 14, 13, tzinfo=UTC)


def test_consent_object_is_preferred_over_legacy_field():
    body = dict(CUSTOMER, accepts_marketing=True, email_marketing_consent={"state": "unsubscribed"})
    consent = only_event(parse(request(body, topic="customers/update"))).properties.email_consent
    assert consent.state == "unsubscribed"


def test_customer_without_consent_information_has_no_consent():
    props = only_event(parse(request(CUSTOMER, topic="customers/update"))).properties
    assert props.email_consent is None


@pytest.mark.parametrize("topic", ["app/uninstalled", "orders/delete", "products/delete"])
def test_unknown_topic_is_acknowledged_with_no_events(topic):
    result = parse(request(VECTOR_BODY, topic=topic))
    assert result.events == []
    assert result.ignored_reason
    assert topic in result.delivery_key


# -- parse: rejections --------------------------------------------------------------------------


MALFORMED = {
    "not JSON": b"this is not json",
    "JSON array": b"[1, 2, 3]",
    "JSON string": b'"hello"',
    "empty body": b"",
    "invalid UTF-8": b'{"id": "\xff\xfe"}',
    "missing id": json.dumps({k: v for k, v in ORDER.items() if k != "id"}).encode(),
    "missing created_at": json.dumps({k: v for k, v in ORDER.items() if k != "created_at"}).encode(),
    "created_at not a date": json.dumps(dict(ORDER, created_at="yesterday")).encode(),
    "created_at a number": json.dumps(dict(ORDER, created_at=1715696551)).encode(),
    "total_price abc": json.dumps(dict(ORDER, total_price="abc")).encode(),
    "total_price NaN": json.dumps(dict(ORDER, total_price="NaN")).encode(),
    "total_price huge": json.dumps(dict(ORDER, total_price="1e30")).encode(),
    "line_items not a list": json.dumps(dict(ORDER, line_items="shirt")).encode(),
    "line_item not an object": json.dumps(dict(ORDER, line_items=["shirt"])).encode(),
    "customer not an object": json.dumps(dict(ORDER, customer="ana")).encode(),
    "customer a list": json.dumps(dict(ORDER, customer=[1])).encode(),
    "email not a string": json.dumps(dict(ORDER, email=["a@b.c"])).encode(),
    "id an object": json.dumps(dict(ORDER, id={"n": 1})).encode(),
    "id too long": json.dumps(dict(ORDER, id="9" * 200)).encode(),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_signed_order_body_is_rejected(body):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body, topic="orders/create"))
    assert exc.value.status == 400
    assert exc.value.reason


@pytest.mark.parametrize(("topic", "body"), [
    ("checkouts/create", dict(CHECKOUT, created_at="not a time")),
    ("checkouts/create", dict(CHECKOUT, completed_at=12)),
    ("checkouts/create", {k: v for k, v in CHECKOUT.items() if k not in ("id", "token")}),
    ("customers/update", dict(CUSTOMER, email_marketing_consent={"state": "maybe"})),
    ("customers/update", dict(CUSTOMER, tags=["vip"])),
    ("customers/update", {k: v for k, v in CUSTOMER.items() if k != "id"}),
])
def test_malformed_signed_checkout_or_customer_body_is_rejected(topic, body):
    with pytest.raises(MalformedPayloadError):
        parse(request(body, topic=topic))


def test_deeply_nested_signed_json_is_malformed_not_a_crash():
    body = b'{"id":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(MalformedPayloadError):
        parse(request(body))


def test_wrong_content_type_is_rejected_even_when_signed():
    with pytest.raises(UnsupportedMediaTypeError) as exc:
        parse(request(VECTOR_BODY, signature=VECTOR_HMAC, content_type="text/plain"))
    assert exc.value.status == 415


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8", "Application/JSON", " APPLICATION/JSON ;charset=UTF-8", None])
def test_json_content_type_variants_are_accepted(content_type):
    req = request(VECTOR_BODY, signature=VECTOR_HMAC, content_type=content_type)
    assert only_event(parse(req)).properties.order_id == "5551234567890"


def test_missing_topic_after_a_valid_signature_is_malformed():
    with pytest.raises(MalformedPayloadError):
        parse(request(VECTOR_BODY, topic=None, signature=VECTOR_HMAC))


def test_signature_is_checked_before_the_topic():
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, topic=None, signature=VECTOR_NEGATIVE_HMAC))


@pytest.mark.parametrize("signature", ["", VECTOR_NEGATIVE_HMAC, sign(VECTOR_BODY, b"wrong-secret")])
def test_parse_rejects_a_bad_signature_before_reading_the_body(signature):
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=signature))


def test_parse_rejects_a_missing_signature_header():
    req = request(VECTOR_BODY)
    headers = {k: v for k, v in req.headers.items() if k != "x-shopify-hmac-sha256"}
    with pytest.raises(SignatureMismatchError):
        parse(WebhookRequest(method="POST", source="shopify", body=req.body, headers=headers))


def test_parse_rejects_a_tampered_body_with_the_original_signature():
    with pytest.raises(SignatureMismatchError):
        parse(request(flipped_body(), signature=VECTOR_HMAC))
