"""ProfileFunction: SQS batches of CustomerEvent -> profiles, memberships, published changes; on the
in-memory fakes (tests/fakes.py), except the count of DynamoDB requests, which needs DynamoDB (moto)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from segctl.runtime import context_for, load_handler
from segmentation import bootstrap
from segmentation.domain.evaluation import default_evaluator
from segmentation.infra.profile_store import DynamoDBProfileStore
from segmentation.service.profiles import ProfileService
from segmentation.sources import shopify
from support import sqs_batch

NOW = datetime.now(UTC).replace(microsecond=0)


def order_event(order_id: int, email: str = "ana@example.com", hours_ago: float = 1, total: str = "50.00",
                topic: str = "orders/create", updated_hours_ago: float | None = None, **extra):
    created = NOW - timedelta(hours=hours_ago)
    updated = NOW - timedelta(hours=hours_ago if updated_hours_ago is None else updated_hours_ago)
    payload = {"id": order_id, "email": email, "created_at": created.isoformat(), "updated_at": updated.isoformat(),
               "total_price": total, "customer": {"id": 42 if email == "ana@example.com" else hash(email) % 10**6}, **extra}
    [event] = shopify.normalise(topic, "shop.myshopify.com", payload, "k").events
    return event


def checkout_event(token: str, email: str = "ana@example.com", hours_ago: float = 2):
    started = (NOW - timedelta(hours=hours_ago)).isoformat()
    payload = {"token": token, "email": email, "created_at": started, "updated_at": started, "total_price": "20.00",
               "completed_at": None}
    [event] = shopify.normalise("checkouts/create", "shop.myshopify.com", payload, "k").events
    return event


@pytest.fixture
def invoke(fakes):
    handler = load_handler(fakes.template.functions()["ProfileFunction"])
    return lambda event: handler(event, context_for(fakes.template, "ProfileFunction"))


def find(email: str):
    return bootstrap.repository().find(f"email#{email}")


def test_two_orders_make_a_recent_repeat_buyer_and_publish_segment_entered(invoke, fake_outbox):
    assert invoke(sqs_batch(order_event(1, hours_ago=48), order_event(2))) == {"batchItemFailures": []}
    profile = find("ana@example.com")
    assert profile.traits["order_count"] == 2
    assert {"recent-buyers", "repeat-buyers"} <= set(profile.segments)
    published = fake_outbox.drain()
    entered = {(m["detail"]["segment_id"], m["detail"]["cause"]) for m in published if m["detail-type"] == "SegmentEntered"}
    assert {s for s, _ in entered} == {"recent-buyers", "repeat-buyers"}
    for m in published:
        assert set(m["detail"]) == {"profile_id", "segment_id", "at", "cause", "version"}
        assert m["detail"]["profile_id"] == profile.profile_id


def test_redelivered_event_counts_once_and_republishes_its_changes(invoke, fake_outbox):
    event = order_event(1)
    invoke(sqs_batch(event))
    first = fake_outbox.drain()
    invoke(sqs_batch(event))  # SQS/EventBridge at-least-once
    assert find("ana@example.com").traits["order_count"] == 1
    again = fake_outbox.drain()
    # Consumers dedupe on (profile_id, segment_id, version); the replay carries the same versions.
    assert [(m["detail"]["segment_id"], m["detail"]["version"]) for m in again] == \
        [(m["detail"]["segment_id"], m["detail"]["version"]) for m in first]


def test_create_and_update_of_one_order_count_once_and_cancel_removes_it(invoke):
    invoke(sqs_batch(order_event(7, total="600.00"), order_event(7, total="600.00", topic="orders/updated", updated_hours_ago=0.5)))
    profile = find("ana@example.com")
    assert profile.traits["order_count"] == 1
    assert "high-value" in profile.segments
    invoke(sqs_batch(order_event(7, total="600.00", topic="orders/cancelled", updated_hours_ago=0.2,
                                 cancelled_at=NOW.isoformat())))
    profile = find("ana@example.com")
    assert profile.traits["order_count"] == 0
    assert "high-value" not in profile.segments and "recent-buyers" not in profile.segments


def test_checkout_without_order_is_cart_abandoner_until_the_order(invoke, fake_outbox):
    invoke(sqs_batch(checkout_event("co-1", hours_ago=2)))
    assert "cart-abandoners" in find("ana@example.com").segments
    invoke(sqs_batch(order_event(9, hours_ago=0.1)))
    assert "cart-abandoners" not in find("ana@example.com").segments
    exits = [m for m in fake_outbox.drain() if m["detail-type"] == "SegmentExited"]
    assert [m["detail"]["segment_id"] for m in exits] == ["cart-abandoners"]


def test_a_bad_record_fails_alone(invoke):
    result = invoke(sqs_batch(order_event(1), bad=1))
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad0"}]}
    assert find("ana@example.com").traits["order_count"] == 1


def test_email_and_platform_id_reach_the_same_profile(invoke):
    invoke(sqs_batch(order_event(1, email="ana@example.com")))
    # A later order with no email but the same Shopify customer id.
    payload = {"id": 2, "created_at": NOW.isoformat(), "total_price": "10.00", "customer": {"id": 42}}
    [event] = shopify.normalise("orders/create", "shop.myshopify.com", payload, "k").events
    invoke(sqs_batch(event))
    assert find("ana@example.com").traits["order_count"] == 2


def test_membership_items_and_sizes_follow_the_profile(invoke):
    invoke(sqs_batch(order_event(1, email="a@example.com"), order_event(2, email="b@example.com")))
    repo = bootstrap.repository()
    assert repo.segment_size("recent-buyers") == 2
    invoke(sqs_batch(order_event(1, email="a@example.com", topic="orders/cancelled", updated_hours_ago=0,
                                 cancelled_at=NOW.isoformat())))
    assert repo.segment_size("recent-buyers") == 1
    assert repo.members("recent-buyers", 10, None).profile_ids == [find("b@example.com").profile_id]


class CountingClient:
    """Counts DynamoDB requests made through a real client."""

    def __init__(self, client):
        self.client, self.calls = client, []
        client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model, **_):
        self.calls.append(model.name)


def test_profile_path_makes_at_most_three_dynamodb_requests_when_no_membership_changes(aws):
    counter = CountingClient(boto3.client("dynamodb"))
    repo = DynamoDBProfileStore(counter.client, aws.physical_name("ProfilesTable"),
                                aws.physical_name("AliasesTable"), aws.physical_name("MembershipsTable"))
    published = []
    service = ProfileService(repo, default_evaluator(), type("P", (), {"publish_changes": lambda s, c: published.append(c)})(),
                             clock=lambda: int(time.time()))
    service.apply(order_event(1, hours_ago=24 * 40))  # old order: no membership, but creates the profile
    for i in range(2, 30):
        counter.calls.clear()
        # A long history must not make the per-event cost grow.
        service.apply(checkout_event(f"co-{i}", hours_ago=24 * 8))  # outside every window: no change
        assert len(counter.calls) <= 3, counter.calls


def test_concurrent_writers_never_lose_an_update(fakes):
    """Eight writers read the same version, then all write: the condition makes the losers retry."""
    writers = 8
    barrier = threading.Barrier(writers)

    class RacingRepository:
        """The fakes' store (which writes atomically, as DynamoDB does one item), read by every writer
        before any writes."""

        first_load = threading.local()

        def __getattr__(self, name):
            return getattr(fakes.store, name)

        def load(self, alias_keys):
            loaded = fakes.store.load(alias_keys)
            if not getattr(self.first_load, "done", False):
                self.first_load.done = True
                barrier.wait(timeout=30)  # everyone has read the same version before anyone writes
            return loaded

    # The profile exists first, so every writer races on the same item.
    bootstrap.profile_service().apply(order_event(100, hours_ago=24 * 100))
    errors = []

    def write(i):
        try:
            ProfileService(RacingRepository(), default_evaluator(), bootstrap.publisher(), clock=lambda: int(time.time())).apply(order_event(i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    profile = find("ana@example.com")
    assert profile.traits["order_count"] == writers + 1
    assert profile.version == writers + 1
