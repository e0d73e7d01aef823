"""Mailchimp Marketing audience webhooks: URL token, GET validation, form decoding and normalisation
(docs/webhooks.md#mailchimp; docs/contracts.md#webhook-routes, #time)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.events import CustomerProperties, EventType
from segmentation.sources import mailchimp
from segmentation.sources.errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SecretNotConfiguredError,
    SignatureMismatchError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from segmentation.sources.request import Handshake, Normalised, WebhookRequest

TOKEN = "mc_example_url_token_5f3c2a1b"
SECRETS = [TOKEN.encode()]
FORM = "application/x-www-form-urlencoded"
EVENTS_DIR = Path(__file__).resolve().parents[2] / "events" / "mailchimp"
FIRED = datetime(2024, 5, 14, 14, 22, 31, tzinfo=UTC)

# Field sets as Mailchimp documents them (docs/webhooks.md#mailchimp), in the order Mailchimp sends them.
SUBSCRIBE = [
    ("type", "subscribe"), ("fired_at", "2024-05-14 14:22:31"), ("data[id]", "8a25ff1d98"),
    ("data[list_id]", "a6b5da1054"), ("data[email]", "Ana.Lopez@Example.com"), ("data[email_type]", "html"),
    ("data[ip_opt]", "198.51.100.7"), ("data[web_id]", "3375995"),
    ("data[merges][EMAIL]", "Ana.Lopez@Example.com"), ("data[merges][FNAME]", "Ana"), ("data[merges][LNAME]", "Lopez"),
    ("data[merges][PHONE]", "+34 600 111 222"), ("data[merges][BIRTHDAY]", "05/14"),
    ("data[merges][INTERESTS]", "Linen, Summer sale"),
    ("data[merges][GROUPINGS][0][id]", "1"), ("data[merges][GROUPINGS][0][name]", "Topics"),
    ("data[merges][GROUPINGS][0][groups]", "Linen, Summer sale"),
]
UNSUBSCRIBE = [
    ("type", "unsubscribe"), ("fired_at", "2024-06-02 09:10:11"), ("data[action]", "unsub"),
    ("data[reason]", "manual"), ("data[id]", "8a25ff1d98"), ("data[list_id]", "a6b5da1054"),
    ("data[email]", "ana.lopez@example.com"), ("data[campaign_id]", "cb398d21d2"),
    ("data[merges][EMAIL]", "ana.lopez@example.com"), ("data[merges][FNAME]", "Ana"),
]
PROFILE = [
    ("type", "profile"), ("fired_at", "2024-05-20 08:00:05"), ("data[id]", "8a25ff1d98"),
    ("data[list_id]", "a6b5da1054"), ("data[email]", "ana.lopez@example.com"),
    ("data[merges][FNAME]", "Ana María"), ("data[merges][LNAME]", "López"), ("data[merges][MMERGE5]", "Madrid store"),
    ("data[merges][BIRTHDAY]", ""), ("data[merges][INTERESTS]", "Linen, Accessories"),
]
UPEMAIL = [
    ("type", "upemail"), ("fired_at", "2024-06-10 17:45:00"), ("data[list_id]", "a6b5da1054"),
    ("data[new_id]", "51aa6e0c55"), ("data[new_email]", "Ana.Lopez@NewMail.example"),
    ("data[old_email]", "Ana.Lopez@Example.com"),
]
CLEANED = [
    ("type", "cleaned"), ("fired_at", "2024-07-01 03:04:05"), ("data[list_id]", "a6b5da1054"),
    ("data[campaign_id]", "4fjk2ma9xd"), ("data[reason]", "hard"), ("data[email]", "bo.dead@example.org"),
]
CAMPAIGN = [
    ("type", "campaign"), ("fired_at", "2024-05-14 10:00:00"), ("data[id]", "5aa2102003"),
    ("data[subject]", "New linen is here"), ("data[status]", "sent"), ("data[reason]", ""),
    ("data[list_id]", "a6b5da1054"),
]


def form(pairs: list[tuple[str, str]], **changes: str | None) -> bytes:
    """The wire body (PHP http_build_query style: brackets percent-encoded, spaces as '+')."""
    fields = dict(pairs)
    for key, value in changes.items():
        key = key.replace("__", "][").replace("data_", "data[") + ("]" if key.startswith("data_") else "")
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return urlencode(list(fields.items())).encode()


def request(body: bytes | list, *, token: str | None = TOKEN, method: str = "POST",
            content_type: str | None = FORM, query: dict | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else form(body)
    headers = {"user-agent": "MailChimp.com"}
    if content_type is not None:
        headers["content-type"] = content_type
    q = dict(query or {})
    if token is not None:
        q["token"] = token
    return WebhookRequest(method=method, source="mailchimp", body=raw, headers=headers, query=q)


def parse(req: WebhookRequest, secrets: list[bytes] | None = None) -> Normalised | Handshake:
    return mailchimp.parse(req, lambda name: list(SECRETS if secrets is None else secrets), 0)


def only_event(result: Normalised):
    assert isinstance(result, Normalised)
    assert result.ignored_reason is None
    assert len(result.events) == 1
    return result.events[0]


# -- GET validation handshake ---------------------------------------------------------------------


@pytest.mark.parametrize("query", [{"token": TOKEN}, {}, {"token": "wrong"}])
def test_get_url_validation_is_answered_200_and_writes_nothing(query):
    req = WebhookRequest(method="GET", source="mailchimp", body=b"",
                         headers={"user-agent": "MailChimp.com WebHook Validator"}, query=query)
    reply = parse(req)
    assert isinstance(reply, Handshake)  # a Handshake never reaches dedupe or the bus
    assert reply.status == 200


def test_get_validation_needs_no_configured_secret():
    def no_secret(name):
        raise SecretNotConfiguredError("none")
    reply = mailchimp.parse(WebhookRequest(method="GET", source="mailchimp", body=b"", headers={}), no_secret, 0)
    assert isinstance(reply, Handshake) and reply.status == 200


@pytest.mark.parametrize("method", ["HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_405(method):
    with pytest.raises(MethodNotAllowedError) as exc:
        parse(request(SUBSCRIBE, method=method))
    assert exc.value.status == 405


# -- the URL token --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), " " + TOKEN,
                                   "\ud800", "ä" * 40])
def test_missing_or_wrong_token_is_401(token):
    with pytest.raises(SignatureMismatchError) as exc:
        parse(request(SUBSCRIBE, token=token))
    assert exc.value.status == 401


def test_token_in_another_query_parameter_is_not_accepted():
    with pytest.raises(SignatureMismatchError):
        parse(request(SUBSCRIBE, token=None, query={"key": TOKEN, "secret": TOKEN}))


def test_rejection_reason_never_contains_the_token_sent_or_configured():
    sent = "mc_guess_abcdef"
    with pytest.raises(SignatureMismatchError) as exc:
        parse(request(SUBSCRIBE, token=sent))
    assert sent not in exc.value.reason and TOKEN not in exc.value.reason


def test_token_is_checked_before_the_body_is_read():
    with pytest.raises(SignatureMismatchError):
        parse(request(b"\xff\xfe not a form", token="wrong"))
    with pytest.raises(SignatureMismatchError):
        parse(request(b"{}", token="wrong", content_type="application/json"))


def test_no_configured_secret_refuses_posts():
    def no_secret(name):
        assert name == "mailchimp"
        raise SecretNotConfiguredError("no secret configured for mailchimp")
    with pytest.raises(SecretNotConfiguredError) as exc:
        mailchimp.parse(request(SUBSCRIBE), no_secret, 0)
    assert exc.value.status == 401


@pytest.mark.parametrize("secrets", [[b"mc_new_token", TOKEN.encode()], [TOKEN.encode(), b"mc_new_token"]])
def test_either_token_verifies_during_rotation(secrets):
    assert only_event(parse(request(SUBSCRIBE), secrets)).type == EventType.CUSTOMER
    assert only_event(parse(request(SUBSCRIBE, token="mc_new_token"), secrets)).type == EventType.CUSTOMER
    with pytest.raises(SignatureMismatchError):
        parse(request(SUBSCRIBE, token="mc_third_token"), secrets)


def test_verify_token_compares_hashes_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(mailchimp.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    mailchimp.verify_token([b"old", TOKEN.encode()], TOKEN)
    assert len(calls) == 2  # every configured token is tried, no early exit
    assert all(len(a) == len(b) == 32 for a, b in calls)  # equal-length digests: no length leak
    assert calls[1][1] == hashlib.sha256(TOKEN.encode()).digest()


# -- content type ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"])
def test_other_content_types_are_415(content_type):
    with pytest.raises(UnsupportedMediaTypeError) as exc:
        parse(request(SUBSCRIBE, content_type=content_type))
    assert exc.value.status == 415


@pytest.mark.parametrize("content_type", [FORM, FORM + "; charset=UTF-8", "Application/X-WWW-Form-Urlencoded", None])
def test_form_content_type_variants_are_accepted(content_type):
    assert only_event(parse(request(SUBSCRIBE, content_type=content_type))).type == EventType.CUSTOMER


# -- normalisation --------------------------------------------------------------------------------


def test_subscribe_is_a_subscribed_customer_at_fired_at():
    event = only_event(parse(request(SUBSCRIBE)))
    assert event.type == EventType.CUSTOMER
    assert event.source == "mailchimp"
    assert event.shop == "a6b5da1054"
    assert event.occurred_at == FIRED
    assert event.identity.email == "ana.lopez@example.com"
    assert event.identity.customer_ids == {"mailchimp": "8a25ff1d98"}
    assert event.identity.phone == "+34600111222"
    props = event.properties
    assert isinstance(props, CustomerProperties)
    assert props.email_consent.state == "subscribed"
    assert props.email_consent.updated_at == FIRED
    assert (props.first_name, props.last_name) == ("Ana", "Lopez")
    assert props.attributes == {"interests": ["Linen", "Summer sale"], "birthday": "05/14"}


def test_contact_merges_and_groupings_never_become_attributes():
    attributes = only_event(parse(request(SUBSCRIBE))).properties.attributes
    for key in ("email", "phone", "fname", "lname", "groupings", "address"):
        assert key not in attributes
    assert "ana.lopez@example.com" not in str(attributes).lower()


def test_unsubscribe_sets_consent_unsubscribed():
    event = only_event(parse(request(UNSUBSCRIBE)))
    assert event.type == EventType.CUSTOMER
    assert event.properties.email_consent.state == "unsubscribed"
    assert event.occurred_at == datetime(2024, 6, 2, 9, 10, 11, tzinfo=UTC)
    assert event.properties.email_consent.updated_at == event.occurred_at
    assert event.identity.email == "ana.lopez@example.com"


def test_unsubscribe_with_delete_action_is_also_unsubscribed():
    event = only_event(parse(request(form(UNSUBSCRIBE, data_action="delete"))))
    assert event.properties.email_consent.state == "unsubscribed"


def test_cleaned_sets_consent_cleaned_without_a_member_id():
    event = only_event(parse(request(CLEANED)))
    assert event.properties.email_consent.state == "cleaned"
    assert event.identity.email == "bo.dead@example.org"
    assert event.identity.customer_ids == {}
    assert event.occurred_at == datetime(2024, 7, 1, 3, 4, 5, tzinfo=UTC)


def test_profile_update_changes_names_and_attributes_but_not_consent():
    event = only_event(parse(request(PROFILE)))
    props = event.properties
    assert props.email_consent is None
    assert (props.first_name, props.last_name) == ("Ana María", "López")
    assert props.attributes["interests"] == ["Linen", "Accessories"]
    assert props.attributes["mmerge5"] == "Madrid store"
    assert props.attributes["birthday"] is None  # an emptied merge field clears the attribute
    assert event.occurred_at == datetime(2024, 5, 20, 8, 0, 5, tzinfo=UTC)


def test_empty_interests_is_an_empty_list():
    event = only_event(parse(request(form(PROFILE, data_merges__INTERESTS=""))))
    assert event.properties.attributes["interests"] == []


def test_address_merge_keeps_city_state_country_only():
    body = form(PROFILE) + b"&" + urlencode([
        ("data[merges][ADDRESS][addr1]", "Calle Mayor 1"), ("data[merges][ADDRESS][city]", "Madrid"),
        ("data[merges][ADDRESS][state]", "Madrid"), ("data[merges][ADDRESS][zip]", "28013"),
        ("data[merges][ADDRESS][country]", "ES")]).encode()
    attributes = only_event(parse(request(body))).properties.attributes
    assert (attributes["city"], attributes["state"], attributes["country"]) == ("Madrid", "Madrid", "ES")
    assert "Calle Mayor 1" not in str(attributes) and "28013" not in str(attributes)


def test_upemail_is_the_new_email_with_the_previous_one_as_attribute():
    event = only_event(parse(request(UPEMAIL)))
    assert event.type == EventType.CUSTOMER
    assert event.identity.email == "ana.lopez@newmail.example"
    assert event.identity.customer_ids == {"mailchimp": "51aa6e0c55"}
    assert event.properties.attributes == {"previous_email": "ana.lopez@example.com"}
    assert event.properties.email_consent is None
    assert event.occurred_at == datetime(2024, 6, 10, 17, 45, tzinfo=UTC)


def test_campaign_event_is_acknowledged_with_no_events():
    result = parse(request(CAMPAIGN))
    assert result.events == []
    assert "campaign" in result.ignored_reason
    assert result.delivery_key.startswith("mailchimp#")


def test_unknown_type_is_acknowledged_with_no_events():
    result = parse(request(form(SUBSCRIBE, type="merge_tag_changed")))
    assert result.events == [] and result.ignored_reason


def test_member_event_without_email_or_id_is_ignored_not_an_error():
    result = parse(request(form(CLEANED, data_email=None)))
    assert result.events == [] and result.ignored_reason


def test_invalid_email_with_a_member_id_keeps_the_id():
    event = only_event(parse(request(form(SUBSCRIBE, data_email="not-an-email"))))
    assert event.identity.email is None
    assert event.identity.customer_ids == {"mailchimp": "8a25ff1d98"}


def test_fired_at_is_utc_and_not_the_delivery_time():
    for now in (0, 2_000_000_000):
        event = only_event(mailchimp.parse(request(SUBSCRIBE), lambda name: SECRETS, now))
        assert event.occurred_at == FIRED
        assert event.occurred_at.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(("fired_at", "expected"), [
    ("2024-05-14T14:22:31Z", FIRED),
    ("2024-05-14T16:22:31+02:00", FIRED),
    ("2024-05-14 14:22:31.999", FIRED),
])
def test_iso_fired_at_is_accepted_and_converted_to_utc(fired_at, expected):
    assert only_event(parse(request(form(SUBSCRIBE, fired_at=fired_at)))).occurred_at == expected


def test_percent_encoded_unicode_is_decoded():
    body = form(PROFILE, data_merges__FNAME="Zoë 李")
    assert b"Zo%C3%AB" in body
    assert only_event(parse(request(body))).properties.first_name == "Zoë 李"


# -- dedupe -------------------------------------------------------------------------------------


def test_same_delivery_twice_has_the_same_delivery_key_and_event_id():
    a, b = parse(request(SUBSCRIBE)), parse(request(SUBSCRIBE))
    assert a.delivery_key == b.delivery_key
    assert only_event(a).event_id == only_event(b).event_id
    assert a.delivery_key.startswith("mailchimp#")


def test_a_retry_with_fields_in_another_order_is_the_same_delivery():
    a = parse(request(SUBSCRIBE))
    b = parse(request(list(reversed(SUBSCRIBE))))
    assert a.delivery_key == b.delivery_key
    assert only_event(a).event_id == only_event(b).event_id


@pytest.mark.parametrize("change", [
    {"fired_at": "2024-05-14 14:22:32"}, {"type": "profile"}, {"data_list_id": "other_list"},
    {"data_id": "ffffffffff"},
])
def test_a_different_fact_has_a_different_delivery_key_and_event_id(change):
    a, b = parse(request(SUBSCRIBE)), parse(request(form(SUBSCRIBE, **change)))
    assert a.delivery_key != b.delivery_key
    assert only_event(a).event_id != only_event(b).event_id


def test_without_member_id_the_email_identifies_the_delivery():
    a = parse(request(CLEANED))
    b = parse(request(form(CLEANED, data_email="other@example.org")))
    assert a.delivery_key != b.delivery_key


def test_email_changes_to_different_addresses_are_different_deliveries():
    a = parse(request(UPEMAIL))
    b = parse(request(form(UPEMAIL, data_new_email="third@example.com", data_new_id="0000000001")))
    assert a.delivery_key != b.delivery_key


def test_the_token_is_not_part_of_the_delivery_key():
    result = parse(request(SUBSCRIBE))
    assert TOKEN not in result.delivery_key
    rotated = parse(request(SUBSCRIBE, token="mc_new"), [b"mc_new"])
    assert rotated.delivery_key == result.delivery_key


# -- malformed (token valid) --------------------------------------------------------------------


MALFORMED = {
    "empty body": b"",
    "missing type": form(SUBSCRIBE, type=None),
    "missing fired_at": form(SUBSCRIBE, fired_at=None),
    "fired_at not a time": form(SUBSCRIBE, fired_at="yesterday"),
    "fired_at impossible date": form(SUBSCRIBE, fired_at="2024-02-30 10:00:00"),
    "invalid UTF-8": b"type=subscribe&fired_at=2024-05-14+14%3A22%3A31&data%5Bemail%5D=\xff\xfe",
    "percent-encoded invalid UTF-8": b"type=subscribe&fired_at=2024-05-14+14%3A22%3A31&data%5Bemail%5D=%FF%FE",
    "type is a group": b"type%5Bx%5D=subscribe&fired_at=2024-05-14+14%3A22%3A31",
    "data is a value": b"type=subscribe&fired_at=2024-05-14+14%3A22%3A31&data=ana",
    "merges is a value": form(SUBSCRIBE) + b"&data%5Bmerges%5D=x",
    "email is a group": form(SUBSCRIBE, data_email=None) + b"&data%5Bemail%5D%5Ba%5D=x",
    "id too long": form(SUBSCRIBE, data_id="9" * 200),
    "key nested too deeply": form(SUBSCRIBE) + b"&data" + b"%5Ba%5D" * 20 + b"=1",
    "too many fields": b"&".join([b"type=subscribe"] + [b"x%d=1" % i for i in range(3000)]),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_with_a_valid_token_is_400(body):
    with pytest.raises(MalformedPayloadError) as exc:
        parse(request(body))
    assert exc.value.status == 400
    assert exc.value.reason
    assert "ana" not in exc.value.reason.lower()  # no PII echoed


def test_a_repeated_field_keeps_the_last_value_like_php():
    body = form(SUBSCRIBE) + b"&data%5Bmerges%5D%5BFNAME%5D=Anita"
    assert only_event(parse(request(body))).properties.first_name == "Anita"


# -- sample payloads for segctl users ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("subscribe", "subscribed"), ("unsubscribe", "unsubscribed"), ("cleaned", "cleaned"),
    ("profile", None), ("upemail", None),
])
def test_sample_payloads_normalise(name, expected):
    body = (EVENTS_DIR / f"{name}.txt").read_bytes()
    event = only_event(parse(request(body)))
    assert event.type == EventType.CUSTOMER
    consent = event.properties.email_consent
    assert (consent.state if consent else None) == expected


def test_sample_campaign_payload_is_ignored():
    result = parse(request((EVENTS_DIR / "campaign.txt").read_bytes()))
    assert result.events == [] and result.ignored_reason


# -- fuzz ---------------------------------------------------------------------------------------


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])
odd_text = st.text(
    alphabet=st.characters() | st.characters(categories=["Cc", "Cf", "Co", "Mn"])
    | st.sampled_from(["\u0000", "\u202e", "\ufeff", "[", "]", "&", "=", "%", "+", "İ", "٣", ":", "-"]),
    max_size=40,
)
keys = st.sampled_from([
    "type", "fired_at", "data[id]", "data[email]", "data[list_id]", "data[new_email]", "data[new_id]",
    "data[old_email]", "data[merges][FNAME]", "data[merges][INTERESTS]", "data[merges][PHONE]",
    "data[merges][ADDRESS][city]", "data[merges]", "data", "data[merges][GROUPINGS][0][groups]", "data[]",
    "data[merges][X][Y][Z]", "[x]", "a[b",
]) | odd_text
values = st.sampled_from([
    "subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign", "2024-05-14 14:22:31",
    "2024-05-14T14:22:31+14:00", "0001-01-01T00:00:00+01:00", "9999-12-31 23:59:59", "ana@example.com",
    "8a25ff1d98", "", "9" * 300,
]) | odd_text
forms = st.lists(st.tuples(keys, values), max_size=12)
methods = st.sampled_from(["POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "post", ""])
content_types = st.sampled_from([None, FORM, FORM + "; charset=utf-8", "application/json", "text/plain", ""]) | odd_text


def encode(pairs: list[tuple[str, str]]) -> bytes:
    # lone surrogates become percent-encoded bytes that are not UTF-8: the adapter must refuse them
    return urlencode(pairs, errors="surrogatepass").encode()


def outcome(req: WebhookRequest):
    try:
        result = mailchimp.parse(req, lambda name: list(SECRETS), 0)
    except WebhookError as exc:
        assert exc.reason and TOKEN not in exc.reason
        return exc
    assert isinstance(result, Normalised | Handshake)
    if isinstance(result, Normalised):
        assert result.delivery_key.startswith("mailchimp#")
        for event in result.events:
            assert event.source == "mailchimp" and not event.identity.is_empty()
            assert event.occurred_at.utcoffset().total_seconds() == 0 and event.occurred_at.microsecond == 0
            event.model_dump_json()  # the bus can carry it
    return result


@FUZZ
@given(body=st.binary(max_size=400))
def test_arbitrary_bytes_with_a_valid_token_never_crash(body):
    outcome(request(body))


@FUZZ
@given(pairs=forms)
def test_mailchimp_shaped_forms_never_crash(pairs):
    outcome(request(encode(pairs)))


@FUZZ
@given(pairs=forms, data=st.data())
def test_truncated_forms_never_crash(pairs, data):
    body = form(SUBSCRIBE) + b"&" + encode(pairs)
    outcome(request(body[: data.draw(st.integers(0, len(body)))]))


@FUZZ
@given(body=st.binary(max_size=200) | forms.map(encode) | st.just(form(SUBSCRIBE)),
       token=st.none() | st.text(max_size=40) | st.sampled_from([TOKEN[:-1], TOKEN.upper()]),
       method=methods, content_type=content_types,
       headers=st.dictionaries(st.text(max_size=20).map(str.lower), st.text(max_size=40), max_size=5),
       query=st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=3))
def test_nothing_is_normalised_without_the_token(body, token, method, content_type, headers, query):
    query = {k: v for k, v in query.items() if k != "token"}
    if token is not None:
        query["token"] = token
    if content_type is not None:
        headers["content-type"] = content_type
    result = outcome(WebhookRequest(method=method, source="mailchimp", body=body, headers=headers, query=query))
    if isinstance(result, Normalised):
        raise AssertionError("a delivery without the configured token was accepted")
    if isinstance(result, Handshake):
        assert method == "GET"
