"""Evaluation of a catalog: a pure function of (profile, catalog, now).

Each condition node answers three questions about an instant ``t``, assuming no new event:
its value, the earliest instant after ``t`` at which its value *may* change (never later
than the real change), and an explanation. Leaves know their change instants exactly (an
event leaving a window at ``t + N days``, becoming old enough at ``t + 1 h + 1 s``, a last
activity crossing 30 days); :func:`CatalogEvaluator.evaluate` walks those instants in order
and returns the first one at which some membership really changes: ``next_due_at``.

Time semantics (design.md §3.5), in whole epoch seconds: "in the last N" holds events with
``e > t - N``; "more than N ago" is ``t - e > N``; "at most N ago" is ``t - e <= N``.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .catalog import (
    BROWSE,
    EMAIL,
    AggregateCondition,
    Catalog,
    Comparison,
    Condition,
    ConsentCondition,
    EventCondition,
    RatioCondition,
    RecencyCondition,
    SegmentSpec,
    TraitCondition,
    _walk,
)
from .events import normalise_category
from .profile import Profile, Retention, iso
from .segments import Evaluation, SegmentDefinition

#: How many "may change" instants the search for next_due_at walks before settling for a
#: conservative (early) answer; the next evaluation then continues from there.
MAX_STEPS = 2000
SUPPRESSED = "suppressed"


class Series:
    """Events of one or more signals as parallel columns sorted by time ``t`` (read-only)."""

    __slots__ = ("t", "cat", "value", "key", "completed")

    def __init__(self, rows: list[tuple] | None = None, *, t=None, cat=None, value=None, key=None) -> None:
        if rows is not None:
            rows.sort(key=lambda r: r[0])
            self.t = [r[0] for r in rows]
            self.cat = [r[1] for r in rows]
            self.value = [r[2] for r in rows]
            self.key = [r[3] for r in rows]
            self.completed = [r[4] for r in rows]
        else:
            n = len(t)
            self.t, self.cat, self.value = t, cat if cat is not None else [None] * n, value if value is not None else [None] * n
            self.key, self.completed = key if key is not None else [None] * n, [False] * n

    def __len__(self) -> int:
        return len(self.t)

    def start(self, t: int, within: int | None) -> int:
        """Index of the first event inside the window "in the last ``within``" at ``t``."""
        return 0 if within is None else bisect.bisect_right(self.t, t - within)

    def subset(self, indexes) -> Series:
        return Series([(self.t[i], self.cat[i], self.value[i], self.key[i], self.completed[i]) for i in indexes])


EMPTY = Series([])


class Signals:
    """The profile's state as one :class:`Series` per signal, built lazily once per evaluation."""

    def __init__(self, profile: Profile, horizon: int | None = None) -> None:
        """``horizon``: email events at or before it are outside every window read (not built)."""
        self.p = profile
        self.horizon = horizon
        self._series: dict = {}

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
            return Series(t=cols.t, cat=cols.c, value=cols.v)  # floats; see _decimal
        if signal == "order_placed":
            return Series([(o.at, None, o.total, k, False) for k, o in p.orders.items() if o.counts])
        if signal == "order_item":
            return Series([(o.at, c, None, None, False) for o in p.orders.values() if o.counts for c in o.cats])
        if signal == "checkout_started":
            return Series([(c.started, None, None, k, c.completed) for k, c in p.checkouts.items()])
        if signal in ("email_delivered", "email_opened", "email_clicked"):
            attr = {"email_delivered": "d", "email_opened": "o", "email_clicked": "c"}[signal]
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

    def lifetime(self, signal: str) -> bool:
        """True when the series covers the whole history (orders), not just the retention window."""
        return signal in ("order_placed", "order_item")

    def last(self, signal: str) -> int | None:
        if signal == "any":
            return max(self.p.last_at.values(), default=None)
        if self.lifetime(signal):
            x = self.series(signal)
            return x.t[-1] if x.t else None
        return self.p.last_at.get(signal)

    def first(self, signal: str) -> int | None:
        if signal == "any":
            return self.p.first_seen_at
        if self.lifetime(signal):
            x = self.series(signal)
            return x.t[0] if x.t else None
        return self.p.first_at.get(signal)

    def lifetime_count(self, signal: str) -> int:
        if self.lifetime(signal):
            return len(self.series(signal))
        tot = self.p.totals.get(signal)
        return tot.n if tot else 0

    def lifetime_values(self, signal: str) -> tuple[int, Decimal, Decimal | None, Decimal | None]:
        """(count of valued events, sum, min, max) over the whole history."""
        if self.lifetime(signal):
            values = [_decimal(v) for v in self.series(signal).value if v is not None]
            return len(values), sum(values, Decimal(0)), min(values, default=None), max(values, default=None)
        tot = self.p.totals.get(signal)
        if tot is None or tot.min is None:
            return 0, Decimal(0), None, None
        return tot.n, tot.sum, tot.min, tot.max


@dataclass
class Context:
    signals: Signals
    evaluator: CatalogEvaluator
    profile: Profile
    memo: dict = field(default_factory=dict)

    def member(self, segment_id: str, t: int) -> bool:
        key = ("member", segment_id, t)
        if key not in self.memo:
            self.memo[key] = self.evaluator.member(self, segment_id, None, t)
        return self.memo[key]


def _window_count(times: list[int], t: int, within: int | None, older_than: int | None) -> int:
    """Events with e > t - within (if a window) and t - e > older_than (if given)."""
    lo = 0 if within is None else bisect.bisect_right(times, t - within)
    hi = len(times) if older_than is None else bisect.bisect_right(times, t - older_than - 1)
    return max(0, hi - lo)


def _flip(instants, t: int, state_at, truth) -> int | None:
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


def _decimal(v) -> Decimal | None:
    return v if v is None or isinstance(v, Decimal) else Decimal(str(v))


def _count_flip(times: list[int], t: int, within: int, truth) -> int | None:
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


def _dropouts(times: list[int], t: int, within: int):
    """Instants (sorted) at which events of ``times`` leave the window, after ``t``."""
    for i in range(bisect.bisect_right(times, t - within), len(times)):
        yield times[i] + within


# -- condition nodes ---------------------------------------------------------------------------


class Node:
    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        raise NotImplementedError

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        return None

    def explain(self, ctx: Context, t: int, fam: str | None) -> dict:
        raise NotImplementedError


class Composite(Node):
    def __init__(self, kind: str, children: list[Node]) -> None:
        self.kind, self.children = kind, children

    def value(self, ctx, t, fam):
        if self.kind == "all":
            for c in self.children:
                if not c.value(ctx, t, fam):
                    return False
            return True
        if self.kind == "any":
            for c in self.children:
                if c.value(ctx, t, fam):
                    return True
            return False
        return not self.children[0].value(ctx, t, fam)

    def next_change(self, ctx, t, fam):
        return min((n for c in self.children if (n := c.next_change(ctx, t, fam)) is not None), default=None)

    def explain(self, ctx, t, fam):
        return {"kind": self.kind, "result": self.value(ctx, t, fam),
                "conditions": [c.explain(ctx, t, fam) for c in self.children]}


class EventNode(Node):
    def __init__(self, c: EventCondition) -> None:
        self.c = c
        self.signals = tuple(c.signal)
        self.uses_value = any(v == "$value" or (isinstance(v, list) and "$value" in v) for v in c.where.values())

    def times(self, ctx: Context, fam: str | None) -> list[int]:
        """Sorted times of the events this condition counts (filters applied), memoised."""
        key = ("times", id(self), fam if self.uses_value else None)
        if key in ctx.memo:
            return ctx.memo[key]
        c = self.c
        times = ctx.signals.times_of(self.signals)
        for prop, wanted in c.where.items():
            if prop == "completed":
                x = ctx.signals.series(self.signals[0])  # only checkout_started has it
                times = [t for t, done in zip(x.t, x.completed, strict=True) if done == bool(wanted)]
            else:
                values = wanted if isinstance(wanted, list) else [wanted]
                grouped = ctx.signals.by_category(self.signals)
                times = []
                for v in {normalise_category(fam if v == "$value" else v) for v in values}:
                    times += grouped.get(v, [])
                times.sort()
        if c.not_followed_by:
            followers = ctx.signals.series(c.not_followed_by).t
            if followers:
                times = times[bisect.bisect_right(times, followers[-1]):]
        ctx.memo[key] = times
        return times

    def _lifetime_totals(self) -> bool:
        return self.c.within is None and any(s in BROWSE | EMAIL for s in self.c.signal)

    def count(self, ctx: Context, t: int, fam: str | None) -> int:
        key = ("count", id(self), fam if self.uses_value else None, t)
        n = ctx.memo.get(key)
        if n is None:
            if self._lifetime_totals():
                n = sum(ctx.signals.lifetime_count(s) for s in self.c.signal)
            else:
                n = _window_count(self.times(ctx, fam), t, self.c.within, self.c.older_than)
            ctx.memo[key] = n
        return n

    def value(self, ctx, t, fam):
        return self.c.count(self.count(ctx, t, fam))

    def next_change(self, ctx, t, fam):
        c = self.c
        if c.within is None and c.older_than is None:
            return None
        key = ("next", id(self), fam if self.uses_value else None, t)
        if key not in ctx.memo:
            ctx.memo[key] = self._next_change(ctx, t, fam)
        return ctx.memo[key]

    def _next_change(self, ctx, t, fam):
        c = self.c
        times = self.times(ctx, fam)
        if c.older_than is None:
            return _count_flip(times, t, c.within, c.count)
        streams = []
        if c.within is not None:
            streams.append(_dropouts(times, t, c.within))
        if c.older_than is not None:
            # events become old enough at e + older_than + 1
            streams.append(x + c.older_than + 1 for x in times[bisect.bisect_right(times, t - c.older_than - 1):])
        return _flip(heapq.merge(*streams), t, lambda x: _window_count(times, x, c.within, c.older_than), c.count)

    def explain(self, ctx, t, fam):
        c = self.c
        return {"kind": "event", "signal": c.signal, "where": {k: (fam if v == "$value" else v) for k, v in c.where.items()},
                "within_s": c.within, "older_than_s": c.older_than, "not_followed_by": c.not_followed_by,
                "count": self.count(ctx, t, fam), "compare": str(c.count), "result": self.value(ctx, t, fam)}


class RecencyNode(Node):
    def __init__(self, c: RecencyCondition, which: str) -> None:
        self.c, self.which = c, which

    def anchor(self, ctx: Context) -> int | None:
        times = [getattr(ctx.signals, self.which)(s) for s in self.c.signal]
        times = [x for x in times if x is not None]
        if not times:
            return None
        return max(times) if self.which == "last" else min(times)

    def value(self, ctx, t, fam):
        a = self.anchor(ctx)
        if a is None:
            return False
        age = t - a
        return (self.c.more_than is None or age > self.c.more_than) and (self.c.at_most is None or age <= self.c.at_most)

    def next_change(self, ctx, t, fam):
        a = self.anchor(ctx)
        if a is None:
            return None
        now = self.value(ctx, t, fam)
        for limit in sorted(x for x in (self.c.more_than, self.c.at_most) if x is not None):
            instant = a + limit + 1
            if instant > t and self.value(ctx, instant, fam) != now:
                return instant
        return None

    def explain(self, ctx, t, fam):
        a = self.anchor(ctx)
        return {"kind": self.which, "signal": self.c.signal, "at": iso(a), "age_s": None if a is None else t - a,
                "more_than_s": self.c.more_than, "at_most_s": self.c.at_most, "result": self.value(ctx, t, fam)}


def _ratio_times(ctx: Context, numerator: str, denominator: str, per: str) -> tuple[list[int], list[int]]:
    """Sorted times of the numerator's and the denominator's events.

    ``per: message``: the denominator's messages (by their delivery time) and, of those, the ones
    the numerator happened to (opened, clicked) - so the ratio is a fraction of messages.
    """
    key = ("ratio", numerator, denominator, per)
    if key not in ctx.memo:
        den = ctx.signals.series(denominator)
        if per == "message":
            hit = set(ctx.signals.series(numerator).key)
            ctx.memo[key] = ([t for t, k in zip(den.t, den.key, strict=True) if k in hit], den.t)
        else:
            ctx.memo[key] = (ctx.signals.series(numerator).t, den.t)
    return ctx.memo[key]


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


class RatioNode(Node):
    def __init__(self, c: RatioCondition) -> None:
        self.c = c

    def counts(self, ctx, t) -> tuple[int, int]:
        num, den = _ratio_times(ctx, self.c.numerator, self.c.denominator, self.c.per)
        w = self.c.within
        return _window_count(num, t, w, None), _window_count(den, t, w, None)

    def _truth(self, counts: tuple[int, int]) -> bool:
        num, den = counts
        return den >= self.c.min_denominator and den > 0 and self.c.compare(num / den)

    def value(self, ctx, t, fam):
        return self._truth(self.counts(ctx, t))

    def next_change(self, ctx, t, fam):
        key = ("ratio-next", id(self), t)
        if key not in ctx.memo:
            ctx.memo[key] = self._next_change(ctx, t)
        return ctx.memo[key]

    def _next_change(self, ctx, t):
        num_t, den_t = _ratio_times(ctx, self.c.numerator, self.c.denominator, self.c.per)
        w = self.c.within
        lo_n, lo_d = bisect.bisect_right(num_t, t - w), bisect.bisect_right(den_t, t - w)
        num, den = len(num_t) - lo_n, len(den_t) - lo_d
        cmp, floor = self.c.compare, max(self.c.min_denominator, 1)

        def truth(n: int, d: int) -> bool:
            return d >= floor and cmp(n / d)

        current = truth(num, den)
        # Departures of both series in time order (a numerator event leaves with its message).
        i, j = lo_n, lo_d
        while i < len(num_t) or j < len(den_t):
            instant = min(num_t[i] + w if i < len(num_t) else math.inf, den_t[j] + w if j < len(den_t) else math.inf)
            while i < len(num_t) and num_t[i] + w == instant:
                num -= 1
                i += 1
            while j < len(den_t) and den_t[j] + w == instant:
                den -= 1
                j += 1
            if truth(num, den) != current:
                return int(instant)
        return None

    def explain(self, ctx, t, fam):
        num, den = self.counts(ctx, t)
        return {"kind": "ratio", "numerator": num, "denominator": den, "ratio": _ratio(num, den),
                "compare": str(self.c.compare), "min_denominator": self.c.min_denominator, "result": self.value(ctx, t, fam)}


def _aggregate(fn: str, values: list[Decimal]) -> Decimal | None:
    if fn == "count":
        return Decimal(len(values))
    if fn == "sum":
        return sum(values, Decimal(0))
    if not values:
        return None
    return {"avg": lambda v: sum(v, Decimal(0)) / len(v), "min": min, "max": max}[fn](values)


class AggregateNode(Node):
    def __init__(self, c: AggregateCondition) -> None:
        self.c = c

    def _valued(self, ctx) -> tuple[list[int], list[Decimal]]:
        key = ("valued", self.c.signal)
        if key not in ctx.memo:
            x = ctx.signals.series(self.c.signal)
            pairs = [(t, _decimal(v)) for t, v in zip(x.t, x.value, strict=True) if v is not None]
            ctx.memo[key] = ([p[0] for p in pairs], [p[1] for p in pairs])
        return ctx.memo[key]

    def amount(self, ctx, t) -> Decimal | None:
        c = self.c
        if c.within is None and not ctx.signals.lifetime(c.signal):
            n, total, lo, hi = ctx.signals.lifetime_values(c.signal)
            return {"count": Decimal(n), "sum": total, "avg": (total / n) if n else None, "min": lo, "max": hi}[c.fn]
        times, values = self._valued(ctx)
        start = 0 if c.within is None else bisect.bisect_right(times, t - c.within)
        return _aggregate(c.fn, values[start:])

    def _truth(self, amount: Decimal | None) -> bool:
        return amount is not None and self.c.compare(float(amount))

    def value(self, ctx, t, fam):
        return self._truth(self.amount(ctx, t))

    def next_change(self, ctx, t, fam):
        if self.c.within is None:
            return None
        times, _ = self._valued(ctx)
        return _flip(_dropouts(times, t, self.c.within), t, lambda x: self.amount(ctx, x), self._truth)

    def explain(self, ctx, t, fam):
        amount = self.amount(ctx, t)
        return {"kind": "aggregate", "fn": self.c.fn, "signal": self.c.signal, "within_s": self.c.within,
                "amount": None if amount is None else str(amount), "compare": str(self.c.compare),
                "result": self.value(ctx, t, fam)}


class TraitNode(Node):
    def __init__(self, c: TraitCondition) -> None:
        self.c = c

    def attribute(self, profile: Profile) -> Any:
        name = self.c.name
        if name == "tags":
            return profile.tags
        if name in ("first_name", "last_name", "email"):
            return getattr(profile, name)
        return profile.attributes.get(name)

    def value(self, ctx, t, fam):
        c, v = self.c, self.attribute(ctx.profile)
        if c.exists is not None:
            return (v is not None and v != []) == c.exists
        if v is None:
            return False
        if c.equals is not None:
            return v == c.equals or (isinstance(v, str) and isinstance(c.equals, str) and v.lower() == c.equals.lower())
        if c.in_ is not None:
            wanted = {str(x).lower() for x in c.in_}
            values = v if isinstance(v, list) else [v]
            return any(str(x).lower() in wanted for x in values)
        if c.contains is not None:
            if isinstance(v, list):
                return c.contains.lower() in {str(x).lower() for x in v}
            return c.contains.lower() in str(v).lower()
        try:
            return c.compare(float(v))
        except (TypeError, ValueError):
            return False

    def explain(self, ctx, t, fam):
        return {"kind": "trait", "name": self.c.name, "actual": self.attribute(ctx.profile), "result": self.value(ctx, t, fam)}


class ConsentNode(Node):
    def __init__(self, c: ConsentCondition) -> None:
        self.c = c

    def value(self, ctx, t, fam):
        consent = ctx.profile.email_consent
        if consent is None or consent.state not in self.c.email:
            return False
        return self.c.changed_within is None or consent.since > t - self.c.changed_within

    def next_change(self, ctx, t, fam):
        consent = ctx.profile.email_consent
        if consent is None or self.c.changed_within is None:
            return None
        instant = consent.since + self.c.changed_within
        return instant if instant > t else None

    def explain(self, ctx, t, fam):
        consent = ctx.profile.email_consent
        return {"kind": "consent", "state": consent.state if consent else None, "since": iso(consent.since) if consent else None,
                "wanted": self.c.email, "changed_within_s": self.c.changed_within, "result": self.value(ctx, t, fam)}


class SegmentNode(Node):
    def __init__(self, segment_id: str) -> None:
        self.segment_id = segment_id

    def value(self, ctx, t, fam):
        return ctx.member(self.segment_id, t)

    def next_change(self, ctx, t, fam):
        return ctx.evaluator.segment_next_change(ctx, self.segment_id, None, t)

    def explain(self, ctx, t, fam):
        return {"kind": "segment", "segment": self.segment_id, "result": self.value(ctx, t, fam)}


def compile_condition(cond: Condition) -> Node:
    kind, body = cond.kind, cond.body
    if kind in ("all", "any"):
        return Composite(kind, [compile_condition(c) for c in body])
    if kind == "not_":
        return Composite("not", [compile_condition(body)])
    if kind == "event":
        return EventNode(body)
    if kind in ("last", "first"):
        return RecencyNode(body, kind)
    if kind == "ratio":
        return RatioNode(body)
    if kind == "aggregate":
        return AggregateNode(body)
    if kind == "trait":
        return TraitNode(body)
    if kind == "consent":
        return ConsentNode(body)
    return SegmentNode(body)


# -- the evaluator ---------------------------------------------------------------------------------


class CatalogEvaluator:
    """Evaluates a :class:`Catalog`; implements :class:`~segmentation.domain.segments.SegmentEvaluator`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.version = catalog.version
        self.retention: Retention = catalog.retention
        self.nodes = {sid: compile_condition(seg.when) for sid, seg in catalog.segments.items()}
        self._suppression = SUPPRESSED in catalog.segments
        self.inputs = {sid: self._inputs(sid) for sid in catalog.segments}

    def _inputs(self, segment_id: str, seen: frozenset = frozenset()) -> frozenset[str]:
        """Everything a segment's membership reads: signals, consent, attributes (transitively)."""
        spec = self._spec(segment_id)
        out: set[str] = set(spec.family.signal) if spec.family else set()
        for cond in _walk(spec.when):
            b = cond.body
            if cond.event:
                out.update(b.signal)
                if b.not_followed_by:
                    out.add(b.not_followed_by)
            elif cond.last or cond.first:
                out.update(b.signal)
            elif cond.ratio:
                out.update((b.numerator, b.denominator))
            elif cond.aggregate:
                out.add(b.signal)
            elif cond.trait:
                out.add("attributes")
            elif cond.consent:
                out.add("consent")
            elif cond.segment and cond.segment not in seen:
                out |= self._inputs(cond.segment, seen | {segment_id})
        if spec.sync and self._suppression and segment_id != SUPPRESSED and SUPPRESSED not in seen:
            out |= self._inputs(SUPPRESSED, seen | {segment_id})
        return frozenset(out)

    def definitions(self) -> list[SegmentDefinition]:
        return [
            SegmentDefinition(id=sid, name=seg.name, description=seg.description, family=seg.family is not None)
            for sid, seg in self.catalog.segments.items()
        ]

    # membership ----------------------------------------------------------------------------
    def _spec(self, segment_id: str) -> SegmentSpec:
        return self.catalog.segments[segment_id]

    def member(self, ctx: Context, segment_id: str, fam: str | None, t: int) -> bool:
        if not self.nodes[segment_id].value(ctx, t, fam):
            return False
        # Synced segments feed ESP lists: they never include suppressed profiles.
        return not (self._spec(segment_id).sync and self._suppression and segment_id != SUPPRESSED
                    and ctx.member(SUPPRESSED, t))

    def segment_next_change(self, ctx: Context, segment_id: str, fam: str | None, t: int) -> int | None:
        candidates = [self.nodes[segment_id].next_change(ctx, t, fam)]
        if self._spec(segment_id).sync and self._suppression and segment_id != SUPPRESSED:
            candidates.append(self.nodes[SUPPRESSED].next_change(ctx, t, None))
        return min((c for c in candidates if c is not None), default=None)

    def family_values(self, ctx: Context, segment_id: str, t: int) -> list[str]:
        fam = self._spec(segment_id).family
        grouped = ctx.signals.by_category(tuple(fam.signal))
        return sorted(cat for cat, times in grouped.items() if times[-1] > t - fam.within)

    def units(self, ctx: Context, t: int) -> list[tuple[str, str | None]]:
        """Every (segment, family value) that has a membership at ``t``."""
        out: list[tuple[str, str | None]] = []
        for sid in self.catalog.order:
            if self._spec(sid).family is None:
                out.append((sid, None))
            else:
                out += [(sid, v) for v in self.family_values(ctx, sid, t)]
        return out

    def memberships(self, ctx: Context, t: int) -> frozenset[str]:
        return frozenset(sid if v is None else f"{sid}:{v}" for sid, v in self.units(ctx, t) if self.member(ctx, sid, v, t))

    def _context(self, profile: Profile, now: int) -> Context:
        email = self.retention.email
        return Context(Signals(profile, now - email if email else None), self, profile)

    def _first_change(self, ctx: Context, unit: tuple[str, str | None], now: int, member: bool) -> int | None:
        """The first instant after ``now`` at which the unit's membership differs from ``member``."""
        sid, fam = unit
        t = now
        for _ in range(MAX_STEPS):
            candidate = self.segment_next_change(ctx, sid, fam, t)
            if candidate is None or self.member(ctx, sid, fam, candidate) != member:
                return candidate
            t = candidate
        return t  # conservative: evaluated again there

    def evaluate(self, profile: Profile, now: int, touched: frozenset[str] | None = None) -> Evaluation:
        """Memberships, traits and next_due_at at ``now``.

        With ``touched`` (the inputs the latest event changed), segments that read none of them and
        are not due keep their stored membership and due instant: only the rest is evaluated.
        """
        ctx = self._context(profile, now)
        reuse = touched is not None and profile.catalog_version == self.version and profile.evaluated_at is not None
        stored = set(profile.segments)
        member: dict[str, bool] = {}
        due_at: dict[str, int] = {}
        for sid in self.catalog.order:
            spec = self._spec(sid)
            if reuse and not (self.inputs[sid] & touched):
                prefix = f"{sid}:"
                keys = [sid] if spec.family is None else [k for k in set(profile.unit_due) | stored if k.startswith(prefix)]
                if all(profile.unit_due.get(k, now + 1) > now for k in keys):
                    for k in keys:
                        member[k] = k in stored
                        if k in profile.unit_due:
                            due_at[k] = profile.unit_due[k]
                    continue
            units = [(sid, None)] if spec.family is None else [(sid, v) for v in self.family_values(ctx, sid, now)]
            for u in units:
                key = sid if u[1] is None else f"{sid}:{u[1]}"
                member[key] = self.member(ctx, sid, u[1], now)
                first = self._first_change(ctx, u, now, member[key])
                if first is not None:
                    due_at[key] = first
        segments = frozenset(k for k, m in member.items() if m)
        return Evaluation(at=now, segments=segments, traits=self.traits(ctx, now),
                          next_due_at=min(due_at.values(), default=None), unit_due=due_at)

    def segment_members(self, profile: Profile, now: int, segment_id: str) -> set[str]:
        """The memberships of one segment (and its family values) at ``now``: what a full evaluation
        would give for it, reading only what it depends on (segment previews)."""
        ctx = self._context(profile, now)
        if self._spec(segment_id).family is None:
            return {segment_id} if self.member(ctx, segment_id, None, now) else set()
        return {f"{segment_id}:{v}" for v in self.family_values(ctx, segment_id, now)
                if self.member(ctx, segment_id, v, now)}

    def explain(self, profile: Profile, now: int) -> dict:
        """Per segment (and per family value): member or not, and the value of every condition."""
        ctx = self._context(profile, now)
        out = {}
        for sid in self.catalog.order:
            spec = self._spec(sid)
            instances = [None] if spec.family is None else self.family_values(ctx, sid, now)
            for v in instances:
                key = sid if v is None else f"{sid}:{v}"
                out[key] = {"member": self.member(ctx, sid, v, now), "condition": self.nodes[sid].explain(ctx, now, v)}
                if spec.sync and self._suppression and sid != SUPPRESSED:
                    out[key]["excluded_as_suppressed"] = ctx.member(SUPPRESSED, now)
        return out

    # computed traits -------------------------------------------------------------------------
    def traits(self, ctx: Context, now: int) -> dict:
        out: dict[str, Any] = {}
        for name, spec in self.catalog.traits.items():
            b = getattr(spec, spec.kind)
            out[name] = getattr(self, f"_trait_{spec.kind}")(ctx, now, b)
        return out

    def _values(self, ctx: Context, signals: list[str], within: int | None, now: int) -> list[Decimal]:
        values = []
        for s in signals:
            if within is None and not ctx.signals.lifetime(s):
                n, total, _, _ = ctx.signals.lifetime_values(s)
                values.append(total)  # summing lifetime totals keeps sum/avg exact
                continue
            x = ctx.signals.series(s)
            values += [_decimal(v) for v in x.value[x.start(now, within):] if v is not None]
        return values

    def _count(self, ctx: Context, signal: str, within: int | None, now: int) -> int:
        if within is None:
            return ctx.signals.lifetime_count(signal)
        return _window_count(ctx.signals.series(signal).t, now, within, None)

    def _trait_count(self, ctx, now, b) -> int:
        return sum(self._count(ctx, s, b.within, now) for s in b.signal)

    def _trait_sum(self, ctx, now, b) -> str:
        return str(sum(self._values(ctx, b.signal, b.within, now), Decimal(0)))

    def _trait_avg(self, ctx, now, b) -> str | None:
        n = self._trait_count(ctx, now, b)
        if n == 0:
            return None
        avg = sum(self._values(ctx, b.signal, b.within, now), Decimal(0)) / n
        return str(avg.quantize(Decimal("0.01")))

    def _trait_first(self, ctx, now, b) -> str | None:
        return iso(min((x for s in b.signal if (x := ctx.signals.first(s)) is not None), default=None))

    def _trait_last(self, ctx, now, b) -> str | None:
        return iso(max((x for s in b.signal if (x := ctx.signals.last(s)) is not None), default=None))

    def _trait_ratio(self, ctx, now, b) -> float | None:
        num, den = _ratio_times(ctx, b.numerator, b.denominator, b.per)
        r = _ratio(_window_count(num, now, b.within, None), _window_count(den, now, b.within, None))
        return None if r is None else round(r, 4)

    def _trait_mode(self, ctx, now, b) -> str | None:
        best, best_key = None, None
        for cat, times in ctx.signals.by_category(tuple(b.signal)).items():
            n = len(times) - bisect.bisect_right(times, now - b.within)
            if n:
                rank = (n, times[-1], cat)  # most seen; ties: the most recent
                if best_key is None or rank > best_key:
                    best, best_key = cat, rank
        return best

    def _trait_score(self, ctx, now, b) -> float:
        raw = sum(w * self._count(ctx, s, b.within, now) for s, w in b.weights.items())
        return round(min(b.max, raw), 2)

    def _trait_rfm(self, ctx, now, b) -> dict | None:
        last = ctx.signals.last("order_placed")
        if last is None:
            return None
        days = (now - last) / 86400
        r = 5 - sum(1 for limit in b.recency_days if days > limit)
        n = ctx.signals.lifetime_count("order_placed")
        f = 1 + sum(1 for limit in b.frequency if n >= limit)
        revenue = sum(ctx.signals.series("order_placed").value, Decimal(0))
        m = 1 + sum(1 for limit in b.monetary if revenue >= Decimal(str(limit)))
        return {"recency": r, "frequency": f, "monetary": m, "score": f"{r}{f}{m}"}


_DEFAULT: CatalogEvaluator | None = None


def default_evaluator() -> CatalogEvaluator:
    from .catalog import load_catalog

    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CatalogEvaluator(load_catalog())
    return _DEFAULT


__all__ = ["CatalogEvaluator", "Comparison", "default_evaluator", "Series", "Signals"]
