"""The profile aggregate: one per customer, everything segmentation needs about them.

Times are kept as integer epoch seconds (the engine's resolution is one second).
The profile keeps compact state, not raw history: one small record per order,
checkouts only while they can still matter, and a bounded list of applied event
ids so that at-least-once delivery never counts an event twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from .events import (
    CheckoutProperties,
    CustomerEvent,
    CustomerProperties,
    OrderProperties,
)

#: How many applied event ids (with the membership changes they caused) a profile remembers.
RECENT_EVENTS_KEPT = 32
#: Checkouts older than this can no longer make anyone a cart abandoner.
CHECKOUT_RETENTION_S = 7 * 86400


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def from_epoch(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class OrderRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    at: int  # when it was placed
    total: Decimal
    status: str  # placed | cancelled | refunded
    updated: int  # the order version this record reflects

    @property
    def counts(self) -> bool:
        """Cancelled and fully refunded orders count toward neither orders nor revenue."""
        return self.status == "placed"


class CheckoutRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    started: int
    completed: bool = False
    updated: int


class ConsentRecord(BaseModel):
    state: str
    updated: int | None = None


class MembershipChange(BaseModel):
    """A profile entered or left a segment. ``cause`` is an event id or ``"time"``."""

    model_config = ConfigDict(frozen=True)

    profile_id: str
    segment_id: str
    change: str  # "entered" | "exited"
    at: int
    cause: str
    version: int

    @property
    def detail_type(self) -> str:
        return "SegmentEntered" if self.change == "entered" else "SegmentExited"

    def detail(self) -> dict:
        return {
            "profile_id": self.profile_id,
            "segment_id": self.segment_id,
            "at": from_epoch(self.at).isoformat().replace("+00:00", "Z"),
            "cause": self.cause,
            "version": self.version,
        }


class AppliedEvent(BaseModel):
    event_id: str
    changes: list[MembershipChange] = Field(default_factory=list)


class Profile(BaseModel):
    """One customer. ``version`` guards concurrent writers (optimistic concurrency)."""

    model_config = ConfigDict(extra="ignore")

    profile_id: str
    version: int = 0
    email: str | None = None
    emails: list[str] = Field(default_factory=list)
    phone: str | None = None
    aliases: list[str] = Field(default_factory=list)
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = Field(default_factory=list)
    email_consent: ConsentRecord | None = None
    orders: dict[str, OrderRecord] = Field(default_factory=dict)
    checkouts: dict[str, CheckoutRecord] = Field(default_factory=dict)
    first_seen_at: int | None = None
    last_activity_at: int | None = None
    # the stored result of the last evaluation
    evaluated_at: int | None = None
    segments: list[str] = Field(default_factory=list)
    traits: dict = Field(default_factory=dict)
    next_due_at: int | None = None
    recent_events: list[AppliedEvent] = Field(default_factory=list)

    # -- applying events -------------------------------------------------------------
    def applied(self, event_id: str) -> AppliedEvent | None:
        return next((e for e in self.recent_events if e.event_id == event_id), None)

    def apply(self, event: CustomerEvent, aliases: list[str]) -> None:
        """Fold ``event`` into the profile. The caller checks :meth:`applied` first."""
        at = epoch(event.occurred_at)
        self.first_seen_at = at if self.first_seen_at is None else min(self.first_seen_at, at)
        for alias in aliases:
            if alias not in self.aliases:
                self.aliases.append(alias)
        identity = event.identity
        if identity.email:
            if identity.email not in self.emails:
                self.emails.append(identity.email)
            if self.email is None:
                self.email = identity.email
        if identity.phone and self.phone is None:
            self.phone = identity.phone

        props = event.properties
        if isinstance(props, OrderProperties):
            self._apply_order(at, props)
        elif isinstance(props, CheckoutProperties):
            self._apply_checkout(at, props)
        elif isinstance(props, CustomerProperties):
            self._apply_customer(props)

    def _touch(self, at: int) -> None:
        if self.last_activity_at is None or at > self.last_activity_at:
            self.last_activity_at = at

    def _apply_order(self, at: int, props: OrderProperties) -> None:
        updated = epoch(props.updated_at)
        current = self.orders.get(props.order_id)
        # Deliveries are unordered: an older version of the order never overwrites a newer one.
        if current is not None and current.updated > updated:
            return
        self.orders[props.order_id] = OrderRecord(
            at=at, total=props.total, status=props.status, updated=updated
        )
        self._touch(at)

    def _apply_checkout(self, at: int, props: CheckoutProperties) -> None:
        updated = epoch(props.updated_at)
        current = self.checkouts.get(props.checkout_id)
        if current is not None and current.updated > updated:
            return
        self.checkouts[props.checkout_id] = CheckoutRecord(
            started=current.started if current else at,
            completed=props.completed_at is not None or bool(current and current.completed),
            updated=updated,
        )
        self._touch(current.started if current else at)

    def _apply_customer(self, props: CustomerProperties) -> None:
        if props.first_name:
            self.first_name = props.first_name
        if props.last_name:
            self.last_name = props.last_name
        if props.tags:
            self.tags = list(props.tags)
        consent = props.email_consent
        if consent is not None:
            updated = epoch(consent.updated_at) if consent.updated_at else None
            current = self.email_consent
            # The latest consent by its own time wins, so a late retry cannot undo a newer choice.
            if current is None or updated is None or (current.updated or 0) <= updated:
                self.email_consent = ConsentRecord(state=consent.state, updated=updated)

    def prune(self, now: int) -> None:
        """Drop state that can no longer affect any segment at or after ``now``."""
        self.checkouts = {
            cid: c for cid, c in self.checkouts.items() if now - c.started < CHECKOUT_RETENTION_S
        }

    # -- recording an evaluation --------------------------------------------------------
    def record_evaluation(
        self, segments: set[str], traits: dict, next_due_at: int | None, at: int, cause: str
    ) -> list[MembershipChange]:
        """Store an evaluation's result and return the membership changes it makes.

        The changes carry ``version`` = the version this write will have.
        """
        new_version = self.version + 1
        before = set(self.segments)
        changes = [
            MembershipChange(
                profile_id=self.profile_id, segment_id=s, change="entered", at=at, cause=cause,
                version=new_version,
            )
            for s in sorted(segments - before)
        ] + [
            MembershipChange(
                profile_id=self.profile_id, segment_id=s, change="exited", at=at, cause=cause,
                version=new_version,
            )
            for s in sorted(before - segments)
        ]
        self.segments = sorted(segments)
        self.traits = traits
        self.next_due_at = next_due_at
        self.evaluated_at = at
        if cause != "time":
            self.recent_events.append(AppliedEvent(event_id=cause, changes=changes))
            del self.recent_events[:-RECENT_EVENTS_KEPT]
        return changes
