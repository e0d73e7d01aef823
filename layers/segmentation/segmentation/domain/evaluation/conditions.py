"""Condition evaluators: one class per condition kind, found by kind in :data:`EVALUATORS`.

As in Apache Unomi, where each condition type names its evaluator, a catalog condition is compiled
by looking its kind up in the registry; nothing dispatches on names with getattr. Each evaluator
answers three questions about an instant ``t``, assuming no new event: its value, the earliest
instant after ``t`` at which its value *may* change (never later than the real change), and an
explanation. Leaves know their change instants exactly (an event leaving a window at
``t + N days``, becoming old enough at ``t + 1 h + 1 s``, a last activity crossing 30 days).

Each kind also says what it reads (:meth:`ConditionEvaluator.reads`); :func:`reads` walks a
condition with it, and is the one walk behind both the evaluator's dependency analysis and the
catalog's retention.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from ..catalog import (
    BROWSE,
    EMAIL,
    AggregateCondition,
    ArmCondition,
    Condition,
    ConsentCondition,
    EventCondition,
    RatioCondition,
    RecencyCondition,
    TraitCondition,
    bucket,
    walk,
)
from ..events import normalise_category
from ..profile import Profile, iso
from .signals import Signals, as_decimal
from .windows import count_flip, dropouts, flip, ratio, window_count

Explanation = dict[str, Any]
Body = TypeVar("Body")


class Memberships(Protocol):
    """What a segment reference asks of the evaluator (memberships of other segments)."""

    def member(self, ctx: Context, segment_id: str, fam: str | None, t: int) -> bool: ...

    def segment_next_change(self, ctx: Context, segment_id: str, fam: str | None, t: int) -> int | None: ...


@dataclass
class Context:
    """One evaluation: the profile, its signals, and what conditions memoise for it."""

    signals: Signals
    evaluator: Memberships
    profile: Profile
    memo: dict[Any, Any] = field(default_factory=dict)

    def member(self, segment_id: str, t: int) -> bool:
        key = ("member", segment_id, t)
        if key not in self.memo:
            self.memo[key] = self.evaluator.member(self, segment_id, None, t)
        return self.memo[key]


class Read(NamedTuple):
    """One input a condition reads: a signal, ``consent``, ``attributes`` or ``segment``."""

    input: str
    #: the window over a signal in seconds; None for a lifetime read or a first/last time
    within: int | None = None
    #: for ``input == "segment"``: the segment whose membership is read
    segment: str | None = None


class ConditionEvaluator(Protocol):
    """A compiled condition of one kind (``Condition.kind``)."""

    def __init__(self, cond: Condition) -> None: ...

    @staticmethod
    def reads(body: Any) -> Iterator[Read]:
        """What a condition of this kind with ``body`` reads (not its children: :func:`reads` walks)."""
        ...

    def value(self, ctx: Context, t: int, fam: str | None) -> bool: ...

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None: ...

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation: ...


def compile_condition(cond: Condition) -> ConditionEvaluator:
    return EVALUATORS[cond.kind](cond)


def reads(cond: Condition) -> Iterator[Read]:
    """Everything ``cond`` and the conditions inside it read (referenced segments not followed)."""
    for c in walk(cond):
        yield from EVALUATORS[c.kind].reads(c.body)


class _Leaf(Generic[Body]):
    """A condition without children: ``c`` is its body (the one field of the condition that is set)."""

    def __init__(self, cond: Condition) -> None:
        self.c: Body = cond.body


# -- all / any / not -------------------------------------------------------------------------------


class _Composite:
    kind: ClassVar[str]

    def __init__(self, cond: Condition) -> None:
        self.children = [compile_condition(c) for c in cond.all or cond.any or [cond.not_]]

    @staticmethod
    def reads(body: Any) -> Iterator[Read]:
        return iter(())

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        raise NotImplementedError

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        return min((n for c in self.children if (n := c.next_change(ctx, t, fam)) is not None), default=None)

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        return {"kind": self.kind, "result": self.value(ctx, t, fam),
                "conditions": [c.explain(ctx, t, fam) for c in self.children]}


class AllEvaluator(_Composite):
    kind = "all"

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        for c in self.children:
            if not c.value(ctx, t, fam):
                return False
        return True


class AnyEvaluator(_Composite):
    kind = "any"

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        for c in self.children:
            if c.value(ctx, t, fam):
                return True
        return False


class NotEvaluator(_Composite):
    kind = "not"

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        return not self.children[0].value(ctx, t, fam)


# -- event -----------------------------------------------------------------------------------------


class EventEvaluator:
    def __init__(self, cond: Condition) -> None:
        c: EventCondition = cond.body
        self.c = c
        self.signals = tuple(c.signal)
        self.uses_value = any(v == "$value" or (isinstance(v, list) and "$value" in v) for v in c.where.values())
        # lifetime counts of browsing and email signals come from lifetime totals
        self.lifetime_totals = c.within is None and any(s in BROWSE | EMAIL for s in c.signal)

    @staticmethod
    def reads(body: EventCondition) -> Iterator[Read]:
        for s in body.signal:
            yield Read(s, body.within)
        if body.not_followed_by:
            yield Read(body.not_followed_by, body.within)

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

    def count(self, ctx: Context, t: int, fam: str | None) -> int:
        key = ("count", id(self), fam if self.uses_value else None, t)
        n = ctx.memo.get(key)
        if n is None:
            if self.lifetime_totals:
                n = sum(ctx.signals.lifetime_count(s) for s in self.c.signal)
            else:
                n = window_count(self.times(ctx, fam), t, self.c.within, self.c.older_than)
            ctx.memo[key] = n
        return n

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        return self.c.count(self.count(ctx, t, fam))

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        c = self.c
        if c.within is None and c.older_than is None:
            return None
        key = ("next", id(self), fam if self.uses_value else None, t)
        if key not in ctx.memo:
            ctx.memo[key] = self._next_change(ctx, t, fam)
        return ctx.memo[key]

    def _next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        c = self.c
        times = self.times(ctx, fam)
        if c.older_than is None:
            return None if c.within is None else count_flip(times, t, c.within, c.count)
        streams: list[Iterator[int]] = []
        if c.within is not None:
            streams.append(dropouts(times, t, c.within))
        # events become old enough at e + older_than + 1
        streams.append(x + c.older_than + 1 for x in times[bisect.bisect_right(times, t - c.older_than - 1):])
        return flip(heapq.merge(*streams), t, lambda x: window_count(times, x, c.within, c.older_than), c.count)

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        c = self.c
        return {"kind": "event", "signal": c.signal, "where": {k: (fam if v == "$value" else v) for k, v in c.where.items()},
                "within_s": c.within, "older_than_s": c.older_than, "not_followed_by": c.not_followed_by,
                "count": self.count(ctx, t, fam), "compare": str(c.count), "result": self.value(ctx, t, fam)}


# -- last / first ----------------------------------------------------------------------------------


class _Recency(_Leaf[RecencyCondition]):
    kind: ClassVar[str]

    @staticmethod
    def reads(body: RecencyCondition) -> Iterator[Read]:
        for s in body.signal:
            yield Read(s)

    def anchor(self, ctx: Context) -> int | None:
        """The time the age is measured from (None: no such event)."""
        raise NotImplementedError

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        a = self.anchor(ctx)
        if a is None:
            return False
        age = t - a
        return (self.c.more_than is None or age > self.c.more_than) and (self.c.at_most is None or age <= self.c.at_most)

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        a = self.anchor(ctx)
        if a is None:
            return None
        now = self.value(ctx, t, fam)
        for limit in sorted(x for x in (self.c.more_than, self.c.at_most) if x is not None):
            instant = a + limit + 1
            if instant > t and self.value(ctx, instant, fam) != now:
                return instant
        return None

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        a = self.anchor(ctx)
        return {"kind": self.kind, "signal": self.c.signal, "at": iso(a), "age_s": None if a is None else t - a,
                "more_than_s": self.c.more_than, "at_most_s": self.c.at_most, "result": self.value(ctx, t, fam)}


class LastEvaluator(_Recency):
    kind = "last"

    def anchor(self, ctx: Context) -> int | None:
        return max((x for s in self.c.signal if (x := ctx.signals.last(s)) is not None), default=None)


class FirstEvaluator(_Recency):
    kind = "first"

    def anchor(self, ctx: Context) -> int | None:
        return min((x for s in self.c.signal if (x := ctx.signals.first(s)) is not None), default=None)


# -- ratio -----------------------------------------------------------------------------------------


class RatioEvaluator(_Leaf[RatioCondition]):
    @staticmethod
    def reads(body: RatioCondition) -> Iterator[Read]:
        yield Read(body.numerator, body.within)
        yield Read(body.denominator, body.within)

    def counts(self, ctx: Context, t: int) -> tuple[int, int]:
        num, den = ctx.signals.ratio_times(self.c.numerator, self.c.denominator, self.c.per)
        w = self.c.within
        return window_count(num, t, w, None), window_count(den, t, w, None)

    def _truth(self, counts: tuple[int, int]) -> bool:
        num, den = counts
        return den >= self.c.min_denominator and den > 0 and self.c.compare(num / den)

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        return self._truth(self.counts(ctx, t))

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        key = ("ratio-next", id(self), t)
        if key not in ctx.memo:
            ctx.memo[key] = self._next_change(ctx, t)
        return ctx.memo[key]

    def _next_change(self, ctx: Context, t: int) -> int | None:
        num_t, den_t = ctx.signals.ratio_times(self.c.numerator, self.c.denominator, self.c.per)
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

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        num, den = self.counts(ctx, t)
        return {"kind": "ratio", "numerator": num, "denominator": den, "ratio": ratio(num, den),
                "compare": str(self.c.compare), "min_denominator": self.c.min_denominator, "result": self.value(ctx, t, fam)}


# -- aggregate -------------------------------------------------------------------------------------


def _aggregate(fn: str, values: list[Decimal]) -> Decimal | None:
    if fn == "count":
        return Decimal(len(values))
    if fn == "sum":
        return sum(values, Decimal(0))
    if not values:
        return None
    if fn == "avg":
        return sum(values, Decimal(0)) / len(values)
    return min(values) if fn == "min" else max(values)


class AggregateEvaluator(_Leaf[AggregateCondition]):
    @staticmethod
    def reads(body: AggregateCondition) -> Iterator[Read]:
        yield Read(body.signal, body.within)

    def _valued(self, ctx: Context) -> tuple[list[int], list[Decimal]]:
        """Times and values of the signal's events that have a value, memoised."""
        key = ("valued", self.c.signal)
        if key not in ctx.memo:
            x = ctx.signals.series(self.c.signal)
            pairs = [(t, d) for t, v in zip(x.t, x.value, strict=True) if (d := as_decimal(v)) is not None]
            ctx.memo[key] = ([p[0] for p in pairs], [p[1] for p in pairs])
        return ctx.memo[key]

    def amount(self, ctx: Context, t: int) -> Decimal | None:
        c = self.c
        if c.within is None and not ctx.signals.lifetime(c.signal):
            n, total, lo, hi = ctx.signals.lifetime_values(c.signal)
            return {"count": Decimal(n), "sum": total, "avg": (total / n) if n else None, "min": lo, "max": hi}[c.fn]
        times, values = self._valued(ctx)
        start = 0 if c.within is None else bisect.bisect_right(times, t - c.within)
        return _aggregate(c.fn, values[start:])

    def _truth(self, amount: Decimal | None) -> bool:
        return amount is not None and self.c.compare(float(amount))

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        return self._truth(self.amount(ctx, t))

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        if self.c.within is None:
            return None
        times, _ = self._valued(ctx)
        return flip(dropouts(times, t, self.c.within), t, lambda x: self.amount(ctx, x), self._truth)

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        amount = self.amount(ctx, t)
        return {"kind": "aggregate", "fn": self.c.fn, "signal": self.c.signal, "within_s": self.c.within,
                "amount": None if amount is None else str(amount), "compare": str(self.c.compare),
                "result": self.value(ctx, t, fam)}


# -- trait, consent, segment -----------------------------------------------------------------------


class TraitEvaluator(_Leaf[TraitCondition]):
    @staticmethod
    def reads(body: TraitCondition) -> Iterator[Read]:
        yield Read("attributes")

    def attribute(self, profile: Profile) -> Any:
        """The profile attribute the condition names (any JSON value, or None)."""
        name = self.c.name
        if name == "tags":
            return profile.tags
        if name in ("first_name", "last_name", "email"):
            return getattr(profile, name)
        return profile.attributes.get(name)

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
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
            return c.compare is not None and c.compare(float(v))
        except (TypeError, ValueError):
            return False

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        return None  # attributes change only with events

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        return {"kind": "trait", "name": self.c.name, "actual": self.attribute(ctx.profile), "result": self.value(ctx, t, fam)}


class ConsentEvaluator(_Leaf[ConsentCondition]):
    @staticmethod
    def reads(body: ConsentCondition) -> Iterator[Read]:
        yield Read("consent")

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        consent = ctx.profile.email_consent
        if consent is None or consent.state not in self.c.email:
            return False
        return self.c.changed_within is None or consent.since > t - self.c.changed_within

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        consent = ctx.profile.email_consent
        if consent is None or self.c.changed_within is None:
            return None
        instant = consent.since + self.c.changed_within
        return instant if instant > t else None

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        consent = ctx.profile.email_consent
        return {"kind": "consent", "state": consent.state if consent else None, "since": iso(consent.since) if consent else None,
                "wanted": self.c.email, "changed_within_s": self.c.changed_within, "result": self.value(ctx, t, fam)}


class MembershipEvaluator:
    """``segment: <id>``: membership of another (non-family) segment."""

    def __init__(self, cond: Condition) -> None:
        self.segment_id: str = cond.body

    @staticmethod
    def reads(body: str) -> Iterator[Read]:
        yield Read("segment", segment=body)

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        return ctx.member(self.segment_id, t)

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        return ctx.evaluator.segment_next_change(ctx, self.segment_id, None, t)

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        return {"kind": "segment", "segment": self.segment_id, "result": self.value(ctx, t, fam)}


class ArmEvaluator(_Leaf[ArmCondition]):
    """``arm``: the profile's bucket in an experiment, a hash of its id: fixed, so never due."""

    @staticmethod
    def reads(body: ArmCondition) -> Iterator[Read]:
        return iter(())

    def bucket(self, ctx: Context) -> int:
        key = ("bucket", self.c.experiment)
        if key not in ctx.memo:
            ctx.memo[key] = bucket(ctx.profile.profile_id, self.c.experiment)
        return ctx.memo[key]

    def value(self, ctx: Context, t: int, fam: str | None) -> bool:
        return self.c.from_ <= self.bucket(ctx) < self.c.to

    def next_change(self, ctx: Context, t: int, fam: str | None) -> int | None:
        return None

    def explain(self, ctx: Context, t: int, fam: str | None) -> Explanation:
        return {"kind": "arm", "experiment": self.c.experiment, "bucket": self.bucket(ctx),
                "buckets": [self.c.from_, self.c.to], "result": self.value(ctx, t, fam)}


#: condition kind (a field of :class:`~segmentation.domain.catalog.Condition`) -> its evaluator
EVALUATORS: dict[str, type[ConditionEvaluator]] = {
    "all": AllEvaluator,
    "any": AnyEvaluator,
    "not_": NotEvaluator,
    "event": EventEvaluator,
    "last": LastEvaluator,
    "first": FirstEvaluator,
    "ratio": RatioEvaluator,
    "aggregate": AggregateEvaluator,
    "trait": TraitEvaluator,
    "consent": ConsentEvaluator,
    "segment": MembershipEvaluator,
    "arm": ArmEvaluator,
}
