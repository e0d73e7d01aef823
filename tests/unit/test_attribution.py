"""Attribution (issue 15, the domain part): what an email or order event gives each segment's
figures, counted for the segments the profile was in when the message was delivered."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from segmentation.domain.events import CustomerEvent, EmailProperties, EventType, Identity, OrderProperties
from segmentation.domain.profile import ATTRIBUTION_WINDOW_S, MetricFact, Profile

T = 1_790_000_000


def email(kind: EventType, at: int, message: str = "m1") -> CustomerEvent:
    return CustomerEvent(event_id=f"{kind}-{at}-{message}", source="klaviyo", type=kind,
                         occurred_at=datetime.fromtimestamp(at, UTC), identity=Identity(email="a@example.com"),
                         properties=EmailProperties(message_id=message))


def order(n: int, at: int, total: str = "50.00", status: str = "placed") -> CustomerEvent:
    when = datetime.fromtimestamp(at, UTC)
    return CustomerEvent(event_id=f"o{n}-{at}-{status}", source="shopify", type=EventType.ORDER, occurred_at=when,
                         identity=Identity(email="a@example.com"),
                         properties=OrderProperties(order_id=str(n), total=Decimal(total), status=status, updated_at=when))


def applied(profile: Profile, event: CustomerEvent) -> list[MetricFact]:
    profile.apply(event, [])
    return profile.facts


def test_opens_and_clicks_count_for_the_segments_of_the_delivery_not_those_entered_since():
    p = Profile(profile_id="p", segments=["at-risk"])
    assert applied(p, email(EventType.EMAIL_DELIVERED, T)) == [MetricFact("delivered", ("at-risk",), T)]
    p.segments = ["at-risk", "recent-buyers"]  # entered after the delivery
    assert applied(p, email(EventType.EMAIL_OPENED, T + 60)) == [MetricFact("opened", ("at-risk",), T + 60)]
    assert applied(p, email(EventType.EMAIL_OPENED, T + 90)) == []  # only the first open counts
    assert applied(p, email(EventType.EMAIL_CLICKED, T + 120)) == [MetricFact("clicked", ("at-risk",), T + 120)]
    # a message first heard of by its open was delivered then, for the segments of that moment
    assert applied(p, email(EventType.EMAIL_OPENED, T + 200, "m2")) == [
        MetricFact("delivered", ("at-risk", "recent-buyers"), T + 200),
        MetricFact("opened", ("at-risk", "recent-buyers"), T + 200)]


def test_an_order_converts_for_the_last_clicked_message_within_the_window_once():
    p = Profile(profile_id="p", segments=["at-risk"])
    applied(p, email(EventType.EMAIL_DELIVERED, T))
    applied(p, email(EventType.EMAIL_CLICKED, T + 100))
    p.segments = ["recent-buyers"]
    applied(p, email(EventType.EMAIL_DELIVERED, T + 200, "m2"))
    applied(p, email(EventType.EMAIL_CLICKED, T + 300, "m2"))
    assert applied(p, order(1, T + 300 + ATTRIBUTION_WINDOW_S)) == [
        MetricFact("conversion", ("recent-buyers",), T + 300 + ATTRIBUTION_WINDOW_S, Decimal("50.00"))]
    assert applied(p, order(1, T + 300 + ATTRIBUTION_WINDOW_S, "45.00")) == []  # the same order again
    assert applied(p, order(2, T + 301 + ATTRIBUTION_WINDOW_S)) == []  # a second past the window
    assert applied(p, order(3, T + 50)) == []  # before any click
    assert applied(p, order(4, T + 400, status="cancelled")) == []


def test_an_unsubscribe_counts_for_its_message_segments_and_without_one_for_todays():
    p = Profile(profile_id="p", segments=["fatigued"])
    applied(p, email(EventType.EMAIL_DELIVERED, T))
    p.segments = ["inactive"]
    assert applied(p, email(EventType.EMAIL_UNSUBSCRIBED, T + 10)) == [
        MetricFact("unsubscribed", ("fatigued",), T + 10)]
    assert applied(p, email(EventType.EMAIL_BOUNCED, T + 20, "unknown")) == [MetricFact("bounced", ("inactive",), T + 20)]
    assert applied(Profile(profile_id="q"), email(EventType.EMAIL_DELIVERED, T)) == []  # in no segment: nothing
