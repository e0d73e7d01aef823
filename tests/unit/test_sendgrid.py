"""SendGrid Event Webhook adapter: ECDSA signature and replay window (docs/webhooks.md#sendgrid),
normalisation of the batched events, and a fuzz property: nothing is normalised without a valid
signature."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.events import EmailProperties, EventType
from segmentation.sources import sendgrid
from segmentation.sources.errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SecretNotConfiguredError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Normalised, WebhookRequest

# -- SendGrid's own test vector (sendgrid-python test/unit/test_eventwebhook.py) -------------------

SG_PUBLIC_KEY = (b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRa"
                 b"INXvVpiglSI8eNEc6wEA3F+g==")
SG_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SG_TIMESTAMP = "1600112502"
SG_BODY = (
    b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
    b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
    b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
    b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]\r\n'
)
SG_BAD_SIGNATURE = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0="

# -- our own key pairs -----------------------------------------------------------------------------

PRIVATE = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def der_b64(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public key as the SendGrid console shows it: base64 DER SubjectPublicKeyInfo."""
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


NOW = 1715696600
STAMP = str(NOW)
KEYS = [der_b64(PRIVATE)]


def sign(body: bytes, timestamp: str = STAMP, key: ec.EllipticCurvePrivateKey = PRIVATE) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def request(body: bytes | list, *, signature: str | None = None, timestamp: str | None = STAMP,
            content_type: str | None = "application/json", method: str = "POST",
            key: ec.EllipticCurvePrivateKey = PRIVATE) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "content-type": content_type,
        "x-twilio-email-event-webhook-timestamp": timestamp,
        "x-twilio-email-event-webhook-signature": sign(raw, timestamp or "", key) if signature is None else signature,
        "user-agent": "SendGrid Event API",
    }
    return WebhookRequest(method=method, source="sendgrid", body=raw,
                          headers={k: v for k, v in headers.items() if v is not None})


def parse(req: WebhookRequest, now: int = NOW, keys: list[bytes] | None = None) -> Normalised:
    return sendgrid.parse(req, lambda name: list(KEYS if keys is None else keys), now)


def sg_event(kind: str, n: int = 1, *, email: str | None = "Ana@Example.com", ts: int = 1715696551,
             message: str | None = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", **extra) -> dict:
    event = {"email": email, "timestamp": ts, "event": kind, "sg_event_id": f"sg_event_id_{kind}_{n}",
             "sg_message_id": message, "category": ["newsletter", "may"], "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd>",
             **extra}
    return {k: v for k, v in event.items() if v is not None}


def only_event(result: Normalised):
    assert result.ignored_reason is None
    assert len(result.events) == 1
    return result.events[0]


# -- verify ----------------------------------------------------------------------------------------


def test_sendgrids_own_vector_verifies():
    sendgrid.verify([SG_PUBLIC_KEY], SG_BODY, SG_SIGNATURE, SG_TIMESTAMP, int(SG_TIMESTAMP))
    result = parse(request(SG_BODY, signature=SG_SIGNATURE, timestamp=SG_TIMESTAMP), now=int(SG_TIMESTAMP),
                   keys=[SG_PUBLIC_KEY])
    assert result.events == []  # a "dropped" event: acknowledged, not used
    assert result.ignored_reason == "ignored 1 of 1 events: dropped (1)"


@pytest.mark.parametrize(("body", "signature", "timestamp"), [
    (SG_BODY, SG_BAD_SIGNATURE, SG_TIMESTAMP),  # SendGrid's negative signature
    (b"payload", SG_SIGNATURE, SG_TIMESTAMP),
    (SG_BODY[:-3] + bytes([SG_BODY[-3] ^ 0x01]) + SG_BODY[-2:], SG_SIGNATURE, SG_TIMESTAMP),  # one flipped bit
    (SG_BODY, SG_SIGNATURE, "1600112503"),  # the timestamp is signed
])
def test_sendgrids_negative_cases_are_rejected(body, signature, timestamp):
    with pytest.raises(SignatureMismatchError) as exc:
        sendgrid.verify([SG_PUBLIC_KEY], body, signature, timestamp, int(SG_TIMESTAMP))
    assert exc.value.status == 401


def test_public_key_as_pem_is_accepted():
    parse(request([sg_event("open")]), keys=[pem(PRIVATE)])
    parse(request([sg_event("open")]), keys=[b"\n" + der_b64(PRIVATE)[:40] + b"\n" + der_b64(PRIVATE)[40:] + b"\n"])


@pytest.mark.parametrize("keys", [[der_b64(OTHER), der_b64(PRIVATE)], [pem(PRIVATE), der_b64(OTHER)]])
def test_either_key_verifies_during_rotation(keys):
    parse(request([sg_event("open")]), keys=keys)
    parse(request([sg_event("open")], key=OTHER), keys=keys)
    third = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureMismatchError):
        parse(request([sg_event("open")], key=third), keys=keys)


def test_wrong_key_is_rejected():
    with pytest.raises(SignatureMismatchError):
        parse(request([sg_event("open")], key=OTHER))


@pytest.mark.parametrize("signature", ["", "   ", "not base64!!", "ÿÿÿÿ", base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(),
                                       base64.b64encode(b"\x00" * 64).decode()])
def test_empty_or_garbled_signature_is_rejected(signature):
    with pytest.raises(SignatureMismatchError):
        parse(request([sg_event("open")], signature=signature))


def test_missing_signature_header_is_rejected():
    req = request([sg_event("open")])
    headers = {k: v for k, v in req.headers.items() if k != "x-twilio-email-event-webhook-signature"}
    with pytest.raises(SignatureMismatchError):
        parse(WebhookRequest(method="POST", source="sendgrid", body=req.body, headers=headers))


@pytest.mark.parametrize("timestamp", [None, "", "soon", "1715696600.5", "-1715696600", "١٧١٥٦٩٦٦٠٠"])
def test_missing_or_non_numeric_timestamp_is_rejected(timestamp):
    with pytest.raises(SignatureMismatchError):
        parse(request([sg_event("open")], timestamp=timestamp))


@pytest.mark.parametrize("value", [b"not a key", b"", b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----",
                                   base64.b64encode(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
                                       serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))])
def test_a_configured_value_that_is_not_an_ec_public_key_refuses_deliveries(value):
    with pytest.raises(SecretNotConfiguredError) as exc:
        parse(request([sg_event("open")]), keys=[value])
    assert exc.value.status == 401
    # ... but a valid key next to it still verifies
    parse(request([sg_event("open")]), keys=[value, der_b64(PRIVATE)])


# -- replay window -------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "accepted"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)])
def test_replay_window_is_300_seconds_either_side(offset, accepted):
    req = request([sg_event("open")])
    if accepted:
        assert len(parse(req, now=NOW + offset).events) == 1
    else:
        with pytest.raises(SignatureMismatchError):
            parse(req, now=NOW + offset)


def test_occurred_at_is_the_event_timestamp_not_the_delivery_time():
    late = NOW + 3 * 86_400
    event = only_event(parse(request([sg_event("open", ts=1715696551)], timestamp=str(late)), now=late))
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)


# -- normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "etype"), [
    ("delivered", EventType.EMAIL_DELIVERED), ("open", EventType.EMAIL_OPENED), ("click", EventType.EMAIL_CLICKED),
    ("bounce", EventType.EMAIL_BOUNCED), ("spamreport", EventType.EMAIL_SPAM),
    ("unsubscribe", EventType.EMAIL_UNSUBSCRIBED), ("group_unsubscribe", EventType.EMAIL_UNSUBSCRIBED),
])
def test_events_map_to_canonical_types(kind, etype):
    extra = {"url": "https://shop.example.com/p/8801"} if kind == "click" else {}
    if kind == "bounce":
        extra = {"type": "bounce", "reason": "550 5.1.1 unknown user", "status": "5.1.1"}
    event = only_event(parse(request([sg_event(kind, **extra)])))
    assert event.type == etype
    assert event.source == "sendgrid"
    assert event.identity.email == "ana@example.com"
    assert event.occurred_at == datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)
    assert isinstance(event.properties, EmailProperties)
    assert event.properties.message_id == "14c5d75ce93"
    assert event.properties.campaign == "newsletter,may"
    assert event.properties.url == ("https://shop.example.com/p/8801" if kind == "click" else None)


def test_delivered_and_open_of_one_message_share_the_message_id():
    result = parse(request([
        sg_event("delivered", message="LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"),
        sg_event("open", ts=1715697000, message="LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"),
        sg_event("open", 2, ts=1715698000, message="LRzXl_NHStOGhQ4kofSm_A"),
    ]))
    assert [e.type for e in result.events] == [EventType.EMAIL_DELIVERED, EventType.EMAIL_OPENED, EventType.EMAIL_OPENED]
    assert {e.properties.message_id for e in result.events} == {"LRzXl_NHStOGhQ4kofSm_A"}


@pytest.mark.parametrize(("kind", "extra", "reason"), [
    ("bounce", {"type": "blocked"}, "blocked bounce"), ("deferred", {}, "deferred"), ("processed", {}, "processed"),
    ("dropped", {}, "dropped"), ("group_resubscribe", {}, "group_resubscribe"), ("account_status_change", {}, "unknown event kind"),
])
def test_temporary_and_unused_events_are_ignored(kind, extra, reason):
    result = parse(request([sg_event(kind, **extra)]))
    assert result.events == []
    assert result.ignored_reason == f"ignored 1 of 1 events: {reason} (1)"


def test_marketing_campaign_name_is_preferred_over_category():
    event = only_event(parse(request([sg_event("open", marketing_campaign_name="May sale", category="promo")])))
    assert event.properties.campaign == "May sale"


def test_engagement_without_sg_message_id_is_ignored_but_suppression_is_kept():
    result = parse(request([sg_event("open", message=None), sg_event("unsubscribe", message=None)]))
    assert [e.type for e in result.events] == [EventType.EMAIL_UNSUBSCRIBED]
    assert result.ignored_reason == "ignored 1 of 2 events: open without sg_message_id (1)"


def test_event_without_email_is_ignored():
    result = parse(request([sg_event("open", email=None)]))
    assert result.events == []
    assert "no recipient email" in result.ignored_reason


def test_empty_batch_is_acknowledged():
    result = parse(request([]))
    assert result.events == []
    assert result.ignored_reason == "empty batch"


# -- dedupe ----------------------------------------------------------------------------------------


def test_same_delivery_twice_gives_the_same_key_and_event_ids():
    batch = [sg_event("delivered"), sg_event("open")]
    first, second = parse(request(batch)), parse(request(batch, timestamp=str(NOW + 60)), now=NOW + 60)
    assert first.delivery_key == second.delivery_key
    assert first.delivery_key.startswith("sendgrid#")
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]


def test_delivery_key_is_the_set_of_sg_event_ids():
    a, b = sg_event("delivered"), sg_event("open")
    assert parse(request([a, b])).delivery_key == parse(request([b, a])).delivery_key
    assert parse(request([a])).delivery_key != parse(request([a, b])).delivery_key
    # an event keeps its id whatever batch it is retried in
    assert parse(request([b])).events[0].event_id == parse(request([a, b])).events[1].event_id


def test_a_duplicate_inside_a_batch_is_emitted_once():
    assert len(parse(request([sg_event("open"), sg_event("open")])).events) == 1


# -- rejections ------------------------------------------------------------------------------------


MALFORMED = {
    "not JSON": b"not json",
    "empty body": b"",
    "object, not array": b'{"event": "open"}',
    "invalid UTF-8": b'[{"event": "\xff"}]',
    "entry not an object": b'["open"]',
    "timestamp a string": json.dumps([sg_event("open", ts="yesterday")]).encode(),
    "timestamp huge": json.dumps([sg_event("open", ts=10**30)]).encode(),
    "email a number": json.dumps([sg_event("open", email=42)]).encode(),
    "sg_message_id a number": json.dumps([sg_event("open", message=7)]).encode(),
    "url a list": json.dumps([sg_event("click", url=["x"])]).encode(),
    "unpaired surrogate": json.dumps([sg_event("open", message="\ud800.x")]).encode(),
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_signed_but_malformed_bodies_are_400(name):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(MALFORMED[name]))
    assert exc.value.status == 400
    assert "ana" not in exc.value.reason.lower()


def test_wrong_method_is_405():
    with pytest.raises(MethodNotAllowedError):
        parse(request([sg_event("open")], method="GET"))


def test_wrong_content_type_is_415_and_json_variants_are_accepted():
    with pytest.raises(UnsupportedMediaTypeError):
        parse(request([sg_event("open")], content_type="application/x-www-form-urlencoded"))
    for content_type in ("application/json; charset=utf-8", "APPLICATION/JSON", None):
        parse(request([sg_event("open")], content_type=content_type))


def test_signature_is_checked_before_the_body_is_read():
    with pytest.raises(SignatureMismatchError):
        parse(request(b"not json", signature=sign(b"something else")))


# -- fuzz: only WebhookErrors or results; nothing unsigned is normalised ------------------------------

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
odd_text = st.text(alphabet=st.characters() | st.sampled_from(["\u0000", "\u202e", "\ufeff", "\ud800", "İ", "٣", "."]),
                   max_size=30)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**300), max_value=10**300)
           | st.floats(allow_nan=True, allow_infinity=True) | odd_text)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(odd_text, c, max_size=4),
                           max_leaves=20)


def mostly(valid, *odd):
    anything = st.one_of(*odd, json_values)
    return st.integers(0, 9).flatmap(lambda n: valid if n else anything)


kinds = st.sampled_from(sorted(sendgrid.EVENT_TYPES) + sorted(sendgrid.IGNORED_EVENTS) + ["", "OPEN"])
sendgrid_entries = st.fixed_dictionaries(
    {"event": mostly(kinds)},
    optional={"email": mostly(st.sampled_from(["Ana@Example.com", "bo@example.org"]), odd_text),
              "timestamp": mostly(st.integers(1, 2**31), st.floats()),
              "sg_event_id": mostly(st.text(min_size=1, max_size=12)),
              "sg_message_id": mostly(st.sampled_from(["abc.filter1", "abc", ".x", ""]), odd_text),
              "type": mostly(st.sampled_from(["bounce", "blocked"])), "url": json_values, "category": json_values,
              "marketing_campaign_name": json_values},
)
sendgrid_bodies = st.lists(sendgrid_entries, max_size=4).map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass"))


def parse_or_error(req: WebhookRequest, now: int = NOW):
    try:
        result = parse(req, now=now)
    except WebhookError as exc:
        assert exc.reason
        return exc
    assert isinstance(result, Normalised)
    for event in result.events:
        assert not event.identity.is_empty()
        assert event.occurred_at.utcoffset().total_seconds() == 0
        event.model_dump_json()
    return result


@FUZZ
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")))
def test_signed_arbitrary_bodies_never_crash(body):
    parse_or_error(request(body))


@FUZZ
@given(body=sendgrid_bodies)
def test_signed_sendgrid_shaped_bodies_never_crash(body):
    parse_or_error(request(body))


@FUZZ
@given(body=sendgrid_bodies, data=st.data())
def test_truncated_signed_bodies_are_malformed(body, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    assert isinstance(parse_or_error(request(body[:cut])), MalformedPayloadError)


@FUZZ
@given(body=st.binary(max_size=200) | sendgrid_bodies,
       headers=st.dictionaries(st.sampled_from(["content-type", "x-twilio-email-event-webhook-signature",
                                                "x-twilio-email-event-webhook-timestamp"]) | st.text(max_size=20),
                               odd_text | st.sampled_from([STAMP, "application/json"]), max_size=5),
       now=st.integers(-(2**40), 2**40))
def test_random_headers_are_never_normalised(body, headers, now):
    assert isinstance(parse_or_error(WebhookRequest(method="POST", source="sendgrid", body=body, headers=headers),
                                     now=now), WebhookError)


@FUZZ
@given(body=sendgrid_bodies, data=st.data())
def test_a_signature_for_other_bytes_or_time_is_never_normalised(body, data):
    other_body = data.draw(st.binary(max_size=50).filter(lambda b: b != body))
    other_stamp = str(data.draw(st.integers(NOW - 300, NOW + 300).filter(lambda t: t != NOW)))
    for signature, stamp in ((sign(other_body), STAMP), (sign(body, other_stamp), STAMP), (sign(body, key=OTHER), STAMP)):
        with pytest.raises(SignatureMismatchError):
            parse(request(body, signature=signature, timestamp=stamp))


# -- the sample payloads shipped for segctl users -------------------------------------------------

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "events" / "sendgrid").glob("*.json"))


def test_sample_payloads_exist():
    assert {p.name for p in SAMPLES} >= {"delivered.json", "open.json", "click.json", "bounce.json", "spamreport.json",
                                         "unsubscribe.json", "batch.json"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_payloads_normalise(path):
    result = parse(request(path.read_bytes()))
    assert result.events
    assert {e.properties.message_id for e in result.events} == {"14c5d75ce93"}
