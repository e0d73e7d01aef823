"""Issue 10: the accepted values, at the unit level — event time range, non-negative amounts and
quantities (sources/fields.py), and the email policy (domain/events.py normalise_email)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from segmentation.domain.events import (
    CustomerEvent,
    CustomerProperties,
    EventType,
    Identity,
    normalise_email,
)
from segmentation.sources import fields

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z, the arrival of the delivery being read
AT_NOW = datetime.fromtimestamp(NOW, UTC)


# -- times ------------------------------------------------------------------------------------------------


def test_the_range_is_2000_to_one_day_after_arrival():
    with fields.receiving_at(NOW):
        assert fields.utc_time("2000-01-01T00:00:00Z", "t") == datetime(2000, 1, 1, tzinfo=UTC)
        assert fields.utc_time((AT_NOW + timedelta(days=1)).isoformat(), "t") == AT_NOW + timedelta(days=1)
        with pytest.raises(ValueError, match=r"^t is before the accepted range \(2000-01-01T00:00:00Z or later\)$"):
            fields.utc_time("1999-12-31T23:59:59Z", "t")
        with pytest.raises(ValueError, match=r"^t is after the accepted range \(at most 1 day ahead of now\)$"):
            fields.utc_time((AT_NOW + timedelta(days=1, seconds=1)).isoformat(), "t")


def test_the_range_follows_the_arrival_not_the_wall_clock():
    late = "2090-06-01T00:00:00Z"
    with fields.receiving_at(int(datetime(2090, 6, 1, tzinfo=UTC).timestamp())):
        assert fields.utc_time(late, "t").year == 2090
    with pytest.raises(ValueError, match="after the accepted range"):
        fields.utc_time(late, "t")  # no arrival given: the wall clock, decades before 2090


@pytest.mark.parametrize(("value", "side"), [
    ("9999-12-31T23:59:59Z", "after"), ("9999-12-31T23:59:59-01:00", "after"),  # the latter is year 10000 in UTC
    ("0001-01-01T00:00:00+01:00", "before"), ("0001-01-01 00:00:00", "before"), ("1970-01-01T00:00:00Z", "before"),
])
def test_extreme_iso_times_are_out_of_range_not_a_fault(value, side):
    with fields.receiving_at(NOW), pytest.raises(ValueError, match=f"^when is {side} the accepted range"):
        fields.utc_time(value, "when")


@pytest.mark.parametrize(("value", "message"), [
    (946684800, None), (NOW + 86400, None), (NOW + 86400.5, "after"), (946684799, "before"), (0, "before"),
    (-62135596800, "before"), (253402300799, "after"), (10**20, "after"), (float("inf"), "after"),
    (float("-inf"), "before"), (float("nan"), "must be epoch seconds"), (True, "must be epoch seconds"),
    ("1715696551", "must be epoch seconds"), (None, "must be epoch seconds"),
])
def test_epoch_times_go_through_the_same_range(value, message):
    with fields.receiving_at(NOW):
        if message is None:
            assert fields.epoch_time(value, "ts") == datetime.fromtimestamp(int(value), UTC)
        else:
            with pytest.raises(ValueError, match=f"^ts (is )?{message}"):
                fields.epoch_time(value, "ts")


def test_the_canonical_event_refuses_a_time_before_2000():
    def event(at: datetime) -> CustomerEvent:
        return CustomerEvent(event_id="e", source="test", type=EventType.CUSTOMER, occurred_at=at,
                             identity=Identity(user_id="u"), properties=CustomerProperties())

    assert event(datetime(2000, 1, 1, tzinfo=UTC)).occurred_at.year == 2000
    with pytest.raises(ValidationError, match="occurred_at is before 2000-01-01"):
        event(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))


# -- amounts and quantities ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1000.00", -0.01, -1, "-1e3"])
def test_a_negative_amount_is_refused_unless_the_field_is_signed(value):
    with pytest.raises(ValueError, match="^total must not be negative$"):
        fields.money(value, "total")
    assert fields.money(value, "refunds.total", signed=True) == Decimal(str(value))


@pytest.mark.parametrize(("value", "amount"), [("0", Decimal(0)), ("-0.00", Decimal(0)), (None, Decimal(0)),
                                               ("59.90", Decimal("59.90")), (12, Decimal(12))])
def test_zero_and_positive_amounts_are_kept(value, amount):
    assert fields.money(value, "total") == amount


@pytest.mark.parametrize(("value", "expected"), [(0, 0), ("0", 0), (3, 3), ("2.0000", 2), (None, 1), ("", 1),
                                                 (-1, None), ("-1.0000", None), (-0.5, None)])
def test_quantities_are_zero_or_more(value, expected):
    if expected is None:
        with pytest.raises(ValueError, match="^qty must not be negative$"):
            fields.quantity(value, "qty")
    else:
        assert fields.quantity(value, "qty") == expected


# -- emails -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "stored"), [
    ("Ana.Lopez@Example.COM", "ana.lopez@example.com"),
    ("  bo@example.org\n", "bo@example.org"),
    ("ana+news@example.com", "ana+news@example.com"),
    ("MÜLLER@Example.DE", "müller@example.de"),  # internationalised: kept
    ("mu\u0308ller@example.de", "müller@example.de"),  # decomposed ü: composed (NFC), as it is stored
    ("ana@münchen.de", "ana@münchen.de"),
    ("用户@例子.广告", "用户@例子.广告"),
])
def test_addresses_are_kept_lower_cased_and_composed(raw, stored):
    assert normalise_email(raw) == stored
    assert Identity(email=raw).email == stored


@pytest.mark.parametrize("raw", [
    "ana\x00@example.com",  # NUL
    "a\u200bna@example.com", "ana@exa\u200bmple.com",  # zero-width space
    "ana\u202e@example.com", "\u202dana@example.com",  # bidi overrides
    "ana\u2060@example.com", "ana\ufeff@example.com", "ana\u00ad@example.com",  # joiners, BOM, soft hyphen
    "ana\U0001F600@example.com", "\U0001F44D\U0001F3FD@example.com",  # emoji, with a skin tone
    "\U0001F468\u200d\U0001F469\u200d\U0001F467@example.com", "\U0001F1EA\U0001F1F8@example.com",  # ZWJ, flag
    "1\ufe0f\u20e3@example.com", "\u2764\ufe0f@example.com", "ana\u00a9@example.com", "ana\u2122@example.com",
    "ana@\U0001F600.com",
    "not-an-address", "ana@", "@example.com", "ana@localhost", "a b@example.com", "ana@@example.com",
    "ana@example..com", "x" * 300 + "@example.com", "", "   ",
])
def test_what_cannot_be_an_address_is_dropped(raw):
    assert normalise_email(raw) is None
    assert Identity(email=raw, user_id="u").email is None  # the rest of the identity stays
    assert Identity(email=raw, user_id="u").user_id == "u"


def test_text_that_is_not_unicode_is_refused_like_any_field():
    with pytest.raises(ValueError, match="not valid Unicode"):
        normalise_email("ana\ud800@example.com")


UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def looks_safe(address: str) -> bool:
    return all(unicodedata.category(c) not in UNSAFE for c in address) and not any(
        not c.isascii() and (unicodedata.category(c)[0] == "S" or unicodedata.category(c) == "Me"
                             or "\ufe00" <= c <= "\ufe0f") for c in address)


# Mostly plausible addresses (so that many are accepted and checked), each with one odd character at most:
# anything from Unicode, or one of the kinds the policy is about.
plain_part = st.text(st.sampled_from("abcxyzABC019.+-_ÄüßİσΣ"), min_size=1, max_size=8)
odd_char = st.just("") | st.characters(codec="utf-8") | st.sampled_from(
    ["\u0308", "\u200b", "\u202e", "\x00", "\U0001F600", "\ufe0f", "\u20e3", "\u00a9", "\u3000", "\U0001F3FD"])
locals_ = st.builds(lambda a, odd, b: a + odd + b, plain_part, odd_char, st.just("") | plain_part)
domains = st.sampled_from(["example.com", "Example.COM", "münchen.de", "例子.广告", "exa\u200bmple.com"]) | st.builds(
    lambda a, odd: a + odd + ".com", st.text(st.sampled_from("abcxyz-ü"), min_size=1, max_size=6), odd_char)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains) | st.text(max_size=30)

@given(addresses)
def test_an_accepted_email_is_lower_case_printable_emoji_free_and_stable(raw):
    stored = normalise_email(raw)
    if stored is None:
        return
    assert looks_safe(stored), ascii(stored)
    assert stored == stored.lower()
    assert stored == unicodedata.normalize("NFC", stored)
    assert normalise_email(stored) == stored  # normalising twice changes nothing
    shouted = "".join(c.upper() if c.isascii() else c for c in raw)
    assert normalise_email(shouted) == stored  # case does not matter (ASCII: Unicode's upper() turns ß into SS)


@given(st.text(max_size=40))
def test_any_text_is_an_address_or_none_never_an_error(raw):
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return
    stored = normalise_email(raw)
    assert stored is None or (looks_safe(stored) and normalise_email(stored) == stored)


def test_ingest_checks_times_against_its_own_clock():
    """WebhookIngest reads each delivery with its clock as the arrival: a test (or replay) clock in 2090
    takes a 2090 event, which the wall clock would call the future."""
    import hashlib
    import hmac
    import json

    from segmentation.service.ingest import WebhookIngest
    from segmentation.sources.request import WebhookRequest

    class Secrets:
        def for_source(self, name):
            return [b"s3cret"]

    published = []

    class Publisher:
        def publish_events(self, events):
            published.extend(events)

    arrival = int(datetime(2090, 6, 1, tzinfo=UTC).timestamp())
    ingest = WebhookIngest(Secrets(), Publisher(), 65536, clock=lambda: arrival)

    def deliver(when: str):
        body = json.dumps({"type": "page", "userId": "u1", "messageId": when, "timestamp": when}).encode()
        signature = hmac.new(b"s3cret", body, hashlib.sha1).hexdigest()
        return ingest.handle(WebhookRequest("POST", "segment", body, {"x-signature": signature,
                                                                      "content-type": "application/json"}))

    assert deliver("2090-06-01T12:00:00Z").status == 200
    assert [e.occurred_at.year for e in published] == [2090]
    late = deliver("2090-06-02T00:00:01Z")
    assert (late.status, late.body["reason"]) == (400, "timestamp is after the accepted range (at most 1 day ahead of now)")
