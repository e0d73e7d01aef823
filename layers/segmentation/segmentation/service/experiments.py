"""Experiments on segment definitions (issue 15, docs/measure.md): each arm's figures from its own
segment's daily figures, the difference of the two rates with its interval, a two-proportion z test,
and the sample size still needed before a verdict.

The statistics are the textbook ones, written with the standard library (``statistics.NormalDist``)
so the API function needs nothing more; tests check them against statsmodels:

* the difference ``p_b - p_a`` with a Wald (unpooled) 95% interval;
* the two-sided two-proportion z test with the pooled proportion (``proportions_ztest``);
* the sample size per arm to detect ``min_detectable_effect`` from the first arm's rate at
  ``alpha`` and ``power``, with Cohen's effect size h (``NormalIndPower`` on ``proportion_effectsize``).

No winner is named before both arms have that many trials (the metric's denominator: delivered
messages, or opened ones for click-to-open): looking early and stopping at the first small p-value
declares false winners far more often than ``alpha`` says.
"""

from __future__ import annotations

import math
from datetime import date
from statistics import NormalDist

from ..domain.catalog import Catalog, ExperimentSpec
from .segment_metrics import RATES, MetricsStore, report, wilson

#: metrics where fewer is better (the winner is the arm with the lower rate)
LOWER_IS_BETTER = {"unsubscribe_rate"}
_N = NormalDist()


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """The two-sided p-value of ``s1/n1`` vs ``s2/n2`` (z test, pooled proportion); None if undefined."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (s2 / n2 - s1 / n1) / se
    return 2 * (1 - _N.cdf(abs(z)))


def difference_interval(s1: int, n1: int, s2: int, n2: int, alpha: float = 0.05) -> tuple[float, float] | None:
    """The Wald interval of ``p2 - p1`` (unpooled standard error)."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = s1 / n1, s2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    z = _N.inv_cdf(1 - alpha / 2)
    return p2 - p1 - z * se, p2 - p1 + z * se


def sample_size_per_arm(baseline: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Trials per arm to detect ``baseline`` -> ``baseline + effect`` (two-sided), with Cohen's h;
    None when the target rate is outside (0, 1)."""
    target = baseline + effect
    if not 0 < target < 1 or not 0 <= baseline < 1:
        target = baseline - effect  # near 1, look for a drop of the same size
        if not 0 < target < 1:
            return None
    h = abs(2 * math.asin(math.sqrt(target)) - 2 * math.asin(math.sqrt(baseline)))
    if h == 0:
        return None
    z = _N.inv_cdf(1 - alpha / 2) + _N.inv_cdf(power)
    return math.ceil(2 * (z / h) ** 2)  # 2 arcsin(sqrt(p)) has variance 1/n; a difference of two, 2/n


def experiment_report(experiment_id: str, spec: ExperimentSpec, store: MetricsStore, sizes: dict[str, int],
                      start: date, end: date) -> dict:
    """One experiment over ``start``..``end``: per arm its size now, trials and successes of the
    metric, the rate with its Wilson interval; the difference, p-value, sample size and verdict."""
    numerator, denominator = RATES[spec.metric]
    arms = []
    for variant, segment_id, _ in spec.arms(experiment_id):
        totals = report(store, segment_id, start, end)["totals"]
        n, s = totals[denominator], min(totals[numerator], totals[denominator])
        interval = wilson(s, n)
        arms.append({"variant": variant, "segment_id": segment_id, "size": sizes.get(segment_id, 0),
                     "trials": n, "successes": s, "rate": s / n if n else None,
                     "ci95": list(interval) if interval else None})
    a, b = arms
    diff = difference_interval(a["successes"], a["trials"], b["successes"], b["trials"], spec.alpha)
    p_value = two_proportion_test(a["successes"], a["trials"], b["successes"], b["trials"])
    needed = (sample_size_per_arm(a["rate"], spec.min_detectable_effect, spec.alpha, spec.power)
              if a["rate"] is not None else None)
    verdict, text = _verdict(spec, a, b, needed, p_value)
    return {"id": experiment_id, "name": spec.name, "description": spec.description, "metric": spec.metric,
            "split": spec.split, "segment_id": experiment_id, "arms": arms,
            "difference": {"value": None if diff is None else b["rate"] - a["rate"],
                           "ci95": None if diff is None else list(diff)},
            "p_value": p_value, "min_detectable_effect": spec.min_detectable_effect, "alpha": spec.alpha,
            "power": spec.power, "needed_per_arm": needed, "verdict": verdict, "verdict_text": text}


def _verdict(spec: ExperimentSpec, a: dict, b: dict, needed: int | None, p_value: float | None) -> tuple[str, str]:
    have = min(a["trials"], b["trials"])
    if needed is None:
        return "collecting", ("Collecting: the first arm has no rate yet, so the trials each arm needs are not "
                              "known. No winner before then.")
    if have < needed:
        return "collecting", (f"Collecting: each arm needs {needed:,} trials to detect a difference of "
                              f"{spec.min_detectable_effect:.1%}; the smaller arm has {have:,} "
                              f"({needed - have:,} more to go). No winner before then.")
    if p_value is None or p_value >= spec.alpha:
        return "no difference", (f"No difference of {spec.min_detectable_effect:.1%} or more detected "
                                 f"(p = {'n/a' if p_value is None else f'{p_value:.3f}'}): keep the simpler definition.")
    better_b = (b["rate"] < a["rate"]) if spec.metric in LOWER_IS_BETTER else (b["rate"] > a["rate"])
    winner = b if better_b else a
    return winner["variant"], (f"Variant {winner['variant']} is better on {spec.metric} (p = {p_value:.3f}); "
                               f"make its definition the segment's and end the experiment.")


def experiment_reports(catalog: Catalog, store: MetricsStore, sizes: dict[str, int], start: date,
                       end: date) -> list[dict]:
    return [experiment_report(eid, spec, store, sizes, start, end) for eid, spec in catalog.experiments.items()]
