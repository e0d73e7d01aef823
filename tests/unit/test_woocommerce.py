"""WooCommerce adapter: signature verification (docs/webhooks.md#woocommerce), the creation ping,
normalisation of order and customer topics, and property tests over random input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.events import CustomerProperties, EventType, OrderProperties
from segmentation.sources import woocommerce
from segmentation.sources.errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Handshake, Normalised, WebhookRequest

# -- the worked vector of docs/webhooks.md#test-vectors, byte for byte (note the PHP-escaped slashes) --

VECTOR_SECRET = "wc_example_secret_Qz7!"
VECTOR_BODY = (
    b'{"id":4211,"status":"processing","currency":"EUR","date_created_gmt":"2024-05-14T14:22:31",'
    b'"total":"59.90","customer_id":318,"billing":{"email":"ana.lopez@example.com","phone":"+34600111222"},'
    b'"line_items":[{"product_id":8801,"name":"Linen Shirt","quantity":1,"total":"49.90","sku":"LS-BLU-M"}],'
    b'"payment_url":"https:\\/\\/shop.example.com\\/checkout\\/order-pay\\/4211\\/"}'
)
VECTOR_SHA256 = "98770ca0660c431705243f1b053ee00ddeb917c0d07aa9aadb97a9330ec453db"
VECTOR_SIGNATURE = "R067WPhWI82WOVFX8vW/eVH4pO8zeFgyMEGhKJpBapg="
VECTOR_NEGATIVE = "7BTbKIfO8pWF1V/N5eHvhf5YjBLQNzSk6SzNwvHNvoc="
SECRETS = [VECTOR_SECRET.encode()]
SITE = "https://shop.example.com/"


def flipped_body() -> bytes:
    """The vector body with the lowest bit of the second-to-last byte flipped."""
    return VECTOR_BODY[:-2] + bytes([VECTOR_BODY[-2] ^ 0x01]) + VECTOR_BODY[-1:]


def sign(body: bytes, secret: bytes = SECRETS[0], digest=hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(secret, body, digest).digest()).decode()


def request(body: bytes | dict, topic: str | None = "order.created", *, signature: str | None = None,
            content_type: str | None = "application/json", method: str = "POST", **extra: str | None) -> WebhookRequest:
    """A delivery as WooCommerce's ``deliver()`` sends it (header names lower-cased by the entrypoint)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    resource, _, event = (topic or ".").partition(".")
    headers = {
        "content-type": content_type,
        "user-agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.3)",
        "x-wc-webhook-source": SITE,
        "x-wc-webhook-topic": topic,
        "x-wc-webhook-resource": resource or None,
        "x-wc-webhook-event": event or None,
        "x-wc-webhook-signature": sign(raw) if signature is None else signature,
        "x-wc-webhook-id": "17",
        "x-wc-webhook-delivery-id": "b0f8c1d2e3a4f5061728394a5b6c7d8e",
        **extra,
    }
    return WebhookRequest(method=method, source="woocommerce", body=raw,
                          headers={k: v for k, v in headers.items() if v is not None})


def parse(req: WebhookRequest, secrets: list[bytes] | None = None) -> Normalised | Handshake:
    return woocommerce.parse(req, lambda name: list(secrets or SECRETS), 0)


def only_event(result):
    assert isinstance(result, Normalised)
    assert result.ignored_reason is None
    assert len(result.events) == 1
    return result.events[0]


ORDER = {
    "id": 4300, "number": "4300", "status": "completed", "currency": "EUR",
    "date_created": "2024-05-14T16:22:31", "date_created_gmt": "2024-05-14T14:22:31",
    "date_modified": "2024-05-15T11:00:00", "date_modified_gmt": "2024-05-15T09:00:00",
    "date_paid_gmt": "2024-05-14T14:23:00", "total": "120.00", "customer_id": 318,
    "billing": {"first_name": "Ana", "last_name": "Lopez", "email": "Ana.Lopez@Example.COM",
                "phone": "+34 600 111 222", "country": "ES", "city": "Madrid"},
    "line_items": [
        {"product_id": 8801, "variation_id": 0, "name": "Linen Shirt", "quantity": 2, "price": 49.9,
         "subtotal": "99.80", "total": "99.80", "sku": "LS-BLU-M"},
        {"product_id": 8802, "name": "Cotton Socks", "quantity": 3, "total": "20.20", "sku": ""},
    ],
    "refunds": [],
}
CUSTOMER = {
    "id": 318, "email": "Ana.Lopez@Example.com", "first_name": "Ana", "last_name": "Lopez",
    "role": "customer", "username": "ana",
    "date_created": "2024-01-01T01:00:00", "date_created_gmt": "2024-01-01T00:00:00",
    "date_modified": "2024-05-14T16:00:00", "date_modified_gmt": "2024-05-14T14:00:00",
    "billing": {"first_name": "Ana", "last_name": "Lopez", "email": "ana.lopez@example.com",
                "phone": "+34600111222", "country": "ES", "city": "Madrid"},
    "shipping": {}, "is_paying_customer": True, "meta_data": [],
}


# -- verify: the WooCommerce vector ----------------------------------------------------------------


def test_vector_body_is_the_documented_bytes():
    assert len(VECTOR_BODY) == 366
    assert hashlib.sha256(VECTOR_BODY).hexdigest() == VECTOR_SHA256
    assert b"https:\\/\\/shop.example.com" in VECTOR_BODY


def test_vector_signature_verifies():
    woocommerce.verify(SECRETS, VECTOR_BODY, VECTOR_SIGNATURE)  # raises if rejected


def test_vector_negative_header_is_the_mac_of_the_flipped_body():
    assert sign(flipped_body()) == VECTOR_NEGATIVE


def test_flipped_bit_body_is_rejected():
    with pytest.raises(SignatureMismatchError) as exc:
        woocommerce.verify(SECRETS, flipped_body(), VECTOR_SIGNATURE)
    assert exc.value.status == 401


def test_documented_negative_header_is_rejected():
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify(SECRETS, VECTOR_BODY, VECTOR_NEGATIVE)


def test_re_serialised_body_does_not_verify_so_the_raw_bytes_must_be():
    """Python's json.dumps drops PHP's escaped slashes: verifying that instead of the raw body fails."""
    reserialised = json.dumps(json.loads(VECTOR_BODY), separators=(",", ":")).encode()
    assert reserialised != VECTOR_BODY
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify(SECRETS, reserialised, VECTOR_SIGNATURE)
    event = only_event(parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE)))
    assert event.properties.order_id == "4211"


@pytest.mark.parametrize("header", [None, "", "   ", "not base64!!", VECTOR_SIGNATURE.rstrip("="),
                                    "R067 WPhWI82WOVFX8vW/eVH4pO8zeFgyMEGhKJpBapg=", "ÿÿÿÿ", "=="])
def test_missing_empty_or_garbled_header_is_rejected(header):
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify(SECRETS, VECTOR_BODY, header)


def test_hex_encoded_mac_is_rejected():
    hex_mac = hmac.new(SECRETS[0], VECTOR_BODY, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify(SECRETS, VECTOR_BODY, hex_mac)


def test_wrong_secret_and_no_secret_are_rejected():
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify([b"wc_some_other_secret"], VECTOR_BODY, VECTOR_SIGNATURE)
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify([], VECTOR_BODY, VECTOR_SIGNATURE)


@pytest.mark.parametrize("secrets", [
    [b"wc_new_secret", VECTOR_SECRET.encode()],
    [VECTOR_SECRET.encode(), b"wc_new_secret"],
])
def test_either_secret_verifies_during_rotation(secrets):
    woocommerce.verify(secrets, VECTOR_BODY, VECTOR_SIGNATURE)
    woocommerce.verify(secrets, VECTOR_BODY, sign(VECTOR_BODY, b"wc_new_secret"))
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify(secrets, VECTOR_BODY, sign(VECTOR_BODY, b"wc_third_secret"))


@pytest.mark.parametrize(("configured", "key_wordpress_uses"), [
    ("wc_a&amp;b&lt;c&gt;d&quot;e", 'wc_a&b<c>d"e'),
    ("wc_&#039;q&#39;&#0039;&#x27;&#X27;", "wc_'q''''"),
    ("wc_&#038;&#x26;&#34;&#60;&#62;", 'wc_&&"<>'),
    ("wc_&amp;lt;", "wc_&lt;"),  # one pass, like PHP's strtr
    ("wc_plain&secret", "wc_plain&secret"),
    ("wc_&copy;&lt", "wc_&copy;&lt"),  # not in wp_specialchars_decode's table: WordPress leaves it
])
def test_secret_is_html_entity_decoded_as_wordpress_does(configured, key_wordpress_uses):
    """WooCommerce signs with wp_specialchars_decode($secret, ENT_QUOTES), so a secret copied with
    entities in it verifies the MAC WordPress computes."""
    assert woocommerce.wp_specialchars_decode(configured) == key_wordpress_uses
    woocommerce.verify([configured.encode()], VECTOR_BODY, sign(VECTOR_BODY, key_wordpress_uses.encode()))
    result = parse(request(VECTOR_BODY, signature=sign(VECTOR_BODY, key_wordpress_uses.encode())),
                   secrets=[configured.encode()])
    assert only_event(result).properties.order_id == "4211"


def test_html_unescape_reading_of_the_secret_is_also_accepted():
    woocommerce.verify([b"wc_&eacute;t&eacute;"], VECTOR_BODY, sign(VECTOR_BODY, "wc_été".encode()))


@pytest.mark.parametrize("digest", [hashlib.sha512, hashlib.sha384, hashlib.sha1])
def test_site_that_filters_the_hash_algorithm_still_verifies(digest):
    woocommerce.verify(SECRETS, VECTOR_BODY, sign(VECTOR_BODY, digest=digest))
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify(SECRETS, flipped_body(), sign(VECTOR_BODY, digest=digest))


def test_truncated_mac_of_an_unknown_length_is_rejected():
    mac = hmac.new(SECRETS[0], VECTOR_BODY, hashlib.sha256).digest()
    with pytest.raises(SignatureMismatchError):
        woocommerce.verify(SECRETS, VECTOR_BODY, base64.b64encode(mac[:16]).decode())


# -- the creation ping -------------------------------------------------------------------------------


def ping(body: bytes, **headers: str) -> WebhookRequest:
    base = {"user-agent": "WooCommerce/8.9.1 Hookshot (WordPress/6.5.3)",
            "content-type": "application/x-www-form-urlencoded"}
    return WebhookRequest(method="POST", source="woocommerce", body=body, headers={**base, **headers})


def test_unsigned_ping_gets_exactly_200_and_no_events():
    reply = parse(ping(b"webhook_id=17"))
    assert isinstance(reply, Handshake)
    assert reply.status == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json", "multipart/form-data"])
def test_ping_is_answered_whatever_its_content_type(content_type):
    req = ping(b"webhook_id=4")
    headers = {k: v for k, v in req.headers.items() if k != "content-type"}
    if content_type:
        headers["content-type"] = content_type
    reply = parse(WebhookRequest(method="POST", source="woocommerce", body=req.body, headers=headers))
    assert isinstance(reply, Handshake) and reply.status == 200


def test_ping_answer_needs_no_configured_secret():
    def no_secret(name):
        raise AssertionError("the ping must not need a secret")
    reply = woocommerce.parse(ping(b"webhook_id=17"), no_secret, 0)
    assert isinstance(reply, Handshake) and reply.status == 200


@pytest.mark.parametrize("body", [b"webhook_id=", b"webhook_id=17&x=1", b"webhook_id=abc", b"webhook_id=17; DROP",
                                  b'{"webhook_id":17}', b"", b"webhook_id=" + b"1" * 21])
def test_other_unsigned_bodies_are_not_pings(body):
    with pytest.raises(WebhookError) as exc:
        parse(ping(body, **{"content-type": "application/json"}))
    assert exc.value.status == 401


@pytest.mark.parametrize(("content_type", "status"), [("application/json", 401),
                                                     ("application/x-www-form-urlencoded", 415)])
def test_ping_body_with_a_signature_header_is_not_a_ping(content_type, status):
    with pytest.raises(WebhookError) as exc:
        parse(ping(b"webhook_id=17", **{"x-wc-webhook-signature": VECTOR_NEGATIVE, "content-type": content_type}))
    assert exc.value.status == status


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_methods_other_than_post_are_not_allowed(method):
    with pytest.raises(MethodNotAllowedError) as exc:
        parse(request(VECTOR_BODY, method=method))
    assert exc.value.status == 405


# -- orders -------------------------------------------------------------------------------------------


def test_vector_order_created_end_to_end():
    event = only_event(parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE)))
    assert event.type == EventType.ORDER
    assert event.source == "woocommerce"
    assert event.shop == "shop.example.com"  # the site's host: one shop however its URL is spelt
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.phone == "+34600111222"
    assert event.identity.customer_ids == {"woocommerce": "318"}
    # date_created_gmt has no suffix: it is UTC, not the server's local time
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    props = event.properties
    assert isinstance(props, OrderProperties)
    assert props.order_id == "4211"
    assert props.status == "placed"
    assert props.total == Decimal("59.90") and props.currency == "EUR"
    assert props.updated_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)  # no date_modified_gmt
    assert [(i.product_id, i.sku, i.title, i.quantity, i.price) for i in props.items] == [
        ("8801", "LS-BLU-M", "Linen Shirt", 1, Decimal("49.90"))]


def test_order_times_items_and_identity():
    event = only_event(parse(request(ORDER, topic="order.updated")))
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)  # date_created_gmt, not local
    props = event.properties
    assert props.updated_at == datetime(2024, 5, 15, 9, tzinfo=UTC)  # date_modified_gmt
    assert props.total == Decimal("120.00")
    assert [(i.product_id, i.quantity, i.price, i.sku) for i in props.items] == [
        ("8801", 2, Decimal("49.9"), "LS-BLU-M"), ("8802", 3, Decimal("6.73"), None)]
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.phone == "+34600111222"


@pytest.mark.parametrize(("status", "expected"), [
    ("processing", "placed"), ("completed", "placed"), ("wc-completed", "placed"), ("Completed", "placed"),
    ("cancelled", "cancelled"), ("failed", "cancelled"), ("trash", "cancelled"), ("refunded", "refunded"),
])
def test_order_status_maps_to_purchase_state(status, expected):
    event = only_event(parse(request(dict(ORDER, status=status), topic="order.updated")))
    assert event.type == EventType.ORDER
    assert event.properties.status == expected


@pytest.mark.parametrize("status", ["pending", "on-hold", "checkout-draft"])
def test_unpaid_order_is_not_a_purchase_but_tells_who_the_customer_is(status):
    result = parse(request(dict(ORDER, status=status, date_paid_gmt=None)))
    assert isinstance(result, Normalised)
    assert [e.type for e in result.events] == [EventType.CUSTOMER]
    assert result.ignored_reason and "not" in result.ignored_reason
    event = result.events[0]
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"woocommerce": "318"}
    assert isinstance(event.properties, CustomerProperties)
    assert event.properties.email_consent is None
    assert (event.properties.first_name, event.properties.last_name) == ("Ana", "Lopez")


def test_pending_then_paid_is_one_purchase_with_a_different_event_id():
    pending = parse(request(dict(ORDER, status="pending", date_modified_gmt="2024-05-14T14:22:31")))
    paid = only_event(parse(request(ORDER, topic="order.updated")))
    assert pending.events[0].event_id != paid.event_id
    assert paid.properties.status == "placed"


@pytest.mark.parametrize(("paid", "expected"), [("2024-05-14T14:23:00", [EventType.ORDER]), (None, [EventType.CUSTOMER])])
def test_custom_status_counts_once_paid(paid, expected):
    result = parse(request(dict(ORDER, status="shipped", date_paid_gmt=paid), topic="order.updated"))
    assert [e.type for e in result.events] == expected


def test_guest_order_has_no_customer_id():
    event = only_event(parse(request(dict(ORDER, customer_id=0))))
    assert event.identity.customer_ids == {}
    assert event.identity.email == "ana.lopez@example.com"


def test_partial_refund_lowers_the_revenue_and_keeps_the_purchase():
    body = dict(ORDER, refunds=[{"id": 91, "reason": "", "total": "-20.00"}])
    props = only_event(parse(request(body, topic="order.updated"))).properties
    assert props.status == "placed"
    assert props.total == Decimal("100.00")


def test_refunds_covering_the_whole_total_make_it_refunded():
    body = dict(ORDER, refunds=[{"id": 91, "total": "-100.00"}, {"id": 92, "total": "-20.00"}])
    props = only_event(parse(request(body, topic="order.updated"))).properties
    assert props.status == "refunded"
    assert props.total == Decimal("0")


def test_order_without_any_identity_is_acknowledged_without_events():
    body = dict(ORDER, customer_id=0, billing={"first_name": "Ana", "email": "", "phone": ""})
    result = parse(request(body))
    assert result.events == []
    assert result.ignored_reason


def test_php_empty_array_for_billing_is_accepted():
    result = parse(request(dict(ORDER, billing=[])))
    assert only_event(result).identity.customer_ids == {"woocommerce": "318"}


def test_line_items_are_capped_at_100():
    item = {"product_id": 1, "name": "Pin", "quantity": 1, "total": "1.00"}
    props = only_event(parse(request(dict(ORDER, line_items=[item] * 150)))).properties
    assert len(props.items) == 100


def test_legacy_api_created_at_is_used_when_there_is_no_gmt_field():
    body = {k: v for k, v in ORDER.items() if not k.startswith("date_")}
    body.update(created_at="2024-05-14T14:22:31Z", updated_at="2024-05-14T15:00:00Z", status="completed")
    event = only_event(parse(request(body)))
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    assert event.properties.updated_at == datetime(2024, 5, 14, 15, tzinfo=UTC)


def test_order_restored_is_normalised_like_an_update():
    event = only_event(parse(request(ORDER, topic="order.restored")))
    assert event.properties.status == "placed"


# -- dedupe -----------------------------------------------------------------------------------------


def test_same_delivery_twice_gives_same_delivery_key_and_event_id():
    first = parse(request(VECTOR_BODY, **{"x-wc-webhook-delivery-id": "aaa"}))
    second = parse(request(VECTOR_BODY, **{"x-wc-webhook-delivery-id": "bbb"}))  # regenerated per attempt
    assert first.delivery_key == second.delivery_key
    assert first.delivery_key.startswith("woocommerce#")
    assert only_event(first).event_id == only_event(second).event_id


def test_delivery_key_separates_sites_webhooks_and_bodies():
    base = parse(request(ORDER)).delivery_key
    other_site = parse(request(ORDER, **{"x-wc-webhook-source": "https://other.example.com/"})).delivery_key
    other_hook = parse(request(ORDER, **{"x-wc-webhook-id": "18"})).delivery_key
    other_body = parse(request(dict(ORDER, date_modified_gmt="2024-05-15T10:00:00"))).delivery_key
    assert len({base, other_site, other_hook, other_body}) == 4


def test_new_version_of_an_order_gets_a_new_event_id_and_the_same_order_id():
    first = only_event(parse(request(ORDER, topic="order.updated")))
    second = only_event(parse(request(dict(ORDER, date_modified_gmt="2024-05-16T09:00:00"), topic="order.updated")))
    assert first.event_id != second.event_id
    assert first.properties.order_id == second.properties.order_id


def test_created_and_updated_deliveries_of_the_same_state_share_the_event_id():
    created = only_event(parse(request(ORDER, topic="order.created", **{"x-wc-webhook-id": "17"})))
    updated = only_event(parse(request(ORDER, topic="order.updated", **{"x-wc-webhook-id": "18"})))
    assert created.event_id == updated.event_id


def test_oversized_unsigned_headers_are_cut_in_the_delivery_key():
    result = parse(request(ORDER, **{"x-wc-webhook-source": "https://x.example/" + "a" * 5000}))
    assert len(result.delivery_key) < 600
    assert len(only_event(result).shop) <= 200


# -- customers and other topics ------------------------------------------------------------------------


def test_customer_created_is_a_customer_event():
    event = only_event(parse(request(CUSTOMER, topic="customer.created")))
    assert event.type == EventType.CUSTOMER
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.phone == "+34600111222"
    assert event.identity.customer_ids == {"woocommerce": "318"}
    assert event.occurred_at == datetime(2024, 5, 14, 14, tzinfo=UTC)  # date_modified_gmt
    props = event.properties
    assert isinstance(props, CustomerProperties)
    assert (props.first_name, props.last_name) == ("Ana", "Lopez")
    assert props.attributes == {"country": "ES", "city": "Madrid"}
    assert props.email_consent is None  # WooCommerce has no consent field


def test_customer_without_modified_time_uses_creation_time():
    body = {k: v for k, v in CUSTOMER.items() if k != "date_modified_gmt"}
    assert only_event(parse(request(body, topic="customer.updated"))).occurred_at == datetime(2024, 1, 1, tzinfo=UTC)


def test_customer_update_changes_the_event_id_only_when_the_customer_changes():
    a = only_event(parse(request(CUSTOMER, topic="customer.updated")))
    b = only_event(parse(request(dict(CUSTOMER, role="subscriber"), topic="customer.updated")))
    c = only_event(parse(request(dict(CUSTOMER, date_modified_gmt="2024-05-15T00:00:00"), topic="customer.updated")))
    assert a.event_id == b.event_id != c.event_id


@pytest.mark.parametrize("topic", ["product.created", "coupon.updated", "action.woocommerce_add_to_cart",
                                   "order.deleted", "customer.deleted"])
def test_unused_topics_are_acknowledged_without_events(topic):
    result = parse(request({"id": 4211}, topic=topic))
    assert result.events == []
    assert result.ignored_reason


def test_topic_falls_back_to_resource_and_event_headers():
    req = request(ORDER, topic="order.created")
    headers = {k: v for k, v in req.headers.items() if k != "x-wc-webhook-topic"}
    result = parse(WebhookRequest(method="POST", source="woocommerce", body=req.body, headers=headers))
    assert only_event(result).type == EventType.ORDER


def test_missing_topic_after_a_valid_signature_is_malformed():
    with pytest.raises(MalformedPayloadError):
        parse(request(VECTOR_BODY, topic=None, signature=VECTOR_SIGNATURE))


def test_signature_is_checked_before_the_topic_and_the_body():
    with pytest.raises(SignatureMismatchError):
        parse(request(b"not json", topic=None, signature=VECTOR_NEGATIVE))


# -- rejections ---------------------------------------------------------------------------------------


MALFORMED = {
    "not JSON": b"this is not json",
    "JSON array": b"[1, 2, 3]",
    "JSON string": b'"hello"',
    "empty body": b"",
    "invalid UTF-8": b'{"id": "\xff\xfe"}',
    "missing id": json.dumps({k: v for k, v in ORDER.items() if k != "id"}).encode(),
    "missing status": json.dumps({k: v for k, v in ORDER.items() if k != "status"}).encode(),
    "status a number": json.dumps(dict(ORDER, status=3)).encode(),
    "missing date_created_gmt": json.dumps({k: v for k, v in ORDER.items() if k != "date_created_gmt"}).encode(),
    "date_created_gmt not a date": json.dumps(dict(ORDER, date_created_gmt="yesterday")).encode(),
    "date_created_gmt a number": json.dumps(dict(ORDER, date_created_gmt=1715696551)).encode(),
    "date_modified_gmt not a date": json.dumps(dict(ORDER, date_modified_gmt="2024-02-30T00:00:00")).encode(),
    "total abc": json.dumps(dict(ORDER, total="abc")).encode(),
    "total NaN": json.dumps(dict(ORDER, total="NaN")).encode(),
    "total huge": json.dumps(dict(ORDER, total="1e30")).encode(),
    "total an object": json.dumps(dict(ORDER, total={"amount": 1})).encode(),
    "line_items not a list": json.dumps(dict(ORDER, line_items="shirt")).encode(),
    "line item not an object": json.dumps(dict(ORDER, line_items=["shirt"])).encode(),
    "quantity huge": json.dumps(dict(ORDER, line_items=[{"quantity": 10**30, "total": "1"}])).encode(),
    "billing a string": json.dumps(dict(ORDER, billing="ana")).encode(),
    "email not a string": json.dumps(dict(ORDER, billing={"email": ["a@b.c"]})).encode(),
    "refunds not a list": json.dumps(dict(ORDER, refunds="all")).encode(),
    "refund total abc": json.dumps(dict(ORDER, refunds=[{"total": "abc"}])).encode(),
    "id an object": json.dumps(dict(ORDER, id={"n": 1})).encode(),
    "id too long": json.dumps(dict(ORDER, id="9" * 200)).encode(),
    "deeply nested": b'{"id":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_signed_order_body_is_rejected(body):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body, topic="order.updated"))
    assert exc.value.status == 400
    assert exc.value.reason
    assert "ana" not in exc.value.reason.lower()  # no PII echoed


def test_missing_creation_time_names_the_fix():
    body = {k: v for k, v in ORDER.items() if k != "date_created_gmt"}
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body))
    assert "date_created_gmt" in exc.value.reason


@pytest.mark.parametrize("body", [
    {k: v for k, v in CUSTOMER.items() if k != "id"},
    {k: v for k, v in CUSTOMER.items() if not k.startswith("date_")},
    dict(CUSTOMER, email=42),
    dict(CUSTOMER, first_name=["Ana"]),
])
def test_malformed_signed_customer_body_is_rejected(body):
    with pytest.raises(MalformedPayloadError):
        parse(request(body, topic="customer.updated"))


def test_wrong_content_type_is_rejected_even_when_signed():
    with pytest.raises(UnsupportedMediaTypeError) as exc:
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, content_type="text/plain"))
    assert exc.value.status == 415


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", None])
def test_json_content_type_variants_are_accepted(content_type):
    req = request(VECTOR_BODY, signature=VECTOR_SIGNATURE, content_type=content_type)
    assert only_event(parse(req)).properties.order_id == "4211"


@pytest.mark.parametrize("signature", ["", VECTOR_NEGATIVE, sign(VECTOR_BODY, b"wrong-secret")])
def test_parse_rejects_a_bad_signature(signature):
    with pytest.raises(SignatureMismatchError) as exc:
        parse(request(VECTOR_BODY, signature=signature))
    assert exc.value.status == 401


def test_parse_rejects_a_missing_signature_header():
    req = request(VECTOR_BODY)
    headers = {k: v for k, v in req.headers.items() if k != "x-wc-webhook-signature"}
    with pytest.raises(SignatureMismatchError):
        parse(WebhookRequest(method="POST", source="woocommerce", body=req.body, headers=headers))


def test_parse_rejects_a_tampered_body_with_the_original_signature():
    with pytest.raises(SignatureMismatchError):
        parse(request(flipped_body(), signature=VECTOR_SIGNATURE))


# -- the sample payloads shipped for segctl users (events/woocommerce/) -----------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "woocommerce"


@pytest.mark.parametrize(("name", "topic", "kind", "status", "total"), [
    ("order-created.json", "order.created", EventType.ORDER, "placed", Decimal("64.80")),
    ("order-created-pending.json", "order.created", EventType.CUSTOMER, None, None),
    ("order-updated-cancelled.json", "order.updated", EventType.ORDER, "cancelled", Decimal("64.80")),
    ("order-updated-partial-refund.json", "order.updated", EventType.ORDER, "placed", Decimal("54.80")),
    ("customer-created.json", "customer.created", EventType.CUSTOMER, None, None),
])
def test_sample_payloads_normalise_as_documented(name, topic, kind, status, total):
    body = (SAMPLES / name).read_bytes()
    assert b"\\/" in body  # PHP-escaped slashes, as WooCommerce sends them
    result = parse(request(body, topic=topic))
    assert [e.type for e in result.events] == [kind]
    event = result.events[0]
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"woocommerce": "318"}
    if kind == EventType.ORDER:
        assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
        assert (event.properties.status, event.properties.total) == (status, total)
        assert [i.sku for i in event.properties.items] == ["LS-BLU-M", "CS-WHT"]


def test_sample_ping_is_a_handshake():
    assert isinstance(parse(ping((SAMPLES / "ping.txt").read_bytes())), Handshake)


# -- property tests ------------------------------------------------------------------------------------

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_SECRET = b"wc_fuzz_secret"
FUZZ_SECRETS = [b"wc_rotated_out", FUZZ_SECRET]
TOPICS = sorted(woocommerce.ORDER_TOPICS | woocommerce.CUSTOMER_TOPICS) + ["order.deleted", "product.updated"]

odd_text = st.text(
    alphabet=st.characters() | st.characters(categories=["Cs", "Cc", "Cf", "Co", "Mn"])
    | st.sampled_from(["\u0000", "\u202e", "\ufeff", "\ud800", "T", ":", "-", "İ", "ß", "٣", "/"]),
    max_size=30,
)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
           | st.floats(allow_nan=True, allow_infinity=True) | odd_text)
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=20,
)


def mostly(valid: st.SearchStrategy, *odd: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a plausible value (so deeper code runs), sometimes anything."""
    anything = st.one_of(*odd, json_values)
    return st.integers(0, 9).flatmap(lambda n: valid if n else anything)


gmt = st.sampled_from(["2024-05-14T14:22:31", "2024-05-14T14:22:31Z", "2024-05-14 14:22:31", "2024-05-14",
                       "2024-05-14T14:22:31+02:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59"])
money = st.sampled_from(["59.90", "0", "-20.00", "1e14", "1e15", "NaN", ""]) | st.floats() | st.integers()
ids = st.integers(min_value=0, max_value=2**63) | st.text(max_size=10)
billing = st.fixed_dictionaries({}, optional={
    "email": mostly(st.sampled_from(["Ana@Example.COM", "", "no-at-sign"])),
    "phone": mostly(st.sampled_from(["+34600111222", "", "12"])),
    "first_name": mostly(st.just("Ana")), "country": mostly(st.just("ES")), "city": mostly(odd_text),
})
woo_shaped = st.fixed_dictionaries(
    {"id": mostly(ids), "status": mostly(st.sampled_from(sorted(woocommerce.ORDER_STATUS) + ["shipped"])),
     "date_created_gmt": mostly(gmt)},
    optional={
        "date_modified_gmt": mostly(gmt), "date_paid_gmt": mostly(gmt), "total": mostly(money),
        "currency": mostly(st.just("EUR")), "customer_id": mostly(ids), "email": mostly(st.just("a@b.co")),
        "billing": mostly(billing), "first_name": mostly(odd_text),
        "line_items": mostly(st.lists(st.fixed_dictionaries({}, optional={
            "product_id": mostly(ids), "name": mostly(odd_text), "sku": mostly(odd_text),
            "quantity": mostly(st.integers(-3, 5)), "price": mostly(money), "total": mostly(money)}), max_size=3)),
        "refunds": mostly(st.lists(st.fixed_dictionaries({"total": mostly(money)}), max_size=2)),
    },
)
header_names = st.sampled_from(["content-type", "x-wc-webhook-signature", "x-wc-webhook-topic",
                                "x-wc-webhook-source", "x-wc-webhook-id", "x-wc-webhook-resource"]) | st.text(max_size=20)
header_values = st.sampled_from(["application/json", "text/plain", "", ";", "order.created"]) | st.text(max_size=60)
random_headers = st.dictionaries(header_names.map(str.lower), header_values, max_size=6)


def fuzz_sign(body: bytes) -> str:
    return base64.b64encode(hmac.new(FUZZ_SECRET, body, hashlib.sha256).digest()).decode()


def outcome(req: WebhookRequest):
    """parse's result, or the WebhookError it raised; anything else fails the property."""
    try:
        result = woocommerce.parse(req, lambda name: list(FUZZ_SECRETS), 0)
    except WebhookError as exc:
        assert exc.reason
        return exc
    assert isinstance(result, Normalised | Handshake)
    if isinstance(result, Normalised):
        assert result.delivery_key.startswith("woocommerce#")
        result.delivery_key.encode("utf-8")  # storable as a DynamoDB key
        for event in result.events:
            event.model_dump_json()  # publishable on the bus
            assert event.source == "woocommerce"
            assert not event.identity.is_empty()
            assert event.occurred_at.utcoffset().total_seconds() == 0
    return result


def signed(body: bytes, topic: str, headers: dict | None = None) -> WebhookRequest:
    base = {"content-type": "application/json", "x-wc-webhook-topic": topic, "x-wc-webhook-source": SITE}
    base.update(headers or {})
    base["x-wc-webhook-signature"] = fuzz_sign(body)
    return WebhookRequest(method="POST", source="woocommerce", body=body, headers=base)


@FUZZ
@given(body=st.binary(max_size=400), topic=st.sampled_from(TOPICS) | st.text(max_size=20))
def test_signed_random_bytes_never_crash(body, topic):
    outcome(signed(body, topic))


@FUZZ
@given(value=json_values, topic=st.sampled_from(TOPICS), ascii_only=st.booleans())
def test_signed_random_json_never_crashes(value, topic, ascii_only):
    body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    result = outcome(signed(body, topic))
    if not isinstance(value, dict):
        assert isinstance(result, MalformedPayloadError)


@FUZZ
@given(value=woo_shaped, topic=st.sampled_from(TOPICS), data=st.data())
def test_signed_woo_shaped_and_truncated_bodies_never_crash(value, topic, data):
    body = json.dumps(value).encode("utf-8", "surrogatepass")
    outcome(signed(body, topic))
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    assert isinstance(outcome(signed(body[:cut], topic)), MalformedPayloadError)


@FUZZ
@given(headers=random_headers, body=st.binary(max_size=200) | woo_shaped.map(lambda v: json.dumps(v).encode()),
       method=st.sampled_from(["POST", "GET", "HEAD", "PUT"]))
def test_random_headers_never_crash_and_only_signed_bodies_are_normalised(headers, body, method):
    result = outcome(WebhookRequest(method=method, source="woocommerce", body=body, headers=headers))
    if isinstance(result, Normalised):
        received = base64.b64decode(headers["x-wc-webhook-signature"].strip())
        assert hmac.compare_digest(received, hmac.new(FUZZ_SECRET, body, hashlib.sha256).digest())
    if isinstance(result, Handshake):
        assert method == "POST" and body.strip().startswith(b"webhook_id=")


@FUZZ
@given(value=woo_shaped, topic=st.sampled_from(TOPICS), data=st.data())
def test_wrong_signature_is_never_normalised(value, topic, data):
    body = json.dumps(value).encode()
    right = hmac.new(FUZZ_SECRET, body, hashlib.sha256).digest()
    i, bit = data.draw(st.integers(0, len(right) - 1)), data.draw(st.integers(0, 7))
    signature = data.draw(st.one_of(
        st.just(base64.b64encode(right[:i] + bytes([right[i] ^ (1 << bit)]) + right[i + 1:]).decode()),
        st.just(fuzz_sign(body + b" ")),
        st.just(hmac.new(FUZZ_SECRET, body, hashlib.sha256).hexdigest()),
        st.text(max_size=60),
    ))
    req = WebhookRequest(method="POST", source="woocommerce", body=body, headers={
        "content-type": "application/json", "x-wc-webhook-topic": topic, "x-wc-webhook-signature": signature})
    with pytest.raises(SignatureMismatchError):
        woocommerce.parse(req, lambda name: list(FUZZ_SECRETS), 0)


@pytest.mark.parametrize("body", [
    b'{"id":1,"status":"completed","date_created_gmt":"2024-05-14T14:22:31","billing":{"email":"a@b.co",'
    b'"first_name":"\\ud800"}}',
    b'{"id":"\\udfff","status":"completed","date_created_gmt":"2024-05-14T14:22:31","billing":{"email":"a@b.co"}}',
])
def test_lone_surrogates_in_a_signed_body_are_malformed_not_a_fault(body):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body))
    assert "Unicode" in exc.value.reason
