"""Window maths over sorted event times: counts at an instant, and the next instant a count flips.

Time semantics (docs/contracts.md#time), in whole epoch seconds: "in the last N" holds events with
``e > t - N``; "more than N ago" is ``t - e > N``; "at most N ago" is ``t - e <= N``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from ..catalog import Comparison

State = TypeVar("State")


def window_count(times: list[int], t: int, within: int | None, older_than: int | None) -> int:
    """Events with e > t - within (if a window) and t - e > older_than (if given)."""
    lo = 0 if within is None else bisect.bisect_right(times, t - within)
    hi = len(times) if older_than is None else bisect.bisect_right(times, t - older_than - 1)
    return max(0, hi - lo)


def flip(instants: Iterable[int], t: int, state_at: Callable[[int], State], truth: Callable[[State], bool]) -> int | None:
    """First instant > t (from the sorted iterable ``instants``) at which ``truth(state_at(x))`` differs."""
    current = truth(state_at(t))
    previous = None
    for x in instants:
        if x <= t or x == previous:
            continue
        previous = x
        if truth(state_at(x)) != current:
            return x
    return None


def count_flip(times: list[int], t: int, within: int, truth: Callable[[int], bool]) -> int | None:
    """First instant > t at which ``truth(count in window)`` flips, as events only leave the window.

    Walks the departures in time order keeping a running count: O(events in the window).
    """
    lo = bisect.bisect_right(times, t - within)
    count = len(times) - lo
    current = truth(count)
    if isinstance(truth, Comparison) and truth.op not in ("==", "!="):
        # Monotone: the count only falls, so find the count at which the answer flips, and
        # the departure that brings it there.
        k = truth.value
        if truth.op in (">=", ">"):
            target = (math.ceil(k) - 1) if truth.op == ">=" else math.floor(k)
            flips = current
        else:
            target = (math.ceil(k) - 1) if truth.op == "<" else math.floor(k)
            flips = not current
        if not flips or target < 0 or count <= target:
            return None
        return times[lo + (count - target) - 1] + within
    i = lo
    while i < len(times):
        instant = times[i] + within
        while i < len(times) and times[i] + within == instant:  # simultaneous departures
            count -= 1
            i += 1
        if truth(count) != current:
            return instant
    return None


def dropouts(times: list[int], t: int, within: int) -> Iterator[int]:
    """Instants (sorted) at which events of ``times`` leave the window, after ``t``."""
    for i in range(bisect.bisect_right(times, t - within), len(times)):
        yield times[i] + within


def ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den
