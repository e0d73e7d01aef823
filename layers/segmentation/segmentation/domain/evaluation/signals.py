"""The profile's compact state projected into one time-sorted :class:`Series` per signal.

A :class:`Signals` lives for one evaluation: each series (and each grouping of one) is built the
first time a condition or a trait reads it, then shared.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..catalog import BROWSE
from ..profile import Profile

#: an event's value: a browsing number (float), an order total (Decimal) or none
Value = Decimal | float | None
#: one event as (time, category, value, key, completed)
Row = tuple[int, str | None, Value, str | None, bool]
#: signals whose series covers the whole history (orders), not just the retention window
LIFETIME = frozenset({"order_placed", "order_item"})


def as_decimal(v: Value) -> Decimal | None:
    """``v`` as a Decimal (through its shortest repr for floats, so 0.1 stays 0.1)."""
    return v if v is None or isinstance(v, Decimal) else Decimal(str(v))


class Series:
    """Events of one or more signals as parallel columns sorted by time ``t`` (read-only)."""

    __slots__ = ("t", "cat", "value", "key", "completed")

    def __init__(self, rows: list[Row] | None = None, *, t: list[int] | None = None, cat: list[str | None] | None = None,
                 value: list[Value] | None = None, key: list[str | None] | None = None) -> None:
        """From ``rows`` (sorted here), or from columns already sorted by ``t`` (not copied)."""
        if rows is not None:
            rows.sort(key=lambda r: r[0])
            self.t: list[int] = [r[0] for r in rows]
            self.cat: list[str | None] = [r[1] for r in rows]
            self.value: list[Value] = [r[2] for r in rows]
            self.key: list[str | None] = [r[3] for r in rows]
            self.completed: list[bool] = [r[4] for r in rows]
        else:
            times: list[int] = t if t is not None else []
            n = len(times)
            self.t, self.cat, self.value = times, cat if cat is not None else [None] * n, value if value is not None else [None] * n
            self.key, self.completed = key if key is not None else [None] * n, [False] * n

    def __len__(self) -> int:
        return len(self.t)

    def start(self, t: int, within: int | None) -> int:
        """Index of the first event inside the window "in the last ``within``" at ``t``."""
        return 0 if within is None else bisect.bisect_right(self.t, t - within)

    def subset(self, indexes: Iterable[int]) -> Series:
        return Series([(self.t[i], self.cat[i], self.value[i], self.key[i], self.completed[i]) for i in indexes])


EMPTY = Series([])
#: email signals -> the attribute of a message record holding their time
_MESSAGE_TIMES = {"email_delivered": "d", "email_opened": "o", "email_clicked": "c"}


class Signals:
    """The profile's state as one :class:`Series` per signal, built lazily once per evaluation."""

    def __init__(self, profile: Profile, horizon: int | None = None) -> None:
        """``horizon``: email events at or before it are outside every window read (not built)."""
        self.p = profile
        self.horizon = horizon
        self._series: dict[Any, Any] = {}

    def series(self, signal: str) -> Series:
        if signal not in self._series:
            self._series[signal] = self._build(signal)
        return self._series[signal]

    def _build(self, signal: str) -> Series:
        p = self.p
        if signal in BROWSE:
            cols = p.browse.get(signal)
            if cols is None:
                return EMPTY
            return Series(t=cols.t, cat=cols.c, value=cols.v)  # floats; see as_decimal
        if signal == "order_placed":
            return Series([(o.at, None, o.total, k, False) for k, o in p.orders.items() if o.counts])
        if signal == "order_item":
            return Series([(o.at, c, None, None, False) for o in p.orders.values() if o.counts for c in o.cats])
        if signal == "checkout_started":
            return Series([(c.started, None, None, k, c.completed) for k, c in p.checkouts.items()])
        if signal in _MESSAGE_TIMES:
            attr = _MESSAGE_TIMES[signal]
            h = self.horizon if self.horizon is not None else -1
            rows = sorted((x, k) for k, m in p.messages.items() if (x := getattr(m, attr)) is not None and x > h)
            return Series(t=[r[0] for r in rows], key=[r[1] for r in rows])
        return EMPTY

    def times_of(self, signals: tuple[str, ...]) -> list[int]:
        """Sorted times of the events of all ``signals``."""
        if len(signals) == 1:
            return self.series(signals[0]).t
        key = ("times", signals)
        if key not in self._series:
            merged: list[int] = []
            for s in signals:
                merged += self.series(s).t
            merged.sort()  # concatenated sorted runs: linear in C
            self._series[key] = merged
        return self._series[key]

    def by_category(self, signals: tuple[str, ...]) -> dict[str, list[int]]:
        """Sorted times per category of the events of ``signals`` (one pass per signal, memoised)."""
        key = ("bycat", signals)
        if key not in self._series:
            if len(signals) == 1:
                groups: dict[str, list[int]] = {}
                x = self.series(signals[0])
                for t, c in zip(x.t, x.cat, strict=True):
                    if c is not None:
                        if c in groups:
                            groups[c].append(t)
                        else:
                            groups[c] = [t]
            else:
                groups = {}
                for s in signals:
                    for c, times in self.by_category((s,)).items():
                        groups[c] = groups[c] + times if c in groups else times
                if len(signals) > 1:
                    groups = {c: sorted(times) for c, times in groups.items()}
            self._series[key] = groups
        return self._series[key]

    def ratio_times(self, numerator: str, denominator: str, per: str) -> tuple[list[int], list[int]]:
        """Sorted times of the numerator's and the denominator's events.

        ``per: message``: the denominator's messages (by their delivery time) and, of those, the ones
        the numerator happened to (opened, clicked) - so the ratio is a fraction of messages.
        """
        key = ("ratio", numerator, denominator, per)
        if key not in self._series:
            den = self.series(denominator)
            if per == "message":
                hit = set(self.series(numerator).key)
                self._series[key] = ([t for t, k in zip(den.t, den.key, strict=True) if k in hit], den.t)
            else:
                self._series[key] = (self.series(numerator).t, den.t)
        return self._series[key]

    def lifetime(self, signal: str) -> bool:
        """True when the series covers the whole history (orders), not just the retention window."""
        return signal in LIFETIME

    def last(self, signal: str) -> int | None:
        if signal == "any":
            return max(self.p.last_at.values(), default=None)
        if signal in LIFETIME:
            x = self.series(signal)
            return x.t[-1] if x.t else None
        return self.p.last_at.get(signal)

    def first(self, signal: str) -> int | None:
        if signal == "any":
            return self.p.first_seen_at
        if signal in LIFETIME:
            x = self.series(signal)
            return x.t[0] if x.t else None
        return self.p.first_at.get(signal)

    def lifetime_count(self, signal: str) -> int:
        if signal in LIFETIME:
            return len(self.series(signal))
        tot = self.p.totals.get(signal)
        return tot.n if tot else 0

    def lifetime_values(self, signal: str) -> tuple[int, Decimal, Decimal | None, Decimal | None]:
        """(count of valued events, sum, min, max) over the whole history."""
        if signal in LIFETIME:
            values = [d for v in self.series(signal).value if (d := as_decimal(v)) is not None]
            return len(values), sum(values, Decimal(0)), min(values, default=None), max(values, default=None)
        tot = self.p.totals.get(signal)
        if tot is None or tot.min is None:
            return 0, Decimal(0), None, None
        return tot.n, tot.sum, tot.min, tot.max
