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
)
from .events import normalise_category
from .profile import Profile, Retention, iso
from .segments import Evaluation, SegmentDefinition

#: How many "may change" instants the search for next_due_at walks before settling for a
#: conservative (early) answer; the next evaluation then continues from there.
MAX_STEPS = 2000
SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class Entry:
    t: int
    cat: str | None = None
    value: Decimal | None = None
    key: str | None = None
    completed: bool = False


class Signals:
    """The profile's state as time-sorted entries per signal, built lazily once per evaluation."""

    def __init__(self, profile: Profile) -> None:
        self.p = profile
        self._entries: dict[str, list[Entry]] = {}

    def entries(self, signal: str) -> list[Entry]:
        if signal not in self._entries:
            self._entries[signal] = sorted(self._build(signal), key=lambda e: e.t)
        return self._entries[signal]

    def _build(self, signal: str) -> list[Entry]:
        p = self.p
        if signal == "order_placed":
            return [Entry(o.at, value=o.total, key=k) for k, o in p.orders.items() if o.counts]
        if signal == "order_item":
            return [Entry(o.at, cat=c) for o in p.orders.values() if o.counts for c in o.cats]
        if signal == "checkout_started":
            return [Entry(c.started, key=k, completed=c.completed) for k, c in p.checkouts.items()]
        if signal == "email_delivered":
            return [Entry(m.d, key=k) for k, m in p.messages.items()]
        if signal == "email_opened":
            return [Entry(m.o, key=k) for k, m in p.messages.items() if m.o is not None]
        if signal == "email_clicked":
            return [Entry(m.c, key=k) for k, m in p.messages.items() if m.c is not None]
        if signal in BROWSE:
            return [
                Entry(t, cat=c, value=None if v is None else Decimal(str(v)))
                for t, s, c, v in zip(p.browse_t, p.browse_s, p.browse_c, p.browse_v, strict=True) if s == signal
            ]
        return []

    def lifetime(self, signal: str) -> bool:
        """True when entries cover the whole history (orders), not just the retention window."""
        return signal in ("order_placed", "order_item")

    def last(self, signal: str) -> int | None:
        if signal == "any":
            return max(self.p.last_at.values(), default=None)
        if self.lifetime(signal):
            entries = self.entries(signal)
            return entries[-1].t if entries else None
        return self.p.last_at.get(signal)

    def first(self, signal: str) -> int | None:
        if signal == "any":
            return self.p.first_seen_at
        if self.lifetime(signal):
            entries = self.entries(signal)
            return entries[0].t if entries else None
        return self.p.first_at.get(signal)

    def lifetime_count(self, signal: str) -> int:
        if self.lifetime(signal):
            return len(self.entries(signal))
        tot = self.p.totals.get(signal)
        return tot.n if tot else 0

    def lifetime_values(self, signal: str) -> tuple[int, Decimal, Decimal | None, Decimal | None]:
        """(count of valued events, sum, min, max) over the whole history."""
        if self.lifetime(signal):
            values = [e.value for e in self.entries(signal) if e.value is not None]
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


def _in_window(e: Entry, t: int, within: int | None) -> bool:
    return within is None or e.t > t - within


def _sweep(changes: list[tuple[int, Any]], t: int, state: Any, apply, truth) -> int | None:
    """First instant > t at which ``truth(state)`` flips, applying ``changes`` (instant, delta) in order."""
    current = truth(state)
    changes = sorted(c for c in changes if c[0] > t)
    i = 0
    while i < len(changes):
        instant = changes[i][0]
        while i < len(changes) and changes[i][0] == instant:
            state = apply(state, changes[i][1])
            i += 1
        if truth(state) != current:
            return instant
    return None


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
            return all(c.value(ctx, t, fam) for c in self.children)
        if self.kind == "any":
            return any(c.value(ctx, t, fam) for c in self.children)
        return not self.children[0].value(ctx, t, fam)

    def next_change(self, ctx, t, fam):
        return min((n for c in self.children if (n := c.next_change(ctx, t, fam)) is not None), default=None)

    def explain(self, ctx, t, fam):
        return {"kind": self.kind, "result": self.value(ctx, t, fam),
                "conditions": [c.explain(ctx, t, fam) for c in self.children]}


class EventNode(Node):
    def __init__(self, c: EventCondition) -> None:
        self.c = c

    def _matching(self, ctx: Context, fam: str | None) -> list[Entry]:
        key = ("event", id(self), fam)
        if key in ctx.memo:
            return ctx.memo[key]
        c = self.c
        entries: list[Entry] = []
        for s in c.signal:
            entries += ctx.signals.entries(s)
        for prop, wanted in c.where.items():
            if prop == "completed":
                entries = [e for e in entries if e.completed == bool(wanted)]
            else:
                values = wanted if isinstance(wanted, list) else [wanted]
                allowed = {normalise_category(fam if v == "$value" else v) for v in values}
                entries = [e for e in entries if e.cat in allowed]
        if c.not_followed_by:
            followers = [f.t for f in ctx.signals.entries(c.not_followed_by)]
            latest = max(followers, default=None)
            entries = [e for e in entries if latest is None or latest < e.t]
        entries.sort(key=lambda e: e.t)
        ctx.memo[key] = entries
        return entries

    def _lifetime_totals(self, ctx: Context) -> bool:
        return self.c.within is None and any(s in BROWSE | EMAIL for s in self.c.signal)

    def count(self, ctx: Context, t: int, fam: str | None) -> int:
        c = self.c
        if self._lifetime_totals(ctx):
            return sum(ctx.signals.lifetime_count(s) for s in c.signal)
        entries = self._matching(ctx, fam)
        if c.older_than is None:
            if c.within is None:
                return len(entries)
            return len(entries) - bisect.bisect_right([e.t for e in entries], t - c.within)
        return sum(1 for e in entries if _in_window(e, t, c.within) and t - e.t > c.older_than)

    def value(self, ctx, t, fam):
        return self.c.count(self.count(ctx, t, fam))

    def next_change(self, ctx, t, fam):
        c = self.c
        if c.within is None and c.older_than is None:
            return None
        changes = []
        for e in self._matching(ctx, fam):
            if c.older_than is not None:
                changes.append((e.t + c.older_than + 1, 1))
            if c.within is not None:
                changes.append((e.t + c.within, -1))
        return _sweep(changes, t, self.count(ctx, t, fam), lambda n, d: n + d, c.count)

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


def _ratio_entries(ctx: Context, numerator: str, denominator: str, per: str) -> tuple[list[Entry], list[Entry]]:
    den = ctx.signals.entries(denominator)
    if per == "message":
        opened = {e.key for e in ctx.signals.entries(numerator)}
        return [e for e in den if e.key in opened], den
    return ctx.signals.entries(numerator), den


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


class RatioNode(Node):
    def __init__(self, c: RatioCondition) -> None:
        self.c = c

    def counts(self, ctx, t) -> tuple[int, int]:
        num, den = _ratio_entries(ctx, self.c.numerator, self.c.denominator, self.c.per)
        w = self.c.within
        return sum(1 for e in num if e.t > t - w), sum(1 for e in den if e.t > t - w)

    def _truth(self, counts: tuple[int, int]) -> bool:
        num, den = counts
        return den >= self.c.min_denominator and den > 0 and self.c.compare(num / den)

    def value(self, ctx, t, fam):
        return self._truth(self.counts(ctx, t))

    def next_change(self, ctx, t, fam):
        num, den = _ratio_entries(ctx, self.c.numerator, self.c.denominator, self.c.per)
        w = self.c.within
        changes = [(e.t + w, (-1, 0)) for e in num] + [(e.t + w, (0, -1)) for e in den]
        return _sweep(changes, t, self.counts(ctx, t), lambda s, d: (s[0] + d[0], s[1] + d[1]), self._truth)

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

    def _valued(self, ctx) -> list[Entry]:
        return [e for e in ctx.signals.entries(self.c.signal) if e.value is not None]

    def amount(self, ctx, t) -> Decimal | None:
        c = self.c
        if c.within is None and not ctx.signals.lifetime(c.signal):
            n, total, lo, hi = ctx.signals.lifetime_values(c.signal)
            return {"count": Decimal(n), "sum": total, "avg": (total / n) if n else None, "min": lo, "max": hi}[c.fn]
        return _aggregate(c.fn, [e.value for e in self._valued(ctx) if _in_window(e, t, c.within)])

    def _truth(self, amount: Decimal | None) -> bool:
        return amount is not None and self.c.compare(float(amount))

    def value(self, ctx, t, fam):
        return self._truth(self.amount(ctx, t))

    def next_change(self, ctx, t, fam):
        if self.c.within is None:
            return None
        now = self.value(ctx, t, fam)
        # Values only leave the window; check each instant one leaves (n is small: a window's events).
        for instant in sorted({e.t + self.c.within for e in self._valued(ctx) if e.t + self.c.within > t}):
            if self.value(ctx, instant, fam) != now:
                return instant
        return None

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
        values = set()
        for s in fam.signal:
            for e in ctx.signals.entries(s):
                if e.cat and e.t > t - fam.within:
                    values.add(e.cat)
        return sorted(values)

    def memberships(self, ctx: Context, t: int) -> frozenset[str]:
        out = set()
        for sid in self.catalog.order:
            if self._spec(sid).family is None:
                if self.member(ctx, sid, None, t):
                    out.add(sid)
            else:
                out.update(f"{sid}:{v}" for v in self.family_values(ctx, sid, t) if self.member(ctx, sid, v, t))
        return frozenset(out)

    def _next_candidate(self, ctx: Context, t: int) -> int | None:
        candidates = []
        for sid in self.catalog.order:
            if self._spec(sid).family is None:
                candidates.append(self.segment_next_change(ctx, sid, None, t))
            else:
                candidates += [self.segment_next_change(ctx, sid, v, t) for v in self.family_values(ctx, sid, t)]
        return min((c for c in candidates if c is not None and c > t), default=None)

    def evaluate(self, profile: Profile, now: int) -> Evaluation:
        ctx = Context(Signals(profile), self, profile)
        members = self.memberships(ctx, now)
        t, due = now, None
        for _ in range(MAX_STEPS):
            candidate = self._next_candidate(ctx, t)
            if candidate is None:
                break
            if self.memberships(ctx, candidate) != members:
                due = candidate
                break
            t = candidate
        else:
            due = t  # conservative: evaluate again there and continue the search
        return Evaluation(at=now, segments=members, traits=self.traits(ctx, now), next_due_at=due)

    def explain(self, profile: Profile, now: int) -> dict:
        """Per segment (and per family value): member or not, and the value of every condition."""
        ctx = Context(Signals(profile), self, profile)
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
            values += [e.value for e in ctx.signals.entries(s) if e.value is not None and _in_window(e, now, within)]
        return values

    def _count(self, ctx: Context, signal: str, within: int | None, now: int) -> int:
        if within is None:
            return ctx.signals.lifetime_count(signal)
        return sum(1 for e in ctx.signals.entries(signal) if e.t > now - within)

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
        num, den = _ratio_entries(ctx, b.numerator, b.denominator, b.per)
        r = _ratio(sum(1 for e in num if e.t > now - b.within), sum(1 for e in den if e.t > now - b.within))
        return None if r is None else round(r, 4)

    def _trait_mode(self, ctx, now, b) -> str | None:
        seen: dict[str, tuple[int, int]] = {}  # category -> (count, most recent)
        for s in b.signal:
            for e in ctx.signals.entries(s):
                if e.cat and e.t > now - b.within:
                    n, last = seen.get(e.cat, (0, e.t))
                    seen[e.cat] = (n + 1, max(last, e.t))
        if not seen:
            return None
        return max(seen.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))[0]

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
        revenue = sum((e.value for e in ctx.signals.entries("order_placed")), Decimal(0))
        m = 1 + sum(1 for limit in b.monetary if revenue >= Decimal(str(limit)))
        return {"recency": r, "frequency": f, "monetary": m, "score": f"{r}{f}{m}"}


_DEFAULT: CatalogEvaluator | None = None


def default_evaluator() -> CatalogEvaluator:
    from .catalog import load_catalog

    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CatalogEvaluator(load_catalog())
    return _DEFAULT


__all__ = ["CatalogEvaluator", "Comparison", "default_evaluator", "Entry", "Signals"]
