"""Attribution (issue 15, the domain part): what an email or order event gives each segment's
figures, counted for the segments the profile was in when the message was delivered."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from segmentation.domain.events import CustomerEvent, EmailProperties, EventType, Identity, OrderProperties
from segmentation.domain.profile import ATTRIBUTION_WINDOW_S, Profile, Retention

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


def applied(profile: Profile, event: CustomerEvent) -> list[tuple]:
    profile.apply(event, [])
    return [(f.kind, f.segments, f.at, f.revenue) for f in profile.facts]


def fact(kind: str, segments: tuple[str, ...], at: int, revenue: Decimal | None = None) -> tuple:
    return (kind, segments, at, revenue)


def test_opens_and_clicks_count_for_the_segments_of_the_delivery_not_those_entered_since():
    p = Profile(profile_id="p", segments=["at-risk"])
    assert applied(p, email(EventType.EMAIL_DELIVERED, T)) == [fact("delivered", ("at-risk",), T)]
    p.segments = ["at-risk", "recent-buyers"]  # entered after the delivery
    assert applied(p, email(EventType.EMAIL_OPENED, T + 60)) == [fact("opened", ("at-risk",), T + 60)]
    assert applied(p, email(EventType.EMAIL_OPENED, T + 90)) == []  # only the first open counts
    assert applied(p, email(EventType.EMAIL_CLICKED, T + 120)) == [fact("clicked", ("at-risk",), T + 120)]
    # a message first heard of by its open was delivered then, for the segments of that moment
    assert applied(p, email(EventType.EMAIL_OPENED, T + 200, "m2")) == [
        fact("delivered", ("at-risk", "recent-buyers"), T + 200),
        fact("opened", ("at-risk", "recent-buyers"), T + 200)]


def test_an_order_converts_for_the_last_clicked_message_within_the_window_once():
    p = Profile(profile_id="p", segments=["at-risk"])
    applied(p, email(EventType.EMAIL_DELIVERED, T))
    applied(p, email(EventType.EMAIL_CLICKED, T + 100))
    p.segments = ["recent-buyers"]
    applied(p, email(EventType.EMAIL_DELIVERED, T + 200, "m2"))
    applied(p, email(EventType.EMAIL_CLICKED, T + 300, "m2"))
    assert applied(p, order(1, T + 300 + ATTRIBUTION_WINDOW_S)) == [
        fact("conversion", ("recent-buyers",), T + 300 + ATTRIBUTION_WINDOW_S, Decimal("50.00"))]
    assert applied(p, order(1, T + 300 + ATTRIBUTION_WINDOW_S, "45.00")) == []  # the same order again
    assert applied(p, order(2, T + 301 + ATTRIBUTION_WINDOW_S)) == []  # a second past the window
    assert applied(p, order(3, T + 50)) == []  # before any click
    assert applied(p, order(4, T + 400, status="cancelled")) == []


def test_an_unsubscribe_counts_for_its_message_segments_and_without_one_for_todays():
    p = Profile(profile_id="p", segments=["fatigued"])
    applied(p, email(EventType.EMAIL_DELIVERED, T))
    p.segments = ["inactive"]
    assert applied(p, email(EventType.EMAIL_UNSUBSCRIBED, T + 10)) == [
        fact("unsubscribed", ("fatigued",), T + 10)]
    assert applied(p, email(EventType.EMAIL_BOUNCED, T + 20, "unknown")) == [fact("bounced", ("inactive",), T + 20)]
    assert applied(Profile(profile_id="q"), email(EventType.EMAIL_DELIVERED, T)) == []  # in no segment: nothing


def test_messages_share_the_segment_sets_they_were_delivered_to_and_a_redelivery_republishes_the_facts():
    p = Profile(profile_id="p", segments=["at-risk"])
    for n in range(3):
        applied(p, email(EventType.EMAIL_DELIVERED, T + n, f"m{n}"))
    assert p.segment_sets == [["at-risk"]]  # one set, three messages
    clicked = email(EventType.EMAIL_CLICKED, T + 10, "m1")
    facts = applied(p, clicked)
    p.record_evaluation(set(p.segments), {}, None, T + 10, clicked.event_id)
    assert [(f.kind, f.segments, f.at, f.revenue) for f in p.redelivered_facts(clicked)] == facts
    p.prune(T + 400 * 86400, Retention(email=86400))
    assert p.messages == {} and p.segment_sets == []  # sets go with the last message that used them


def test_a_redelivered_event_gives_back_the_facts_it_gave_and_family_instances_get_none():
    p = Profile(profile_id="p", segments=["at-risk", "category-browsers:shoes"])
    delivered = email(EventType.EMAIL_DELIVERED, T)
    assert applied(p, delivered) == [fact("delivered", ("at-risk",), T)]
    opened = email(EventType.EMAIL_OPENED, T + 5)
    first = applied(p, opened)
    later = email(EventType.EMAIL_OPENED, T + 9)
    assert applied(p, later) == []
    plain = lambda fs: [(f.kind, f.segments, f.at, f.revenue) for f in fs]  # noqa: E731
    assert plain(p.redelivered_facts(opened)) == first and plain(p.redelivered_facts(later)) == []
    assert plain(p.redelivered_facts(delivered)) == [fact("delivered", ("at-risk",), T)]
    bought = order(7, T + 60)
    applied(p, email(EventType.EMAIL_CLICKED, T + 30))
    converted = applied(p, bought)
    assert converted and plain(p.redelivered_facts(bought)) == converted


def test_a_merged_profiles_messages_keep_the_segments_they_were_delivered_to():
    """The absorbed profile's messages point into its own list of segment sets: after the merge they
    must point at the same segments in the survivor's list."""
    from segmentation.domain.identity import merge

    survivor = Profile(profile_id="s", segments=["recent-buyers"])
    applied(survivor, email(EventType.EMAIL_DELIVERED, T, "mine"))
    other = Profile(profile_id="o", segments=["at-risk"])
    applied(other, email(EventType.EMAIL_DELIVERED, T + 10, "theirs"))
    applied(other, email(EventType.EMAIL_CLICKED, T + 20, "theirs"))
    merge(survivor, other)
    survivor.segments = ["vip"]
    assert applied(survivor, email(EventType.EMAIL_OPENED, T + 30, "theirs")) == [fact("opened", ("at-risk",), T + 30)]
    assert applied(survivor, email(EventType.EMAIL_OPENED, T + 40, "mine")) == [
        fact("opened", ("recent-buyers",), T + 40)]
    # an order converts for the absorbed profile's click, with the segments of its delivery
    assert applied(survivor, order(9, T + 60)) == [fact("conversion", ("at-risk",), T + 60, Decimal("50.00"))]


def test_the_attribution_window_is_the_catalogs():
    from segmentation.domain.catalog import Catalog

    text = "version: 1\nattribution_window: 1d\nsegments:\n  x: {name: X, description: x, when: {segment: y}}\n" \
           "  y: {name: Y, description: y, when: {event: {signal: order_placed}}}\n"
    assert Catalog.from_yaml(text).retention.attribution == 86400
    assert Catalog.from_yaml(text.replace("attribution_window: 1d\n", "")).retention.attribution == ATTRIBUTION_WINDOW_S
    p = Profile(profile_id="p", segments=["at-risk"])
    applied(p, email(EventType.EMAIL_DELIVERED, T))
    applied(p, email(EventType.EMAIL_CLICKED, T + 100))
    p.apply(order(1, T + 100 + 86400 + 1), [], attribution=86400)
    assert p.facts == []  # a second past the catalog's day
    p.apply(order(2, T + 100 + 86400), [], attribution=86400)
    assert [f.kind for f in p.facts] == ["conversion"]


def test_an_erased_person_leaves_no_message_to_attribute_to(fakes):
    """After an erasure nothing of the person is left: their later webhooks are dropped (tombstones),
    so neither an open of a message delivered before nor an order counts for any segment."""
    from segmentation import bootstrap

    def metrics() -> list[dict]:
        return [m["detail"] for m in fakes.publisher.published if m["detail-type"] == "SegmentMetrics"]

    service = bootstrap.profile_service()
    service.apply(order(1, T - 86400))  # a buyer: in segments, so the messages count for them
    service.apply(email(EventType.EMAIL_DELIVERED, T))
    service.apply(email(EventType.EMAIL_CLICKED, T + 100))
    assert [f["kind"] for m in metrics() for f in m["facts"]] == ["delivered", "clicked"]
    fakes.publisher.published.clear()
    service.erase(["email#a@example.com"], "test")
    service.apply(email(EventType.EMAIL_OPENED, T + 200))
    service.apply(order(2, T + 300))
    assert metrics() == []
