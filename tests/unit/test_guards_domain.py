"""Guards the mutation check of issue 11 found unguarded, at the domain level.

Each test states what a customer (or the marketer looking at a segment) would notice if the guarded
line changed: a segment due at the very second an unrelated event arrives, an event right after a
catalog change, a refund undone by a late stale order version, an email open that does not count as
activity, a merge that loses counts, a signature check that stops at the first matching secret.

Profiles are built and evaluated as the profile service does: ``Profile.apply``, then a whole
evaluation, then ``record_evaluation``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from segmentation.domain import identity
from segmentation.domain.catalog import Catalog, load_catalog
from segmentation.domain.events import (
    BrowseProperties,
    CustomerEvent,
    EmailProperties,
    EventType,
    Identity,
    OrderProperties,
    RefundProperties,
)
from segmentation.domain.profile import Profile, iso


def _public(name: str):
    """A public name of the evaluation engine, wherever it lives (``domain/engine.py`` became the
    ``domain/evaluation/`` package)."""
    for module in ("segmentation.domain.evaluation", "segmentation.domain.engine", "segmentation.domain.profile"):
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    raise ImportError(f"{name} is in none of the engine's modules")


CatalogEvaluator = _public("CatalogEvaluator")
EVALUATOR = _public("default_evaluator")()

DAY = 86400
HOUR = 3600
T0 = 1_715_696_551  # 2024-05-14T14:22:31Z
RECENT = "recent-buyers"
AT_RISK = "at-risk"
INACTIVE = "inactive"


# -- builders ---------------------------------------------------------------------------------


def dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def order(order_id: str, at: int, total: str = "100.00", status: str = "placed", updated: int | None = None,
          shop: str = "shop") -> CustomerEvent:
    updated = at if updated is None else updated
    return CustomerEvent(
        event_id=CustomerEvent.make_id("shopify", shop, "order", order_id, dt(updated).isoformat(), status, total),
        source="shopify", type=EventType.ORDER, occurred_at=dt(at), shop=shop,
        identity=Identity(email="ana@example.com"),
        properties=OrderProperties(order_id=order_id, status=status, total=Decimal(total), currency="EUR",
                                   updated_at=dt(updated)),
    )


def refund(order_id: str, refund_id: str, at: int, amount: str, shop: str = "shop") -> CustomerEvent:
    return CustomerEvent(
        event_id=CustomerEvent.make_id("shopify", shop, "refund", order_id, refund_id),
        source="shopify", type=EventType.REFUND, occurred_at=dt(at), shop=shop,
        identity=Identity(email="ana@example.com"),
        properties=RefundProperties(order_id=order_id, refund_id=refund_id, amount=Decimal(amount), refunded_at=dt(at)),
    )


def browse(type_: EventType, at: int, price: str | None = None, n: int = 0) -> CustomerEvent:
    return CustomerEvent(
        event_id=CustomerEvent.make_id("segment", type_, at, price, n), source="segment", type=type_,
        occurred_at=dt(at), identity=Identity(email="ana@example.com"),
        properties=BrowseProperties(category="shirts", price=None if price is None else Decimal(price)),
    )


def email(type_: EventType, message: str, at: int) -> CustomerEvent:
    return CustomerEvent(
        event_id=CustomerEvent.make_id("mandrill", type_, message, at), source="mandrill", type=type_,
        occurred_at=dt(at), identity=Identity(email="ana@example.com"),
        properties=EmailProperties(message_id=message),
    )


def handle(profile: Profile, event: CustomerEvent, now: int, evaluator=EVALUATOR):
    """What the profile service does with one event: apply, prune, evaluate, record."""
    profile.apply(event, aliases=[])
    now = max(now, profile.evaluated_at or 0)
    profile.prune(now, evaluator.retention)
    result = evaluator.evaluate(profile, now)
    changes = profile.record_evaluation(
        set(result.segments), result.traits, result.next_due_at, now, cause=event.event_id,
        catalog_version=evaluator.version,
    )
    return result, changes


def sweep(profile: Profile, now: int) -> None:
    """What the sweep does with a due profile: evaluate at ``now``, record."""
    profile.prune(now, EVALUATOR.retention)
    result = EVALUATOR.evaluate(profile, now)
    profile.record_evaluation(set(result.segments), result.traits, result.next_due_at, now, "time",
                              catalog_version=EVALUATOR.version)


def full(profile: Profile, now: int):
    """A full evaluation (what a backfill, or a profile never evaluated before, gets)."""
    copy = profile.model_copy(deep=True)
    copy.prune(now, EVALUATOR.retention)
    return EVALUATOR.evaluate(copy, now)


# -- 1. an event arriving exactly at a segment's due instant ---------------------------------------


def test_an_unrelated_event_at_the_exact_second_a_segment_is_due_re_evaluates_that_segment():
    """A page view (which recent-buyers does not read) lands exactly 14 days after the purchase:
    the customer must leave Recent Buyers then, not keep the stored membership until the sweep."""
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0), T0)
    assert RECENT in profile.segments
    due = profile.next_due_at
    assert due == T0 + 14 * DAY  # recent-buyers ends first (at-risk only at 30 days)
    result, changes = handle(profile, browse(EventType.PAGE_VIEWED, due), due)
    assert RECENT not in result.segments
    assert (RECENT, "exited") in [(c.segment_id, c.change) for c in changes]
    assert result.segments == full(profile, due).segments  # the same as evaluating everything


def test_an_unrelated_event_one_second_before_the_due_instant_keeps_the_segment():
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0), T0)
    due = profile.next_due_at
    result, changes = handle(profile, browse(EventType.PAGE_VIEWED, due - 1), due - 1)
    assert RECENT in result.segments
    assert RECENT not in [c.segment_id for c in changes]
    assert profile.next_due_at == due  # still due at the same instant


# -- 2. the first event after a catalog change ---------------------------------------------------


def _catalog_with_recent_buyers_within(days: int):
    text = open(load_catalog().source).read()
    old = "event: {signal: order_placed, within: 14d}\n"
    assert old in text, "the default catalog's recent-buyers window moved; update this test"
    changed = text.replace(old, f"event: {{signal: order_placed, within: {days}d}}\n", 1)
    return CatalogEvaluator(Catalog.from_yaml(changed, f"recent-{days}d.yaml"))


def test_the_first_event_after_a_catalog_change_re_evaluates_every_segment_not_just_the_touched_ones():
    """Evaluated under an older catalog (Recent Buyers = 7 days), a customer who ordered 10 days ago
    is not a recent buyer. The shipped catalog says 14 days: the next event, even a page view that
    Recent Buyers does not read, must evaluate everything with the new catalog."""
    older = _catalog_with_recent_buyers_within(7)
    assert older.version != EVALUATOR.version
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0 - 10 * DAY), T0 - HOUR, evaluator=older)
    assert RECENT not in profile.segments and profile.catalog_version == older.version
    result, changes = handle(profile, browse(EventType.PAGE_VIEWED, T0), T0)
    assert RECENT in result.segments
    assert (RECENT, "entered") in [(c.segment_id, c.change) for c in changes]
    assert profile.catalog_version == EVALUATOR.version
    assert result.segments == full(profile, T0).segments


def test_an_event_under_the_same_catalog_version_keeps_a_membership_it_does_not_affect():
    """The counterpart: with the catalog unchanged, a page view leaves a recent buyer a recent buyer."""
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0 - 10 * DAY), T0 - HOUR)
    assert RECENT in profile.segments
    result, _ = handle(profile, browse(EventType.PAGE_VIEWED, T0), T0)
    assert RECENT in result.segments


# -- 3. order, then refund, then a late stale version of the order ---------------------------------


def test_a_full_refund_sticks_when_a_stale_version_of_the_order_arrives_late():
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0, total="100.00"), T0)
    assert RECENT in profile.segments and profile.traits["order_count"] == 1
    handle(profile, refund("o1", "r1", T0 + HOUR, "100.00"), T0 + HOUR)
    assert RECENT not in profile.segments and profile.traits["order_count"] == 0
    # An orders/updated delivery from before the refund (updated at T0 + 30 min) arrives last.
    stale = order("o1", T0, total="100.00", updated=T0 + 30 * 60)
    result, changes = handle(profile, stale, T0 + 2 * HOUR)
    assert result.traits["order_count"] == 0
    assert Decimal(result.traits["lifetime_value"]) == 0
    assert RECENT not in result.segments and changes == []


def test_a_partial_refund_sticks_when_a_stale_version_of_the_order_arrives_late():
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0, total="100.00"), T0)
    handle(profile, refund("o1", "r1", T0 + HOUR, "40.00"), T0 + HOUR)
    assert Decimal(profile.traits["lifetime_value"]) == Decimal("60.00")
    result, _ = handle(profile, order("o1", T0, total="100.00", updated=T0 + 30 * 60), T0 + 2 * HOUR)
    assert Decimal(result.traits["lifetime_value"]) == Decimal("60.00")
    assert result.traits["order_count"] == 1


def test_a_refund_already_reflected_by_an_order_version_of_the_same_second_is_not_subtracted_again():
    """Shopify sends orders/updated (its current total after the refund) stamped with the refund's
    own time; the refund delivered after it must not lower the revenue a second time."""
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0, total="100.00"), T0)
    handle(profile, order("o1", T0, total="60.00", updated=T0 + HOUR), T0 + HOUR)
    result, _ = handle(profile, refund("o1", "r1", T0 + HOUR, "40.00"), T0 + HOUR)
    assert Decimal(result.traits["lifetime_value"]) == Decimal("60.00")
    assert result.traits["order_count"] == 1


def test_an_order_version_newer_than_the_refund_still_replaces_it():
    """The guard is about stale versions only: a later edit of the order (its current total) wins."""
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0, total="100.00"), T0)
    handle(profile, refund("o1", "r1", T0 + HOUR, "40.00"), T0 + HOUR)
    result, _ = handle(profile, order("o1", T0, total="55.00", updated=T0 + 2 * HOUR), T0 + 2 * HOUR)
    assert Decimal(result.traits["lifetime_value"]) == Decimal("55.00")


# -- 4. email opens and clicks are activity --------------------------------------------------------


def _at_risk_subscriber() -> tuple[Profile, int]:
    """A customer whose last activity (an order) was 35 days ago, with an email delivered 2 days ago."""
    now = T0 + 35 * DAY
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0), T0)
    handle(profile, email(EventType.EMAIL_DELIVERED, "m1", now - 2 * DAY), now - 2 * DAY)
    sweep(profile, now)
    assert AT_RISK in profile.segments
    return profile, now


@pytest.mark.parametrize("kind", [EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED])
def test_an_at_risk_customer_who_opens_or_clicks_an_email_leaves_at_risk(kind):
    profile, now = _at_risk_subscriber()
    result, changes = handle(profile, email(kind, "m1", now), now)
    assert AT_RISK not in result.segments
    assert (AT_RISK, "exited") in [(c.segment_id, c.change) for c in changes]
    assert result.traits["last_activity_at"] == iso(now)


@pytest.mark.parametrize("kind", [EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED])
def test_opening_or_clicking_the_same_email_again_is_activity_too(kind):
    """Only the first open of a message counts toward open rates, but every open is activity: a
    customer who re-opens an old email 35 days after its first open is not at risk."""
    profile = Profile(profile_id="p1")
    handle(profile, email(EventType.EMAIL_DELIVERED, "m1", T0 - 5 * DAY), T0 - 5 * DAY)
    handle(profile, email(kind, "m1", T0), T0)  # the first open/click: the last activity so far
    later = T0 + 35 * DAY
    sweep(profile, later)
    assert AT_RISK in profile.segments
    result, changes = handle(profile, email(kind, "m1", later), later)
    assert AT_RISK not in result.segments
    assert (AT_RISK, "exited") in [(c.segment_id, c.change) for c in changes]
    assert result.traits["last_activity_at"] == iso(later)


@pytest.mark.parametrize("kind", [EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED])
def test_after_a_shops_data_is_erased_an_old_open_or_click_is_still_the_last_activity(kind):
    """shop/redact removes the shop's orders and recomputes the last activity from what is left: an
    email opened (or clicked) 70 days ago still counts, even once its message record is pruned, so
    the customer is Inactive rather than someone who never did anything."""
    profile = Profile(profile_id="p1")
    handle(profile, order("o1", T0 - 100 * DAY), T0 - 100 * DAY)
    handle(profile, email(EventType.EMAIL_DELIVERED, "m1", T0 - 95 * DAY), T0 - 95 * DAY)
    handle(profile, email(kind, "m1", T0 - 70 * DAY), T0 - 70 * DAY)
    profile.prune(T0, EVALUATOR.retention)
    assert profile.messages == {}  # the message is too old to be kept; its open is not forgotten
    identity.forget_origin(profile, "shopify", "shop")
    result = full(profile, T0)
    assert result.traits["order_count"] == 0
    assert result.traits["last_activity_at"] == iso(T0 - 70 * DAY)
    assert INACTIVE in result.segments


def test_a_delivered_email_alone_is_not_activity():
    """The counterpart: a delivery is not the customer doing anything."""
    profile, now = _at_risk_subscriber()
    result, _ = handle(profile, email(EventType.EMAIL_DELIVERED, "m2", now), now)
    assert AT_RISK in result.segments


# -- 5. merging two profiles sums their counters ---------------------------------------------------


def _profile(pid: str, *events: CustomerEvent) -> Profile:
    profile = Profile(profile_id=pid)
    for event in events:
        profile.apply(event, aliases=[f"email#{pid}@example.com"])
    return profile


def test_merging_two_profiles_sums_their_lifetime_counters_and_keeps_the_extremes():
    # product_viewed: the absorbed profile holds the lowest and the highest price, the earliest and latest view.
    # product_added: the absorbing profile holds them. page_viewed: only the absorbed one has any.
    keep = _profile("keep",
                    browse(EventType.PRODUCT_VIEWED, T0, "10.00"), browse(EventType.PRODUCT_VIEWED, T0 + 100, "30.00"),
                    browse(EventType.PRODUCT_ADDED, T0 + 10, "1.00"), browse(EventType.PRODUCT_ADDED, T0 + 300, "100.00"))
    gone = _profile("gone",
                    browse(EventType.PRODUCT_VIEWED, T0 - 50, "5.00"), browse(EventType.PRODUCT_VIEWED, T0 + 200, "50.00"),
                    browse(EventType.PRODUCT_ADDED, T0 + 150, "20.00"), browse(EventType.PAGE_VIEWED, T0 - 500))
    identity.merge(keep, gone)

    viewed = keep.totals["product_viewed"]
    assert (viewed.n, viewed.sum, viewed.min, viewed.max) == (4, Decimal("95.00"), Decimal("5.00"), Decimal("50.00"))
    added = keep.totals["product_added"]
    assert (added.n, added.sum, added.min, added.max) == (3, Decimal("121.00"), Decimal("1.00"), Decimal("100.00"))
    page = keep.totals["page_viewed"]
    assert (page.n, page.min, page.max) == (1, None, None)

    assert (keep.first_at["product_viewed"], keep.last_at["product_viewed"]) == (T0 - 50, T0 + 200)
    assert (keep.first_at["product_added"], keep.last_at["product_added"]) == (T0 + 10, T0 + 300)
    assert (keep.first_at["page_viewed"], keep.last_at["page_viewed"]) == (T0 - 500, T0 - 500)
    assert keep.first_seen_at == T0 - 500
    assert keep.browse["product_viewed"].t == [T0 - 50, T0, T0 + 100, T0 + 200]

    traits = full(keep, T0 + 400).traits
    assert traits["first_seen_at"] == iso(T0 - 500)
    assert traits["last_activity_at"] == iso(T0 + 300)
    assert keep.merged_from == ["gone"] and "email#gone@example.com" in keep.aliases


def test_merging_counts_an_order_both_profiles_saw_once_in_its_latest_state():
    # o1: both saw it, the absorbed profile has the newer version. o3: the absorbing profile saw it
    # cancelled, the absorbed one only its older placed version: it stays cancelled.
    keep = _profile("keep", order("o1", T0, total="80.00"),
                    order("o3", T0, total="70.00", status="cancelled", updated=T0 + HOUR))
    gone = _profile("gone", order("o1", T0, total="80.00", updated=T0 + 60), order("o2", T0 + DAY, total="20.00"),
                    order("o3", T0, total="70.00"))
    identity.merge(keep, gone)
    traits = full(keep, T0 + 2 * DAY).traits
    assert traits["order_count"] == 2
    assert Decimal(traits["lifetime_value"]) == Decimal("100.00")


# -- 6. signature comparison is constant time ------------------------------------------------------


def _hmac_matches():
    return importlib.import_module("segmentation.sources.request").hmac_matches




@pytest.mark.parametrize("digest", [hashlib.sha256, hashlib.sha1])
def test_every_configured_secret_is_compared_even_when_the_first_matches(compare_calls, digest):
    body = b'{"id": 1}'
    secrets = [b"current-secret", b"previous-secret", b"third-secret"]
    signature = hmac.new(secrets[0], body, digest).digest()
    assert _hmac_matches()(secrets, body, signature, digest) is True
    assert compare_calls == [True, False, False]  # no early exit: timing does not tell which one matched


def test_a_signature_of_the_last_secret_matches_after_comparing_all(compare_calls):
    hmac_matches = _hmac_matches()
    secrets = [b"a-secret", b"b-secret"]
    assert hmac_matches(secrets, b"body", hmac.new(secrets[1], b"body", hashlib.sha256).digest()) is True
    assert compare_calls == [False, True]
    compare_calls.clear()
    assert hmac_matches(secrets, b"body", hmac.new(b"other", b"body", hashlib.sha256).digest()) is False
    assert compare_calls == [False, False]
