"""Per-segment daily figures (issue 15, docs/measure.md): what ``SegmentMetrics`` (an event's
attribution facts) and ``SegmentEntered`` / ``SegmentExited`` add to each segment's day, summed per
batch so that a batch costs one counter update per segment and day it touches, not one per event.

The store applies a batch's sums once per batch: a retry of the same batch adds only what it had not
added yet (infra/metrics_store.py); a fact published twice (a profile event redelivered after a crash
between its write and its publish) is counted twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Protocol

COUNTS = ("delivered", "opened", "clicked", "unsubscribed", "bounced", "spam", "conversions", "entered", "exited")
#: the row of the whole account: every fact once, whatever its segments (the base of comparisons)
ACCOUNT = "#account"
FACT_COUNTS = {"delivered": "delivered", "opened": "opened", "clicked": "clicked", "unsubscribed": "unsubscribed",
               "bounced": "bounced", "spam": "spam", "conversion": "conversions"}


@dataclass
class DayFigures:
    counts: dict[str, int] = field(default_factory=dict)
    revenue: Decimal = Decimal(0)

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


class MetricsStore(Protocol):
    def add(self, sums: dict[tuple[str, str], DayFigures], token: str) -> None:
        """Add ``sums`` ((segment, day) -> figures) once per ``token``."""
        ...

    def days(self, segment_id: str, first: str, last: str) -> dict[str, DayFigures]:
        """The figures of ``segment_id`` per day from ``first`` to ``last`` (``YYYY-MM-DD``)."""
        ...


def day_of(iso_time: str) -> str:
    return iso_time[:10]  # the details' times are ISO 8601 in UTC ("2026-12-01T10:00:00Z")


def summed(messages: Iterable[tuple[str, dict]]) -> dict[tuple[str, str], DayFigures]:
    """``(detail-type, detail)`` of a batch -> the sums per (segment, day)."""
    sums: dict[tuple[str, str], DayFigures] = {}

    def one(segment: str, day: str) -> DayFigures:
        return sums.setdefault((segment, day), DayFigures())

    for kind, detail in messages:
        if kind == "SegmentMetrics":
            for fact in detail.get("facts", []):
                name = FACT_COUNTS.get(fact.get("kind"))
                if name is None:
                    continue
                for segment in [*fact.get("segments", []), ACCOUNT]:
                    figures = one(segment, day_of(fact["at"]))
                    figures.add(name)
                    if name == "conversions" and fact.get("revenue") is not None:
                        figures.revenue += Decimal(str(fact["revenue"]))
        elif kind in ("SegmentEntered", "SegmentExited"):
            one(detail["segment_id"], day_of(detail["at"])).add("entered" if kind == "SegmentEntered" else "exited")
    return sums


def parse(body: str) -> tuple[str, dict]:
    """An SQS message body from the bus (the EventBridge envelope) -> (detail-type, detail)."""
    envelope = json.loads(body)
    return envelope["detail-type"], envelope["detail"]


# -- rates and their intervals ---------------------------------------------------------------


def wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


RATES = {  # rate -> (numerator, denominator)
    "open_rate": ("opened", "delivered"),
    "click_rate": ("clicked", "delivered"),
    "click_to_open_rate": ("clicked", "opened"),
    "unsubscribe_rate": ("unsubscribed", "delivered"),
    "conversion_rate": ("conversions", "delivered"),
}


def rates(counts: dict[str, int]) -> dict[str, dict]:
    """Each rate with its 95% Wilson interval (None where its denominator is 0)."""
    out = {}
    for name, (num, den) in RATES.items():
        n, d = counts.get(num, 0), counts.get(den, 0)
        interval = wilson(min(n, d), d)
        out[name] = {"value": None if not d else n / d,
                     "ci95": None if interval is None else list(interval)}
    return out


# -- reports -----------------------------------------------------------------------------------
MAX_DAYS = 366


class InvalidPeriodError(ValueError):
    pass


def period(first: str | None, last: str | None, today: date) -> tuple[date, date]:
    """``from`` and ``to`` (``YYYY-MM-DD``, inclusive; default the last 30 days to today)."""
    try:
        end = date.fromisoformat(last) if last else today
        start = date.fromisoformat(first) if first else end - timedelta(days=29)
    except ValueError:
        raise InvalidPeriodError("from and to are days: YYYY-MM-DD") from None
    if start > end:
        raise InvalidPeriodError("from is after to")
    if (end - start).days >= MAX_DAYS:
        raise InvalidPeriodError(f"a report covers at most {MAX_DAYS} days")
    return start, end


def _figures(f: DayFigures | None) -> dict:
    counts = {n: (f.counts.get(n, 0) if f else 0) for n in COUNTS}
    return {**counts, "revenue": str(f.revenue if f else Decimal(0))}


def report(store: MetricsStore, segment_id: str, start: date, end: date, size_now: int | None = None,
           today: date | None = None) -> dict:
    """A segment's daily series from ``start`` to ``end``, the totals, and the rates of the totals.

    With ``size_now`` (the segment's size counters) each day also gets ``members`` at its end: the
    size now less the entries and plus the exits of every later day up to ``today``."""
    last = max(end, today) if today and size_now is not None else end
    stored = store.days(segment_id, start.isoformat(), last.isoformat())

    def members(day: str) -> int:
        """The size at the end of ``day``: now, less what every later day added."""
        return size_now - sum(_net(f) for d, f in stored.items() if d > day)

    days = []
    total = DayFigures()
    for n in range((end - start).days + 1):
        day = (start + timedelta(days=n)).isoformat()
        f = stored.get(day)
        row = {"day": day, **_figures(f)}
        if size_now is not None:
            row["members"] = members(day)
        days.append(row)
        if f:
            for name, value in f.counts.items():
                total.add(name, value)
            total.revenue += f.revenue
    return {"segment_id": segment_id, "since": start.isoformat(), "until": end.isoformat(), "days": days,
            "totals": _figures(total), "rates": rates(total.counts)}


def _net(f: DayFigures) -> int:
    return f.counts.get("entered", 0) - f.counts.get("exited", 0)
