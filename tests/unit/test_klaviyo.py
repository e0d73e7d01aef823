"""Klaviyo adapter: signature and replay window (docs/webhooks.md#klaviyo), normalisation of the
batched email events, and a fuzz property: nothing is normalised without a valid signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.events import CustomerProperties, EmailProperties, EventType
from segmentation.sources import klaviyo
from segmentation.sources.errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Normalised, WebhookRequest

# -- the worked vector of docs/webhooks.md#test-vectors, byte for byte -----------------------------

VECTOR_SECRET = b"klaviyo_example_secret_16plus"
VECTOR_TIMESTAMP = "Tue, 14 May 2024 14:22:33 GMT"
VECTOR_NOW = int(datetime(2024, 5, 14, 14, 22, 33, tzinfo=UTC).timestamp())
VECTOR_BODY = (
    b'{"data":[{"external_id":"01HXEXAMPLE00000000000001","topic":"event:klaviyo.clicked_email","payload":'
    b'{"data":{"type":"event","id":"01HXEXAMPLE00000000000001","attributes":{"datetime":"2024-05-14T14:22:31+00:00",'
    b'"event_properties":{"URL":"https://shop.example.com/p/8801","Subject":"New linen"}}}}}],"meta":'
    b'{"klaviyo_account_id":"AbC123","klaviyo_webhook_id":"01HXWEBHOOK0000000000000001",'
    b'"timestamp":"2024-05-14T14:22:33+00:00"}}'
)
VECTOR_SIGNED_SHA256 = "ea2e3a3b6ed84ac3ffbd5538c040c3ab7b440c8f75700dbf24f58574983c46f7"
VECTOR_SIGNATURE = "01b204ee62fceab35d81a252a52e778f7183c7e77c85e7f45d207081fb3459f3"
WEBHOOK_ID = "01HXWEBHOOK0000000000000001"
ACCOUNT = "AbC123"
SECRETS = [VECTOR_SECRET]


def sign(body: bytes, timestamp: str = VECTOR_TIMESTAMP, secret: bytes = VECTOR_SECRET) -> str:
    return hmac.new(secret, body + timestamp.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def flipped(data: bytes, index: int = -2) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def request(body: bytes | dict, *, signature: str | None = None, timestamp: str | None = VECTOR_TIMESTAMP,
            webhook_id: str | None = WEBHOOK_ID, content_type: str | None = "application/json",
            method: str = "POST", secret: bytes = VECTOR_SECRET) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {
        "content-type": content_type,
        "klaviyo-timestamp": timestamp,
        "klaviyo-webhook-id": webhook_id,
        "klaviyo-signature": sign(raw, timestamp or "", secret) if signature is None else signature,
    }
    return WebhookRequest(method=method, source="klaviyo", body=raw,
                          headers={k: v for k, v in headers.items() if v is not None})


def parse(req: WebhookRequest, now: int = VECTOR_NOW, secrets: list[bytes] | None = None) -> Normalised:
    return klaviyo.parse(req, lambda name: list(SECRETS if secrets is None else secrets), now)


def entry(topic: str, event_id: str, *, when: str = "2024-05-14T14:22:31+00:00", profile: str | None = "01HPROFILE0001",
          email: str | None = "Ana.Lopez@Example.com", props: dict | None = None, external_id: str | None = None) -> dict:
    """One ``data[]`` entry shaped like the Get Event API (relationships, optional included profile)."""
    event = {
        "type": "event", "id": event_id,
        "attributes": {"datetime": when, "timestamp": 1715696551, "uuid": "96150200-374e-11ee-8001-a163313bc6c2",
                       "event_properties": props if props is not None else {}},
    }
    payload: dict = {"data": event}
    if profile is not None:
        event["relationships"] = {"profile": {"data": {"type": "profile", "id": profile}},
                                  "metric": {"data": {"type": "metric", "id": "ShuTva"}}}
        if email is not None:
            payload["included"] = [
                {"type": "metric", "id": "ShuTva", "attributes": {"name": "Opened Email"}},
                {"type": "profile", "id": profile, "attributes": {"email": email, "phone_number": "+34600111222",
                                                                  "first_name": "Ana", "last_name": "Lopez"}},
            ]
    return {"external_id": external_id or event_id, "topic": topic, "payload": payload}


def batch(*entries: dict, webhook_id: str = WEBHOOK_ID) -> dict:
    return {"data": list(entries),
            "meta": {"klaviyo_account_id": ACCOUNT, "klaviyo_webhook_id": webhook_id,
                     "timestamp": "2030-01-01T00:00:00+00:00", "version": "2024-07-15"}}


MESSAGE_PROPS = {"$message": "01H7F525FKR31P27Y7PNGVBBKK", "Subject": "New linen", "Campaign Name": "May newsletter",
                 "$event_id": "01H7F525FKR31P27Y7PNGVBBKK:125423419905414052533228990613763937641",
                 "$_cohort$message_send_cohort": "1715696000:01H7F525FKR31P27Y7PNGVBBKK"}


def only_event(result: Normalised):
    assert result.ignored_reason is None
    assert len(result.events) == 1
    return result.events[0]


# -- verify: the Klaviyo vector --------------------------------------------------------------------


def test_vector_signed_bytes_are_the_documented_bytes():
    signed = VECTOR_BODY + VECTOR_TIMESTAMP.encode()
    assert len(signed) == 457
    assert hashlib.sha256(signed).hexdigest() == VECTOR_SIGNED_SHA256
    assert sign(VECTOR_BODY) == VECTOR_SIGNATURE


def test_vector_signature_verifies_at_its_own_time():
    klaviyo.verify(SECRETS, VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP, VECTOR_NOW)


def test_vector_end_to_end_is_accepted_but_names_nobody():
    # The vector's event has no profile relationship and no email: accepted (200), nothing to apply.
    result = parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE))
    assert result.events == []
    assert "no profile" in result.ignored_reason
    assert result.delivery_key == "klaviyo#01HXEXAMPLE00000000000001"


def test_vector_click_with_a_profile_is_normalised():
    body = json.loads(VECTOR_BODY)
    body["data"][0]["payload"]["data"]["relationships"] = {"profile": {"data": {"type": "profile", "id": "01HPRO"}}}
    event = only_event(parse(request(body)))
    assert event.type == EventType.EMAIL_CLICKED
    assert event.shop == ACCOUNT
    assert event.identity.customer_ids == {"klaviyo": "01HPRO"}
    assert event.identity.email is None
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    assert event.properties.url == "https://shop.example.com/p/8801"
    # no $message in the vector: the Klaviyo event id stands in for the message id
    assert event.properties.message_id == "event:01HXEXAMPLE00000000000001"


def test_flipped_bit_body_is_rejected():
    with pytest.raises(SignatureMismatchError) as exc:
        klaviyo.verify(SECRETS, flipped(VECTOR_BODY), VECTOR_SIGNATURE, VECTOR_TIMESTAMP, VECTOR_NOW)
    assert exc.value.status == 401


def test_flipped_bit_signature_is_rejected():
    bad = flipped(bytes.fromhex(VECTOR_SIGNATURE), 5).hex()
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=bad))


def test_timestamp_is_part_of_the_signed_bytes():
    other = "Tue, 14 May 2024 14:22:34 GMT"
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, timestamp=other))


def test_uppercase_hex_signature_verifies():
    parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE.upper()))


@pytest.mark.parametrize("signature", ["", "   ", "not hex!", VECTOR_SIGNATURE[:-1], "zz" * 32, "ÿÿ",
                                       "sha256=" + VECTOR_SIGNATURE])
def test_empty_or_garbled_signature_is_rejected(signature):
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=signature))


def test_missing_signature_header_is_rejected():
    req = request(VECTOR_BODY)
    headers = {k: v for k, v in req.headers.items() if k != "klaviyo-signature"}
    with pytest.raises(SignatureMismatchError):
        parse(WebhookRequest(method="POST", source="klaviyo", body=req.body, headers=headers))


def test_base64_encoded_mac_is_rejected():
    import base64
    b64 = base64.b64encode(bytes.fromhex(VECTOR_SIGNATURE)).decode()
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=b64))


@pytest.mark.parametrize("timestamp", [None, "", "  "])
def test_missing_timestamp_is_rejected(timestamp):
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, timestamp=timestamp))


@pytest.mark.parametrize("timestamp", ["yesterday", "Tue, 99 May 2024 14:22:33 GMT", "2024-13-01T00:00:00Z",
                                       "Tüe, 14 May 2024 14:22:33 GMT"])
def test_signed_but_unreadable_timestamp_is_rejected(timestamp):
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, timestamp=timestamp))


def test_wrong_secret_is_rejected():
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE), secrets=[b"klaviyo_some_other_secret"])


@pytest.mark.parametrize("secrets", [[b"klaviyo_new_secret_16plus", VECTOR_SECRET],
                                     [VECTOR_SECRET, b"klaviyo_new_secret_16plus"]])
def test_either_secret_verifies_during_rotation(secrets):
    parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE), secrets=secrets)
    parse(request(VECTOR_BODY, secret=b"klaviyo_new_secret_16plus"), secrets=secrets)
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, secret=b"klaviyo_third_secret_16plus"), secrets=secrets)


# -- replay window -------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "accepted"), [(0, True), (300, True), (-300, True), (301, False), (-301, False),
                                                  (86_400, False)])
def test_replay_window_is_300_seconds_either_side(offset, accepted):
    req = request(VECTOR_BODY, signature=VECTOR_SIGNATURE)
    if accepted:
        parse(req, now=VECTOR_NOW + offset)
    else:
        with pytest.raises(SignatureMismatchError) as exc:
            parse(req, now=VECTOR_NOW + offset)
        assert "300" in exc.value.reason


@pytest.mark.parametrize("timestamp", [
    "Tue, 14 May 2024 14:22:33 GMT", "Tue, 14 May 2024 16:22:33 +0200", "2024-05-14T14:22:33+00:00",
    "2024-05-14T14:22:33Z", "2024-05-14T14:22:33.700369+00:00", "2024-05-14 14:22:33+00:00", "1715696553"])
def test_timestamp_formats_all_mean_the_same_instant(timestamp):
    assert klaviyo.parse_timestamp(timestamp) == VECTOR_NOW
    parse(request(VECTOR_BODY, timestamp=timestamp), now=VECTOR_NOW + 300)
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, timestamp=timestamp), now=VECTOR_NOW + 301)


def test_occurred_at_comes_from_the_event_not_the_delivery_time():
    # Delivered a week late (meta.timestamp and header both later): the event keeps its own time.
    late = VECTOR_NOW + 7 * 86_400
    stamp = format_datetime(datetime.fromtimestamp(late, UTC), usegmt=True)
    body = batch(entry("event:klaviyo.opened_email", "01HEV1", props=MESSAGE_PROPS))
    event = only_event(parse(request(body, timestamp=stamp), now=late))
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)


# -- Klaviyo-Webhook-Id ----------------------------------------------------------------------------


def test_webhook_id_header_must_match_the_signed_meta():
    with pytest.raises(SignatureMismatchError) as exc:
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, webhook_id="01HXWEBHOOK0000000000000002"))
    assert "Webhook-Id" in exc.value.reason


@pytest.mark.parametrize("webhook_id", [None, ""])
def test_missing_webhook_id_header_is_rejected(webhook_id):
    with pytest.raises(SignatureMismatchError):
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, webhook_id=webhook_id))


def test_meta_without_webhook_id_is_rejected():
    body = batch(entry("event:klaviyo.opened_email", "01HEV1"))
    del body["meta"]["klaviyo_webhook_id"]
    with pytest.raises(SignatureMismatchError):
        parse(request(body))


# -- normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "etype"), [
    ("event:klaviyo.received_email", EventType.EMAIL_DELIVERED),
    ("event:klaviyo.opened_email", EventType.EMAIL_OPENED),
    ("event:klaviyo.clicked_email", EventType.EMAIL_CLICKED),
    ("event:klaviyo.bounced_email", EventType.EMAIL_BOUNCED),
    ("event:klaviyo.marked_email_as_spam", EventType.EMAIL_SPAM),
    ("event:klaviyo.unsubscribed_from_email_marketing", EventType.EMAIL_UNSUBSCRIBED),
    ("event: email_delivered", EventType.EMAIL_DELIVERED),  # spelling in Klaviyo's help-centre example
    ("Received Email", EventType.EMAIL_DELIVERED),
])
def test_email_topics_map_to_canonical_types(topic, etype):
    props = dict(MESSAGE_PROPS, URL="https://shop.example.com/p/8801")
    event = only_event(parse(request(batch(entry(topic, "01HEV1", props=props)))))
    assert event.type == etype
    assert event.source == "klaviyo"
    assert event.shop == ACCOUNT
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"klaviyo": "01HPROFILE0001"}
    assert event.identity.phone == "+34600111222"
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    assert isinstance(event.properties, EmailProperties)
    assert event.properties.message_id == "01H7F525FKR31P27Y7PNGVBBKK"
    assert event.properties.campaign == "May newsletter"
    assert event.properties.url == ("https://shop.example.com/p/8801" if etype == EventType.EMAIL_CLICKED else None)


def test_delivered_opened_and_clicked_of_one_message_share_the_message_id():
    body = batch(entry("event:klaviyo.received_email", "01HEV1", props=MESSAGE_PROPS),
                 entry("event:klaviyo.opened_email", "01HEV2", props=MESSAGE_PROPS, when="2024-05-14T15:00:00+00:00"),
                 entry("event:klaviyo.clicked_email", "01HEV3", props=MESSAGE_PROPS, when="2024-05-14T15:01:00+00:00"))
    result = parse(request(body))
    assert [e.type for e in result.events] == [EventType.EMAIL_DELIVERED, EventType.EMAIL_OPENED,
                                               EventType.EMAIL_CLICKED]
    assert {e.properties.message_id for e in result.events} == {"01H7F525FKR31P27Y7PNGVBBKK"}
    assert len({e.event_id for e in result.events}) == 3
    assert [e.occurred_at.hour for e in result.events] == [14, 15, 15]


@pytest.mark.parametrize(("props", "expected"), [
    ({"$_cohort$message_send_cohort": "1715696000:01HMSG"}, "01HMSG"),
    ({"$event_id": "01HMSG:1254234199"}, "01HMSG"),
    ({}, "event:01HEV1"),
])
def test_message_id_fallbacks(props, expected):
    event = only_event(parse(request(batch(entry("event:klaviyo.opened_email", "01HEV1", props=props)))))
    assert event.properties.message_id == expected


def test_profile_id_alone_identifies_the_customer():
    event = only_event(parse(request(batch(entry("event:klaviyo.opened_email", "01HEV1", email=None)))))
    assert event.identity.email is None
    assert event.identity.customer_ids == {"klaviyo": "01HPROFILE0001"}
    assert event.identity.alias_keys(event.shop) == ["cust#klaviyo#AbC123#01HPROFILE0001"]


def test_subscribed_is_a_customer_event_with_subscribed_consent():
    body = batch(entry("event:klaviyo.subscribed_to_email_marketing", "01HSUB", when="2024-05-14T09:00:00Z"))
    event = only_event(parse(request(body)))
    assert event.type == EventType.CUSTOMER
    assert isinstance(event.properties, CustomerProperties)
    assert event.properties.email_consent.state == "subscribed"
    assert event.properties.email_consent.updated_at == datetime(2024, 5, 14, 9, tzinfo=UTC)
    assert (event.properties.first_name, event.properties.last_name) == ("Ana", "Lopez")
    assert event.occurred_at == datetime(2024, 5, 14, 9, tzinfo=UTC)


@pytest.mark.parametrize(("bounce_type", "counted"), [("Hard", True), (None, True), ("Soft", False)])
def test_only_hard_bounces_suppress(bounce_type, counted):
    props = dict(MESSAGE_PROPS) if bounce_type is None else dict(MESSAGE_PROPS, **{"Bounce Type": bounce_type})
    result = parse(request(batch(entry("event:klaviyo.bounced_email", "01HB", props=props))))
    if counted:
        assert only_event(result).type == EventType.EMAIL_BOUNCED
    else:
        assert result.events == []
        assert "soft bounce" in result.ignored_reason


@pytest.mark.parametrize("topic", ["event:klaviyo.dropped_email", "event:klaviyo.sent_sms",
                                   "event:klaviyo.updated_email_preferences", "event:klaviyo.placed_order"])
def test_unused_topics_are_acknowledged_without_events(topic):
    result = parse(request(batch({"external_id": "01HX", "topic": topic, "payload": {"whatever": 1}})))
    assert result.events == []
    assert "topic not used" in result.ignored_reason


def test_datetime_with_a_space_and_no_offset_is_utc():
    body = batch(entry("event:klaviyo.opened_email", "01HEV1", when="2023-08-10 07:21:56"))
    assert only_event(parse(request(body))).occurred_at == datetime(2023, 8, 10, 7, 21, 56, tzinfo=UTC)


def test_epoch_timestamp_is_used_when_datetime_is_absent():
    body = batch(entry("event:klaviyo.opened_email", "01HEV1"))
    del body["data"][0]["payload"]["data"]["attributes"]["datetime"]
    assert only_event(parse(request(body))).occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)


def test_mixed_batch_keeps_the_used_events_and_says_what_was_ignored():
    body = batch(entry("event:klaviyo.opened_email", "01HEV1", props=MESSAGE_PROPS),
                 entry("event:klaviyo.sent_sms", "01HEV2"),
                 entry("event:klaviyo.opened_email", "01HEV3", profile=None),
                 entry("event:klaviyo.received_email", "01HEV4", props=MESSAGE_PROPS, profile="01HPROFILE0002",
                       email="bo@example.org"))
    result = parse(request(body))
    assert [(e.type, e.identity.email) for e in result.events] == [
        (EventType.EMAIL_OPENED, "ana.lopez@example.com"), (EventType.EMAIL_DELIVERED, "bo@example.org")]
    assert result.ignored_reason == "ignored 2 of 4 events: no profile email or id (1), topic not used (1)"


def test_empty_batch_is_acknowledged():
    result = parse(request(batch()))
    assert result.events == []
    assert result.ignored_reason == "empty batch"
    assert result.delivery_key.startswith("klaviyo#")


# -- dedupe ----------------------------------------------------------------------------------------


def test_same_delivery_twice_gives_the_same_key_and_event_ids():
    body = batch(entry("event:klaviyo.opened_email", "01HEV1", props=MESSAGE_PROPS),
                 entry("event:klaviyo.clicked_email", "01HEV2", props=MESSAGE_PROPS))
    first, second = parse(request(body)), parse(request(body))
    assert first.delivery_key == second.delivery_key
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]


def test_delivery_key_comes_from_the_external_ids():
    one = parse(request(batch(entry("event:klaviyo.opened_email", "01HEV1"))))
    assert one.delivery_key == "klaviyo#01HEV1"
    a = entry("event:klaviyo.opened_email", "01HEV1")
    b = entry("event:klaviyo.clicked_email", "01HEV2")
    ab, ba = parse(request(batch(a, b))), parse(request(batch(b, a)))
    assert ab.delivery_key == ba.delivery_key
    assert ab.delivery_key != one.delivery_key
    # a re-signed retry with a new delivery timestamp is still the same delivery
    retry = request(batch(a, b), timestamp="Tue, 14 May 2024 14:24:00 GMT")
    assert parse(retry, now=VECTOR_NOW + 90).delivery_key == ab.delivery_key


def test_the_same_event_in_another_batch_keeps_its_event_id():
    a = entry("event:klaviyo.opened_email", "01HEV1", props=MESSAGE_PROPS)
    alone = only_event(parse(request(batch(a))))
    together = parse(request(batch(a, entry("event:klaviyo.clicked_email", "01HEV2"))))
    assert together.events[0].event_id == alone.event_id
    assert together.delivery_key != "klaviyo#01HEV1"


def test_an_event_repeated_inside_a_batch_is_emitted_once():
    a = entry("event:klaviyo.opened_email", "01HEV1", props=MESSAGE_PROPS)
    assert len(parse(request(batch(a, a))).events) == 1


# -- rejections ------------------------------------------------------------------------------------


MALFORMED = {
    "not JSON": b"not json",
    "empty body": b"",
    "invalid UTF-8": b'{"data": "\xff"}',
    "JSON array": b"[]",
    "no meta": json.dumps({"data": []}).encode(),
    "data not a list": json.dumps(dict(batch(), data={"a": 1})).encode(),
    "entry not an object": json.dumps(batch("x")).encode(),
    "payload missing": json.dumps(batch({"external_id": "1", "topic": "event:klaviyo.opened_email"})).encode(),
    "attributes missing": json.dumps(batch({"external_id": "1", "topic": "event:klaviyo.opened_email",
                                            "payload": {"data": {"id": "1"}}})).encode(),
    "bad datetime": json.dumps(batch(entry("event:klaviyo.opened_email", "1", when="14/05/2024"))).encode(),
    "datetime a number": json.dumps(batch(entry("event:klaviyo.opened_email", "1", when=1715696551))).encode(),
    "email a number": json.dumps(batch(entry("event:klaviyo.opened_email", "1", email=42))).encode(),
    "unpaired surrogate": json.dumps(batch(entry("event:klaviyo.opened_email", "1",
                                                 props={"$message": "\ud800"}))).encode(),
    "deeply nested": b'{"meta":{"klaviyo_webhook_id":"' + WEBHOOK_ID.encode() + b'"},"data":'
                     + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_signed_but_malformed_bodies_are_400(name):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(MALFORMED[name]))
    assert exc.value.status == 400
    assert exc.value.reason
    assert "ana" not in exc.value.reason.lower()  # no PII echoed


def test_wrong_method_is_405():
    with pytest.raises(MethodNotAllowedError):
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, method="GET"))


def test_wrong_content_type_is_415_and_json_variants_are_accepted():
    with pytest.raises(UnsupportedMediaTypeError):
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, content_type="text/plain"))
    for content_type in ("application/json; charset=utf-8", "Application/JSON", None):
        parse(request(VECTOR_BODY, signature=VECTOR_SIGNATURE, content_type=content_type))


def test_signature_is_checked_before_the_body_is_read():
    with pytest.raises(SignatureMismatchError):
        parse(request(b"not json", signature=VECTOR_SIGNATURE))


# -- fuzz: only WebhookErrors or results; nothing unsigned is normalised ------------------------------

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
odd_text = st.text(alphabet=st.characters() | st.sampled_from(["\u0000", "\u202e", "\ufeff", "\ud800", "İ", "٣"]),
                   max_size=30)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
           | st.floats(allow_nan=True, allow_infinity=True) | odd_text)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(odd_text, c, max_size=4),
                           max_leaves=20)


def mostly(valid, *odd):
    anything = st.one_of(*odd, json_values)
    return st.integers(0, 9).flatmap(lambda n: valid if n else anything)


topics = st.sampled_from(sorted(klaviyo.USED_TOPICS) + ["dropped_email", "Opened Email"]).map(
    lambda t: "event:klaviyo." + t)
times = st.sampled_from(["2024-05-14T14:22:31+00:00", "2024-05-14 14:22:31", "2024-05-14T14:22:31Z",
                         "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday", ""])
klaviyo_entries = st.fixed_dictionaries(
    {"external_id": mostly(st.text(max_size=10)), "topic": mostly(topics)},
    optional={"payload": mostly(st.fixed_dictionaries(
        {"data": mostly(st.fixed_dictionaries(
            {"id": mostly(st.text(min_size=1, max_size=10)),
             "attributes": mostly(st.fixed_dictionaries({}, optional={
                 "datetime": mostly(times), "timestamp": json_values,
                 "event_properties": mostly(st.fixed_dictionaries({}, optional={
                     "$message": json_values, "URL": json_values, "Campaign Name": json_values,
                     "Bounce Type": mostly(st.sampled_from(["Hard", "Soft"])),
                     "$_cohort$message_send_cohort": json_values, "$event_id": json_values}))}))},
            optional={"relationships": mostly(st.just({"profile": {"data": {"id": "01HP"}}}))}))},
        optional={"included": mostly(st.lists(st.fixed_dictionaries(
            {"type": st.just("profile"), "id": mostly(st.just("01HP")),
             "attributes": mostly(st.fixed_dictionaries({}, optional={
                 "email": mostly(st.just("Ana@Example.com"), odd_text), "phone_number": json_values,
                 "first_name": json_values}))}), max_size=2))}))},
)
klaviyo_bodies = st.lists(klaviyo_entries, max_size=4).map(
    lambda entries: json.dumps(batch(*entries)).encode("utf-8", "surrogatepass"))
header_names = st.sampled_from(["content-type", "klaviyo-signature", "klaviyo-timestamp", "klaviyo-webhook-id"]) | \
    st.text(max_size=20).map(str.lower)
random_headers = st.dictionaries(header_names, odd_text | st.sampled_from([VECTOR_TIMESTAMP, WEBHOOK_ID, "application/json"]),
                                 max_size=6)


def parse_or_error(req: WebhookRequest, now: int = VECTOR_NOW) -> Normalised | WebhookError:
    try:
        result = parse(req, now=now)
    except WebhookError as exc:
        assert exc.reason
        return exc
    assert isinstance(result, Normalised)
    assert result.delivery_key.startswith("klaviyo#")
    for event in result.events:
        assert not event.identity.is_empty()
        assert event.occurred_at.utcoffset().total_seconds() == 0
        event.model_dump_json()  # publishable
    return result


@FUZZ
@given(body=st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")))
def test_signed_arbitrary_bodies_never_crash(body):
    parse_or_error(request(body))


@FUZZ
@given(body=klaviyo_bodies)
def test_signed_klaviyo_shaped_bodies_never_crash(body):
    parse_or_error(request(body))


@FUZZ
@given(body=klaviyo_bodies, data=st.data())
def test_truncated_signed_bodies_are_malformed(body, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    assert isinstance(parse_or_error(request(body[:cut])), MalformedPayloadError)


@FUZZ
@given(headers=random_headers, body=st.binary(max_size=200) | klaviyo_bodies, now=st.integers(-(2**40), 2**40))
def test_random_headers_never_crash_and_only_signed_bodies_are_normalised(headers, body, now):
    result = parse_or_error(WebhookRequest(method="POST", source="klaviyo", body=body, headers=headers), now=now)
    if isinstance(result, Normalised):
        expected = sign(body, headers["klaviyo-timestamp"])
        assert hmac.compare_digest(bytes.fromhex(headers["klaviyo-signature"].strip()), bytes.fromhex(expected))


@FUZZ
@given(body=klaviyo_bodies, signature=odd_text | st.binary(min_size=32, max_size=32).map(bytes.hex),
       timestamp=st.sampled_from([VECTOR_TIMESTAMP, "1715696553", "2024-05-14T14:22:33Z"]) | odd_text)
def test_wrong_signature_is_never_normalised(body, signature, timestamp):
    if signature.strip().lower() == sign(body, timestamp):
        return
    with pytest.raises(SignatureMismatchError):
        parse(request(body, signature=signature, timestamp=timestamp))


@FUZZ
@given(body=klaviyo_bodies, now=st.integers(-(2**40), 2**40))
def test_outside_the_window_is_never_normalised(body, now):
    result = parse_or_error(request(body), now=now)
    if abs(now - VECTOR_NOW) > 300:
        assert isinstance(result, SignatureMismatchError)


# -- the sample payloads shipped for segctl users -------------------------------------------------

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "events" / "klaviyo").glob("*.json"))


def test_sample_payloads_exist():
    assert {p.name for p in SAMPLES} >= {"received.json", "opened.json", "clicked.json", "bounced.json", "spam.json",
                                         "subscribed.json", "unsubscribed.json"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_payloads_normalise(path):
    body = path.read_bytes()
    webhook_id = json.loads(body)["meta"]["klaviyo_webhook_id"]
    result = parse(request(body, webhook_id=webhook_id))
    assert result.events and result.ignored_reason is None
    assert all(e.identity.email == "ana.lopez@example.com" for e in result.events)
