"""Per-segment daily figures (issue 15): a batch's messages summed per segment and day, stored once per
batch (a retry adds nothing), read back per day; rates with 95% intervals checked against statsmodels."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from fakes import InMemoryMetricsStore
from segmentation import bootstrap
from segmentation.infra.metrics_store import DynamoDBMetricsStore
from segmentation.service.segment_metrics import parse, rates, summed, wilson
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
    assert len(sums) == 4  # one counter update per segment and day the batch touches


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
