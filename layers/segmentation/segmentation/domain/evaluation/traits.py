"""Computed traits: one function per trait kind, found by kind in :data:`TRAITS`.

A function takes the evaluation's signals, the instant and the trait's body (the one field of its
:class:`~segmentation.domain.catalog.TraitSpec` that is set) and returns the trait's JSON value.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..catalog import ModeTrait, RatioTrait, RfmTrait, ScoreTrait, TraitSpec, WindowedSignals
from ..profile import iso
from .signals import Signals, as_decimal
from .windows import ratio, window_count

#: (signals, now, body) -> the trait's value
TraitFunction = Callable[[Signals, int, Any], Any]


def _values(signals: Signals, names: list[str], within: int | None, now: int) -> list[Decimal]:
    values: list[Decimal] = []
    for s in names:
        if within is None and not signals.lifetime(s):
            _, total, _, _ = signals.lifetime_values(s)
            values.append(total)  # summing lifetime totals keeps sum/avg exact
            continue
        x = signals.series(s)
        values += [d for v in x.value[x.start(now, within):] if (d := as_decimal(v)) is not None]
    return values


def _count(signals: Signals, signal: str, within: int | None, now: int) -> int:
    if within is None:
        return signals.lifetime_count(signal)
    return window_count(signals.series(signal).t, now, within, None)


def count_trait(signals: Signals, now: int, b: WindowedSignals) -> int:
    return sum(_count(signals, s, b.within, now) for s in b.signal)


def sum_trait(signals: Signals, now: int, b: WindowedSignals) -> str:
    return str(sum(_values(signals, b.signal, b.within, now), Decimal(0)))


def avg_trait(signals: Signals, now: int, b: WindowedSignals) -> str | None:
    n = count_trait(signals, now, b)
    if n == 0:
        return None
    avg = sum(_values(signals, b.signal, b.within, now), Decimal(0)) / n
    return str(avg.quantize(Decimal("0.01")))


def first_trait(signals: Signals, now: int, b: WindowedSignals) -> str | None:
    return iso(min((x for s in b.signal if (x := signals.first(s)) is not None), default=None))


def last_trait(signals: Signals, now: int, b: WindowedSignals) -> str | None:
    return iso(max((x for s in b.signal if (x := signals.last(s)) is not None), default=None))


def ratio_trait(signals: Signals, now: int, b: RatioTrait) -> float | None:
    num, den = signals.ratio_times(b.numerator, b.denominator, b.per)
    r = ratio(window_count(num, now, b.within, None), window_count(den, now, b.within, None))
    return None if r is None else round(r, 4)


def mode_trait(signals: Signals, now: int, b: ModeTrait) -> str | None:
    best, best_key = None, None
    for cat, times in signals.by_category(tuple(b.signal)).items():
        n = len(times) - bisect.bisect_right(times, now - b.within)
        if n:
            rank = (n, times[-1], cat)  # most seen; ties: the most recent
            if best_key is None or rank > best_key:
                best, best_key = cat, rank
    return best


def score_trait(signals: Signals, now: int, b: ScoreTrait) -> float:
    raw = sum(w * _count(signals, s, b.within, now) for s, w in b.weights.items())
    return round(min(b.max, raw), 2)


def rfm_trait(signals: Signals, now: int, b: RfmTrait) -> dict[str, int | str] | None:
    last = signals.last("order_placed")
    if last is None:
        return None
    days = (now - last) / 86400
    r = 5 - sum(1 for limit in b.recency_days if days > limit)
    n = signals.lifetime_count("order_placed")
    f = 1 + sum(1 for limit in b.frequency if n >= limit)
    revenue = sum(signals.series("order_placed").value, Decimal(0))  # order totals: all Decimal
    m = 1 + sum(1 for limit in b.monetary if revenue >= Decimal(str(limit)))
    return {"recency": r, "frequency": f, "monetary": m, "score": f"{r}{f}{m}"}


#: trait kind (a field of :class:`~segmentation.domain.catalog.TraitSpec`) -> its function
TRAITS: dict[str, TraitFunction] = {
    "count": count_trait,
    "sum": sum_trait,
    "avg": avg_trait,
    "first": first_trait,
    "last": last_trait,
    "ratio": ratio_trait,
    "mode": mode_trait,
    "score": score_trait,
    "rfm": rfm_trait,
}


def compile_traits(traits: dict[str, TraitSpec]) -> list[tuple[str, TraitFunction, Any]]:
    """(name, function, body) per trait, looked up once per catalog rather than once per evaluation."""
    return [(name, TRAITS[spec.kind], spec.body) for name, spec in traits.items()]


def compute_traits(compiled: list[tuple[str, TraitFunction, Any]], signals: Signals, now: int) -> dict[str, Any]:
    return {name: fn(signals, now, body) for name, fn, body in compiled}
