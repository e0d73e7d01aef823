"""Segment evaluation: a pure function of (profile, catalog, now).

``SegmentEvaluator`` is the interface the handlers and services depend on. The
``DefaultCatalog`` below implements the purchase and checkout segments of
design.md §4 directly; the declarative segment language replaces it behind the
same interface.

Time semantics (design.md §3.5), all in whole epoch seconds:
* "in the last N days" holds events with ``t > now - N days``;
* "more than N ago" means ``now - t > N``; "at most N ago" means ``now - t <= N``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from .profile import Profile, from_epoch

DAY = 86400
HOUR = 3600


class SegmentDefinition(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str


@dataclass(frozen=True)
class Evaluation:
    """Memberships and computed traits at ``at``, and the next instant anything can change."""

    at: int
    segments: frozenset[str]
    traits: dict
    next_due_at: int | None = None
    conditions: dict[str, dict] = field(default_factory=dict)


class SegmentEvaluator(Protocol):
    version: str

    def definitions(self) -> list[SegmentDefinition]: ...

    def evaluate(self, profile: Profile, now: int) -> Evaluation: ...


@dataclass(frozen=True)
class Thresholds:
    recent_buyer_days: int = 14
    repeat_buyer_orders: int = 2
    high_value_revenue: Decimal = Decimal("500")
    cart_abandon_after_s: int = HOUR
    cart_abandon_within_days: int = 7


def _iso(ts: int | None) -> str | None:
    dt = from_epoch(ts)
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


class DefaultCatalog:
    """The purchase segments of the default catalog (design.md §4)."""

    version = "builtin-1"

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.t = thresholds or Thresholds()

    def definitions(self) -> list[SegmentDefinition]:
        t = self.t
        return [
            SegmentDefinition(
                id="recent-buyers", name="Recent Buyers",
                description=f"At least one purchase in the last {t.recent_buyer_days} days.",
            ),
            SegmentDefinition(
                id="repeat-buyers", name="Repeat Buyers",
                description=f"At least {t.repeat_buyer_orders} purchases, lifetime.",
            ),
            SegmentDefinition(
                id="high-value", name="High-Value Customers",
                description=f"Lifetime revenue of at least {t.high_value_revenue} (shop currency).",
            ),
            SegmentDefinition(
                id="cart-abandoners", name="Cart Abandoners",
                description=(
                    "Started a checkout more than an hour ago and within the last "
                    f"{t.cart_abandon_within_days} days, and has not bought since."
                ),
            ),
        ]

    def evaluate(self, profile: Profile, now: int) -> Evaluation:
        t = self.t
        counted = [o for o in profile.orders.values() if o.counts]
        order_times = [o.at for o in counted]
        order_count = len(counted)
        revenue = sum((o.total for o in counted), Decimal("0"))
        last_order = max(order_times, default=None)

        members: set[str] = set()
        due: list[int] = []

        recent_window = t.recent_buyer_days * DAY
        if last_order is not None and last_order > now - recent_window:
            members.add("recent-buyers")
            due.append(last_order + recent_window)  # exactly N days old is out
        if order_count >= t.repeat_buyer_orders:
            members.add("repeat-buyers")
        if revenue >= t.high_value_revenue:
            members.add("high-value")

        # A checkout with no purchase since its start makes the profile a member during
        # (start + 1 h, start + N days): with one-second resolution, [start + 3601, start + N days - 1].
        window = t.cart_abandon_within_days * DAY
        spans = [
            (c.started + t.cart_abandon_after_s + 1, c.started + window)
            for c in profile.checkouts.values()
            if not c.completed and not any(ot >= c.started for ot in order_times)
        ]

        def abandoned_at(instant: int) -> bool:
            return any(start <= instant < end for start, end in spans)

        abandoned = abandoned_at(now)
        if abandoned:
            members.add("cart-abandoners")
        # Membership changes only at span edges: the first edge where it differs from now's.
        for edge in sorted({e for span in spans for e in span if e > now}):
            if abandoned_at(edge) != abandoned:
                due.append(edge)
                break

        traits = {
            "order_count": order_count,
            "lifetime_value": str(revenue),
            "last_order_at": _iso(last_order),
            "last_activity_at": _iso(profile.last_activity_at),
            "first_seen_at": _iso(profile.first_seen_at),
            "email_open_rate_30d": None,
            "preferred_category": None,
        }
        later = [d for d in due if d > now]
        return Evaluation(
            at=now, segments=frozenset(members), traits=traits, next_due_at=min(later, default=None)
        )
