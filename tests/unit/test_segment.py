"""Segment (Webhooks Actions): X-Signature verification (docs/webhooks.md#segment) and normalisation of
Segment-spec messages (Segment's spec: track, page, identify, e-commerce v2) into canonical events."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.events import (
    BrowseProperties,
    CheckoutProperties,
    CustomerProperties,
    EventType,
    OrderProperties,
)
from segmentation.sources import segment_tracking as segment
from segmentation.sources.errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SecretNotConfiguredError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Normalised, WebhookRequest

# -- the worked vector of docs/webhooks.md#test-vectors, byte for byte -----------------------------

VECTOR_SECRET = "seg_example_shared_secret_77"
VECTOR_BODY = (
    b'{"type":"track","event":"Product Added","userId":"u_7001002003",'
    b'"anonymousId":"3f2a1c9e-5b7d-4e2a-9c1f-0d8e6b4a2f10","messageId":"ajs-next-1715696551000-7c1e",'
    b'"timestamp":"2024-05-14T14:22:31.000Z","properties":{"cart_id":"c_55","product_id":"8801",'
    b'"sku":"LS-BLU-M","category":"Shirts","name":"Linen Shirt","price":49.9,"quantity":1,"currency":"EUR"}}'
)
VECTOR_SHA256 = "f737ed87f1719da964497250eab4d53e9e885699dc3f034cfdfd26dedbdb3681"
VECTOR_SIGNATURE = "b1b6f2a46ba1e0ec8129f610630f8ca5cc1ca5fd"
VECTOR_NEGATIVE = "cb3ebe952731124fa821edbc7825a9921a74935b"
SECRETS = [VECTOR_SECRET.encode()]
EVENTS_DIR = Path(__file__).resolve().parents[2] / "events" / "segment"
T0 = datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)


def flipped_body() -> bytes:
    """The vector body with the lowest bit of the second-to-last byte flipped."""
    return VECTOR_BODY[:-2] + bytes([VECTOR_BODY[-2] ^ 0x01]) + VECTOR_BODY[-1:]


def sign(body: bytes, secret: bytes = SECRETS[0]) -> str:
    return hmac.new(secret, body, hashlib.sha1).hexdigest()


def request(body: bytes | dict | list, *, signature: str | None = None, method: str = "POST",
            content_type: str | None = "application/json") -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {"user-agent": "Segment.io/1.0", "x-signature": sign(raw) if signature is None else signature}
    if content_type is not None:
        headers["content-type"] = content_type
    return WebhookRequest(method=method, source="segment", body=raw, headers=headers)


def parse(req: WebhookRequest, secrets: list[bytes] | None = None) -> Normalised:
    return segment.parse(req, lambda name: list(SECRETS if secrets is None else secrets), 0)


def only_event(result: Normalised):
    assert result.ignored_reason is None, result.ignored_reason
    assert len(result.events) == 1
    return result.events[0]


def msg(type_: str = "track", event: str | None = None, properties: dict | None = None, **fields) -> dict:
    m = {"type": type_, "userId": "u_1", "anonymousId": "anon-1", "messageId": "m-1",
         "timestamp": "2024-05-14T14:22:31.000Z"}
    if event is not None:
        m["event"] = event
    if properties is not None:
        m["properties"] = properties
    m.update(fields)
    return {k: v for k, v in m.items() if v is not None}


# -- verify: the Segment vector --------------------------------------------------------------------


def test_vector_body_is_the_documented_bytes():
    assert len(VECTOR_BODY) == 351
    assert hashlib.sha256(VECTOR_BODY).hexdigest() == VECTOR_SHA256


def test_vector_signature_verifies():
    segment.verify(SECRETS, VECTOR_BODY, VECTOR_SIGNATURE)


def test_vector_negative_header_is_the_mac_of_the_flipped_body():
    assert sign(flipped_body()) == VECTOR_NEGATIVE


def test_documented_negative_signature_is_rejected():
    with pytest.raises(SignatureMismatchError) as exc:
        parse(request(VECTOR_BODY, signature=VECTOR_NEGATIVE))
    assert exc.value.status == 401


def test_flipped_bit_body_is_rejected_with_the_original_signature():
    with pytest.raises(SignatureMismatchError):
        parse(request(flipped_body(), signature=VECTOR_SIGNATURE))


def test_upper_case_hex_is_the_same_mac():
    segment.verify(SECRETS, VECTOR_BODY, VECTOR_SIGNATURE.upper())


@pytest.mark.parametrize("header", [
    None, "", "   ", "not hex at all", VECTOR_SIGNATURE[:-1], VECTOR_SIGNATURE + "0", VECTOR_SIGNATURE[:-2],
    "sha1=" + VECTOR_SIGNATURE, "b1 b6 f2 a4 6b a1 e0 ec 81 29 f6 10 63 0f 8c a5 cc 1c a5 fd",
    "sbG28qRroeDsgSn2EGMPjKXMHKX9",  # base64 of the right MAC: Segment sends hex
    "ｂ1b6f2a46ba1e0ec8129f610630f8ca5cc1ca5fd", "\ud800" * 40,
])
def test_missing_empty_or_garbled_signature_is_401(header):
    with pytest.raises(SignatureMismatchError):
        segment.verify(SECRETS, VECTOR_BODY, header)


def test_sha256_mac_is_rejected():
    with pytest.raises(SignatureMismatchError):
        segment.verify(SECRETS, VECTOR_BODY, hmac.new(SECRETS[0], VECTOR_BODY, hashlib.sha256).hexdigest())


def test_missing_signature_header_is_401_on_parse():
    req = request(VECTOR_BODY)
    headers = {k: v for k, v in req.headers.items() if k != "x-signature"}
    with pytest.raises(SignatureMismatchError):
        parse(WebhookRequest(method="POST", source="segment", body=VECTOR_BODY, headers=headers))


def test_no_configured_secret_rejects_everything():
    with pytest.raises(SignatureMismatchError):
        segment.verify([], VECTOR_BODY, VECTOR_SIGNATURE)

    def no_secret(name):
        raise SecretNotConfiguredError("no secret configured for segment")
    with pytest.raises(SecretNotConfiguredError) as exc:
        segment.parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE), no_secret, 0)
    assert exc.value.status == 401


@pytest.mark.parametrize("secrets", [
    [b"seg_new_secret", VECTOR_SECRET.encode()], [VECTOR_SECRET.encode(), b"seg_new_secret"]])
def test_either_secret_verifies_during_rotation(secrets):
    segment.verify(secrets, VECTOR_BODY, VECTOR_SIGNATURE)
    segment.verify(secrets, VECTOR_BODY, sign(VECTOR_BODY, b"seg_new_secret"))
    with pytest.raises(SignatureMismatchError):
        segment.verify(secrets, VECTOR_BODY, sign(VECTOR_BODY, b"seg_third_secret"))


def test_signature_covers_the_raw_bytes_not_a_reserialisation():
    # Node's JSON.stringify writes non-ASCII raw and "/" unescaped; Python's json.dumps would not.
    body = '{"type":"page","userId":"u_1","messageId":"m-é","timestamp":"2024-05-14T14:22:31Z",' \
           '"properties":{"url":"https://shop.example.com/p/café","title":"Café \\/ Té"}}'
    raw = body.encode()
    event = only_event(parse(request(raw, signature=sign(raw))))
    assert event.properties.url == "https://shop.example.com/p/café"
    reserialised = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert reserialised != raw
    with pytest.raises(SignatureMismatchError):
        parse(request(reserialised, signature=sign(raw)))


def test_signature_is_checked_before_method_independent_parsing():
    with pytest.raises(SignatureMismatchError):
        parse(request(b"not json", signature=VECTOR_SIGNATURE))
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=VECTOR_NEGATIVE, content_type="text/plain"))


# -- methods and content types ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_post_put_and_patch_are_accepted(method):
    event = only_event(parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, method=method)))
    assert event.type == EventType.PRODUCT_ADDED


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS"])
def test_other_methods_are_405(method):
    with pytest.raises(MethodNotAllowedError) as exc:
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, method=method))
    assert exc.value.status == 405


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonp"])
def test_other_content_types_are_415_even_when_signed(content_type):
    with pytest.raises(UnsupportedMediaTypeError) as exc:
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, content_type=content_type))
    assert exc.value.status == 415


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", None])
def test_json_content_type_variants_are_accepted(content_type):
    assert only_event(parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, content_type=content_type)))


# -- normalisation: the vector and each kind ------------------------------------------------------


def test_vector_product_added_end_to_end():
    result = parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE))
    event = only_event(result)
    assert result.delivery_key == "segment#ajs-next-1715696551000-7c1e"
    assert event.type == EventType.PRODUCT_ADDED
    assert event.source == "segment"
    assert event.occurred_at == T0
    assert event.identity.user_id == "u_7001002003"
    assert event.identity.anonymous_id == "3f2a1c9e-5b7d-4e2a-9c1f-0d8e6b4a2f10"
    assert event.identity.email is None
    props = event.properties
    assert isinstance(props, BrowseProperties)
    assert (props.product_id, props.category, props.price) == ("8801", "shirts", Decimal("49.9"))


def test_page_is_a_page_view_with_url_and_category():
    m = msg("page", name="Shirts", category="Shirts", properties={"title": "Shirts", "url": "https://s.example/c/shirts"})
    event = only_event(parse(request(m)))
    assert event.type == EventType.PAGE_VIEWED
    assert (event.properties.url, event.properties.category) == ("https://s.example/c/shirts", "shirts")


def test_page_url_and_category_fall_back_to_context_page_and_properties():
    m = msg("page", properties={"category": "Summer Sale"},
            context={"page": {"url": "https://s.example/sale", "path": "/sale"}})
    props = only_event(parse(request(m))).properties
    assert (props.url, props.category) == ("https://s.example/sale", "summer-sale")


def test_product_viewed():
    m = msg(event="Product Viewed", properties={"product_id": 8801, "category": "Accessories", "price": "19.90",
                                               "url": "https://s.example/p/belt"})
    event = only_event(parse(request(m)))
    assert event.type == EventType.PRODUCT_VIEWED
    props = event.properties
    assert (props.product_id, props.category, props.price, props.url) == (
        "8801", "accessories", Decimal("19.90"), "https://s.example/p/belt")


def test_product_list_viewed_is_a_category_view():
    m = msg(event="Product List Viewed", properties={"list_id": "l1", "category": "Linen Shirts", "products": []})
    event = only_event(parse(request(m)))
    assert event.type == EventType.CATEGORY_VIEWED
    assert event.properties.category == "linen-shirts"


def test_cart_viewed_is_a_page_view_in_category_cart():
    m = msg(event="Cart Viewed", properties={"cart_id": "c_55", "products": []},
            context={"page": {"url": "https://s.example/cart"}})
    event = only_event(parse(request(m)))
    assert event.type == EventType.PAGE_VIEWED
    assert (event.properties.category, event.properties.url) == ("cart", "https://s.example/cart")


@pytest.mark.parametrize("name", ["product viewed", "PRODUCT VIEWED", "product_viewed", " Product  Viewed "])
def test_event_names_match_case_and_underscore_insensitively(name):
    assert only_event(parse(request(msg(event=name, properties={})))).type == EventType.PRODUCT_VIEWED


@pytest.mark.parametrize(("value", "expected"), [(75, 75), (62.6, 63), ("40", 40), (130, 100), (0, 0)])
def test_page_scrolled_depth_percent(value, expected):
    event = only_event(parse(request(msg(event="Page Scrolled", properties={"depth_percent": value, "url": "u"}))))
    assert event.type == EventType.PAGE_SCROLLED
    assert event.properties.depth_percent == expected


@pytest.mark.parametrize(("props", "expected"), [
    ({"seconds": 95}, 95), ({"seconds_on_page": 42.4}, 42), ({"seconds": 10**9}, 86_400)])
def test_page_engaged_seconds(props, expected):
    event = only_event(parse(request(msg(event="Page Engaged", properties=props))))
    assert event.type == EventType.PAGE_ENGAGED
    assert event.properties.seconds == expected


CHECKOUT = {"checkout_id": "chk_9001", "order_id": "o-1", "cart_id": "c_55", "value": 59.9, "revenue": 49.9,
            "currency": "EUR", "products": [{"product_id": "8801", "price": 49.9, "quantity": 1}]}


def test_checkout_started_is_a_checkout_at_the_event_time():
    event = only_event(parse(request(msg(event="Checkout Started", properties=CHECKOUT))))
    assert event.type == EventType.CHECKOUT
    props = event.properties
    assert isinstance(props, CheckoutProperties)
    assert (props.checkout_id, props.cart_token, props.currency) == ("chk_9001", "c_55", "EUR")
    assert props.total == Decimal("49.9")  # revenue before value when no total
    assert props.updated_at == T0 and event.occurred_at == T0
    assert props.completed_at is None


@pytest.mark.parametrize(("drop", "expected"), [
    (("checkout_id",), "o-1"), (("checkout_id", "order_id"), "c_55"), (("checkout_id", "order_id", "cart_id"), "m-1")])
def test_checkout_id_falls_back_to_order_id_cart_id_then_message_id(drop, expected):
    props = {k: v for k, v in CHECKOUT.items() if k not in drop}
    assert only_event(parse(request(msg(event="Checkout Started", properties=props)))).properties.checkout_id == expected


ORDER = {
    "checkout_id": "chk_9001", "order_id": "50314b8e9bcf000000000000", "total": 59.9, "revenue": 49.9,
    "currency": "EUR", "products": [
        {"product_id": "8801", "sku": "LS-BLU-M", "name": "Linen Shirt", "price": 49.9, "quantity": 1, "category": "Shirts"},
        {"product_id": 8802, "sku": "CS-WHT", "name": "Cotton Socks", "price": 5, "quantity": 2, "category": "Accessories"},
    ],
}


def test_order_completed_is_a_placed_order_with_items():
    event = only_event(parse(request(msg(event="Order Completed", properties=ORDER))))
    assert event.type == EventType.ORDER
    props = event.properties
    assert isinstance(props, OrderProperties)
    assert (props.order_id, props.status, props.total, props.currency) == (
        "50314b8e9bcf000000000000", "placed", Decimal("59.9"), "EUR")
    assert props.updated_at == T0 and event.occurred_at == T0
    assert [(i.product_id, i.sku, i.title, i.category, i.quantity, i.price) for i in props.items] == [
        ("8801", "LS-BLU-M", "Linen Shirt", "shirts", 1, Decimal("49.9")),
        ("8802", "CS-WHT", "Cotton Socks", "accessories", 2, Decimal("5")),
    ]


def test_order_total_falls_back_to_revenue_then_the_items():
    no_total = {k: v for k, v in ORDER.items() if k != "total"}
    assert only_event(parse(request(msg(event="Order Completed", properties=no_total)))).properties.total == Decimal("49.9")
    neither = {k: v for k, v in no_total.items() if k != "revenue"}
    assert only_event(parse(request(msg(event="Order Completed", properties=neither)))).properties.total == Decimal("59.9")


def test_order_items_are_capped_at_100():
    props = dict(ORDER, products=[{"product_id": str(i), "price": 1} for i in range(150)])
    assert len(only_event(parse(request(msg(event="Order Completed", properties=props)))).properties.items) == 100


def test_order_refunded_is_the_same_order_refunded_at_the_refund_time():
    placed = only_event(parse(request(msg(event="Order Completed", properties=ORDER))))
    refund = msg(event="Order Refunded", properties={"order_id": ORDER["order_id"], "total": 59.9},
                 messageId="m-2", timestamp="2024-05-20T10:13:20Z")
    refunded = only_event(parse(request(refund)))
    assert refunded.type == EventType.ORDER
    assert refunded.properties.order_id == placed.properties.order_id
    assert refunded.properties.status == "refunded"
    # No creation time in the message: the refund's own time, later than the order's, so it wins.
    assert refunded.occurred_at == refunded.properties.updated_at == datetime(2024, 5, 20, 10, 13, 20, tzinfo=UTC)
    assert refunded.properties.updated_at > placed.properties.updated_at
    assert refunded.event_id != placed.event_id


def test_order_cancelled_is_a_cancelled_order():
    event = only_event(parse(request(msg(event="Order Cancelled", properties={"order_id": "o-9"}))))
    assert (event.properties.order_id, event.properties.status) == ("o-9", "cancelled")


IDENTIFY_TRAITS = {
    "email": "Ana.Lopez@Example.com", "phone": "+34 600 111 222", "firstName": "Ana", "lastName": "Lopez",
    "address": {"street": "Calle Mayor 1", "city": "Madrid", "postalCode": "28013", "country": "ES"},
    "plan": "loyalty-gold", "age": 34, "vip": True, "ltv_score": 0.82, "interests": ["linen", "summer", 3],
    "company": {"name": "ACME"}, "work_email": "ana@acme.example", "mobilePhone": "+34 600 000 000",
    "billing_address": "Calle Mayor 1", "zip": "28013",
}


def test_identify_is_a_customer_with_names_identity_and_attributes():
    event = only_event(parse(request(msg("identify", traits=IDENTIFY_TRAITS))))
    assert event.type == EventType.CUSTOMER
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.phone == "+34600111222"
    assert event.identity.user_id == "u_1"
    props = event.properties
    assert isinstance(props, CustomerProperties)
    assert (props.first_name, props.last_name) == ("Ana", "Lopez")
    assert props.email_consent is None
    assert props.attributes == {
        "city": "Madrid", "country": "ES", "plan": "loyalty-gold", "age": 34, "vip": True, "ltv_score": 0.82,
        "interests": ["linen", "summer", "3"],
    }


def test_identify_never_puts_contact_details_in_attributes():
    text = json.dumps(only_event(parse(request(msg("identify", traits=IDENTIFY_TRAITS)))).properties.attributes)
    for secret in ("Ana.Lopez", "ana@acme", "600", "Calle Mayor", "28013", "ACME"):
        assert secret.lower() not in text.lower()


@pytest.mark.parametrize(("traits", "names"), [
    ({"first_name": "Bo", "last_name": "Berg"}, ("Bo", "Berg")),
    ({"name": "Ana María López"}, ("Ana", "María López")),
    ({"name": "Cher"}, ("Cher", None)),
    ({"name": "Ana López", "firstName": "Anita"}, ("Anita", None)),
])
def test_identify_names(traits, names):
    props = only_event(parse(request(msg("identify", traits=traits)))).properties
    assert (props.first_name, props.last_name) == names


def test_identify_traits_from_context_when_top_level_traits_are_missing():
    event = only_event(parse(request(msg("identify", context={"traits": {"email": "x@example.com", "plan": "p"}}))))
    assert event.identity.email == "x@example.com"
    assert event.properties.attributes == {"plan": "p"}


def test_emptied_trait_clears_the_attribute():
    props = only_event(parse(request(msg("identify", traits={"plan": "", "tier": None})))).properties
    assert props.attributes == {"plan": None, "tier": None}


@pytest.mark.parametrize(("where", "expected"), [
    ({"traits": {"email": "A@X.io"}}, "a@x.io"),
    ({"context": {"traits": {"email": "B@X.io"}}}, "b@x.io"),
    ({"properties": {"email": "C@X.io"}}, "c@x.io"),
])
def test_email_comes_from_traits_context_traits_or_properties(where, expected):
    m = msg(event="Product Viewed", userId=None, anonymousId=None, **where)
    assert only_event(parse(request(m))).identity.email == expected


def test_numeric_user_id_is_a_string():
    assert only_event(parse(request(msg(event="Product Viewed", userId=12345)))).identity.user_id == "12345"


def test_message_without_any_identity_is_acknowledged_without_events():
    result = parse(request(msg(event="Product Viewed", userId=None, anonymousId=None)))
    assert result.events == [] and "userId" in result.ignored_reason


@pytest.mark.parametrize("m", [
    msg(event="Products Searched", properties={"query": "linen"}), msg(event="Coupon Applied"),
    msg("screen", name="Home"), msg("group", groupId="g1"), msg("alias", previousId="anon-1"),
])
def test_unused_messages_are_acknowledged_without_events(m):
    result = parse(request(m))
    assert result.events == [] and result.ignored_reason
    assert result.delivery_key == "segment#m-1"


# -- time ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), [
    ({"timestamp": "2024-05-14T16:22:31.999+02:00"}, T0),
    ({"timestamp": None, "originalTimestamp": "2024-05-14T14:22:31Z", "sentAt": "2024-05-14T14:22:40Z"}, T0),
    ({"timestamp": None, "sentAt": "2024-05-14T14:22:31Z", "receivedAt": "2024-05-14T14:22:50Z"}, T0),
    ({"timestamp": None, "receivedAt": "2024-05-14T14:22:31Z"}, T0),
    ({"timestamp": "2024-05-14T14:22:31"}, T0),  # no offset: UTC
])
def test_occurred_at_from_the_message_times(fields, expected):
    event = only_event(parse(request(msg(event="Product Viewed", **fields))))
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset().total_seconds() == 0


def test_occurred_at_never_comes_from_the_clock():
    for now in (0, 2_000_000_000):
        event = only_event(segment.parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE), lambda n: SECRETS, now))
        assert event.occurred_at == T0


# -- dedupe -------------------------------------------------------------------------------------


def test_same_delivery_twice_gives_same_key_and_event_id():
    a = parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE))
    b = parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, method="PUT"))
    assert a.delivery_key == b.delivery_key
    assert only_event(a).event_id == only_event(b).event_id


def test_delivery_key_is_the_message_id_whatever_else_changes():
    a = parse(request(msg(event="Product Viewed", properties={"price": 1})))
    b = parse(request(msg(event="Product Viewed", properties={"price": 2}, sentAt="2024-05-14T14:23:00Z")))
    c = parse(request(msg(event="Product Viewed", messageId="m-2")))
    assert a.delivery_key == b.delivery_key == "segment#m-1"
    assert c.delivery_key == "segment#m-2"
    assert only_event(a).event_id != only_event(c).event_id


def test_without_message_id_the_verified_body_is_the_key():
    m = msg(event="Product Viewed", messageId=None)
    a, b = parse(request(m)), parse(request(m))
    other = parse(request(dict(m, timestamp="2024-05-14T14:22:32Z")))
    assert a.delivery_key == b.delivery_key != other.delivery_key
    assert only_event(a).event_id == only_event(b).event_id


def test_odd_message_ids_are_hashed_into_a_safe_key():
    for mid in ("x" * 500, "a#b", "m-\ud800", "m-é"):
        key = parse(request(msg(event="Coupon Applied", messageId=mid))).delivery_key
        assert key.startswith("segment#sha256:") and key.isascii()


# -- batches ------------------------------------------------------------------------------------


def batch() -> list[dict]:
    return [
        msg("page", properties={"url": "https://s.example/"}, messageId="b-1"),
        msg(event="Product Viewed", properties={"product_id": "8801", "category": "Shirts"}, messageId="b-2"),
        msg(event="Order Completed", properties=ORDER, messageId="b-3"),
    ]


def test_batch_gives_one_event_per_message():
    result = parse(request(batch()))
    assert result.ignored_reason is None
    assert [e.type for e in result.events] == [EventType.PAGE_VIEWED, EventType.PRODUCT_VIEWED, EventType.ORDER]
    assert len({e.event_id for e in result.events}) == 3


def test_batch_delivery_key_is_a_hash_of_its_message_ids():
    a, b = parse(request(batch())), parse(request(batch()))
    assert a.delivery_key == b.delivery_key and a.delivery_key.startswith("segment#batch:")
    assert [e.event_id for e in a.events] == [e.event_id for e in b.events]
    changed = batch()
    changed[1]["messageId"] = "b-9"
    assert parse(request(changed)).delivery_key != a.delivery_key


def test_a_message_has_the_same_event_id_alone_or_in_a_batch():
    single = only_event(parse(request(batch()[1])))
    assert parse(request(batch())).events[1].event_id == single.event_id


def test_batch_signature_covers_the_whole_body():
    raw = json.dumps(batch(), separators=(",", ":")).encode()
    first_only = sign(json.dumps(batch()[0], separators=(",", ":")).encode())
    with pytest.raises(SignatureMismatchError):
        parse(request(raw, signature=first_only))


def test_batch_skips_unusable_messages_and_says_why():
    messages = batch() + [
        msg(event="Coupon Applied", messageId="b-4"),
        msg(event="Order Completed", properties={"total": 5}, messageId="b-5"),  # no order_id
        msg(event="Product Viewed", userId=None, anonymousId=None, messageId="b-6"),
    ]
    result = parse(request(messages))
    assert len(result.events) == 3
    assert result.ignored_reason.startswith("3 of 6 messages not used")
    assert "order_id" in result.ignored_reason


def test_empty_batch_is_acknowledged():
    result = parse(request([]))
    assert result.events == [] and result.ignored_reason == "empty batch"


@pytest.mark.parametrize("body", [[1, 2], [msg(event="Product Viewed"), "x"], [[msg(event="Product Viewed")]]])
def test_batch_of_non_messages_is_400(body):
    with pytest.raises(MalformedPayloadError):
        parse(request(body))


def test_oversized_batch_is_400():
    with pytest.raises(MalformedPayloadError):
        parse(request([{"type": "track"}] * (segment.MAX_BATCH + 1)))


# -- malformed (signature valid) --------------------------------------------------------------------


MALFORMED = {
    "not JSON": b"this is not json",
    "empty body": b"",
    "JSON string": b'"hello"',
    "JSON number": b"42",
    "invalid UTF-8": b'{"type":"track","event":"\xff\xfe"}',
    "deeply nested": b'{"type":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "huge integer": b'{"type":"track","userId":' + b"9" * 5000 + b"}",
    "missing type": json.dumps(msg(type_=None, event="Product Viewed")).encode(),
    "track without event": json.dumps(msg()).encode(),
    "missing timestamps": json.dumps(msg(event="Product Viewed", timestamp=None)).encode(),
    "timestamp not a time": json.dumps(msg(event="Product Viewed", timestamp="yesterday")).encode(),
    "timestamp a number": json.dumps(msg(event="Product Viewed", timestamp=1715696551)).encode(),
    "properties not an object": json.dumps(msg(event="Product Viewed", properties=[1])).encode(),
    "traits not an object": json.dumps(msg("identify", traits="ana")).encode(),
    "context not an object": json.dumps(msg("page", context=7)).encode(),
    "userId an object": json.dumps(msg(event="Product Viewed", userId={"a": 1})).encode(),
    "userId too long": json.dumps(msg(event="Product Viewed", userId="u" * 300)).encode(),
    "price not a number": json.dumps(msg(event="Product Viewed", properties={"price": "abc"})).encode(),
    "price NaN": b'{"type":"track","event":"Product Viewed","userId":"u","timestamp":"2024-05-14T14:22:31Z",'
                 b'"properties":{"price":NaN}}',
    "price huge": json.dumps(msg(event="Product Viewed", properties={"price": 1e30})).encode(),
    "order without order_id": json.dumps(msg(event="Order Completed", properties={"total": 5})).encode(),
    "products not a list": json.dumps(msg(event="Order Completed", properties={"order_id": "o", "products": "x"})).encode(),
    "product not an object": json.dumps(msg(event="Order Completed", properties={"order_id": "o", "products": [1]})).encode(),
    "quantity negative": json.dumps(msg(event="Order Completed", properties={
        "order_id": "o", "products": [{"quantity": -1}]})).encode(),
    "scroll without depth": json.dumps(msg(event="Page Scrolled", properties={})).encode(),
    "scroll depth negative": json.dumps(msg(event="Page Scrolled", properties={"depth_percent": -5})).encode(),
    "engaged seconds a list": json.dumps(msg(event="Page Engaged", properties={"seconds": [1]})).encode(),
    "lone surrogate": b'{"type":"page","userId":"u\\ud800","timestamp":"2024-05-14T14:22:31Z"}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_signed_body_is_400(body):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body))
    assert exc.value.status == 400
    assert exc.value.reason


# -- sample payloads for segctl users ---------------------------------------------------------------


SAMPLES = {
    "page": EventType.PAGE_VIEWED, "product-list-viewed": EventType.CATEGORY_VIEWED,
    "product-viewed": EventType.PRODUCT_VIEWED, "product-added": EventType.PRODUCT_ADDED,
    "page-scrolled": EventType.PAGE_SCROLLED, "page-engaged": EventType.PAGE_ENGAGED,
    "cart-viewed": EventType.PAGE_VIEWED, "checkout-started": EventType.CHECKOUT,
    "order-completed": EventType.ORDER, "order-refunded": EventType.ORDER, "identify": EventType.CUSTOMER,
}


@pytest.mark.parametrize(("name", "etype"), SAMPLES.items())
def test_sample_payloads_normalise(name, etype):
    event = only_event(parse(request((EVENTS_DIR / f"{name}.json").read_bytes())))
    assert event.type == etype


def test_sample_product_added_is_the_documented_vector():
    assert (EVENTS_DIR / "product-added.json").read_bytes() == VECTOR_BODY


def test_sample_batch_normalises():
    result = parse(request((EVENTS_DIR / "batch.json").read_bytes()))
    assert result.ignored_reason is None and len(result.events) == 3


# -- fuzz ---------------------------------------------------------------------------------------

SECRET = SECRETS[0]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])
odd_text = st.text(
    alphabet=st.characters() | st.characters(categories=["Cs", "Cc", "Cf", "Co", "Mn"])
    | st.sampled_from(["\u0000", "\u202e", "\ufeff", "\ud800", "Z", "T", ":", "#", "İ", "٣"]),
    max_size=30,
)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
           | st.floats(allow_nan=True, allow_infinity=True) | odd_text)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(odd_text, c, max_size=4), max_leaves=20)


def mostly(valid, *odd):
    anything = st.one_of(*odd, json_values)
    return st.integers(0, 9).flatmap(lambda n: valid if n else anything)


names = st.sampled_from(["Product Viewed", "Product List Viewed", "Product Added", "Cart Viewed", "Checkout Started",
                         "Order Completed", "Order Refunded", "Order Cancelled", "Page Scrolled", "Page Engaged",
                         "Coupon Applied"])
times = st.sampled_from(["2024-05-14T14:22:31.000Z", "2024-05-14T14:22:31+02:00", "2024-05-14", "0001-01-01T00:00:00+01:00",
                         "9999-12-31T23:59:59-01:00", "2024-02-30T00:00:00Z"])
numbers = st.integers(-5, 200) | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(["12.5", "1e400", ""])
product = st.fixed_dictionaries({}, optional={
    "product_id": mostly(st.text(max_size=8)), "category": mostly(st.sampled_from(["Shirts", "Accessories"])),
    "price": mostly(numbers), "quantity": mostly(st.integers(0, 5)), "name": json_values, "sku": json_values,
})
properties = st.fixed_dictionaries({}, optional={
    "product_id": mostly(st.text(max_size=8) | st.integers()), "category": mostly(st.text(max_size=10)),
    "price": mostly(numbers), "order_id": mostly(st.text(max_size=8)), "checkout_id": mostly(st.text(max_size=8)),
    "cart_id": json_values, "total": mostly(numbers), "revenue": mostly(numbers), "currency": json_values,
    "products": mostly(st.lists(product, max_size=3)), "depth_percent": mostly(numbers),
    "seconds": mostly(numbers), "url": json_values, "email": mostly(st.just("a@example.com")),
})
traits = st.fixed_dictionaries({}, optional={
    "email": mostly(st.just("Ana@Example.com")), "phone": json_values, "firstName": json_values,
    "name": json_values, "address": mostly(st.fixed_dictionaries({"city": json_values})), "plan": json_values,
}) | st.dictionaries(odd_text, json_values, max_size=4)
message = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["track", "page", "identify", "screen"]))},
    optional={
        "event": mostly(names), "userId": mostly(st.text(max_size=10) | st.integers()),
        "anonymousId": mostly(st.text(max_size=10)), "messageId": mostly(st.text(max_size=12)),
        "timestamp": mostly(times), "originalTimestamp": mostly(times), "properties": mostly(properties),
        "traits": mostly(traits), "context": mostly(st.fixed_dictionaries({}, optional={
            "traits": mostly(traits), "page": mostly(st.fixed_dictionaries({"url": json_values}))})),
        "category": json_values,
    },
)
bodies = message | st.lists(message, max_size=4)


def dump(value, ensure_ascii: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


def outcome(req: WebhookRequest):
    try:
        result = segment.parse(req, lambda name: [b"seg_rotated_out", SECRET], 0)
    except WebhookError as exc:
        assert exc.reason
        return exc
    assert isinstance(result, Normalised)
    assert result.delivery_key.startswith("segment#")
    result.delivery_key.encode("utf-8")  # storable
    for event in result.events:
        assert event.source == "segment" and not event.identity.is_empty()
        assert event.occurred_at.utcoffset().total_seconds() == 0 and event.occurred_at.microsecond == 0
        event.model_dump_json()  # the bus can carry it
    return result


@FUZZ
@given(body=st.binary(max_size=400))
def test_signed_arbitrary_bytes_never_crash(body):
    outcome(request(body))


@FUZZ
@given(value=json_values, ensure_ascii=st.booleans())
def test_signed_arbitrary_json_never_crashes(value, ensure_ascii):
    result = outcome(request(dump(value, ensure_ascii)))
    if not isinstance(value, dict | list):
        assert isinstance(result, MalformedPayloadError)


@FUZZ
@given(value=bodies, ensure_ascii=st.booleans())
def test_signed_segment_shaped_messages_never_crash(value, ensure_ascii):
    outcome(request(dump(value, ensure_ascii)))


@FUZZ
@given(value=bodies, data=st.data())
def test_truncated_signed_bodies_are_malformed(value, data):
    body = json.dumps(value).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    assert isinstance(outcome(request(body[:cut])), MalformedPayloadError)


def wrong_signatures(body: bytes) -> st.SearchStrategy[str]:
    right = hmac.new(SECRET, body, hashlib.sha1).digest()
    flipped = st.tuples(st.integers(0, len(right) - 1), st.integers(0, 7)).map(
        lambda ib: (right[: ib[0]] + bytes([right[ib[0]] ^ (1 << ib[1])]) + right[ib[0] + 1:]).hex())
    return st.one_of(
        st.just(""), st.just(sign(body, b"seg_not_configured")), st.just(sign(body + b" ")),
        st.just(right[:-1].hex()), flipped, st.text(max_size=50).filter(lambda s: s.strip().lower() != right.hex()),
        st.binary(min_size=20, max_size=20).filter(lambda b: b != right).map(bytes.hex),
    )


@FUZZ
@given(body=st.binary(max_size=300) | bodies.map(lambda v: json.dumps(v).encode()),
       method=st.sampled_from(["POST", "PUT", "PATCH", "GET", "post"]),
       content_type=st.sampled_from([None, "application/json", "text/plain", "application/json; charset=utf-8"]),
       headers=st.dictionaries(st.text(max_size=20).map(str.lower), st.text(max_size=40), max_size=5),
       data=st.data())
def test_nothing_is_normalised_without_a_valid_signature(body, method, content_type, headers, data):
    headers = {k: v for k, v in headers.items() if k not in ("x-signature", "content-type")}
    if data.draw(st.booleans(), label="has signature"):
        headers["x-signature"] = data.draw(wrong_signatures(body), label="signature")
    if content_type is not None:
        headers["content-type"] = content_type
    result = outcome(WebhookRequest(method=method, source="segment", body=body, headers=headers))
    assert isinstance(result, SignatureMismatchError | MethodNotAllowedError), result
