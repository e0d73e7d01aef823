"""Purchase-segment boundaries of the default catalog (docs/contracts.md#time,
docs/segments.md#the-default-catalog-and-why)
and the Profile state they read.

All times are integer epoch seconds. Profiles are built by applying CustomerEvents exactly as the
services do (``Profile.apply``), then evaluated as ``ProfileService`` does: pruned to the catalog's
retention at ``now`` and evaluated with ``default_evaluator().evaluate(profile, now)``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from segmentation.domain import identity
from segmentation.domain.evaluation import default_evaluator
from segmentation.domain.events import (
    CheckoutProperties,
    CustomerEvent,
    EventType,
    Identity,
    OrderProperties,
)
from segmentation.domain.profile import (
    APPLIED_ID_CHARS,
    RECENT_EVENTS_KEPT,
    RECENT_EVENTS_KEPT_S,
    MembershipChange,
    MessageRecord,
    Profile,
    applied_key,
    due_entry,
)
from segmentation.domain.segments import Evaluation

DAY = 86400
HOUR = 3600
T0 = 1_715_696_551  # 2024-05-14T14:22:31Z
T0_ISO = "2024-05-14T14:22:31Z"
RECENT = "recent-buyers"
REPEAT = "repeat-buyers"
HIGH_VALUE = "high-value"
CART = "cart-abandoners"
AT_RISK = "at-risk"
INACTIVE = "inactive"
PURCHASE_IDS = {RECENT, REPEAT, HIGH_VALUE, CART}
EVALUATOR = default_evaluator()


# -- builders ---------------------------------------------------------------------------------


def dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def order(order_id: str, at: int, total: str = "10.00", status: str = "placed",
          updated: int | None = None) -> CustomerEvent:
    """One version of an order, as the Shopify adapter builds it (occurred_at = created_at)."""
    updated = at if updated is None else updated
    return CustomerEvent(
        event_id=CustomerEvent.make_id("shopify", "shop", "order", order_id, dt(updated).isoformat(), status),
        source="shopify", type=EventType.ORDER, occurred_at=dt(at), shop="shop",
        identity=Identity(email="ana@example.com"),
        properties=OrderProperties(order_id=order_id, status=status, total=Decimal(total),
                                   currency="EUR", updated_at=dt(updated)),
    )


def checkout(checkout_id: str, started: int, completed_at: int | None = None,
             updated: int | None = None) -> CustomerEvent:
    """One version of a checkout (occurred_at = the checkout's created_at, i.e. its start)."""
    updated = started if updated is None else updated
    return CustomerEvent(
        event_id=CustomerEvent.make_id("shopify", "shop", "checkout", checkout_id, dt(updated).isoformat()),
        source="shopify", type=EventType.CHECKOUT, occurred_at=dt(started), shop="shop",
        identity=Identity(email="ana@example.com"),
        properties=CheckoutProperties(checkout_id=checkout_id, updated_at=dt(updated),
                                      completed_at=None if completed_at is None else dt(completed_at)),
    )


def profile_of(*events: CustomerEvent) -> Profile:
    profile = Profile(profile_id="p1")
    for event in events:
        profile.apply(event, aliases=[])
    return profile


def evaluate(profile: Profile, now: int) -> Evaluation:
    """Evaluate as ProfileService does: prune to the catalog's retention at ``now``, then evaluate.

    The pruning happens on a copy, so one profile can be evaluated at several instants. The unpruned
    profile must evaluate the same: pruning only drops state that cannot matter at or after ``now``.
    """
    pruned = profile.model_copy(deep=True)
    pruned.prune(now, EVALUATOR.retention)
    ev = EVALUATOR.evaluate(pruned, now)
    assert EVALUATOR.evaluate(profile, now) == ev
    return ev


def segments_at(profile: Profile, now: int) -> frozenset[str]:
    return evaluate(profile, now).segments


# -- catalog ----------------------------------------------------------------------------------


def test_catalog_defines_the_four_purchase_segments_as_plain_segments():
    definitions = {d.id: d for d in EVALUATOR.definitions()}
    assert PURCHASE_IDS <= set(definitions)
    assert not any(definitions[sid].family for sid in PURCHASE_IDS)


def test_empty_profile_is_in_no_segment_and_has_nothing_due():
    ev = evaluate(Profile(profile_id="p1"), T0)
    assert ev.segments == frozenset()
    assert ev.next_due_at is None
    assert ev.traits["order_count"] == 0
    assert Decimal(ev.traits["lifetime_value"]) == 0
    assert ev.traits["last_order_at"] is None
    assert ev.traits["last_activity_at"] is None


# -- recent-buyers ----------------------------------------------------------------------------


def test_recent_buyer_one_second_before_14_days_is_in():
    assert RECENT in segments_at(profile_of(order("o1", T0)), T0 + 14 * DAY - 1)


def test_recent_buyer_exactly_14_days_old_is_out():
    assert RECENT not in segments_at(profile_of(order("o1", T0)), T0 + 14 * DAY)


def test_recent_buyer_in_at_the_instant_of_the_order():
    assert RECENT in segments_at(profile_of(order("o1", T0)), T0)


def test_recent_buyer_window_follows_the_latest_order():
    profile = profile_of(order("o1", T0), order("o2", T0 + 5 * DAY))
    assert RECENT in segments_at(profile, T0 + 14 * DAY)
    assert RECENT in segments_at(profile, T0 + 19 * DAY - 1)
    assert RECENT not in segments_at(profile, T0 + 19 * DAY)
    assert evaluate(profile, T0 + 6 * DAY).next_due_at == T0 + 19 * DAY


@pytest.mark.parametrize("status", ["cancelled", "refunded"])
def test_cancelled_or_refunded_order_does_not_make_a_recent_buyer(status):
    assert RECENT not in segments_at(profile_of(order("o1", T0, status=status)), T0 + 60)


def test_recent_buyer_next_due_at_is_order_time_plus_14_days():
    profile = profile_of(order("o1", T0))
    for now in (T0, T0 + 1, T0 + 7 * DAY, T0 + 14 * DAY - 1):
        assert evaluate(profile, now).next_due_at == T0 + 14 * DAY


def test_recent_buyer_evaluating_at_next_due_at_changes_membership_and_one_second_before_does_not():
    profile = profile_of(order("o1", T0))
    due = evaluate(profile, T0 + 60).next_due_at
    assert RECENT in segments_at(profile, due - 1)
    assert RECENT not in segments_at(profile, due)


# -- repeat-buyers ----------------------------------------------------------------------------


def test_one_order_is_not_a_repeat_buyer():
    assert REPEAT not in segments_at(profile_of(order("o1", T0)), T0 + 60)


def test_two_orders_make_a_repeat_buyer_for_life():
    profile = profile_of(order("o1", T0), order("o2", T0 + DAY))
    assert REPEAT in segments_at(profile, T0 + DAY)
    assert REPEAT in segments_at(profile, T0 + 1000 * DAY)


@pytest.mark.parametrize("status", ["cancelled", "refunded"])
def test_cancelled_or_refunded_order_does_not_count_toward_repeat(status):
    profile = profile_of(order("o1", T0), order("o2", T0 + DAY, status=status))
    ev = evaluate(profile, T0 + 2 * DAY)
    assert REPEAT not in ev.segments
    assert ev.traits["order_count"] == 1


def test_same_order_via_create_then_updated_counts_once():
    create = order("o1", T0, total="300.00", updated=T0)
    updated = order("o1", T0, total="300.00", updated=T0 + 120)  # orders/updated: same order, newer version
    assert create.event_id != updated.event_id
    ev = evaluate(profile_of(create, updated), T0 + HOUR)
    assert ev.traits["order_count"] == 1
    assert Decimal(ev.traits["lifetime_value"]) == Decimal("300.00")
    assert REPEAT not in ev.segments
    assert HIGH_VALUE not in ev.segments


def test_same_order_event_applied_twice_counts_once():
    event = order("o1", T0, total="300.00")
    ev = evaluate(profile_of(event, event), T0 + HOUR)
    assert ev.traits["order_count"] == 1
    assert Decimal(ev.traits["lifetime_value"]) == Decimal("300.00")
    assert REPEAT not in ev.segments


# -- high-value -------------------------------------------------------------------------------


def test_lifetime_revenue_499_99_is_not_high_value():
    assert HIGH_VALUE not in segments_at(profile_of(order("o1", T0, total="499.99")), T0 + 60)


def test_lifetime_revenue_exactly_500_is_high_value():
    assert HIGH_VALUE in segments_at(profile_of(order("o1", T0, total="500.00")), T0 + 60)


def test_high_value_sums_orders_and_is_lifetime():
    profile = profile_of(order("o1", T0, total="250.00"), order("o2", T0 + DAY, total="250.00"))
    assert HIGH_VALUE in segments_at(profile, T0 + DAY)
    assert HIGH_VALUE in segments_at(profile, T0 + 1000 * DAY)


@pytest.mark.parametrize("status", ["cancelled", "refunded"])
def test_cancelled_or_refunded_revenue_does_not_count(status):
    profile = profile_of(order("o1", T0, total="300.00"), order("o2", T0 + DAY, total="300.00", status=status))
    ev = evaluate(profile, T0 + 2 * DAY)
    assert HIGH_VALUE not in ev.segments
    assert Decimal(ev.traits["lifetime_value"]) == Decimal("300.00")


def test_order_cancelled_later_leaves_high_value_and_repeat():
    placed = order("o2", T0 + DAY, total="300.00", updated=T0 + DAY)
    cancelled = order("o2", T0 + DAY, total="300.00", status="cancelled", updated=T0 + 2 * DAY)
    before = profile_of(order("o1", T0, total="300.00"), placed)
    assert {HIGH_VALUE, REPEAT} <= segments_at(before, T0 + 2 * DAY)
    after = profile_of(order("o1", T0, total="300.00"), placed, cancelled)
    assert not ({HIGH_VALUE, REPEAT} & segments_at(after, T0 + 2 * DAY))


# -- out-of-order versions --------------------------------------------------------------------


def test_the_same_order_id_from_two_shops_or_platforms_is_two_orders():
    a = order("1001", T0, total="100.00")
    b = order("1001", T0 + HOUR, total="200.00").model_copy(update={"shop": "other-shop"})
    woo = order("1001", T0 + 2 * HOUR, total="300.00").model_copy(update={"source": "woocommerce"})
    ev = evaluate(profile_of(a, b, woo, a), T0 + 3 * HOUR)  # and the first delivered twice
    assert ev.traits["order_count"] == 3
    assert Decimal(ev.traits["lifetime_value"]) == 600


def test_an_event_older_than_the_latest_email_change_cannot_bring_the_old_address_back():
    profile = profile_of(order("o1", T0))
    identity.change_email(profile, "new@example.com", "ana@example.com", T0 + HOUR)
    assert profile.email_outdated("ana@example.com", T0 + HOUR - 1)
    assert not profile.email_outdated("ana@example.com", T0 + HOUR + 1)
    assert not profile.email_outdated("new@example.com", T0)  # a current address is never outdated
    profile.apply(order("o2", T0 + 60), [])  # an older order naming the old address
    assert profile.email == "new@example.com" and profile.emails == ["new@example.com"]


def test_stale_placed_version_after_cancellation_keeps_order_cancelled():
    placed = order("o1", T0, total="600.00", updated=T0)
    cancelled = order("o1", T0, total="600.00", status="cancelled", updated=T0 + HOUR)
    profile = profile_of(cancelled, placed)  # the older version arrives last
    ev = evaluate(profile, T0 + 2 * HOUR)
    assert profile.orders["shopify#shop#o1"].status == "cancelled"
    assert ev.traits["order_count"] == 0
    assert Decimal(ev.traits["lifetime_value"]) == 0
    assert ev.segments == frozenset()


def test_newer_version_of_an_order_replaces_the_older_one():
    first = order("o1", T0, total="600.00", updated=T0)
    edited = order("o1", T0, total="450.00", updated=T0 + HOUR)  # an edit lowered the total
    ev = evaluate(profile_of(first, edited), T0 + 2 * HOUR)
    assert Decimal(ev.traits["lifetime_value"]) == Decimal("450.00")
    assert HIGH_VALUE not in ev.segments


def test_stale_version_arriving_late_does_not_undo_an_edit():
    first = order("o1", T0, total="600.00", updated=T0)
    edited = order("o1", T0, total="450.00", updated=T0 + HOUR)
    ev = evaluate(profile_of(edited, first), T0 + 2 * HOUR)
    assert Decimal(ev.traits["lifetime_value"]) == Decimal("450.00")


# -- cart-abandoners --------------------------------------------------------------------------

S = T0  # the checkout start


def test_checkout_exactly_one_hour_old_is_not_yet_abandoned():
    assert CART not in segments_at(profile_of(checkout("c1", S)), S + 3600)


def test_checkout_3601_seconds_old_is_abandoned():
    assert CART in segments_at(profile_of(checkout("c1", S)), S + 3601)


def test_checkout_one_second_before_7_days_is_still_abandoned():
    assert CART in segments_at(profile_of(checkout("c1", S)), S + 7 * DAY - 1)


def test_checkout_exactly_7_days_old_is_out():
    assert CART not in segments_at(profile_of(checkout("c1", S)), S + 7 * DAY)


def test_checkout_far_older_than_7_days_is_out():
    assert CART not in segments_at(profile_of(checkout("c1", S)), S + 30 * DAY)


def test_order_at_the_checkout_start_clears_it():
    profile = profile_of(checkout("c1", S), order("o1", S))
    assert CART not in segments_at(profile, S + 2 * HOUR)


def test_order_after_the_checkout_clears_it():
    profile = profile_of(checkout("c1", S), order("o1", S + 30 * 60))
    assert CART not in segments_at(profile, S + 2 * HOUR)


def test_order_after_the_checkout_clears_it_even_when_it_arrives_first():
    profile = profile_of(order("o1", S + 30 * 60), checkout("c1", S))
    assert CART not in segments_at(profile, S + 2 * HOUR)


def test_order_placed_before_the_checkout_does_not_clear_it():
    profile = profile_of(order("o1", S - 1), checkout("c1", S))
    assert CART in segments_at(profile, S + 2 * HOUR)


@pytest.mark.parametrize("status", ["cancelled", "refunded"])
def test_cancelled_or_refunded_order_after_the_checkout_does_not_clear_it(status):
    profile = profile_of(checkout("c1", S), order("o1", S + 60, status=status))
    assert CART in segments_at(profile, S + 2 * HOUR)


def test_completed_checkout_never_counts():
    profile = profile_of(checkout("c1", S, completed_at=S + 120))
    for now in (S + 3601, S + DAY, S + 7 * DAY - 1):
        assert CART not in segments_at(profile, now)


def test_checkout_completed_by_a_later_update_leaves_the_segment():
    started = checkout("c1", S)
    completed = checkout("c1", S, completed_at=S + 2 * HOUR, updated=S + 2 * HOUR)
    assert CART in segments_at(profile_of(started), S + 3 * HOUR)
    assert CART not in segments_at(profile_of(started, completed), S + 3 * HOUR)


def test_stale_open_checkout_version_does_not_reopen_a_completed_one():
    started = checkout("c1", S)
    completed = checkout("c1", S, completed_at=S + 2 * HOUR, updated=S + 2 * HOUR)
    assert CART not in segments_at(profile_of(completed, started), S + 3 * HOUR)


def test_checkout_update_keeps_the_original_start():
    started = checkout("c1", S)
    touched = checkout("c1", S, updated=S + 50 * 60)  # checkouts/update, still open
    profile = profile_of(started, touched)
    assert CART not in segments_at(profile, S + 3600)
    assert CART in segments_at(profile, S + 3601)


def test_cart_next_due_at_before_entering_is_start_plus_3601():
    profile = profile_of(checkout("c1", S))
    for now in (S, S + 1, S + 3600):
        assert evaluate(profile, now).next_due_at == S + 3601


def test_cart_next_due_at_after_entering_is_start_plus_7_days():
    profile = profile_of(checkout("c1", S))
    for now in (S + 3601, S + DAY, S + 7 * DAY - 1):
        assert evaluate(profile, now).next_due_at == S + 7 * DAY


def test_cart_evaluating_at_next_due_at_changes_membership_and_one_second_before_does_not():
    profile = profile_of(checkout("c1", S))
    enter = evaluate(profile, S + 60).next_due_at
    assert CART not in segments_at(profile, enter - 1)
    assert CART in segments_at(profile, enter)
    leave = evaluate(profile, enter).next_due_at
    assert CART in segments_at(profile, leave - 1)
    assert CART not in segments_at(profile, leave)
    # The checkout start is activity, so the only change left is at-risk, 30 days + 1 s after it.
    after = evaluate(profile, leave)
    assert after.next_due_at == S + 30 * DAY + 1
    assert segments_at(profile, after.next_due_at) == {AT_RISK}


def test_no_cart_change_due_for_a_cleared_or_expired_checkout():
    # Nothing cart-related is left: the next change is the checkout start (activity) turning 30 days + 1 s old.
    for profile, now in ((profile_of(checkout("c1", S, completed_at=S + 60)), S + 120),
                         (profile_of(checkout("c1", S)), S + 7 * DAY)):
        ev = evaluate(profile, now)
        assert CART not in ev.segments
        assert ev.next_due_at == S + 30 * DAY + 1
        assert segments_at(profile, ev.next_due_at) == {AT_RISK}


def test_nothing_due_once_an_expired_checkout_has_gone_inactive():
    profile = profile_of(checkout("c1", S))
    ev = evaluate(profile, S + 60 * DAY + 1)
    assert ev.segments == {INACTIVE}
    assert ev.next_due_at is None


# -- next_due_at in general -------------------------------------------------------------------


def test_next_due_at_is_the_earliest_change_across_segments():
    profile = profile_of(order("o1", T0), checkout("c1", T0 + 13 * DAY))
    now = T0 + 13 * DAY + 60
    ev = evaluate(profile, now)
    assert ev.next_due_at == T0 + 13 * DAY + 3601  # cart entry comes before the recent-buyer expiry
    assert ev.next_due_at > now


def test_next_due_at_is_none_when_only_lifetime_segments_apply():
    profile = profile_of(order("o1", T0, total="300.00"), order("o2", T0 + DAY, total="300.00"))
    # Once the last order (activity) is more than 60 days old, no window or recency limit is left to cross.
    ev = evaluate(profile, T0 + DAY + 60 * DAY + 1)
    assert ev.segments == {REPEAT, HIGH_VALUE, INACTIVE}
    assert ev.next_due_at is None


def test_lifetime_segments_with_recent_activity_are_due_when_the_activity_turns_at_risk():
    profile = profile_of(order("o1", T0, total="300.00"), order("o2", T0 + DAY, total="300.00"))
    ev = evaluate(profile, T0 + 30 * DAY)
    assert ev.segments == {REPEAT, HIGH_VALUE}
    assert ev.next_due_at == T0 + DAY + 30 * DAY + 1


@pytest.mark.parametrize(
    "now",
    [S - 10, S, S + 1, S + 3599, S + 3600, S + 3601, S + 3602, S + DAY, S + 7 * DAY - 1, S + 7 * DAY,
     S + 14 * DAY - 1, S + 14 * DAY, S + 14 * DAY + 1],
)
def test_next_due_at_is_strictly_later_than_now_and_nothing_changes_before_it(now):
    profile = profile_of(order("o0", S - 2 * DAY), checkout("c1", S))
    ev = evaluate(profile, now)
    if ev.next_due_at is None:
        return
    assert ev.next_due_at > now
    assert segments_at(profile, ev.next_due_at - 1) == ev.segments
    assert segments_at(profile, ev.next_due_at) != ev.segments


def test_overlapping_abandoned_checkouts_next_due_at_is_when_the_last_one_expires():
    profile = profile_of(checkout("c1", S), checkout("c2", S + DAY))
    now = S + DAY + 2 * HOUR  # both abandoned
    ev = evaluate(profile, now)
    assert CART in ev.segments
    assert CART in segments_at(profile, S + 8 * DAY - 1)
    assert CART not in segments_at(profile, S + 8 * DAY)
    assert ev.next_due_at == S + 8 * DAY  # c1's expiry at S + 7 days changes nothing: c2 still counts


def test_second_checkout_becoming_abandoned_is_not_a_due_change_when_already_a_member():
    profile = profile_of(checkout("c1", S), checkout("c2", S + DAY))
    now = S + DAY + 60  # c1 abandoned, c2 not yet
    ev = evaluate(profile, now)
    assert CART in ev.segments
    assert ev.next_due_at == S + 8 * DAY
    assert segments_at(profile, ev.next_due_at) != ev.segments


def test_gap_between_checkouts_next_due_at_is_the_second_checkouts_entry():
    profile = profile_of(checkout("c1", S), checkout("c2", S + 10 * DAY))
    ev = evaluate(profile, S + 7 * DAY)  # c1 just expired, c2 not started yet
    assert CART not in ev.segments
    assert ev.next_due_at == S + 10 * DAY + 3601


def test_cleared_checkout_does_not_hide_another_open_one():
    profile = profile_of(checkout("c1", S), order("o1", S + DAY), checkout("c2", S + 2 * DAY))
    assert CART not in segments_at(profile, S + DAY + 3601)  # c1 cleared by o1
    assert CART in segments_at(profile, S + 2 * DAY + 3601)  # c2 started after o1
    assert evaluate(profile, S + 2 * DAY + 3601).next_due_at == S + 9 * DAY


# Random histories: an evaluation's next_due_at is exactly the first instant membership changes.
# Membership is piecewise constant between the instants below, so checking them all is exhaustive.
histories = st.lists(
    st.one_of(
        st.builds(lambda i, at, total, status, dt_: order(f"o{i}", T0 + at, total, status, T0 + at + dt_),
                  st.integers(0, 3), st.integers(-20 * DAY, 20 * DAY), st.sampled_from(["10.00", "499.99", "250.00"]),
                  st.sampled_from(["placed", "placed", "cancelled", "refunded"]), st.integers(0, DAY)),
        st.builds(lambda i, at, done, dt_: checkout(f"c{i}", T0 + at, T0 + at + dt_ if done else None, T0 + at + dt_),
                  st.integers(0, 3), st.integers(-20 * DAY, 20 * DAY), st.booleans(), st.integers(0, DAY)),
    ),
    max_size=6,
)


def change_instants(profile: Profile) -> set[int]:
    out = set()
    for o in profile.orders.values():
        out |= {o.at + 14 * DAY}
    for c in profile.checkouts.values():
        out |= {c.started + 3601, c.started + 7 * DAY}
    # orders (even those cancelled later) and checkout starts are activity
    last_activity = EVALUATOR.evaluate(profile, T0).traits["last_activity_at"]
    if last_activity is not None:
        last_activity = int(datetime.fromisoformat(last_activity.replace("Z", "+00:00")).timestamp())
        out |= {last_activity + 30 * DAY + 1, last_activity + 60 * DAY + 1}  # at-risk, inactive
    return out


@settings(max_examples=200, deadline=None)
@given(events=histories, offset=st.integers(-21 * DAY, 90 * DAY))
def test_next_due_at_is_exactly_the_first_change(events, offset):
    profile = profile_of(*events)
    now = T0 + offset
    ev = evaluate(profile, now)
    later = sorted(i for i in change_instants(profile) if i > now)
    if ev.next_due_at is None:
        assert all(segments_at(profile, i) == ev.segments for i in later)
        return
    assert ev.next_due_at > now
    assert segments_at(profile, ev.next_due_at) != ev.segments
    assert segments_at(profile, ev.next_due_at - 1) == ev.segments
    assert all(segments_at(profile, i) == ev.segments for i in later if i < ev.next_due_at)


# -- computed traits --------------------------------------------------------------------------


def test_traits_after_orders():
    profile = profile_of(order("o1", T0 - DAY, total="59.90"), order("o2", T0, total="40.10"))
    traits = evaluate(profile, T0 + 60).traits
    assert traits["order_count"] == 2
    assert isinstance(traits["lifetime_value"], str)
    assert Decimal(traits["lifetime_value"]) == Decimal("100.00")
    assert traits["last_order_at"] == T0_ISO
    assert traits["last_activity_at"] == T0_ISO


def test_lifetime_value_keeps_cents():
    traits = evaluate(profile_of(order("o1", T0, total="59.90")), T0).traits
    assert traits["lifetime_value"] == "59.90"


def test_last_order_at_ignores_cancelled_orders():
    profile = profile_of(order("o1", T0, total="10.00"), order("o2", T0 + DAY, status="cancelled"))
    assert evaluate(profile, T0 + 2 * DAY).traits["last_order_at"] == T0_ISO


def test_last_activity_at_includes_checkout_start():
    profile = profile_of(order("o1", T0), checkout("c1", T0 + HOUR))
    traits = evaluate(profile, T0 + 2 * HOUR).traits
    assert traits["last_order_at"] == T0_ISO
    assert traits["last_activity_at"] == "2024-05-14T15:22:31Z"


def test_late_arriving_older_event_does_not_move_last_activity_back():
    profile = profile_of(order("o2", T0), order("o1", T0 - 5 * DAY))
    traits = evaluate(profile, T0 + 60).traits
    assert traits["last_activity_at"] == T0_ISO
    assert traits["last_order_at"] == T0_ISO


def test_trait_times_are_iso_utc_with_z_suffix():
    traits = evaluate(profile_of(order("o1", T0 + 7)), T0 + 60).traits
    for key in ("last_order_at", "last_activity_at"):
        value = traits[key]
        assert value.endswith("Z") and "+00:00" not in value
        assert int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()) == T0 + 7


# -- recording evaluations --------------------------------------------------------------------


def record(profile: Profile, now: int, cause: str) -> list[MembershipChange]:
    ev = evaluate(profile, now)
    return profile.record_evaluation(set(ev.segments), ev.traits, ev.next_due_at, at=now, cause=cause)


def test_record_evaluation_returns_entered_changes_and_remembers_the_cause():
    event = order("o1", T0, total="500.00")
    profile = profile_of(event)
    assert profile.applied(event.event_id) is None
    changes = record(profile, T0 + 60, cause=event.event_id)
    assert [(c.segment_id, c.change) for c in changes] == [(HIGH_VALUE, "entered"), (RECENT, "entered")]
    assert all(c.profile_id == "p1" and c.at == T0 + 60 and c.cause == event.event_id for c in changes)
    assert all(c.version == profile.version + 1 for c in changes)
    assert {c.detail_type for c in changes} == {"SegmentEntered"}
    assert profile.applied(event.event_id) == changes  # as published, from the compact memory
    assert profile.segments == [HIGH_VALUE, RECENT]
    assert profile.next_due_at == T0 + 14 * DAY


def test_record_evaluation_by_time_returns_exited_changes_and_is_not_an_applied_event():
    event = order("o1", T0, total="500.00")
    profile = profile_of(event)
    record(profile, T0 + 60, cause=event.event_id)
    changes = record(profile, T0 + 14 * DAY, cause="time")
    assert [(c.segment_id, c.change, c.cause) for c in changes] == [(RECENT, "exited", "time")]
    assert changes[0].detail_type == "SegmentExited"
    assert profile.segments == [HIGH_VALUE]
    assert profile.applied("time") is None
    assert profile.applied(event.event_id) is not None


def test_record_evaluation_reports_only_segments_that_changed():
    event = order("o1", T0)
    profile = profile_of(event)
    record(profile, T0 + 60, cause=event.event_id)
    second = order("o2", T0 + 120, total="1.00")
    profile.apply(second, aliases=[])
    changes = record(profile, T0 + 180, cause=second.event_id)
    assert [(c.segment_id, c.change) for c in changes] == [(REPEAT, "entered")]
    assert profile.applied(second.event_id) == changes


def test_recording_the_same_segments_again_reports_no_change():
    event = order("o1", T0)
    profile = profile_of(event)
    record(profile, T0 + 60, cause=event.event_id)
    assert record(profile, T0 + 120, cause="time") == []
    assert profile.segments == [RECENT]


def test_membership_change_detail_is_iso_z():
    event = order("o1", T0)
    profile = profile_of(event)
    (change,) = record(profile, T0, cause=event.event_id)
    detail = change.detail()
    assert detail == {"profile_id": "p1", "segment_id": RECENT, "at": T0_ISO, "cause": event.event_id,
                      "version": profile.version + 1}


def test_applied_remembers_the_most_recent_events():
    profile = Profile(profile_id="p1")
    ids = []
    for i in range(RECENT_EVENTS_KEPT + 1):
        event = order(f"o{i}", T0 + i)
        profile.apply(event, aliases=[])
        record(profile, T0 + i, cause=event.event_id)
        ids.append(event.event_id)
    assert all(profile.applied(eid) is not None for eid in ids[-RECENT_EVENTS_KEPT:])
    assert profile.applied(ids[0]) is None
    assert len(profile.recent_events) == RECENT_EVENTS_KEPT


def test_a_profile_stored_with_whole_event_ids_and_changes_still_recognises_its_events():
    event = order("o1", T0, total="500.00")
    profile = profile_of(event)
    changes = record(profile, T0 + 60, cause=event.event_id)
    old = json.loads(profile.model_dump_json())
    old["recent_events"] = [{"event_id": event.event_id,  # as profiles were stored before
                             "changes": [json.loads(c.model_dump_json()) for c in changes]}]
    stored = Profile.model_validate(old)
    assert stored.applied(event.event_id) == changes
    new = json.loads(profile.model_dump_json())["recent_events"]
    assert len(new["k"]) == APPLIED_ID_CHARS  # one key: a short hash, end to end with the others
    assert event.event_id not in json.dumps(new)  # neither the id nor the changes repeat it


# -- the memory of applied events: by time and by count, stored compact (issue 13) ----------------


def test_a_redelivery_within_72_hours_is_recognised_and_the_memory_forgets_after():
    """A provider retries for at most a day; the profile remembers an applied event for 72 hours
    (and at most RECENT_EVENTS_KEPT of them), so a quiet customer's every write carries a few ids."""
    profile = Profile(profile_id="p1")
    first = order("o1", T0)
    profile.apply(first, aliases=[])
    record(profile, T0, cause=first.event_id)
    for n, at in enumerate((T0 + RECENT_EVENTS_KEPT_S - 1, T0 + RECENT_EVENTS_KEPT_S)):
        later = order(f"later{n}", at)
        profile.apply(later, aliases=[])
        record(profile, at, cause=later.event_id)
        if at < T0 + RECENT_EVENTS_KEPT_S:
            assert profile.applied(first.event_id) is not None  # 72 hours less a second: still known
    assert profile.applied(first.event_id) is None  # 72 hours on: forgotten
    assert [e.t for e in profile.recent_events] == [T0 + RECENT_EVENTS_KEPT_S - 1, T0 + RECENT_EVENTS_KEPT_S]


def test_the_memory_is_stored_compact_and_reads_back_with_its_changes():
    profile = Profile(profile_id="p1")
    remembered = {}
    for n in range(5):
        event = order(f"o{n}", T0 + n * HOUR, total="500.00")
        profile.apply(event, aliases=[])
        remembered[event.event_id] = record(profile, T0 + n * HOUR, cause=event.event_id)
    profile.recent_events[-1].changes.append(("", "updated", T0 + 4 * HOUR, profile.version + 1, ("email",)))
    remembered[event.event_id] = profile.applied(event.event_id)
    stored = json.loads(profile.model_dump_json())["recent_events"]
    assert set(stored) == {"k", "t", "c"} and len(stored["k"]) == 5 * APPLIED_ID_CHARS
    again = Profile.model_validate_json(profile.model_dump_json())
    for event_id, changes in remembered.items():
        assert again.applied(event_id) == changes
    assert any(changes for changes in remembered.values())  # entries with changes were exercised


def test_a_memory_stored_before_times_were_kept_still_reads_and_goes_72_hours_after_the_next_write():
    """Entries without a time (stored before) still read; the first write since stamps them with its
    time, so they are remembered 72 hours more and then forgotten, and the memory goes compact."""
    event = order("o1", T0, total="500.00")
    profile = profile_of(event)
    changes = record(profile, T0 + 60, cause=event.event_id)
    old = json.loads(profile.model_dump_json())
    old["recent_events"] = [{"event_id": applied_key(event.event_id) + "beef",  # 16 digits, no time
                             "changes": [list(c) for c in profile.recent_events[0].changes]}]
    stored = Profile.model_validate(old)
    later = order("o2", T0 + 10 * DAY)
    stored.apply(later, aliases=[])
    record(stored, T0 + 10 * DAY, cause=later.event_id)
    assert stored.applied(event.event_id) == changes  # kept, though applied ten days before
    assert isinstance(json.loads(stored.model_dump_json())["recent_events"], list)  # (a 16-digit key)
    last = order("o3", T0 + 10 * DAY + RECENT_EVENTS_KEPT_S)
    stored.apply(last, aliases=[])
    record(stored, T0 + 10 * DAY + RECENT_EVENTS_KEPT_S, cause=last.event_id)
    assert stored.applied(event.event_id) is None and stored.applied(last.event_id) is not None
    assert isinstance(json.loads(stored.model_dump_json())["recent_events"], dict)


def test_message_times_are_stored_relative_to_the_delivery_and_old_records_still_read():
    record_ = MessageRecord(d=T0, o=T0 + 90, c=T0 + 3600, s=0)
    stored = json.loads(Profile(profile_id="p1", messages={"m": record_}).model_dump_json())["messages"]["m"]
    assert stored == {"d": T0, "p": 90, "q": 3600, "s": 0}
    assert MessageRecord.model_validate(stored) == record_
    assert MessageRecord.model_validate({"d": T0, "o": T0 + 90, "c": T0 + 3600, "s": 0}) == record_  # as before
    assert MessageRecord.model_validate_json(MessageRecord(d=T0).model_dump_json()) == MessageRecord(d=T0)


def test_parked_changes_keep_a_due_entry_that_already_says_at_once():
    """The sweep found the profile under an entry at or before now: parking its changes leaves the
    entry there (no index write); the write that clears the outbox moves it once."""
    profile = Profile(profile_id="p1", evaluated_at=T0, next_due_at=T0 + 7 * DAY)
    profile.park([MembershipChange(profile_id="p1", segment_id=RECENT, change="exited", at=T0, cause="time",
                                   version=1)])
    assert due_entry(profile, T0 - 30) == T0 - 30
    assert due_entry(profile, T0) == T0
    assert due_entry(profile, T0 + 1) == T0  # an entry after now would hide the parked changes
    assert due_entry(profile, None) == T0
    profile.clear_parked()
    assert due_entry(profile, T0 - 30) == T0 + 7 * DAY


def test_an_early_due_entry_stays_only_if_the_profile_is_likely_written_again_before_it_falls_due():
    """Leaving an entry early saves index moves on a busy profile; on a quiet one the sweep would have
    to move it anyway, at the price of a whole item write: it moves with this write instead."""
    from segmentation.domain.profile import AppliedEvent

    profile = Profile(profile_id="p1", evaluated_at=T0, next_due_at=T0 + 7 * DAY)
    profile.recent_events = [AppliedEvent(event_id="a" * APPLIED_ID_CHARS, t=T0)]  # one event in 72 hours
    assert due_entry(profile, T0 + 2 * DAY) == T0 + 7 * DAY  # 2/3 of an event expected by then: moved
    assert due_entry(profile, T0 + 3 * DAY) == T0 + 3 * DAY  # one expected: left where it is
    profile.recent_events += [AppliedEvent(event_id=f"{n:0{APPLIED_ID_CHARS}x}", t=T0 - n * HOUR) for n in (1, 2)]
    assert due_entry(profile, T0 + 2 * DAY) == T0 + 2 * DAY  # three in 72 hours: two expected, left
    profile.recent_events = [AppliedEvent(event_id="a" * APPLIED_ID_CHARS, t=T0 - RECENT_EVENTS_KEPT_S)]
    assert due_entry(profile, T0 + 6 * DAY) == T0 + 7 * DAY  # nothing within 72 hours: nothing expected
