"""Cohorts (issue 15): customers by first-order month, repeat rate and average lifetime value, members
vs non-members of a segment; a scan cut short by its time budget resumes from its cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fakes import InMemoryProfileStore
from segmentation.domain.profile import OrderRecord, Profile
from segmentation.service.cohorts import InvalidCohortCursorError, cohorts


def ts(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())


def customer(pid: str, first: str, orders: int, value: str, segments: list[str] = ()) -> Profile:
    p = Profile(profile_id=pid, segments=list(segments))
    for i in range(orders):  # the first at ``first``, the others later; the value split evenly
        p.orders[f"{pid}-{i}"] = OrderRecord(at=ts(first) + i * 86400 * 40, total=Decimal(value) / orders,
                                             status="placed", updated=1)
    p.orders[f"{pid}-x"] = OrderRecord(at=ts("2025-01-01T00:00:00"), total=Decimal(999), status="cancelled",
                                       updated=1)  # never counts
    return p


@pytest.fixture
def store():
    s = InMemoryProfileStore(due_shards=4)
    people = [customer("a", "2026-01-31T23:59:59", 1, "50", ["vip"]),
              customer("b", "2026-01-05T00:00:00", 3, "150", ["vip"]),
              customer("c", "2026-02-01T00:00:00", 2, "80"),
              customer("d", "2026-02-10T00:00:00", 1, "20"),
              customer("e", "2026-02-11T00:00:00", 0, "0")]  # only a cancelled order: in no cohort
    for p in people:
        s.save(p, [], [])
    return s


def test_customers_by_first_order_month_with_repeat_rate_and_average_value(store):
    out = cohorts(store)
    assert out["months"] == [
        {"month": "2026-01", "customers": 2, "repeat_rate": 0.5, "avg_ltv": "100.00"},
        {"month": "2026-02", "customers": 2, "repeat_rate": 0.5, "avg_ltv": "50.00"}]
    assert out["complete"] and out["cursor"] is None and out["scanned"] == 5 and out["segment"] is None


def test_members_against_non_members_of_a_segment(store):
    seg = cohorts(store, "vip")["segment"]
    assert seg["members"] == {"customers": 2, "repeat_rate": 0.5, "avg_ltv": "100.00"}
    assert seg["non_members"] == {"customers": 2, "repeat_rate": 0.5, "avg_ltv": "50.00"}


def test_a_scan_out_of_time_hands_back_a_cursor_that_finishes_it(store, monkeypatch):
    import segmentation.service.cohorts as module

    monkeypatch.setattr(module, "SCAN_PAGE", 2)
    ticks = iter(range(1000))
    first = cohorts(store, "vip", budget_s=0.5, clock=lambda: next(ticks))  # out of time after one page
    assert not first["complete"] and first["scanned"] == 2
    rest = cohorts(store, "vip", first["cursor"])
    assert rest["complete"] and rest["scanned"] == 5
    assert rest["months"] == cohorts(store)["months"] and rest["segment"] == cohorts(store, "vip")["segment"]
    with pytest.raises(InvalidCohortCursorError, match="another request"):
        cohorts(store, "other", first["cursor"])
    with pytest.raises(InvalidCohortCursorError):
        cohorts(store, None, "not-a-cursor")


@pytest.mark.parametrize("crafted", [
    {"of": None, "key": {"profile_id": {"N": "1"}}},  # a key DynamoDB would refuse (a 500 if passed on)
    {"of": None, "key": {"email": {"S": "x"}}},
    {"of": None, "months": {"2026-01": {"customers": -1}}},
    {"of": None, "months": {"2026-01": {"value": "Infinity"}}},  # would break the average
    {"of": None, "months": {"January": {}}},
    {"of": None, "scanned": "many"},
    {"of": None, "extra": 1},
    ["not", "an", "object"],
])
def test_a_crafted_cursor_is_refused_before_it_reaches_the_store(store, crafted):
    import base64
    import json
    import zlib

    cursor = base64.urlsafe_b64encode(zlib.compress(json.dumps(crafted).encode())).decode().rstrip("=")
    with pytest.raises(InvalidCohortCursorError, match="not one a cohorts request issued"):
        cohorts(store, None, cursor)
