"""The sweep and the backfill, moving time forward through the scheduled event's ``time``; on the
in-memory fakes (tests/fakes.py), through InactivitySweepFunction's handler where a test says "sweep_at"."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from segctl.runtime import context_for, load_handler, scheduled_event
from segmentation import bootstrap
from segmentation.domain.catalog import Catalog, load_catalog
from segmentation.domain.evaluation import CatalogEvaluator
from segmentation.domain.events import BrowseProperties, CustomerEvent, EventType, Identity
from segmentation.service.backfill import Backfill, SegmentProgress
from segmentation.service.sweep import Sweep
from test_profile_function import NOW, checkout_event, order_event

DAY = 86400
TICK = 60  # the default schedule: rate(1 minute)


def at(seconds_after_now: int) -> datetime:
    return NOW + timedelta(seconds=seconds_after_now)


def first_tick_after(boundary: datetime) -> datetime:
    """The first scheduled run (on the minute) at or after a boundary instant."""
    ts = int(boundary.timestamp())
    return datetime.fromtimestamp(-(-ts // TICK) * TICK, UTC)


@pytest.fixture
def sweep_at(fakes):
    handler = load_handler(fakes.template.functions()["InactivitySweepFunction"])

    def run(when: datetime) -> dict:
        return handler(scheduled_event(when, "arn:aws:events:us-east-1:123456789012:rule/sweep"),
                       context_for(fakes.template, "InactivitySweepFunction"))

    return run


def segments(email: str = "ana@example.com") -> set[str]:
    return set(bootstrap.repository().find(f"email#{email}").segments)


def view(email: str, seconds_ago: int, type_=EventType.PRODUCT_VIEWED, category="shirts", n=0):
    t = NOW - timedelta(seconds=seconds_ago)
    return CustomerEvent(event_id=f"v-{email}-{seconds_ago}-{n}", source="test", type=type_, occurred_at=t,
                         identity=Identity(email=email), properties=BrowseProperties(category=category))


def test_at_risk_after_30_days_and_inactive_after_60_at_the_first_sweep(sweep_at, fake_outbox):
    bootstrap.profile_service().apply(order_event(1, hours_ago=0))
    last_activity = NOW
    boundary = last_activity + timedelta(days=30, seconds=1)
    sweep_at(first_tick_after(boundary) - timedelta(seconds=TICK))
    assert "at-risk" not in segments()
    fake_outbox.drain()
    report = sweep_at(first_tick_after(boundary))
    assert "at-risk" in segments() and report["evaluated"] == 1
    entered = [m["detail"] for m in fake_outbox.drain() if m["detail-type"] == "SegmentEntered"]
    assert [(d["segment_id"], d["cause"]) for d in entered] == [("at-risk", "time")]
    inactive_boundary = last_activity + timedelta(days=60, seconds=1)
    sweep_at(first_tick_after(inactive_boundary) - timedelta(seconds=TICK))
    assert "at-risk" in segments() and "inactive" not in segments()
    sweep_at(first_tick_after(inactive_boundary))
    assert "inactive" in segments() and "at-risk" not in segments()


def test_recent_buyer_leaves_14_days_after_the_purchase(sweep_at):
    bootstrap.profile_service().apply(order_event(1, hours_ago=0))
    assert "recent-buyers" in segments()
    boundary = NOW + timedelta(days=14)  # exactly 14 days old is out
    sweep_at(first_tick_after(boundary) - timedelta(seconds=TICK))
    assert "recent-buyers" in segments()
    sweep_at(first_tick_after(boundary))
    assert "recent-buyers" not in segments() and "repeat-buyers" not in segments()


def test_cart_abandoner_one_hour_after_an_unfinished_checkout(sweep_at):
    bootstrap.profile_service().apply(checkout_event("co-1", hours_ago=0))
    assert "cart-abandoners" not in segments()
    boundary = NOW + timedelta(hours=1, seconds=1)
    sweep_at(first_tick_after(boundary) - timedelta(seconds=TICK))
    assert "cart-abandoners" not in segments()
    sweep_at(first_tick_after(boundary))
    assert "cart-abandoners" in segments()


def test_a_due_instant_pushed_later_is_found_early_moved_once_and_applied_at_its_boundary(sweep_at, fake_outbox):
    service = bootstrap.profile_service()
    service.apply(view("ana@example.com", 2 * DAY, type_=EventType.PAGE_VIEWED))  # recent-browsers until +5 days
    service.apply(view("ana@example.com", 0, type_=EventType.PAGE_VIEWED, n=1))  # ...now until +7 days
    fake_outbox.drain()
    early = sweep_at(first_tick_after(NOW + timedelta(days=5)))
    assert (early["due_read"], early["evaluated"], early["moved"], early["changes"]) == (1, 0, 1, 0)
    assert "recent-browsers" in segments() and fake_outbox.drain() == []
    assert sweep_at(first_tick_after(NOW + timedelta(days=6)))["due_read"] == 0  # moved: not read again
    sweep_at(first_tick_after(NOW + timedelta(days=7)) - timedelta(seconds=TICK))
    assert "recent-browsers" in segments()
    sweep_at(first_tick_after(NOW + timedelta(days=7)))
    assert "recent-browsers" not in segments()


def test_views_age_out_of_recent_and_high_intent_browsers(sweep_at):
    service = bootstrap.profile_service()
    for i, ago in enumerate((3 * DAY, 2 * DAY, 0)):
        service.apply(view("ana@example.com", ago, n=i))
    assert {"recent-browsers", "high-intent-browsers"} <= segments()
    # The oldest view (3 days ago) leaves the 14-day window first: high intent ends then.
    sweep_at(first_tick_after(NOW - timedelta(days=3) + timedelta(days=14)))
    assert "high-intent-browsers" not in segments() and "recent-browsers" not in segments()


def test_a_sweep_racing_an_event_loses_neither(fakes, sweep_at):
    service = bootstrap.profile_service()
    service.apply(order_event(1, hours_ago=0))
    when = first_tick_after(NOW + timedelta(days=30, seconds=1))

    class EventArrivesMidSweep:
        """The fakes' store, with an event applied between the sweep's read of the index and its write."""

        raced = False

        def __getattr__(self, name):
            return getattr(fakes.store, name)

        def due_page(self, shard, now, limit, start):
            page, last = fakes.store.due_page(shard, now, limit, start)
            if page and not self.raced:
                self.raced = True
                service.apply(view("ana@example.com", 0, category="racing"))  # between the sweep's read and write
            return page, last

    repo = EventArrivesMidSweep()
    report = Sweep(repo, bootstrap.evaluator(), bootstrap.publisher(), repo.due_shards).run(int(when.timestamp()))
    assert repo.raced
    profile = bootstrap.repository().find("email#ana@example.com")
    assert profile.traits["order_count"] == 1
    assert "racing" in profile.browse["product_viewed"].c  # the event's write survived the sweep's
    assert "at-risk" in profile.segments  # and the sweep's change was applied on top of it
    # Versions: order, racing view, the sweep's evaluation, then clearing its published outbox.
    assert report.evaluated == 1 and profile.version == 4 and profile.outbox == []


class Crash(BaseException):
    """The function dies (timeout, kill): not an exception anything inside catches."""


def test_a_sweep_that_dies_before_publishing_loses_no_change(fakes, fake_outbox):
    service = bootstrap.profile_service()
    service.apply(order_event(1, hours_ago=0))
    fake_outbox.drain()
    when = int(first_tick_after(NOW + timedelta(days=14, seconds=1)).timestamp())  # recent-buyers ends

    class DiesOnPublish:
        def publish_changes(self, changes):
            if changes:
                raise Crash()

    repo = bootstrap.repository()
    with pytest.raises(Crash):
        Sweep(repo, bootstrap.evaluator(), DiesOnPublish(), repo.due_shards).run(when)
    parked = repo.find("email#ana@example.com")
    assert "recent-buyers" not in parked.segments  # written...
    assert [c.segment_id for c in parked.outbox] == ["recent-buyers"]  # ...and parked, not lost
    assert fake_outbox.drain() == []
    # The next run, a minute later, finds it due at once and publishes the change.
    report = bootstrap.sweep().run(when + TICK)
    assert report.evaluated == 1
    exits = [m["detail"] for m in fake_outbox.drain() if m["detail-type"] == "SegmentExited"]
    assert [(d["segment_id"], d["cause"], d["at"]) for d in exits] == [("recent-buyers", "time", iso_at(when))]
    assert repo.find("email#ana@example.com").outbox == []
    assert bootstrap.sweep().run(when + 2 * TICK).evaluated == 0  # published once; nothing left due
    assert fake_outbox.drain() == []


def iso_at(ts: int) -> str:
    from segmentation.domain.profile import iso

    return iso(ts)


def test_more_due_profiles_than_one_run_handles_drain_over_runs(fakes):
    service = bootstrap.profile_service()
    emails = [f"c{i}@example.com" for i in range(30)]
    for i, email in enumerate(emails):
        service.apply(order_event(100 + i, email=email, hours_ago=0))
    sweep = bootstrap.sweep()
    when = int(first_tick_after(NOW + timedelta(days=30, seconds=1)).timestamp())
    budget = iter(range(12, -100, -1))  # room for about a dozen profiles per run
    first = sweep.run(when, time_left=lambda: next(budget))
    assert not first.finished and 0 < first.evaluated < 30
    second = sweep.run(when)
    assert second.finished
    assert first.evaluated + second.evaluated == 30  # none skipped, none done twice
    assert all("at-risk" in segments(e) for e in emails)
    assert sweep.run(when).evaluated == 0  # nothing is due any more


def test_the_sweep_reads_only_due_profiles(fakes):
    service = bootstrap.profile_service()
    for i in range(40):
        service.apply(order_event(200 + i, email=f"old{i}@example.com", hours_ago=0))
    for i in range(4):  # activity a month earlier: due for at-risk much sooner
        service.apply(order_event(300 + i, email=f"due{i}@example.com", hours_ago=24 * 29))
    when = int(first_tick_after(NOW + timedelta(days=1, hours=1)).timestamp())
    report = bootstrap.sweep().run(when)
    assert report.evaluated == 4
    assert report.due_read == 4


def test_catalog_change_and_backfill_re_evaluate_every_profile(fakes, fake_outbox):
    service = bootstrap.profile_service()
    for i in range(12):
        service.apply(order_event(400 + i, email=f"b{i}@example.com", hours_ago=24 * 10))
    assert all("recent-buyers" in segments(f"b{i}@example.com") for i in range(12))
    fake_outbox.drain()
    text = load_catalog().source
    changed = open(text).read().replace(
        "event: {signal: order_placed, within: 14d}\n", "event: {signal: order_placed, within: 7d}\n", 1)
    evaluator = CatalogEvaluator(Catalog.from_yaml(changed, "changed.yaml"))
    assert evaluator.version != bootstrap.evaluator().version
    backfill = Backfill(bootstrap.repository(), evaluator, bootstrap.publisher(), clock=lambda: int(time.time()))
    pages = []
    parts = [SegmentProgress(segment=s, total=3) for s in range(3)]
    for part in parts:
        while not backfill.work(part, time_left=lambda: 0, on_page=lambda p, n: pages.append(n), page=2).done:
            pass  # stops after each page (time is up) and resumes from its key
    assert sum(p.scanned for p in parts) == 12 and sum(p.updated for p in parts) == 12
    assert len(pages) > 3  # it really did resume page by page
    for i in range(12):
        profile = bootstrap.repository().find(f"email#b{i}@example.com")
        assert profile.catalog_version == evaluator.version
        assert "recent-buyers" not in profile.segments
    exits = [m["detail"] for m in fake_outbox.drain() if m["detail-type"] == "SegmentExited"]
    assert len(exits) == 12 and {d["cause"] for d in exits} == {"catalog"}
    progress = bootstrap.repository().progress(backfill.job)
    assert sum(p["scanned"] for p in progress) == 12 and all(p["done"] for p in progress)
    # A rerun finds nothing left to do.
    again = [backfill.work(SegmentProgress(segment=s, total=3)) for s in range(3)]
    assert sum(p.updated for p in again) == 0


def test_bus_failure_parks_changes_and_the_next_touch_publishes_them(fakes, fake_outbox, monkeypatch):
    bootstrap.profile_service().apply(order_event(1, hours_ago=0))
    fake_outbox.drain()
    publisher = bootstrap.publisher()
    real = publisher.publish_changes
    monkeypatch.setattr(publisher, "publish_changes", lambda changes: (_ for _ in ()).throw(RuntimeError("bus down")))
    when = int(first_tick_after(NOW + timedelta(days=14)).timestamp())
    bootstrap.sweep().run(when)
    assert "recent-buyers" not in segments()
    assert bootstrap.repository().find("email#ana@example.com").outbox  # parked, not lost
    monkeypatch.setattr(publisher, "publish_changes", real)
    bootstrap.profile_service().apply(view("ana@example.com", 0))
    exits = [m["detail"]["segment_id"] for m in fake_outbox.drain() if m["detail-type"] == "SegmentExited"]
    assert "recent-buyers" in exits
    assert not bootstrap.repository().find("email#ana@example.com").outbox


def test_changes_parked_by_a_bus_failure_go_out_with_the_next_sweep_without_any_new_event(fakes, fake_outbox,
                                                                                         monkeypatch):
    publisher = bootstrap.publisher()
    real = publisher.publish_changes
    monkeypatch.setattr(publisher, "publish_changes", lambda changes: (_ for _ in ()).throw(RuntimeError("bus down")))
    bootstrap.profile_service().apply(order_event(1, hours_ago=0))
    assert bootstrap.repository().find("email#ana@example.com").outbox  # the event's changes, parked
    monkeypatch.setattr(publisher, "publish_changes", real)
    report = bootstrap.sweep().run(int(time.time()) + TICK)  # the next scheduled run
    assert report.evaluated == 1
    entered = {m["detail"]["segment_id"] for m in fake_outbox.drain() if m["detail-type"] == "SegmentEntered"}
    assert "recent-buyers" in entered
    assert not bootstrap.repository().find("email#ana@example.com").outbox


def test_order_value_kept_as_decimal_through_the_sweep(sweep_at):
    bootstrap.profile_service().apply(order_event(1, hours_ago=0, total="499.99"))
    sweep_at(first_tick_after(NOW + timedelta(days=14)))
    profile = bootstrap.repository().find("email#ana@example.com")
    assert Decimal(profile.traits["lifetime_value"]) == Decimal("499.99")


def _email(n, type_, ago_s, message):
    from segmentation.domain.events import EmailProperties

    return CustomerEvent(event_id=f"em-{n}", source="test", type=type_, occurred_at=NOW - timedelta(seconds=ago_s),
                         identity=Identity(email="ana@example.com"), properties=EmailProperties(message_id=message))


def _subscribed(ago_s):
    from segmentation.domain.events import CustomerProperties, EmailConsent

    at = NOW - timedelta(seconds=ago_s)
    return CustomerEvent(event_id="sub", source="test", type=EventType.CUSTOMER, occurred_at=at,
                         identity=Identity(email="ana@example.com"),
                         properties=CustomerProperties(email_consent=EmailConsent(state="subscribed", updated_at=at)))


SCENARIOS = {
    # segment: (events, the boundary instant (seconds after NOW) at which it is left, membership before)
    "new-subscribers": (lambda: [_subscribed(0)], 30 * DAY),
    "fatigued": (lambda: [_email(i, EventType.EMAIL_DELIVERED, i * 60, f"m{i}") for i in range(5)], 7 * DAY - 4 * 60),
    "high-engagement": (lambda: [e for i in range(4) for e in (
        _email(f"d{i}", EventType.EMAIL_DELIVERED, i * 60, f"m{i}"), _email(f"o{i}", EventType.EMAIL_OPENED, i * 60, f"m{i}"))],
        30 * DAY - 3 * 60),
    "category-browsers:shirts": (lambda: [view("ana@example.com", 0)], 30 * DAY),
    "cross-sell-accessories": (lambda: [order_event(1, hours_ago=0), view("ana@example.com", 0, category="accessories")],
                               14 * DAY),
}


@pytest.mark.parametrize("segment", sorted(SCENARIOS))
def test_each_time_based_segment_is_left_at_the_first_sweep_after_its_boundary(sweep_at, segment):
    make, leaves_after = SCENARIOS[segment]
    for e in make():
        bootstrap.profile_service().apply(e)
    assert segment in segments()
    boundary = NOW + timedelta(seconds=leaves_after)
    sweep_at(first_tick_after(boundary) - timedelta(seconds=TICK))
    assert segment in segments()
    sweep_at(first_tick_after(boundary))
    assert segment not in segments()
