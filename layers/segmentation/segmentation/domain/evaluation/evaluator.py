"""Evaluation of a catalog: a pure function of (profile, catalog, now).

:meth:`CatalogEvaluator.evaluate` walks the instants at which a condition *may* change, in order,
and returns the first one at which some membership really changes: ``next_due_at``. Every
evaluation is a whole one: the per-segment due instants it finds are not stored with the profile,
because a byte in every write costs more than the CPU to find them again (docs/architecture.md, "Cost").
"""

from __future__ import annotations

from typing import Any

from ..catalog import Catalog, SegmentSpec, load_catalog
from ..profile import Profile, Retention
from ..segments import Evaluation, SegmentDefinition
from .conditions import Context, compile_condition
from .signals import Signals
from .traits import compile_traits, compute_traits

#: How many "may change" instants the search for next_due_at walks before settling for a
#: conservative (early) answer; the next evaluation then continues from there.
MAX_STEPS = 2000
SUPPRESSED = "suppressed"

Unit = tuple[str, str | None]


class CatalogEvaluator:
    """Evaluates a :class:`Catalog`; implements :class:`~segmentation.domain.segments.SegmentEvaluator`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.version = catalog.version
        #: traits (and "email") whose changes are announced as ``ProfileUpdated``: those the ESP sync
        #: copies (set from the destinations file at start-up; empty without one)
        self.watch: frozenset[str] = frozenset()
        self.retention: Retention = catalog.retention
        self.nodes = {sid: compile_condition(seg.when) for sid, seg in catalog.segments.items()}
        self._traits = compile_traits(catalog.traits)
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
        if fam is None:
            return []
        grouped = ctx.signals.by_category(tuple(fam.signal))
        return sorted(cat for cat, times in grouped.items() if times[-1] > t - fam.within)

    def units(self, ctx: Context, t: int) -> list[Unit]:
        """Every (segment, family value) that has a membership at ``t``."""
        out: list[Unit] = []
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

    def _first_change(self, ctx: Context, unit: Unit, now: int, member: bool) -> int | None:
        """The first instant after ``now`` at which the unit's membership differs from ``member``."""
        sid, fam = unit
        t = now
        for _ in range(MAX_STEPS):
            candidate = self.segment_next_change(ctx, sid, fam, t)
            if candidate is None or self.member(ctx, sid, fam, candidate) != member:
                return candidate
            t = candidate
        return t  # conservative: evaluated again there

    def evaluate(self, profile: Profile, now: int) -> Evaluation:
        """Memberships, traits and next_due_at at ``now``: every segment, every family value."""
        ctx = self._context(profile, now)
        segments: set[str] = set()
        due: list[int] = []
        for sid, fam in self.units(ctx, now):
            member = self.member(ctx, sid, fam, now)
            if member:
                segments.add(sid if fam is None else f"{sid}:{fam}")
            first = self._first_change(ctx, (sid, fam), now, member)
            if first is not None:
                due.append(first)
        return Evaluation(at=now, segments=frozenset(segments), traits=self.traits(ctx, now),
                          next_due_at=min(due, default=None))

    def segment_members(self, profile: Profile, now: int, segment_id: str) -> set[str]:
        """The memberships of one segment (and its family values) at ``now``: what a full evaluation
        would give for it, reading only what it depends on (segment previews)."""
        ctx = self._context(profile, now)
        if self._spec(segment_id).family is None:
            return {segment_id} if self.member(ctx, segment_id, None, now) else set()
        return {f"{segment_id}:{v}" for v in self.family_values(ctx, segment_id, now)
                if self.member(ctx, segment_id, v, now)}

    def explain(self, profile: Profile, now: int) -> dict[str, dict[str, Any]]:
        """Per segment (and per family value): member or not, and the value of every condition."""
        ctx = self._context(profile, now)
        out: dict[str, dict[str, Any]] = {}
        for sid in self.catalog.order:
            spec = self._spec(sid)
            instances = [None] if spec.family is None else self.family_values(ctx, sid, now)
            for v in instances:
                key = sid if v is None else f"{sid}:{v}"
                out[key] = {"member": self.member(ctx, sid, v, now), "condition": self.nodes[sid].explain(ctx, now, v)}
                if spec.sync and self._suppression and sid != SUPPRESSED:
                    out[key]["excluded_as_suppressed"] = ctx.member(SUPPRESSED, now)
        return out

    def traits(self, ctx: Context, now: int) -> dict[str, Any]:
        """The catalog's computed traits at ``now``."""
        return compute_traits(self._traits, ctx.signals, now)


_DEFAULT: CatalogEvaluator | None = None


def default_evaluator() -> CatalogEvaluator:
    """The evaluator of the shipped default catalog (built once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CatalogEvaluator(load_catalog())
    return _DEFAULT
