"""Per-segment daily figures (issue 15): a batch's messages summed per segment and day, stored once per
batch (a retry adds nothing), read back per day; rates with 95% intervals checked against statsmodels."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from fakes import InMemoryMetricsStore
from segmentation import bootstrap
from segmentation.infra.metrics_store import DynamoDBMetricsStore
from segmentation.service.segment_metrics import ACCOUNT, parse, rates, summed, wilson
from statsmodels.stats.proportion import proportion_confint


def envelope(kind: str, detail: dict) -> str:
    return json.dumps({"detail-type": kind, "detail": detail})


BATCH = [
    envelope("SegmentMetrics", {"profile_id": "p1", "cause": "e1", "facts": [
        {"kind": "delivered", "segments": ["at-risk", "high-value"], "at": "2026-11-30T23:59:59Z", "revenue": None},
        {"kind": "opened", "segments": ["at-risk"], "at": "2026-12-01T00:00:01Z", "revenue": None}]}),
    envelope("SegmentMetrics", {"profile_id": "p2", "cause": "e2", "facts": [
        {"kind": "conversion", "segments": ["at-risk"], "at": "2026-12-01T10:00:00Z", "revenue": "59.90"},
        {"kind": "conversion", "segments": ["at-risk"], "at": "2026-12-01T11:00:00Z", "revenue": "40.10"}]}),
    envelope("SegmentEntered", {"profile_id": "p3", "segment_id": "at-risk", "at": "2026-12-01T09:00:00Z",
                                "cause": "time", "version": 4}),
    envelope("SegmentExited", {"profile_id": "p1", "segment_id": "high-value", "at": "2026-12-01T09:00:00Z",
                               "cause": "e9", "version": 7}),
]


def test_a_batch_is_summed_per_segment_and_utc_day():
    sums = summed(parse(b) for b in BATCH)
    assert sums[("at-risk", "2026-11-30")].counts == {"delivered": 1}
    day = sums[("at-risk", "2026-12-01")]
    assert day.counts == {"opened": 1, "conversions": 2, "entered": 1} and day.revenue == Decimal("100.00")
    assert sums[("high-value", "2026-12-01")].counts == {"exited": 1}
    # every fact also counts once for the whole account (the base of comparisons), changes do not
    assert sums[(ACCOUNT, "2026-11-30")].counts == {"delivered": 1}
    assert sums[(ACCOUNT, "2026-12-01")].counts == {"opened": 1, "conversions": 2}
    assert len(sums) == 6  # one counter update per segment and day the batch touches


@pytest.fixture(params=["memory", "dynamodb"])
def store(request):
    if request.param == "dynamodb":
        template = request.getfixturevalue("aws")
        return DynamoDBMetricsStore(bootstrap._client("dynamodb"), template.physical_name("MetricsTable"))
    return InMemoryMetricsStore()


def test_figures_are_added_once_per_batch_and_read_back_per_day(store):
    sums = summed(parse(b) for b in BATCH)
    store.add(sums, "batch-1")
    store.add(sums, "batch-1")  # the same batch retried: nothing more
    store.add(summed([parse(BATCH[0])]), "batch-2")
    days = store.days("at-risk", "2026-11-30", "2026-12-01")
    assert days["2026-11-30"].counts == {"delivered": 2}
    assert days["2026-12-01"].counts == {"opened": 2, "conversions": 2, "entered": 1}
    assert days["2026-12-01"].revenue == Decimal("100.00")
    assert store.days("at-risk", "2026-12-02", "2026-12-31") == {}


@pytest.mark.parametrize(("successes", "trials"), [(81, 263), (0, 10), (10, 10), (1, 1), (532, 10000)])
def test_the_wilson_interval_is_statsmodels(successes, trials):
    assert wilson(successes, trials) == pytest.approx(proportion_confint(successes, trials, method="wilson"))


def test_rates_have_their_intervals_and_none_without_a_denominator():
    out = rates({"delivered": 263, "opened": 81})
    assert out["open_rate"]["value"] == pytest.approx(81 / 263)
    assert out["open_rate"]["ci95"] == pytest.approx(list(proportion_confint(81, 263, method="wilson")))
    assert out["click_to_open_rate"] == {"value": 0.0, "ci95": pytest.approx(list(proportion_confint(0, 81, method="wilson")))}
    assert rates({})["open_rate"] == {"value": None, "ci95": None}


def test_a_batch_that_failed_half_way_is_completed_by_its_retry_not_doubled(aws):
    """The store writes one item per (segment, day); a fault after the first leaves the rest to the
    retry, which adds only them, even with another batch added to the same items in between."""
    real = bootstrap._client("dynamodb")
    store = DynamoDBMetricsStore(real, aws.physical_name("MetricsTable"))
    sums = summed(parse(b) for b in BATCH)  # four (segment, day) items

    class Faulty:
        exceptions = real.exceptions
        calls = 0

        def update_item(self, **kwargs):
            Faulty.calls += 1
            if Faulty.calls == 2:
                raise ConnectionError("the network went away")
            return real.update_item(**kwargs)

    with pytest.raises(ConnectionError):
        DynamoDBMetricsStore(Faulty(), aws.physical_name("MetricsTable")).add(sums, "batch-1")
    store.add(summed([parse(BATCH[0])]), "batch-2")  # another batch, between the fault and the retry
    store.add(sums, "batch-1")
    days = store.days("at-risk", "2026-11-30", "2026-12-01")
    assert days["2026-11-30"].counts == {"delivered": 2}  # batch-1 once (before the fault) + batch-2
    assert days["2026-12-01"].counts == {"opened": 2, "conversions": 2, "entered": 1}
    assert store.days("high-value", "2026-11-30", "2026-12-01")["2026-12-01"].counts == {"exited": 1}


def test_members_at_the_end_of_each_day_are_the_size_now_less_the_later_days_net_entries():
    from datetime import date

    from segmentation.service.segment_metrics import DayFigures, report

    store = InMemoryMetricsStore()
    store.add({("vip", "2026-11-28"): DayFigures(counts={"entered": 3, "exited": 1}),
               ("vip", "2026-12-01"): DayFigures(counts={"entered": 1})}, "t")
    out = report(store, "vip", date(2026, 11, 27), date(2026, 11, 30), size_now=10, today=date(2026, 12, 1))
    assert [(d["day"], d["members"]) for d in out["days"]] == [
        ("2026-11-27", 7), ("2026-11-28", 9), ("2026-11-29", 9), ("2026-11-30", 9)]
    assert out["totals"]["entered"] == 3  # today's entry is after the period: not in its totals
    assert "members" not in report(store, "vip", date(2026, 11, 27), date(2026, 11, 30))["days"][0]
