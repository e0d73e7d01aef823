"""Experiments on segment definitions (issue 15): arms assigned by a hash of the profile and the
experiment, each arm's membership by its own definition, the union as the audience; the report's
statistics against statsmodels, and no winner before the sample size is reached."""

from __future__ import annotations

from datetime import date

import pytest
from fakes import InMemoryMetricsStore
from segmentation.domain.catalog import Catalog, CatalogError, bucket
from segmentation.domain.evaluation.evaluator import CatalogEvaluator
from segmentation.domain.profile import Profile
from segmentation.service.experiments import (
    difference_interval,
    experiment_report,
    sample_size_per_arm,
    two_proportion_test,
)
from segmentation.service.segment_metrics import DayFigures
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_effectsize, proportions_ztest

CATALOG = """
version: 1
segments:
  buyers:
    name: Buyers
    description: ordered at least once
    when: {{event: {{signal: order_placed}}}}
experiments:
  vip-test:
    name: VIP definition
    description: the tier trait against the vip tag
    metric: {metric}
    split: {split}
    variants:
      tag: {{trait: {{name: vip, equals: "yes"}}}}
      tier: {{trait: {{name: tier, equals: gold}}}}
"""


def catalog(metric: str = "open_rate", split: int = 30) -> Catalog:
    return Catalog.from_yaml(CATALOG.format(metric=metric, split=split))


def test_an_experiment_becomes_one_segment_per_arm_and_their_union():
    c = catalog()
    assert {"vip-test--tag", "vip-test--tier", "vip-test"} <= set(c.segments)
    assert c.segments["vip-test"].name == "VIP definition" and c.segments["vip-test"].sync
    assert c.order.index("vip-test") > max(c.order.index("vip-test--tag"), c.order.index("vip-test--tier"))


def test_each_arm_uses_its_own_definition_and_the_union_is_the_audience():
    evaluator = CatalogEvaluator(catalog(split=30))
    both = {"vip": "yes", "tier": "gold"}
    seen = {"tag": 0, "tier": 0}
    for i in range(400):
        pid = f"p{i}"
        arm = "tag" if bucket(pid, "vip-test") < 30 else "tier"
        seen[arm] += 1
        only_tag = evaluator.evaluate(Profile(profile_id=pid, attributes={"vip": "yes"}), 1_800_000_000).segments
        assert ("vip-test" in only_tag) == (arm == "tag")  # the tier arm's definition ignores the tag
        assert ("vip-test--tag" in only_tag) == (arm == "tag") and "vip-test--tier" not in only_tag
        in_both = evaluator.evaluate(Profile(profile_id=pid, attributes=both), 1_800_000_000).segments
        assert {"vip-test", f"vip-test--{arm}"} <= in_both  # one arm only, whatever the other definition says
        assert f"vip-test--{'tier' if arm == 'tag' else 'tag'}" not in in_both
    assert 0.24 < seen["tag"] / 400 < 0.36  # the split, 30 %


def test_assignment_is_fixed_per_profile_and_independent_across_experiments():
    ids = [f"profile-{i}" for i in range(4000)]
    first = [bucket(p, "one") for p in ids]
    assert first == [bucket(p, "one") for p in ids]
    assert 0.47 < sum(b < 50 for b in first) / 4000 < 0.53
    second = [bucket(p, "two") for p in ids]
    # in "one"'s first half, "two" still splits half and half (no correlation between experiments)
    halves = [s < 50 for f, s in zip(first, second, strict=True) if f < 50]
    assert 0.45 < sum(halves) / len(halves) < 0.55


def test_catalog_errors_name_the_experiment():
    with pytest.raises(CatalogError, match="experiment 'vip-test': metric"):
        Catalog.from_yaml(CATALOG.format(metric="happiness", split=50))
    with pytest.raises(CatalogError, match="split"):
        Catalog.from_yaml(CATALOG.format(metric="open_rate", split=100))
    clash = CATALOG.format(metric="open_rate", split=50).replace("  buyers:", "  vip-test--tag:")
    with pytest.raises(CatalogError, match="also a segment"):
        Catalog.from_yaml(clash)
    unknown = CATALOG.format(metric="open_rate", split=50).replace(
        "when: {event: {signal: order_placed}}", "when: {arm: {experiment: nope, from: 0, to: 50}}")
    with pytest.raises(CatalogError, match="unknown experiment 'nope'"):
        Catalog.from_yaml(unknown)


@pytest.mark.parametrize(("s1", "n1", "s2", "n2"), [(120, 1000, 150, 1000), (30, 200, 22, 180), (5, 40, 9, 41)])
def test_the_statistics_are_statsmodels(s1, n1, s2, n2):
    _, p = proportions_ztest([s2, s1], [n2, n1])
    assert two_proportion_test(s1, n1, s2, n2) == pytest.approx(p, rel=1e-9)
    low, high = confint_proportions_2indep(s2, n2, s1, n1, method="wald", compare="diff")
    assert difference_interval(s1, n1, s2, n2) == pytest.approx((low, high), rel=1e-9)


@pytest.mark.parametrize(("baseline", "effect"), [(0.2, 0.02), (0.05, 0.01), (0.5, 0.1), (0.99, 0.02)])
def test_the_sample_size_is_statsmodels_normal_power(baseline, effect):
    target = baseline + effect if baseline + effect < 1 else baseline - effect
    expected = NormalIndPower().solve_power(effect_size=abs(proportion_effectsize(target, baseline)),
                                            alpha=0.05, power=0.8, ratio=1, alternative="two-sided")
    assert sample_size_per_arm(baseline, effect) == pytest.approx(expected, abs=1.01)  # ceiling, and its tiny far tail


def report_with(delivered: tuple[int, int], opened: tuple[int, int], metric: str = "open_rate",
                counts: str = "opened") -> dict:
    store = InMemoryMetricsStore()
    for sid, d, o in (("vip-test--tag", delivered[0], opened[0]), ("vip-test--tier", delivered[1], opened[1])):
        store.add({(sid, "2026-11-20"): DayFigures(counts={"delivered": d, counts: o})}, sid)
    c = catalog(metric=metric, split=50)
    return experiment_report("vip-test", c.experiments["vip-test"], store, {"vip-test--tag": 7}, date(2026, 11, 1),
                             date(2026, 11, 30))


def test_no_winner_is_named_before_each_arm_has_the_trials_needed_however_small_p():
    out = report_with(delivered=(300, 300), opened=(60, 90))  # 20 % vs 30 %: p < 0.01 already
    assert out["p_value"] < 0.01
    assert out["needed_per_arm"] == sample_size_per_arm(0.2, 0.02) > 300
    assert out["verdict"] == "collecting" and "No winner" in out["verdict_text"]
    assert out["arms"][0]["size"] == 7 and out["arms"][1]["size"] == 0
    assert out["arms"][1]["rate"] == pytest.approx(0.3)
    assert out["difference"]["value"] == pytest.approx(0.1)


def test_a_winner_once_enough_trials_and_a_significant_difference():
    n = sample_size_per_arm(0.2, 0.02)
    assert report_with(delivered=(n, n), opened=(n // 5, n // 5 + n // 20))["verdict"] == "tier"
    assert report_with(delivered=(n, n), opened=(n // 5, n // 5))["verdict"] == "no difference"
    # fewer unsubscribes is better
    out = report_with(delivered=(n + 5000, n + 5000), opened=(400, 250), metric="unsubscribe_rate",
                      counts="unsubscribed")
    assert out["verdict"] == "tier", out["verdict_text"]
