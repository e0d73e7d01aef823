"""Property tests: shopify.parse never fails with anything but a WebhookError, and never normalises
a delivery whose signature is wrong (docs/webhooks.md#shopify)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.sources import shopify
from segmentation.sources.errors import (
    MalformedPayloadError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Normalised, WebhookRequest

SECRET = b"shpss_fuzz_secret"
SECRETS = [b"shpss_rotated_out", SECRET]
HMAC_HEADER = "x-shopify-hmac-sha256"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])

TOPICS = sorted(shopify.ORDER_TOPICS | shopify.CHECKOUT_TOPICS | shopify.CUSTOMER_TOPICS) + [
    "products/create", "customers/redact", "app/uninstalled"]
topics = st.sampled_from(TOPICS) | st.text(max_size=30)

# Text with odd unicode: lone surrogates, control characters, RTL override, BOM, combining marks, casing traps.
odd_text = st.text(
    alphabet=st.characters()
    | st.characters(categories=["Cs", "Cc", "Cf", "Co", "Mn"])
    | st.sampled_from(["\u0000", "\u202e", "\ufeff", "\ud800", "Z", "T", ":", "-", "+", "İ", "ß", "٣"]),
    max_size=40,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(odd_text, children, max_size=5),
    max_leaves=25,
)


def mostly(valid: st.SearchStrategy, *odd: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a plausible value (so the deeper code is reached), sometimes anything at all."""
    anything = st.one_of(*odd, json_values)
    return st.integers(0, 9).flatmap(lambda n: valid if n else anything)


# Payloads shaped like Shopify's, each field usually plausible, to reach the deeper code paths.
times = st.sampled_from([
    "2024-05-14T10:22:31-04:00", "2024-05-14T14:22:31Z", "2024-05-14T14:22:31.123456Z", "2024-05-14",
    "2024-05-14T14:22:31",
])
odd_times = st.sampled_from([
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2024-02-30T00:00:00Z", "yesterday", "",
    "２０２４-05-14T14:22:31Z", "2024-05-14T14:22:31ZZ",
]) | odd_text
money = st.sampled_from(["59.90", "0", "0.01", "499.99", "-1", "1e14"])
odd_money = st.sampled_from(["1e15", "NaN", "Infinity", "-Infinity", "abc", "", "1_000"]) | st.floats() | st.integers()
ids = st.integers(min_value=1, max_value=2**63) | st.text(st.characters(codec="ascii"), min_size=1, max_size=20)
odd_ids = st.sampled_from(["", "\ud800", "1" * 129, 0, -1]) | st.text(max_size=140)
emails = st.sampled_from(["Ana.Lopez@Example.COM", "ana@example.com", "  Bo@Example.org  "])
odd_emails = st.sampled_from(["", "   ", "İ@example.com"]) | odd_text
consent = st.fixed_dictionaries(
    {"state": mostly(st.sampled_from(sorted(shopify.CONSENT_STATES) + ["SUBSCRIBED"]),
                     st.sampled_from(["maybe", "", "cleaned"]))},
    optional={"consent_updated_at": mostly(times, odd_times), "opt_in_level": json_values},
)
line_item = st.fixed_dictionaries({}, optional={
    "product_id": mostly(ids, odd_ids), "sku": mostly(st.text(max_size=10)), "title": mostly(odd_text),
    "quantity": mostly(st.integers(min_value=1, max_value=5), st.integers()), "price": mostly(money, odd_money),
})
customer = st.fixed_dictionaries({}, optional={
    "id": mostly(ids, odd_ids), "email": mostly(emails, odd_emails), "phone": mostly(st.just("+34600111222"), odd_text),
})
shopify_shaped = st.fixed_dictionaries(
    {"id": mostly(ids, odd_ids), "created_at": mostly(times, odd_times)},
    optional={
        "token": mostly(ids, odd_ids),
        "cart_token": json_values,
        "email": mostly(emails, odd_emails),
        "phone": mostly(st.just("+34600111222"), odd_text),
        "updated_at": mostly(times, odd_times),
        "cancelled_at": mostly(times, odd_times),
        "completed_at": mostly(times, odd_times),
        "financial_status": mostly(st.sampled_from(["paid", "refunded", "partially_refunded"])),
        "total_price": mostly(money, odd_money),
        "current_total_price": mostly(money, odd_money),
        "currency": mostly(st.sampled_from(["EUR", "USD"])),
        "line_items": mostly(st.lists(line_item, max_size=3)),
        "customer": mostly(customer),
        "email_marketing_consent": mostly(consent),
        "accepts_marketing": mostly(st.booleans()),
        "accepts_marketing_updated_at": mostly(times, odd_times),
        "first_name": mostly(st.just("Ana"), odd_text),
        "last_name": mostly(st.just("Lopez"), odd_text),
        "tags": mostly(st.just("vip, eu"), odd_text),
    },
)

header_names = st.sampled_from([
    "content-type", HMAC_HEADER, "x-shopify-topic", "x-shopify-shop-domain", "x-shopify-event-id",
    "x-shopify-webhook-id", "x-shopify-api-version", "x-shopify-triggered-at",
]) | st.text(max_size=20).map(str.lower)
header_values = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                 "APPLICATION/JSON", "", ";", "orders/create"]) | st.text(max_size=60)
random_headers = st.dictionaries(header_names, header_values, max_size=8)
content_types = st.sampled_from([None, "application/json", "application/json; charset=utf-8",
                                 "Application/JSON", "text/plain", "application/x-www-form-urlencoded",
                                 "application/jsonp"])


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()


def dump(value, ensure_ascii: bool) -> bytes:
    # surrogatepass: lone surrogates become bytes json.loads decodes back (it decodes with surrogatepass)
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


def signed_request(body: bytes, topic: str | None, content_type: str | None = "application/json",
                   extra: dict[str, str] | None = None) -> WebhookRequest:
    headers = {"x-shopify-shop-domain": "fuzz.myshopify.com", "x-shopify-event-id": "evt-fuzz"}
    if topic is not None:
        headers["x-shopify-topic"] = topic
    if content_type is not None:
        headers["content-type"] = content_type
    headers.update(extra or {})
    headers[HMAC_HEADER] = sign(body)
    return WebhookRequest(method="POST", source="shopify", body=body, headers=headers)


def parse_or_webhook_error(req: WebhookRequest) -> Normalised | WebhookError:
    """Run parse; anything other than a Normalised or a WebhookError fails the property."""
    try:
        result = shopify.parse(req, lambda name: list(SECRETS), 0)
    except WebhookError as exc:
        assert exc.reason
        return exc
    assert isinstance(result, Normalised)
    assert result.delivery_key
    for event in result.events:
        assert event.source == "shopify"
        assert not event.identity.is_empty()
        assert event.occurred_at.tzinfo is not None
        assert event.occurred_at.utcoffset().total_seconds() == 0  # always UTC
        assert event.occurred_at.microsecond == 0  # one-second resolution
    return result


# -- correctly signed: only Normalised or WebhookError -------------------------------------------


@FUZZ
@given(body=st.binary(max_size=512), topic=topics)
def test_signed_arbitrary_bytes_never_crash(body, topic):
    parse_or_webhook_error(signed_request(body, topic))


@FUZZ
@given(value=json_values, topic=topics, ensure_ascii=st.booleans())
def test_signed_arbitrary_json_never_crashes(value, topic, ensure_ascii):
    result = parse_or_webhook_error(signed_request(dump(value, ensure_ascii), topic))
    if not isinstance(value, dict):
        assert isinstance(result, MalformedPayloadError)


@FUZZ
@given(value=shopify_shaped, topic=st.sampled_from(TOPICS), ensure_ascii=st.booleans())
def test_signed_shopify_shaped_payloads_never_crash(value, topic, ensure_ascii):
    parse_or_webhook_error(signed_request(dump(value, ensure_ascii), topic))


@FUZZ
@given(value=shopify_shaped, topic=st.sampled_from(TOPICS), data=st.data())
def test_truncated_signed_bodies_are_malformed(value, topic, data):
    body = json.dumps(value).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    result = parse_or_webhook_error(signed_request(body[:cut], topic))
    assert isinstance(result, MalformedPayloadError)


@FUZZ
@given(headers=random_headers, body=st.binary(max_size=200) | shopify_shaped.map(lambda v: json.dumps(v).encode()))
def test_random_headers_never_crash_and_only_signed_bodies_are_normalised(headers, body):
    result = parse_or_webhook_error(WebhookRequest(method="POST", source="shopify", body=body, headers=headers))
    if isinstance(result, Normalised):
        received = base64.b64decode(headers[HMAC_HEADER].strip())
        assert hmac.compare_digest(received, hmac.new(SECRET, body, hashlib.sha256).digest())


@FUZZ
@given(headers=random_headers, value=shopify_shaped, topic=st.sampled_from(TOPICS))
def test_random_extra_headers_around_a_signed_body_never_crash(headers, value, topic):
    headers = {k: v for k, v in headers.items() if k != HMAC_HEADER}
    parse_or_webhook_error(signed_request(json.dumps(value).encode(), topic, content_type=None, extra=headers))


# -- wrong signature: never normalised -----------------------------------------------------------


def wrong_signatures(body: bytes) -> st.SearchStrategy[str]:
    right = hmac.new(SECRET, body, hashlib.sha256).digest()
    flipped = st.tuples(st.integers(0, len(right) - 1), st.integers(0, 7)).map(
        lambda ib: base64.b64encode(right[: ib[0]] + bytes([right[ib[0]] ^ (1 << ib[1])]) + right[ib[0] + 1:]).decode())
    return st.one_of(
        st.just(""),
        st.just(sign(body, b"shpss_not_configured")),
        st.just(sign(body + b" ")),
        st.just(hmac.new(SECRET, body, hashlib.sha256).hexdigest()),
        st.just(base64.b64encode(right[:-1]).decode()),
        flipped,
        st.text(max_size=60).filter(lambda s: s.strip() != sign(body)),
        st.binary(min_size=32, max_size=32).filter(lambda b: b != right).map(lambda b: base64.b64encode(b).decode()),
    )


@FUZZ
@given(body=st.binary(max_size=300) | shopify_shaped.map(lambda v: json.dumps(v).encode()) | st.just(b"{}"),
       topic=st.none() | topics, content_type=content_types, headers=random_headers, data=st.data())
def test_wrong_signature_is_never_normalised(body, topic, content_type, headers, data):
    signature = data.draw(wrong_signatures(body), label="signature")
    headers = {k: v for k, v in headers.items() if k not in (HMAC_HEADER, "content-type", "x-shopify-topic")}
    if topic is not None:
        headers["x-shopify-topic"] = topic
    if content_type is not None:
        headers["content-type"] = content_type
    headers[HMAC_HEADER] = signature
    req = WebhookRequest(method="POST", source="shopify", body=body, headers=headers)
    try:
        result = shopify.parse(req, lambda name: list(SECRETS), 0)
    except SignatureMismatchError:
        return
    except UnsupportedMediaTypeError:
        assert content_type is not None and content_type.split(";")[0].strip().lower() != "application/json"
        return
    raise AssertionError(f"an unsigned delivery was accepted: {result!r}")


@FUZZ
@given(value=shopify_shaped, topic=st.sampled_from(TOPICS))
def test_valid_signature_for_another_body_is_rejected(value, topic):
    body = json.dumps(value).encode()
    other = body + b"\n"
    headers = {"content-type": "application/json", "x-shopify-topic": topic, HMAC_HEADER: sign(other)}
    try:
        shopify.parse(WebhookRequest(method="POST", source="shopify", body=body, headers=headers), lambda name: list(SECRETS), 0)
    except SignatureMismatchError:
        return
    raise AssertionError("a signature over different bytes was accepted")
