"""Property tests: the real ProfileService (and Sweep), applying random event streams on the in-memory
fakes, agrees with a brute-force oracle, and next_due_at is exactly the next instant any membership
changes.

Each example starts from empty fakes, so what Hypothesis explores does not depend on which tests ran
before; the profile (CI: derandomised, developers: random with the failing examples kept) is
tests/conftest.py's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import oracle
from fakes import InMemoryProfileStore, RecordingPublisher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.evaluation import default_evaluator
from segmentation.domain.events import (
    BrowseProperties,
    CheckoutProperties,
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EmailProperties,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
)
from segmentation.domain.profile import Profile
from segmentation.service.profiles import ProfileService
from segmentation.service.sweep import Sweep

BASE = 1_700_000_000
DAY = 86400
EVALUATOR = default_evaluator()
CATEGORIES = ["accessories", "shirts", "shoes"]
# Offsets cluster near window edges (hours, days) as well as anywhere in 100 days.
offsets = st.one_of(st.integers(0, 100 * DAY), st.integers(0, 100).map(lambda d: d * DAY),
                    st.integers(0, 2400).map(lambda h: h * 3600), st.integers(65 * DAY, 100 * DAY),
                    st.integers(90 * DAY, 100 * DAY))


def _at(offset: int) -> datetime:
    return datetime.fromtimestamp(BASE + offset, UTC)


@st.composite
def raw_event(draw, n: int) -> CustomerEvent:
    kind = draw(st.sampled_from(["order", "checkout", "view", "email", "consent", "suppress"]))
    at = draw(offsets)
    ident = Identity(email="p@example.com")
    if kind == "order":
        oid = draw(st.sampled_from(["o1", "o2", "o3", "o4"]))
        # One creation time per order id (as in Shopify); versions differ by updated_at and status.
        # Some orders come just after a checkout starts (c1 at 10d, c2 at 60d, c3 at 97d), some before.
        created = {"o1": 5 * DAY, "o2": 10 * DAY + 7200, "o3": 60 * DAY + 1800, "o4": 97 * DAY + 3 * 3600}[oid]
        created += draw(st.sampled_from([0, 1, 3600]))
        created = draw(st.sampled_from([created, at]))
        upd = created + draw(st.integers(0, 10 * DAY))
        props = OrderProperties(
            order_id=oid, status=draw(st.sampled_from(["placed", "placed", "cancelled", "refunded"])),
            total=Decimal(draw(st.sampled_from(["20.00", "150.00", "260.00", "499.99"]))), updated_at=_at(upd),
            items=[LineItem(category=draw(st.sampled_from(CATEGORIES + [None])))],
        )
        return CustomerEvent(event_id=f"e{n}", source="t", type=EventType.ORDER, occurred_at=_at(created), identity=ident, properties=props)
    if kind == "checkout":
        cid = draw(st.sampled_from(["c1", "c2", "c3"]))
        start = {"c1": 10 * DAY, "c2": 60 * DAY, "c3": 97 * DAY}[cid] + draw(st.sampled_from([0, 1800, 3600, 7200]))
        props = CheckoutProperties(checkout_id=cid, updated_at=_at(start + draw(st.integers(0, 7200))),
                                   completed_at=_at(start + 60) if draw(st.booleans()) and draw(st.booleans()) else None)
        return CustomerEvent(event_id=f"e{n}", source="t", type=EventType.CHECKOUT, occurred_at=_at(start), identity=ident, properties=props)
    if kind == "view":
        type_ = draw(st.sampled_from([EventType.PAGE_VIEWED, EventType.PRODUCT_VIEWED, EventType.CATEGORY_VIEWED, EventType.PRODUCT_ADDED]))
        props = BrowseProperties(category=draw(st.sampled_from(CATEGORIES + [None])))
        return CustomerEvent(event_id=f"e{n}", source="t", type=type_, occurred_at=_at(at), identity=ident, properties=props)
    if kind == "email":
        type_ = draw(st.sampled_from([EventType.EMAIL_DELIVERED, EventType.EMAIL_DELIVERED, EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED]))
        props = EmailProperties(message_id=draw(st.sampled_from([f"m{i}" for i in range(6)])))
        return CustomerEvent(event_id=f"e{n}", source="t", type=type_, occurred_at=_at(at), identity=ident, properties=props)
    if kind == "consent":
        state = draw(st.sampled_from(["subscribed", "subscribed", "unsubscribed", "not_subscribed"]))
        props = CustomerProperties(email_consent=EmailConsent(state=state, updated_at=_at(at)))
        return CustomerEvent(event_id=f"e{n}", source="t", type=EventType.CUSTOMER, occurred_at=_at(at), identity=ident, properties=props)
    type_ = draw(st.sampled_from([EventType.EMAIL_UNSUBSCRIBED, EventType.EMAIL_BOUNCED, EventType.EMAIL_SPAM]))
    return CustomerEvent(event_id=f"e{n}", source="t", type=type_, occurred_at=_at(at), identity=ident,
                         properties=EmailProperties(message_id="m0"))


@st.composite
def histories(draw) -> tuple[list[tuple[CustomerEvent, int]], int]:
    count = draw(st.integers(1, 40))
    history, clock = [], BASE
    for n in range(count):
        event = draw(raw_event(n))
        # Delivery is late by nothing, minutes, or days; the clock never goes backwards.
        delay = draw(st.sampled_from([0, 0, 60, 3600, 3 * DAY, 20 * DAY]))
        clock = max(clock, int(event.occurred_at.timestamp()) + delay)
        history.append((event, clock))
        if draw(st.integers(0, 9)) == 0:
            history.append((event, clock))  # a redelivery: same event id
    now = clock + draw(st.one_of(st.integers(0, 70 * DAY), st.sampled_from([0, 1, 3600, 30 * DAY, 60 * DAY + 1])))
    return history, now


def applied(history: list[tuple[CustomerEvent, int]]) -> tuple[InMemoryProfileStore, Profile]:
    """ProfileFunction's service applying the history event by event, each at its arrival (redeliveries
    included), on fresh fakes; returns the store and the stored profile."""
    store, clock = InMemoryProfileStore(), [BASE]
    service = ProfileService(store, EVALUATOR, RecordingPublisher(), clock=lambda: clock[0])
    for event, arrival in history:
        clock[0] = arrival
        service.apply(event)
    return store, store.find("email#p@example.com")


def incremental(history: list[tuple[CustomerEvent, int]]) -> Profile:
    """The profile as ProfileFunction leaves it after the history."""
    return applied(history)[1]


def deduped(history):
    seen, out = set(), []
    for event, arrival in history:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append((event, arrival))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_evaluation_after_each_event_equals_the_brute_force_oracle(case):
    history, now = case
    store, profile = applied(history)
    result = EVALUATOR.evaluate(profile, now)
    truth = deduped(history)
    assert set(result.segments) == oracle.segments(truth, now)
    # The sweep itself, at ``now``: the stored memberships are the oracle's, whether it was due or not.
    Sweep(store, EVALUATOR, RecordingPublisher(), store.due_shards).run(now)
    assert set(store.get(profile.profile_id).segments) == oracle.segments(truth, now)
    expected = oracle.traits(truth, now)
    assert result.traits["order_count"] == expected["order_count"]
    assert Decimal(result.traits["lifetime_value"]) == expected["lifetime_value"]
    assert result.traits["email_open_rate_30d"] == expected["email_open_rate_30d"]
    assert result.traits["preferred_category"] == expected["preferred_category"]
    last = expected["last_activity_at"]
    assert result.traits["last_activity_at"] == (None if last is None else _at(last - BASE).isoformat().replace("+00:00", "Z"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.lists(st.floats(0, 1), min_size=3, max_size=8))
def test_next_due_at_is_the_first_change_and_nothing_changes_before_it(case, fractions):
    history, now = case
    profile = incremental(history)
    result = EVALUATOR.evaluate(profile, now)
    truth = deduped(history)
    members = oracle.segments(truth, now)
    due = result.next_due_at
    horizon = due if due is not None else now + 400 * DAY
    assert due is None or due > now
    samples = {now + int(f * (horizon - 1 - now)) for f in fractions} | {horizon - 1}
    for instant in sorted(x for x in samples if x >= now):
        assert oracle.segments(truth, instant) == members, f"changed at {instant - now}s, before next_due_at {due and due - now}"
    if due is not None:
        assert oracle.segments(truth, due) != members
