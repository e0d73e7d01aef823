"""Mandrill (Mailchimp Transactional) adapter: signature over URL + parameters (docs/webhooks.md#mandrill),
the HEAD and empty-batch handshakes, normalisation of message events, and a fuzz property:
nothing is normalised without a valid signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.events import EmailProperties, EventType
from segmentation.sources import mandrill
from segmentation.sources.errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SecretNotConfiguredError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Handshake, Normalised, WebhookRequest

# -- the worked vector of docs/webhooks.md#test-vectors, byte for byte -----------------------------

VECTOR_KEY = b"mdr_example_webhook_key_XYZ"
VECTOR_URL = "https://hooks.example.com/webhooks/mandrill"
VECTOR_EVENTS = ('[{"event":"open","_id":"a1b2c3d4e5f6","ts":1715696551,"msg":{"email":"ana.lopez@example.com",'
                 '"subject":"Your order shipped","tags":["shipping"]}}]')
VECTOR_BODY = (
    b"mandrill_events=%5B%7B%22event%22%3A%22open%22%2C%22_id%22%3A%22a1b2c3d4e5f6%22%2C%22ts%22%3A1715696551%2C"
    b"%22msg%22%3A%7B%22email%22%3A%22ana.lopez%40example.com%22%2C%22subject%22%3A%22Your+order+shipped%22%2C"
    b"%22tags%22%3A%5B%22shipping%22%5D%7D%7D%5D"
)
VECTOR_SIGNED_SHA256 = "bedc8f6f251887e857e2ebf25cf66115f480b1ef08d233b3426d59f11a013d28"
VECTOR_SIGNATURE = "ya6iS9ccyTLRsr2MhU7CfM6UsnA="
VECTOR_NEGATIVE = "sy0eMusID9UuwPcq+1e9R6KhYsU="
FORM = "application/x-www-form-urlencoded"
VECTOR_URL_SECRET = VECTOR_URL.encode()


def signed_bytes(events: str, url: str = VECTOR_URL, name: str = "mandrill_events") -> bytes:
    return (url + name + events).encode()


def sign_events(events: str, key: bytes = VECTOR_KEY, url: str = VECTOR_URL) -> str:
    return base64.b64encode(hmac.new(key, signed_bytes(events, url), hashlib.sha1).digest()).decode()


def encode(events: str) -> bytes:
    return urlencode({"mandrill_events": events}).encode()


def secrets_for(keys=(VECTOR_KEY,), urls=(VECTOR_URL_SECRET,)):
    table = {"mandrill": list(keys), "mandrill_url": list(urls)}

    def lookup(name: str) -> list[bytes]:
        if not table.get(name):
            raise SecretNotConfiguredError(f"no secret configured for {name}")
        return list(table[name])
    return lookup


def request(body: bytes, signature: str | None, *, content_type: str | None = FORM, method: str = "POST") -> WebhookRequest:
    headers = {"content-type": content_type, "x-mandrill-signature": signature, "user-agent": "Mandrill-Webhook/1.0"}
    return WebhookRequest(method=method, source="mandrill", body=body,
                          headers={k: v for k, v in headers.items() if v is not None})


def deliver(events: list | str, *, key: bytes = VECTOR_KEY, secrets=None, **kw) -> Normalised | Handshake:
    text = events if isinstance(events, str) else json.dumps(events)
    return mandrill.parse(request(encode(text), sign_events(text, key), **kw), secrets or secrets_for(), 0)


def message_event(kind: str, _id: str = "a1b2c3d4e5f6", ts: int = 1715696551, email: str | None = "Ana@Example.com",
                  **extra) -> dict:
    msg = {"ts": 1715696000, "subject": "Your order shipped", "tags": ["shipping", "transactional"],
           "state": "sent", "metadata": {"user_id": "7001"}, "_id": _id}
    if email is not None:
        msg["email"] = email
    return {"event": kind, "_id": _id, "ts": ts, "msg": msg, **extra}


def only_event(result):
    assert isinstance(result, Normalised)
    assert result.ignored_reason is None
    assert len(result.events) == 1
    return result.events[0]


# -- verify: the Mandrill vector -------------------------------------------------------------------


def test_vector_signed_bytes_are_the_documented_bytes():
    params = mandrill.form_params(VECTOR_BODY)
    assert params == {"mandrill_events": VECTOR_EVENTS}  # "+" decoded to a space: "Your order shipped"
    signed = mandrill.signed_data(VECTOR_URL, params)
    assert signed == signed_bytes(VECTOR_EVENTS)
    assert len(signed) == 204
    assert hashlib.sha256(signed).hexdigest() == VECTOR_SIGNED_SHA256
    assert sign_events(VECTOR_EVENTS) == VECTOR_SIGNATURE


def test_vector_verifies_and_normalises_to_one_open():
    result = mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE), secrets_for(), 0)
    event = only_event(result)
    assert event.type == EventType.EMAIL_OPENED
    assert event.source == "mandrill"
    assert event.identity.email == "ana.lopez@example.com"
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    assert isinstance(event.properties, EmailProperties)
    assert event.properties.message_id == "a1b2c3d4e5f6"
    assert event.properties.campaign == "shipping"


def test_vector_negative_is_the_mac_of_a_flipped_bit_and_is_rejected():
    signed = signed_bytes(VECTOR_EVENTS)
    tampered = signed[:-2] + bytes([signed[-2] ^ 0x01]) + signed[-1:]
    assert base64.b64encode(hmac.new(VECTOR_KEY, tampered, hashlib.sha1).digest()).decode() == VECTOR_NEGATIVE
    with pytest.raises(SignatureMismatchError) as exc:
        mandrill.parse(request(VECTOR_BODY, VECTOR_NEGATIVE), secrets_for(), 0)
    assert exc.value.status == 401


def test_flipped_bit_in_the_body_is_rejected():
    tampered = VECTOR_BODY.replace(b"1715696551", b"1715696550")
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(tampered, VECTOR_SIGNATURE), secrets_for(), 0)


def test_signature_covers_the_configured_url():
    other = secrets_for(urls=[b"https://hooks.example.com/webhooks/mandrill?token=x"])
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE), other, 0)


def test_extra_parameters_are_signed_in_name_order():
    events = json.dumps([message_event("open")])
    body = urlencode({"zeta": "2", "mandrill_events": events, "alpha": "1"}).encode()
    signed = (VECTOR_URL + "alpha1" + "mandrill_events" + events + "zeta2").encode()
    signature = base64.b64encode(hmac.new(VECTOR_KEY, signed, hashlib.sha1).digest()).decode()
    assert only_event(mandrill.parse(request(body, signature), secrets_for(), 0)).type == EventType.EMAIL_OPENED


@pytest.mark.parametrize("signature", [None, "", "   ", "not base64!!", VECTOR_SIGNATURE[:-1], "ÿÿÿÿ",
                                       hmac.new(VECTOR_KEY, signed_bytes(VECTOR_EVENTS), hashlib.sha1).hexdigest()])
def test_missing_empty_garbled_or_hex_signature_is_rejected(signature):
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(VECTOR_BODY, signature), secrets_for(), 0)


def test_wrong_key_is_rejected():
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE), secrets_for(keys=[b"another_webhook_key"]), 0)


@pytest.mark.parametrize("keys", [[b"mdr_new_key", VECTOR_KEY], [VECTOR_KEY, b"mdr_new_key"]])
def test_either_key_verifies_during_rotation(keys):
    lookup = secrets_for(keys=keys)
    mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE), lookup, 0)
    assert isinstance(deliver([message_event("open")], key=b"mdr_new_key", secrets=lookup), Normalised)
    with pytest.raises(SignatureMismatchError):
        deliver([message_event("open")], key=b"mdr_third_key", secrets=lookup)


def test_missing_url_or_key_configuration_refuses_every_delivery():
    for lookup in (secrets_for(urls=[]), secrets_for(keys=[])):
        with pytest.raises(SecretNotConfiguredError) as exc:
            mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE), lookup, 0)
        assert exc.value.status == 401


# -- handshakes ------------------------------------------------------------------------------------


def test_head_is_answered_200_without_a_signature():
    reply = mandrill.parse(request(b"", None, method="HEAD", content_type=None), secrets_for(), 0)
    assert reply == Handshake(200, "", "text/plain")


def test_empty_test_batch_signed_with_the_generic_test_key_is_accepted():
    reply = mandrill.parse(request(encode("[]"), sign_events("[]", b"test-webhook")), secrets_for(), 0)
    assert isinstance(reply, Handshake)
    assert reply.status == 200


def test_empty_batch_signed_with_the_real_key_is_accepted_with_no_events():
    assert isinstance(deliver("[]"), Handshake)


def test_generic_test_key_never_authenticates_real_events():
    with pytest.raises(SignatureMismatchError):
        deliver([message_event("open")], key=b"test-webhook")


def test_empty_test_batch_with_a_garbled_signature_is_rejected():
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(encode("[]"), sign_events("[]", b"test-webhoo")), secrets_for(), 0)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405(method):
    with pytest.raises(MethodNotAllowedError):
        mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE, method=method), secrets_for(), 0)


# -- normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "etype"), [
    ("send", EventType.EMAIL_DELIVERED), ("delivered", EventType.EMAIL_DELIVERED),
    ("open", EventType.EMAIL_OPENED), ("click", EventType.EMAIL_CLICKED),
    ("hard_bounce", EventType.EMAIL_BOUNCED), ("spam", EventType.EMAIL_SPAM), ("unsub", EventType.EMAIL_UNSUBSCRIBED),
])
def test_message_events_map_to_canonical_types(kind, etype):
    extra = {"url": "https://shop.example.com/p/8801"} if kind == "click" else {}
    event = only_event(deliver([message_event(kind, ts=1715700000, **extra)]))
    assert event.type == etype
    assert event.identity.email == "ana@example.com"
    assert event.shop is None
    assert event.occurred_at == datetime.fromtimestamp(1715700000, UTC)
    assert event.properties.message_id == "a1b2c3d4e5f6"
    assert event.properties.campaign == "shipping,transactional"
    assert event.properties.url == ("https://shop.example.com/p/8801" if kind == "click" else None)


def test_send_and_delivered_of_one_message_share_the_message_id():
    result = deliver([message_event("send", ts=1715696000), message_event("delivered", ts=1715696005),
                      message_event("open", ts=1715697000)])
    assert [e.type for e in result.events] == [EventType.EMAIL_DELIVERED] * 2 + [EventType.EMAIL_OPENED]
    assert {e.properties.message_id for e in result.events} == {"a1b2c3d4e5f6"}
    assert len({e.event_id for e in result.events}) == 3


@pytest.mark.parametrize(("kind", "reason"), [("soft_bounce", "soft bounce"), ("deferral", "deferral"),
                                              ("reject", "reject (not the recipient's choice)")])
def test_temporary_and_sender_side_events_are_ignored(kind, reason):
    result = deliver([message_event(kind)])
    assert result.events == []
    assert result.ignored_reason == f"ignored 1 of 1 events: {reason} (1)"


def test_sync_and_unknown_events_are_ignored():
    sync = {"type": "blacklist", "action": "add", "reject": {"email": "x@example.com", "reason": "hard-bounce"}, "ts": 1}
    result = deliver([sync, {"event": "something_new", "_id": "x", "ts": 1}])
    assert result.events == []
    assert "sync event (1)" in result.ignored_reason and "unknown event kind (1)" in result.ignored_reason


def test_event_without_recipient_email_is_ignored():
    result = deliver([message_event("open", email=None), message_event("open", _id="b2", email="bo@example.org")])
    assert [e.identity.email for e in result.events] == ["bo@example.org"]
    assert result.ignored_reason == "ignored 1 of 2 events: no recipient email (1)"


def test_batch_of_many_recipients():
    events = [message_event("delivered", _id=f"id{i}", email=f"user{i}@example.com", ts=1715696000 + i)
              for i in range(1000)]
    result = deliver(events)
    assert len(result.events) == 1000
    assert len({e.identity.email for e in result.events}) == 1000
    assert result.events[999].occurred_at == datetime.fromtimestamp(1715696999, UTC)


# -- dedupe ----------------------------------------------------------------------------------------


def test_same_delivery_twice_gives_the_same_key_and_event_ids():
    batch = [message_event("open"), message_event("click", url="https://a.example/")]
    first, second = deliver(batch), deliver(batch)
    assert first.delivery_key == second.delivery_key
    assert first.delivery_key.startswith("mandrill#")
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]


def test_delivery_key_ignores_serialisation_and_order_but_not_content():
    a, b = message_event("open"), message_event("click", url="https://a.example/")
    base = deliver([a, b])
    assert deliver(json.dumps([b, a], indent=2)).delivery_key == base.delivery_key
    assert deliver([a, dict(b, ts=b["ts"] + 1)]).delivery_key != base.delivery_key
    assert deliver([a]).delivery_key != base.delivery_key


def test_two_clicks_on_different_links_are_two_events():
    result = deliver([message_event("click", url="https://a.example/"), message_event("click", url="https://b.example/")])
    assert len({e.event_id for e in result.events}) == 2


# -- rejections ------------------------------------------------------------------------------------


MALFORMED = {
    "not JSON": "not json",
    "object, not array": '{"event": "open"}',
    "entry not an object": '["open"]',
    "missing _id": json.dumps([{"event": "open", "ts": 1715696551, "msg": {"email": "a@b.c"}}]),
    "ts a string": json.dumps([dict(message_event("open"), ts="yesterday")]),
    "ts out of range": json.dumps([dict(message_event("open"), ts=10**20)]),
    "ts a boolean": json.dumps([dict(message_event("open"), ts=True)]),
    "msg missing": json.dumps([{"event": "open", "_id": "a", "ts": 1715696551}]),
    "email a number": json.dumps([message_event("open", email=42)]),
    "url an object": json.dumps([message_event("click", url={"a": 1})]),
    "unpaired surrogate": json.dumps([message_event("open", email="ana\ud800@example.com")]),
    "deeply nested": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_signed_but_malformed_batches_are_400(name):
    with pytest.raises(MalformedPayloadError) as exc:
        deliver(MALFORMED[name])
    assert exc.value.status == 400
    assert "a@b.c" not in exc.value.reason


def test_signed_form_without_mandrill_events_is_400():
    body = urlencode({"other": "x"}).encode()
    signature = base64.b64encode(hmac.new(VECTOR_KEY, (VECTOR_URL + "otherx").encode(), hashlib.sha1).digest()).decode()
    with pytest.raises(MalformedPayloadError):
        mandrill.parse(request(body, signature), secrets_for(), 0)


def test_body_that_is_not_a_form_cannot_be_verified():
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(b"\xff\xfe=\x00", VECTOR_SIGNATURE), secrets_for(), 0)
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(b"mandrill_events=%ff", VECTOR_SIGNATURE), secrets_for(), 0)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"])
def test_wrong_content_type_is_415(content_type):
    with pytest.raises(UnsupportedMediaTypeError):
        mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE, content_type=content_type), secrets_for(), 0)


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded; charset=utf-8",
                                          "Application/X-WWW-Form-URLEncoded"])
def test_form_content_type_variants_are_accepted(content_type):
    assert only_event(mandrill.parse(request(VECTOR_BODY, VECTOR_SIGNATURE, content_type=content_type),
                                     secrets_for(), 0)).type == EventType.EMAIL_OPENED


# -- fuzz: only WebhookErrors or results; nothing unsigned is normalised ------------------------------

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
odd_text = st.text(alphabet=st.characters() | st.sampled_from(["\u0000", "\u202e", "\ufeff", "\ud800", "İ", "٣", "&", "=",
                                                               "%", "+"]), max_size=30)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
           | st.floats(allow_nan=True, allow_infinity=True) | odd_text)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(odd_text, c, max_size=4),
                           max_leaves=20)


def mostly(valid, *odd):
    anything = st.one_of(*odd, json_values)
    return st.integers(0, 9).flatmap(lambda n: valid if n else anything)


kinds = st.sampled_from(sorted(mandrill.EVENT_TYPES) + sorted(mandrill.IGNORED_EVENTS) + ["", "OPEN"])
mandrill_entries = st.fixed_dictionaries(
    {"event": mostly(kinds)},
    optional={"_id": mostly(st.text(min_size=1, max_size=12)), "ts": mostly(st.integers(1, 2**31), st.floats()),
              "url": json_values,
              "msg": mostly(st.fixed_dictionaries({}, optional={
                  "email": mostly(st.sampled_from(["Ana@Example.com", "bo@example.org"]), odd_text),
                  "tags": json_values}))},
)
mandrill_batches = st.lists(mandrill_entries, max_size=4).map(json.dumps)


def parse_or_error(req: WebhookRequest):
    try:
        result = mandrill.parse(req, secrets_for(), 0)
    except WebhookError as exc:
        assert exc.reason
        return exc
    assert isinstance(result, Normalised | Handshake)
    if isinstance(result, Normalised):
        for event in result.events:
            assert not event.identity.is_empty()
            event.model_dump_json()
    return result


@FUZZ
@given(events=st.text(max_size=300) | json_values.map(json.dumps))
def test_signed_arbitrary_event_text_never_crashes(events):
    parse_or_error(request(encode(events), sign_events(events)))


@FUZZ
@given(events=mandrill_batches)
def test_signed_mandrill_shaped_batches_never_crash(events):
    parse_or_error(request(encode(events), sign_events(events)))


@FUZZ
@given(events=mandrill_batches, data=st.data())
def test_truncated_signed_batches_are_malformed(events, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(events) - 1))
    result = parse_or_error(request(encode(events[:cut]), sign_events(events[:cut])))
    assert isinstance(result, MalformedPayloadError)


@FUZZ
@given(body=st.binary(max_size=300), signature=st.none() | odd_text,
       headers=st.dictionaries(st.text(max_size=20).map(str.lower), odd_text, max_size=4),
       method=st.sampled_from(["POST", "GET", "PUT", "PATCH"]))
def test_random_bytes_and_headers_are_never_normalised(body, signature, headers, method):
    headers = {**headers, "content-type": FORM}
    if signature is not None:
        headers["x-mandrill-signature"] = signature
    result = parse_or_error(WebhookRequest(method=method, source="mandrill", body=body, headers=headers))
    assert isinstance(result, WebhookError)


@FUZZ
@given(events=mandrill_batches, signature=odd_text | st.binary(min_size=20, max_size=20).map(
    lambda b: base64.b64encode(b).decode()))
def test_wrong_signature_is_never_normalised(events, signature):
    if signature.strip() in (sign_events(events), sign_events(events, b"test-webhook")):
        return
    with pytest.raises(SignatureMismatchError):
        mandrill.parse(request(encode(events), signature), secrets_for(), 0)


# -- the sample payloads shipped for segctl users -------------------------------------------------

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "events" / "mandrill").glob("*.txt"))


def test_sample_payloads_exist():
    assert {p.name for p in SAMPLES} >= {"events.txt", "hard-bounce.txt", "unsub.txt", "spam.txt", "test-batch.txt"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_payloads_normalise(path):
    body = path.read_bytes()
    events = mandrill.form_params(body)["mandrill_events"]
    key = b"test-webhook" if path.name == "test-batch.txt" else VECTOR_KEY
    result = mandrill.parse(request(body, sign_events(events, key)), secrets_for(), 0)
    if path.name == "test-batch.txt":
        assert result == Handshake(200, "", "text/plain")
    else:
        assert result.events and result.ignored_reason is None
