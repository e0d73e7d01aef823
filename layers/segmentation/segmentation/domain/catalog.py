"""The segment language: a YAML catalog of computed traits and segments, validated by pydantic.

A segment's ``when`` is one condition, written as a one-key mapping:

* ``all: [..]``, ``any: [..]``, ``not: {..}``
* ``event: {signal, where, within, older_than, not_followed_by, count}`` — how many events of a
  signal (or list of signals) match property filters, over a window or lifetime;
* ``last: {signal, more_than, at_most}`` / ``first: {...}`` — time since the most recent / first
  event of a signal (false if there was none);
* ``ratio: {numerator, denominator, within, compare, min_denominator, per}`` — count A / count B;
* ``aggregate: {fn, signal, within, compare}`` — sum/avg/min/max/count of the signal's value;
* ``trait: {name, equals | in | contains | exists | compare}`` — a profile attribute;
* ``consent: {email, changed_within}`` — the email consent state;
* ``segment: <id>`` — membership of another segment.

Durations are ``<n>s|m|h|d|w``; comparisons are strings such as ``">= 3"``. A segment with
``family`` is one segment per value seen (``category-browsers:<category>``), and ``$value`` in a
``where`` filter stands for that value. See docs/segments.md.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..errors import InvalidInputError
from .profile import Retention

#: Signals a condition can count, with the properties ``where`` can filter on.
SIGNALS: dict[str, set[str]] = {
    "order_placed": set(),
    "order_item": {"category"},
    "checkout_started": {"completed"},
    "page_viewed": {"category"},
    "product_viewed": {"category"},
    "category_viewed": {"category"},
    "product_added": {"category"},
    "page_engaged": {"category"},
    "page_scrolled": {"category"},
    "email_delivered": set(),
    "email_opened": set(),
    "email_clicked": set(),
    "activity": set(),
    "any": set(),
}
BROWSE = {"page_viewed", "product_viewed", "category_viewed", "product_added", "page_engaged", "page_scrolled"}
EMAIL = {"email_delivered", "email_opened", "email_clicked"}
#: Signals only known as lifetime first/last times (no per-event state is kept for them).
TIMES_ONLY = {"activity", "any"}
CONSENT_STATES = {"subscribed", "not_subscribed", "pending", "unsubscribed", "cleaned", "spam", "bounced", "redacted", "invalid"}
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SEGMENT_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: how deeply all/any/not may nest: far more than a person writes, far less than recursion allows
MAX_DEPTH = 16


class CatalogError(InvalidInputError):
    """A catalog file that does not validate; the message names the file, the segment and the field."""


def _duration(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(value))
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{value!r} is not a duration such as 30m, 1h, 14d or 2w")
    return int(m.group(1)) * UNITS[m.group(2)]


Duration = Annotated[int, BeforeValidator(_duration)]


class Comparison(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float = Field(allow_inf_nan=False)

    def __call__(self, x: float) -> bool:
        return OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


def _comparison(value: Any) -> Any:
    if isinstance(value, Comparison | dict):
        return value
    m = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*", str(value))
    if not m:
        raise ValueError(f"{value!r} is not a comparison such as '>= 3' or '> 0.75'")
    return {"op": m.group(1), "value": float(m.group(2))}


Compare = Annotated[Comparison, BeforeValidator(_comparison)]


def _signal_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Signal = Literal[tuple(SIGNALS)]  # type: ignore[valid-type]
Signals = Annotated[list[Signal], BeforeValidator(_signal_list), Field(min_length=1)]


class Strict(BaseModel):
    # strict: a catalog (or a previewed definition) means what it says; `sync: 0` is not false.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class EventCondition(Strict):
    signal: Signals
    where: dict[str, str | bool | list[str]] = Field(default_factory=dict)
    within: Duration | None = None
    older_than: Duration | None = None
    not_followed_by: Signal | None = None
    count: Compare = Field(default_factory=lambda: Comparison(op=">=", value=1))

    @model_validator(mode="after")
    def _check(self) -> EventCondition:
        for s in self.signal:
            if s in TIMES_ONLY:
                raise ValueError(f"signal {s!r} can only be used with last/first")
            unknown = set(self.where) - SIGNALS[s]
            if unknown:
                raise ValueError(f"signal {s!r} cannot be filtered on {sorted(unknown)}; it has {sorted(SIGNALS[s]) or 'no properties'}")
        if self.within is not None and self.older_than is not None and self.older_than >= self.within:
            raise ValueError("older_than must be shorter than within, or nothing can ever match")
        return self


class RecencyCondition(Strict):
    signal: Signals
    more_than: Duration | None = None
    at_most: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> RecencyCondition:
        if self.more_than is None and self.at_most is None:
            raise ValueError("give more_than, at_most or both")
        if self.more_than is not None and self.at_most is not None and self.more_than >= self.at_most:
            raise ValueError("more_than must be shorter than at_most")
        return self


class RatioCondition(Strict):
    numerator: Signal
    denominator: Signal
    within: Duration
    compare: Compare
    min_denominator: int = Field(default=1, ge=1)
    per: Literal["event", "message"] = "event"

    @model_validator(mode="after")
    def _check(self) -> RatioCondition:
        for s in (self.numerator, self.denominator):
            if s in TIMES_ONLY:
                raise ValueError(f"signal {s!r} cannot be counted")
        if self.per == "message" and not {self.numerator, self.denominator} <= EMAIL:
            raise ValueError("per: message needs email signals (email_delivered, email_opened, email_clicked)")
        return self


class AggregateCondition(Strict):
    fn: Literal["sum", "avg", "min", "max", "count"]
    signal: Signal
    within: Duration | None = None
    compare: Compare

    @model_validator(mode="after")
    def _check(self) -> AggregateCondition:
        if self.signal in TIMES_ONLY or self.signal in EMAIL or self.signal == "order_item":
            raise ValueError(f"signal {self.signal!r} has no numeric value to aggregate")
        return self


class TraitCondition(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    name: str = Field(min_length=1)
    equals: str | int | float | bool | None = None
    in_: list[str | int | float] | None = Field(default=None, alias="in")
    contains: str | None = None
    exists: bool | None = None
    compare: Compare | None = None

    @model_validator(mode="after")
    def _one(self) -> TraitCondition:
        given = [k for k in ("equals", "in_", "contains", "exists", "compare") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of equals, in, contains, exists, compare")
        return self


class ConsentCondition(Strict):
    email: Annotated[list[str], BeforeValidator(_signal_list), Field(min_length=1)]
    changed_within: Duration | None = None

    @model_validator(mode="after")
    def _states(self) -> ConsentCondition:
        unknown = set(self.email) - CONSENT_STATES
        if unknown:
            raise ValueError(f"unknown consent state(s) {sorted(unknown)}; known: {sorted(CONSENT_STATES)}")
        return self


class ArmCondition(Strict):
    """``arm: {experiment, from, to}``: the profile's bucket for the experiment (0-99, a hash of the
    profile id and the experiment id, so fixed for a profile) is in ``[from, to)``. An experiment's
    arms are written with it (docs/measure.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    experiment: str = Field(pattern=SEGMENT_ID)
    from_: int = Field(alias="from", ge=0, le=99)
    to: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _range(self) -> ArmCondition:
        if self.from_ >= self.to:
            raise ValueError("from must be below to (buckets 0-99, to excluded)")
        return self


class OneOf(Strict):
    """A model of which exactly one field is set (a condition, a trait): ``kind`` names it, ``body`` is it."""

    def _one_of_message(self, given: list[str]) -> str:
        raise NotImplementedError

    @model_validator(mode="after")
    def _exactly_one(self) -> OneOf:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(self._one_of_message(given))
        return self

    @cached_property
    def kind(self) -> str:
        """The one field that is set (computed once)."""
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def body(self) -> Any:
        return getattr(self, self.kind)


class Condition(OneOf):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    all: list[Condition] | None = Field(default=None, min_length=1)
    any: list[Condition] | None = Field(default=None, min_length=1)
    not_: Condition | None = Field(default=None, alias="not")
    event: EventCondition | None = None
    last: RecencyCondition | None = None
    first: RecencyCondition | None = None
    ratio: RatioCondition | None = None
    aggregate: AggregateCondition | None = None
    trait: TraitCondition | None = None
    consent: ConsentCondition | None = None
    segment: str | None = None
    arm: ArmCondition | None = None

    def _one_of_message(self, given: list[str]) -> str:
        names = "all, any, not, event, last, first, ratio, aggregate, trait, consent, segment, arm"
        return f"a condition has exactly one of: {names} (got {', '.join(given) or 'none'})"


class Family(Strict):
    signal: Signals
    property: Literal["category"] = "category"
    within: Duration


class SegmentSpec(Strict):
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    when: Condition
    family: Family | None = None
    #: synced segments feed ESP lists, so they never include suppressed profiles (docs/segments.md#the-default-catalog-and-why)
    sync: bool = True


class WindowedSignals(Strict):
    signal: Signals
    within: Duration | None = None


class ModeTrait(Strict):
    signal: Signals
    property: Literal["category"] = "category"
    within: Duration


class RatioTrait(Strict):
    numerator: Signal
    denominator: Signal
    within: Duration
    per: Literal["event", "message"] = "event"


class ScoreTrait(Strict):
    within: Duration
    weights: dict[Signal, float] = Field(min_length=1)
    max: float = Field(default=100, gt=0)


class RfmTrait(Strict):
    recency_days: list[int] = Field(min_length=4, max_length=4)
    frequency: list[int] = Field(min_length=4, max_length=4)
    monetary: list[float] = Field(min_length=4, max_length=4)


class TraitSpec(OneOf):
    count: WindowedSignals | None = None
    sum: WindowedSignals | None = None
    avg: WindowedSignals | None = None
    first: WindowedSignals | None = None
    last: WindowedSignals | None = None
    ratio: RatioTrait | None = None
    mode: ModeTrait | None = None
    score: ScoreTrait | None = None
    rfm: RfmTrait | None = None

    def _one_of_message(self, given: list[str]) -> str:
        return f"a trait has exactly one of: {', '.join(type(self).model_fields)}"


#: the metrics an experiment can compare (service/segment_metrics.py's rates)
EXPERIMENT_METRICS = ("open_rate", "click_rate", "click_to_open_rate", "unsubscribe_rate", "conversion_rate")
VARIANT_ID = r"^[a-z0-9]{1,16}$"
ARM_SEPARATOR = "--"


class ExperimentSpec(Strict):
    """Two definitions of one audience, compared on one metric (docs/measure.md)."""

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    metric: Literal[EXPERIMENT_METRICS]  # type: ignore[valid-type]
    #: the percentage of profiles in the first variant (the rest are in the second)
    split: int = Field(default=50, ge=1, le=99)
    variants: dict[Annotated[str, Field(pattern=VARIANT_ID)], Condition] = Field(min_length=2, max_length=2)
    #: the smallest absolute difference of the metric worth detecting (0.02: two points)
    min_detectable_effect: float = Field(default=0.02, gt=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, ge=0.5, lt=1)
    sync: bool = True

    def arms(self, experiment_id: str) -> list[tuple[str, str, ArmCondition]]:
        """(variant, arm segment id, the arm's bucket condition), in the order declared."""
        (first, _), (second, _) = self.variants.items()
        return [(first, f"{experiment_id}{ARM_SEPARATOR}{first}",
                 ArmCondition(experiment=experiment_id, from_=0, to=self.split)),
                (second, f"{experiment_id}{ARM_SEPARATOR}{second}",
                 ArmCondition(experiment=experiment_id, from_=self.split, to=100))]

    def segments(self, experiment_id: str) -> dict[str, SegmentSpec]:
        """The experiment as segments: one per arm (its bucket and its own definition) and the union
        under the experiment's id, the audience a campaign is sent to."""
        out: dict[str, SegmentSpec] = {}
        for variant, sid, bucket in self.arms(experiment_id):
            out[sid] = SegmentSpec(
                name=f"{self.name} ({variant})", description=f"Arm {variant} of experiment {experiment_id}",
                when=Condition(all=[Condition(arm=bucket), self.variants[variant]]), sync=self.sync)
        out[experiment_id] = SegmentSpec(
            name=self.name, description=self.description, sync=self.sync,
            when=Condition(any=[Condition(segment=sid) for _, sid, _ in self.arms(experiment_id)]))
        return out


class CatalogFile(Strict):
    version: Literal[1]
    traits: dict[str, TraitSpec] = Field(default_factory=dict)
    segments: dict[Annotated[str, Field(pattern=SEGMENT_ID)], SegmentSpec] = Field(min_length=1)
    experiments: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")], ExperimentSpec] = Field(
        default_factory=dict)
    #: an order converts for the segments of a message clicked at most this long before it (figures)
    attribution_window: Duration = 5 * 86400

    @model_validator(mode="after")
    def _attribution_window(self) -> CatalogFile:
        if self.attribution_window > 30 * 86400:
            raise ValueError("attribution_window: at most 30d (messages are kept 60 days past the email windows)")
        return self


# -- loading ------------------------------------------------------------------------------------


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "segments":
        field = ".".join(p for p in parts[2:] if not p.startswith("function-")) or "(the segment)"
        return f"segment {parts[1]!r}: {field}"
    if len(parts) >= 2 and parts[0] == "traits":
        return f"trait {parts[1]!r}: {'.'.join(parts[2:]) or '(the trait)'}"
    if len(parts) >= 2 and parts[0] == "experiments":
        field = ".".join(p for p in parts[2:] if not p.startswith("function-")) or "(the experiment)"
        return f"experiment {parts[1]!r}: {field}"
    return ".".join(parts) or "(top level)"


def bucket(profile_id: str, experiment_id: str) -> int:
    """A profile's bucket (0-99) in an experiment: fixed for the pair, independent across experiments."""
    digest = hashlib.sha256(f"{experiment_id}\x00{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def walk(cond: Condition) -> Iterator[Condition]:
    """``cond`` and every condition inside it (all/any/not), depth first."""
    yield cond
    for child in cond.all or cond.any or ([cond.not_] if cond.not_ else []):
        yield from walk(child)


class Catalog:
    """A validated catalog: its segments and traits, what state they need, and a version."""

    def __init__(self, spec: CatalogFile, source: str = "<catalog>", text: str = "") -> None:
        self.spec = spec
        self.source = source
        self.version = hashlib.sha256(text.encode()).hexdigest()[:12] if text else "inline"
        self.experiments = spec.experiments
        self.segments = {**spec.segments, **self._experiment_segments()}
        self.traits = spec.traits
        self._check_depth()
        self._check_references()
        self._check_lifetime_reads()
        self.order = self._dependency_order()
        self.retention = self._retention()

    @classmethod
    def from_yaml(cls, text: str, source: str = "<catalog>") -> Catalog:
        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loaders
        except yaml.YAMLError as exc:
            raise CatalogError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise CatalogError(f"{source}: the catalog must be a mapping with 'version' and 'segments'")
        try:
            spec = CatalogFile.model_validate(data)
        except ValidationError as exc:
            problems = [f"{source}: {_where(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
            raise CatalogError("\n".join(problems)) from None
        return cls(spec, source, text)

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror}") from None
        return cls.from_yaml(text, str(path))

    def _experiment_segments(self) -> dict[str, SegmentSpec]:
        out: dict[str, SegmentSpec] = {}
        for eid, experiment in self.experiments.items():
            for sid, seg in experiment.segments(eid).items():
                if sid in self.spec.segments:
                    raise CatalogError(f"{self.source}: experiment {eid!r}: its segment {sid!r} is also a "
                                       "segment of the catalog; rename one of them")
                out[sid] = seg
        return out

    def _fail(self, segment: str, message: str) -> None:
        raise CatalogError(f"{self.source}: segment {segment!r}: {message}")

    def _check_depth(self) -> None:
        for sid, seg in self.segments.items():
            stack = [(seg.when, 1)]
            while stack:  # iterative: a too-deep condition must not overflow the check itself
                cond, depth = stack.pop()
                if depth > MAX_DEPTH:
                    self._fail(sid, f"when: conditions nest more than {MAX_DEPTH} levels deep")
                stack += [(child, depth + 1) for child in cond.all or cond.any or ([cond.not_] if cond.not_ else [])]

    def _check_references(self) -> None:
        for sid, seg in self.segments.items():
            for cond in walk(seg.when):
                if cond.segment is not None and cond.segment not in self.segments:
                    self._fail(sid, f"when: refers to unknown segment {cond.segment!r}")
                if cond.segment is not None and self.segments[cond.segment].family is not None:
                    self._fail(sid, f"when: cannot refer to the family {cond.segment!r}")
                if cond.arm is not None and cond.arm.experiment not in self.experiments:
                    self._fail(sid, f"when.arm: refers to unknown experiment {cond.arm.experiment!r}")
                if cond.event is not None:
                    uses_value = any(v == "$value" or (isinstance(v, list) and "$value" in v) for v in cond.event.where.values())
                    if uses_value and seg.family is None:
                        self._fail(sid, "when.event.where: $value is only meaningful in a segment with a family")

    def _dependency_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(sid: str, path: list[str]) -> None:
            if state.get(sid) == 2:
                return
            if state.get(sid) == 1:
                self._fail(sid, "segment references form a cycle: " + " -> ".join([*path, sid]))
            state[sid] = 1
            for cond in walk(self.segments[sid].when):
                if cond.segment is not None:
                    visit(cond.segment, [*path, sid])
            state[sid] = 2
            order.append(sid)

        for sid in self.segments:
            visit(sid, [])
        return order

    def _windows(self) -> Iterator[tuple[str, int | None]]:
        """(input, window in seconds or None for lifetime) for everything the catalog reads."""
        # What each condition kind reads is its evaluator's to say; the evaluation package builds
        # on this module, hence the import here.
        from .evaluation.conditions import reads

        for seg in self.segments.values():
            if seg.family:
                for s in seg.family.signal:
                    yield s, seg.family.within
            for read in reads(seg.when):
                yield read.input, read.within
        for trait in self.traits.values():
            b = trait.body
            if trait.kind in ("count", "sum", "avg"):
                for s in b.signal:
                    yield s, b.within
            elif trait.kind in ("ratio",):
                yield b.numerator, b.within
                yield b.denominator, b.within
            elif trait.kind == "mode":
                for s in b.signal:
                    yield s, b.within
            elif trait.kind == "score":
                for s in b.weights:
                    yield s, b.within

    def _retention(self) -> Retention:
        browse: dict[str, int] = {}
        email = checkouts = 0
        for signal, window in self._windows():
            # Lifetime counts of browsing and email signals come from lifetime totals, so
            # only windowed reads need per-event state.
            if window is None:
                continue
            if signal in BROWSE:
                browse[signal] = max(browse.get(signal, 0), window)
            elif signal in EMAIL:
                email = max(email, window)
            elif signal == "checkout_started":
                checkouts = max(checkouts, window)
        return Retention(browse=browse, email=email, checkouts=checkouts, attribution=self.spec.attribution_window)

    def _check_lifetime_reads(self) -> None:
        """Lifetime reads of browsing and email signals cannot filter (only lifetime totals are kept),
        and checkouts are only kept for windows."""
        for sid, seg in self.segments.items():
            for cond in walk(seg.when):
                if cond.event and cond.event.within is None and "checkout_started" in cond.event.signal:
                    self._fail(sid, "when.event.within: checkout_started can only be read over a window; give within")
                if cond.aggregate and cond.aggregate.within is None and cond.aggregate.signal == "checkout_started":
                    self._fail(sid, "when.aggregate.within: checkout_started can only be read over a window; give within")
                if cond.event and cond.event.within is None:
                    for s in cond.event.signal:
                        if s in BROWSE | EMAIL and (cond.event.where or cond.event.older_than or cond.event.not_followed_by):
                            self._fail(sid, f"when.event: a lifetime read of {s} cannot use where/older_than/not_followed_by; give within")


DEFAULT_CATALOG = Path(__file__).with_name("default_catalog.yaml")


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The catalog at ``path``, or the shipped default. Raises :class:`CatalogError`."""
    return Catalog.from_file(path or DEFAULT_CATALOG)
