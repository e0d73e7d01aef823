"""The profile aggregate: one per customer, everything segmentation needs about them.

Times are integer epoch seconds (the engine's resolution is one second). The profile
keeps compact state, not raw history:

* one small record per order (orders can be cancelled or refunded later, so each is kept
  by id and counts once however many deliveries carry it);
* checkouts, email messages and browsing events only as long as the catalog's longest
  window over them (:class:`Retention`), with email events folded into one record per
  message (delivered, first open, first click);
* lifetime counters and first/last times per signal, for lifetime conditions;
* the last applied event ids, so at-least-once delivery never counts an event twice.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from .events import (
    BrowseProperties,
    CheckoutProperties,
    CustomerEvent,
    CustomerProperties,
    EmailProperties,
    EventType,
    OrderProperties,
    RefundProperties,
    scope_key,
)

#: How many applied event ids (with the membership changes they caused) a profile remembers at most.
RECENT_EVENTS_KEPT = 32
#: How long a profile remembers an applied event: longer than any redelivery a source or the pipeline
#: makes on its own (providers retry for at most 24 hours, EventBridge for 24 hours, the profile queue
#: for minutes), so that a quiet customer's memory holds a few ids, not 32 (docs/architecture.md,
#: "Delivery guarantees").
RECENT_EVENTS_KEPT_S = 72 * 3600
#: Messages are remembered this long after the catalog's email window, so that a late open or
#: click still finds its message (and is not mistaken for a new delivery).
EMAIL_GRACE_S = 60 * 86400
#: attribute carrying the old address of an email change (Mailchimp upemail)
PREVIOUS_EMAIL = "previous_email"
#: Consent facts remembered, so that facts arriving out of order still give the right "since".
CONSENT_FACTS_KEPT = 16
#: Browsing event types -> signal names used by the catalog.
BROWSE_SIGNALS = {
    EventType.PAGE_VIEWED: "page_viewed", EventType.PRODUCT_VIEWED: "product_viewed",
    EventType.CATEGORY_VIEWED: "category_viewed", EventType.PRODUCT_ADDED: "product_added",
    EventType.PAGE_ENGAGED: "page_engaged", EventType.PAGE_SCROLLED: "page_scrolled",
}
#: Signals that count as activity (docs/segments.md#signals). A delivered email is not activity.
ACTIVITY_SIGNALS = frozenset({
    "email_opened", "email_clicked", "page_viewed", "product_viewed", "category_viewed", "product_added",
    "checkout_started", "order_placed",
})
SUPPRESSING = {EventType.EMAIL_BOUNCED: "bounced", EventType.EMAIL_SPAM: "spam", EventType.EMAIL_UNSUBSCRIBED: "unsubscribed"}


def epoch(value: datetime) -> int:
    return int(value.timestamp())


#: The epoch seconds a datetime can show (years 1 to 9999). A stored time beyond them (a year-9999 order,
#: plus a window) is shown at the limit rather than failing the read.
_EPOCH_MIN = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())
_EPOCH_MAX = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def from_epoch(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(min(max(value, _EPOCH_MIN), _EPOCH_MAX), UTC)


def iso(value: int | None) -> str | None:
    dt = from_epoch(value)
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def message_key(message_id: str) -> str:
    """12 hex characters of SHA-256: per-message dedupe without storing provider ids (48 bits)."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:12]


#: An order counts as a conversion for the segments of a message clicked at most this long before it
#: (the default of the catalog's ``attribution_window``).
ATTRIBUTION_WINDOW_S = 5 * 86400


@dataclass(frozen=True)
class Retention:
    """How long the catalog needs each kind of state, in seconds (from :mod:`.catalog`)."""

    browse: dict[str, int] = field(default_factory=dict)  # signal -> seconds
    email: int = 0
    checkouts: int = 0
    #: an order converts for a message clicked at most this long before it (the catalog's
    #: ``attribution_window``)
    attribution: int = ATTRIBUTION_WINDOW_S

    def browse_max(self) -> int:
        return max(self.browse.values(), default=0)


class OrderRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    at: int  # when it was placed
    total: Decimal
    status: str  # placed | cancelled | refunded
    updated: int  # the order version this record reflects
    cats: list[str] = Field(default_factory=list)  # categories of its line items
    refunds: list[str] = Field(default_factory=list)  # refund ids already applied
    refunded_until: int = 0  # the latest refund applied: order versions older than it are stale

    @property
    def counts(self) -> bool:
        """Cancelled and fully refunded orders count toward neither orders nor revenue."""
        return self.status == "placed"


class CheckoutRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    started: int
    completed: bool = False
    updated: int


class MessageRecord(BaseModel):
    """One email message: when it was delivered, first opened, first clicked, and the segments the
    profile was in when it was delivered (what its opens, clicks and conversions count for; None for
    messages stored before this was kept)."""

    d: int
    o: int | None = None
    c: int | None = None
    s: int | None = None  # index into Profile.segment_sets

    # Stored with the open and the click as seconds after the delivery ("p", "q"): a few digits
    # instead of a whole time each. Records stored before hold them whole ("o", "c"); both read.
    @model_serializer(mode="wrap", when_used="json")
    def _relative(self, handler: Any) -> dict:
        out = {"d": self.d}
        if self.o is not None:
            out["p"] = self.o - self.d
        if self.c is not None:
            out["q"] = self.c - self.d
        if self.s is not None:
            out["s"] = self.s
        return out

    @model_validator(mode="before")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        if isinstance(value, dict) and ("p" in value or "q" in value):
            value = dict(value)
            for rel, field in (("p", "o"), ("q", "c")):
                if rel in value:
                    value[field] = value["d"] + value.pop(rel)
        return value



@dataclass(frozen=True)
class MetricFact:
    """Something a segment's figures count (docs/measure.md): ``kind`` is delivered, opened, clicked,
    unsubscribed, bounced, spam or conversion (with ``revenue``), counted once for each of
    ``segments`` on the UTC day of ``at``."""

    kind: str
    segments: tuple[str, ...]
    at: int
    revenue: Decimal | None = None
    message: str = ""  # the message whose segments it counts for (its key), if any

    def detail(self) -> dict:
        return {"kind": self.kind, "segments": list(self.segments), "at": iso(self.at),
                "revenue": None if self.revenue is None else str(self.revenue)}


class ConsentRecord(BaseModel):
    state: str
    updated: int  # the time of the latest consent fact applied
    since: int  # when the state last became what it is
    #: the latest facts as [time, state], in time order (arrival order among equal times)
    log: list[tuple[int, str]] = Field(default_factory=list)


class Columns(BaseModel):
    """Events of one browsing signal as parallel columns, sorted by time ``t``."""

    t: list[int] = Field(default_factory=list)
    c: list[str | None] = Field(default_factory=list)  # category
    v: list[float | None] = Field(default_factory=list)  # price, seconds or depth

    # Times are stored as deltas: sorted epoch seconds compress to a byte or two each.
    @field_serializer("t")
    def _deltas(self, times: list[int]) -> list[int]:
        return [t - p for t, p in zip(times, [0, *times[:-1]], strict=False)]

    @field_validator("t", mode="before")
    @classmethod
    def _undelta(cls, deltas: list[int]) -> list[int]:
        out, acc = [], 0
        for d in deltas:
            acc += d
            out.append(acc)
        return out

    def insert(self, t: int, category: str | None, value: float | None) -> None:
        i = bisect.bisect_right(self.t, t)
        self.t.insert(i, t)
        self.c.insert(i, category)
        self.v.insert(i, value)

    def drop_before(self, cutoff: int) -> None:
        """Forget events at or before ``cutoff``."""
        i = bisect.bisect_right(self.t, cutoff)
        if i:
            del self.t[:i], self.c[:i], self.v[:i]


class Totals(BaseModel):
    """Lifetime counters of one signal."""

    n: int = 0
    sum: Decimal = Decimal("0")
    min: Decimal | None = None
    max: Decimal | None = None


class MembershipChange(BaseModel):
    """A profile entered or left a segment (``SegmentEntered`` / ``SegmentExited``), or, with
    ``change == "updated"``, some of its watched values changed (``ProfileUpdated``: ``fields`` names
    the traits, or ``email``, that the ESP sync copies). ``cause`` is an event id or ``"time"``."""

    model_config = ConfigDict(frozen=True)

    profile_id: str
    segment_id: str = ""
    change: str  # "entered" | "exited" | "updated"
    at: int
    cause: str
    version: int
    fields: tuple[str, ...] = ()

    @property
    def detail_type(self) -> str:
        return {"entered": "SegmentEntered", "exited": "SegmentExited"}.get(self.change, "ProfileUpdated")

    def detail(self) -> dict:
        if self.change == "updated":
            return {"profile_id": self.profile_id, "fields": list(self.fields), "at": iso(self.at),
                    "cause": self.cause, "version": self.version}
        return {
            "profile_id": self.profile_id, "segment_id": self.segment_id, "at": iso(self.at),
            "cause": self.cause, "version": self.version,
        }


#: How much of an event id's SHA-256 a profile keeps to recognise a redelivery: 12 hex digits (48
#: bits, whatever the id looks like). A new event is mistaken for one of the at most
#: RECENT_EVENTS_KEPT remembered with a chance of 32 in 2**48 (about 1e-13): about once in ten
#: thousand billion events. Profiles stored before kept 16 digits; their first 12 match.
APPLIED_ID_CHARS = 12


def applied_key(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:APPLIED_ID_CHARS]

#: a membership change as a profile remembers it: (segment_id, change, at, version, fields)
StoredChange = tuple[str, str, int, int, tuple[str, ...]]


class AppliedEvent(BaseModel):
    """An event applied to the profile, kept to recognise its redelivery and publish its changes
    again: a short hash of its id (:func:`applied_key`), and its changes without the profile id and the cause (the event's
    own id), which they share. Profiles stored before kept whole ids and whole changes; both read."""

    event_id: str
    changes: list[StoredChange] = Field(default_factory=list)
    #: when it was applied (None: stored before this was kept; such entries go by count only)
    t: int | None = None

    @field_validator("changes", mode="before")
    @classmethod
    def _old_format(cls, value: Any) -> Any:
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return [(c["segment_id"], c["change"], c["at"], c["version"], tuple(c.get("fields") or ()))
                    if isinstance(c, dict) else c for c in value]
        return value

    @classmethod
    def of(cls, event_id: str, changes: list[MembershipChange], at: int | None = None) -> AppliedEvent:
        return cls(event_id=applied_key(event_id), t=at,
                   changes=[(c.segment_id, c.change, c.at, c.version, tuple(c.fields)) for c in changes])

    def matches(self, event_id: str, key: str | None = None) -> bool:
        return self.event_id[:APPLIED_ID_CHARS] == (key or applied_key(event_id)) or self.event_id == event_id

    def membership_changes(self, profile_id: str, cause: str) -> list[MembershipChange]:
        return [MembershipChange(profile_id=profile_id, segment_id=segment_id, change=change, at=at, cause=cause,
                                 version=version, fields=fields)
                for segment_id, change, at, version, fields in self.changes]


def compact_memory(events: list[AppliedEvent]) -> Any:
    """The memory of applied events as it is stored: ``{"k": the keys end to end, "t": the times applied
    as differences, "c": {position: [version, [[segment, change, fields?]...]]}}`` (a change's time is
    the time its event was applied). About half the bytes of a list of entries in the compressed state.
    Entries stored before times were kept (or whole ids) keep the list form, which still reads."""
    if any(e.t is None or len(e.event_id) != APPLIED_ID_CHARS
           or any(c[2] != e.t or c[3] != e.changes[0][3] for c in e.changes) for e in events):
        return [e.model_dump(mode="json", exclude_none=True) for e in events]
    times, previous = [], 0
    for e in events:
        times.append(e.t - previous)  # type: ignore[operator]  # (checked above)
        previous = e.t  # type: ignore[assignment]
    out: dict[str, Any] = {"k": "".join(e.event_id for e in events), "t": times}
    changes = {str(i): [e.changes[0][3], [[c[0], c[1], *([list(c[4])] if c[4] else [])] for c in e.changes]]
               for i, e in enumerate(events) if e.changes}
    if changes:
        out["c"] = changes
    return out


def expand_memory(stored: dict) -> list[AppliedEvent]:
    """:func:`compact_memory`'s form back to the entries."""
    keys, changes, out, t = stored["k"], stored.get("c", {}), [], 0
    for i, delta in enumerate(stored["t"]):
        t += delta
        version, kept = changes.get(str(i), (0, []))
        out.append(AppliedEvent(event_id=keys[i * APPLIED_ID_CHARS:(i + 1) * APPLIED_ID_CHARS], t=t,
                                changes=[(c[0], c[1], t, version, tuple(c[2]) if len(c) > 2 else ()) for c in kept]))
    return out


class Profile(BaseModel):
    """One customer. ``version`` guards concurrent writers (optimistic concurrency)."""

    model_config = ConfigDict(extra="ignore")

    profile_id: str
    version: int = 0
    email: str | None = None
    emails: list[str] = Field(default_factory=list)
    #: the instant under which the store's due index holds this profile (not part of the state: the
    #: store sets it when it reads the profile); see :func:`due_entry`
    _indexed_due: int | None = PrivateAttr(default=None)
    #: what the last :meth:`apply` gave the segments' figures (not stored)
    _facts: list[MetricFact] = PrivateAttr(default_factory=list)
    _attribution: int = PrivateAttr(default=ATTRIBUTION_WINDOW_S)
    #: False while history is imported: its messages' delivery segments are not known (not stored)
    _live: bool = PrivateAttr(default=True)
    phone: str | None = None
    aliases: list[str] = Field(default_factory=list)
    #: ids of the profiles merged into this one (their membership history is still under them)
    merged_from: list[str] = Field(default_factory=list)
    #: where the profile's data came from, as ``source#shop`` (``shopify#a.myshopify.com``,
    #: ``mailchimp#<list>``): a shop's ``shop/redact`` keeps the profile if anything else brought data
    origins: list[str] = Field(default_factory=list)
    #: event time of the latest email change: an older event cannot undo it
    email_changed_at: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = Field(default_factory=list)
    attributes: dict = Field(default_factory=dict)
    email_consent: ConsentRecord | None = None
    orders: dict[str, OrderRecord] = Field(default_factory=dict)
    checkouts: dict[str, CheckoutRecord] = Field(default_factory=dict)
    messages: dict[str, MessageRecord] = Field(default_factory=dict)
    #: the segment sets messages were delivered to (MessageRecord.s refers to them)
    segment_sets: list[list[str]] = Field(default_factory=list)
    # browsing events within retention, per signal, sorted by time
    browse: dict[str, Columns] = Field(default_factory=dict)
    totals: dict[str, Totals] = Field(default_factory=dict)
    first_at: dict[str, int] = Field(default_factory=dict)
    last_at: dict[str, int] = Field(default_factory=dict)
    first_seen_at: int | None = None
    # the stored result of the last evaluation
    catalog_version: str | None = None
    evaluated_at: int | None = None
    segments: list[str] = Field(default_factory=list)
    traits: dict = Field(default_factory=dict)
    next_due_at: int | None = None
    #: membership changes stored but not yet published (the bus failed); sent on the next touch
    outbox: list[MembershipChange] = Field(default_factory=list)
    recent_events: list[AppliedEvent] = Field(default_factory=list)

    @field_serializer("recent_events", when_used="json")
    def _compact_memory(self, events: list[AppliedEvent]) -> Any:
        return compact_memory(events)

    @field_validator("recent_events", mode="before")
    @classmethod
    def _expand_memory(cls, value: Any) -> Any:
        return expand_memory(value) if isinstance(value, dict) else value

    # -- applying events -------------------------------------------------------------
    def applied(self, event_id: str) -> list[MembershipChange] | None:
        """The membership changes ``event_id`` made when it was applied, or None if it was not
        among the last RECENT_EVENTS_KEPT events applied."""
        key = applied_key(event_id)
        done = next((e for e in self.recent_events if e.matches(event_id, key)), None)
        return None if done is None else done.membership_changes(self.profile_id, event_id)

    def redelivered_facts(self, event: CustomerEvent, attribution: int = ATTRIBUTION_WINDOW_S) -> list[MetricFact]:
        """What ``event``, applied before, gave the segments' figures, read back from what it left:
        a redelivery publishes them again, as it does its membership changes (at least once). Not
        stored, so that they cost no bytes in every write of the profile: a message's delivery, first
        open and first click are the times it holds, a new order's conversion is found again from
        its clicks. (Two events of one message with the very same time read back as one.)"""
        self._facts = []
        self._attribution = attribution
        props, at = event.properties, epoch(event.occurred_at)
        if isinstance(props, EmailProperties):
            key = message_key(scope_key(event.source, event.shop, props.message_id))
            msg = self.messages.get(key)
            if event.type in SUPPRESSING:
                self._fact(SUPPRESSING[event.type], msg, at, message=key if msg is not None else "")
            elif msg is not None:
                if msg.d == at:
                    self._fact("delivered", msg, at, message=key)
                if event.type == EventType.EMAIL_OPENED and msg.o == at:
                    self._fact("opened", msg, at, message=key)
                if event.type == EventType.EMAIL_CLICKED and msg.c == at:
                    self._fact("clicked", msg, at, message=key)
        elif isinstance(props, OrderProperties) and props.status == "placed":
            order = self.orders.get(scope_key(event.source, event.shop, props.order_id))
            if order is not None and order.at == at and order.updated == epoch(props.updated_at):
                self._conversion(at, props.total)
        return self.facts

    def apply(self, event: CustomerEvent, aliases: list[str], attribution: int = ATTRIBUTION_WINDOW_S) -> None:
        """Fold ``event`` into the profile. The caller checks :meth:`applied` first. What it gives the
        segments' figures is in :attr:`facts` afterwards (an order converts for a message clicked at
        most ``attribution`` seconds before it)."""
        self._facts = []
        self._attribution = attribution
        at = epoch(event.occurred_at)
        self.first_seen_at = at if self.first_seen_at is None else min(self.first_seen_at, at)
        origin = scope_key(event.source, event.shop, "")[:-1]
        if origin not in self.origins:
            self.origins.append(origin)
        for alias in aliases:
            if alias not in self.aliases:
                self.aliases.append(alias)
        identity = event.identity
        if identity.email and not self.email_outdated(identity.email, at):
            if identity.email not in self.emails:
                self.emails.append(identity.email)
            if self.email is None:
                self.email = identity.email
        if identity.phone and self.phone is None:
            self.phone = identity.phone

        props = event.properties
        # Orders, checkouts, refunds and messages are keyed by platform and shop: order 1001 of one
        # shop and order 1001 of another (or a WooCommerce order with a Shopify order's number) are two.
        if isinstance(props, OrderProperties):
            self._apply_order(at, scope_key(event.source, event.shop, props.order_id), props)
        elif isinstance(props, CheckoutProperties):
            self._apply_checkout(at, scope_key(event.source, event.shop, props.checkout_id), props)
        elif isinstance(props, RefundProperties):
            self._apply_refund(scope_key(event.source, event.shop, props.order_id), props)
        elif isinstance(props, CustomerProperties):
            self._apply_customer(at, props)
        elif isinstance(props, BrowseProperties) and event.type in BROWSE_SIGNALS:
            self._apply_browse(at, BROWSE_SIGNALS[event.type], props)
        elif isinstance(props, EmailProperties):
            self._apply_email(at, event.type, scope_key(event.source, event.shop, props.message_id))

    def email_outdated(self, email: str, at: int) -> bool:
        """``email`` is not one of the customer's now, and the event naming it is older than the
        latest email change: a late delivery must not bring a given-up address back."""
        return self.email_changed_at is not None and at < self.email_changed_at and email not in self.emails

    def _seen(self, signal: str, at: int, value: Decimal | None = None, count: bool = True) -> None:
        if signal not in self.first_at or at < self.first_at[signal]:
            self.first_at[signal] = at
        if signal not in self.last_at or at > self.last_at[signal]:
            self.last_at[signal] = at
        if count:
            tot = self.totals.setdefault(signal, Totals())
            tot.n += 1
            if value is not None:
                tot.sum += value
                tot.min = value if tot.min is None else min(tot.min, value)
                tot.max = value if tot.max is None else max(tot.max, value)
        if signal in ACTIVITY_SIGNALS:
            self._seen("activity", at, count=False)

    def _apply_order(self, at: int, key: str, props: OrderProperties) -> None:
        updated = epoch(props.updated_at)
        current = self.orders.get(key)
        # Deliveries are unordered: an older version of the order never overwrites a newer one.
        if current is not None and (current.updated > updated or current.refunded_until > updated):
            return
        cats = [i.category for i in props.items if i.category]
        if current is None and props.status == "placed":
            self._conversion(at, props.total)  # once per order: its later versions are not new orders
        self.orders[key] = OrderRecord(
            at=at, total=props.total, status=props.status, updated=updated, cats=cats or (current.cats if current else []),
            refunds=current.refunds if current else [], refunded_until=current.refunded_until if current else 0,
        )
        # Placing an order is activity even if it is cancelled later.
        self._seen("order_any", at, count=False)
        self._seen("activity", at, count=False)

    def _apply_refund(self, key: str, props: RefundProperties) -> None:
        """A refund lowers the order's revenue once; a full refund stops the order counting.

        An order version newer than the refund already reflects it (its current total), so only
        the id is recorded; the refund also makes older versions of the order stale."""
        order = self.orders.get(key)
        if order is None or props.refund_id in order.refunds:
            return
        at = epoch(props.refunded_at)
        order.refunds.append(props.refund_id)
        if order.updated >= at:
            return
        order.total = max(Decimal(0), order.total - props.amount)
        if order.total == 0 and order.status == "placed":
            order.status = "refunded"
        order.refunded_until = max(order.refunded_until, at)

    def _apply_checkout(self, at: int, key: str, props: CheckoutProperties) -> None:
        updated = epoch(props.updated_at)
        current = self.checkouts.get(key)
        if current is not None and current.updated > updated:
            return
        started = current.started if current else at
        self.checkouts[key] = CheckoutRecord(
            started=started,
            completed=props.completed_at is not None or bool(current and current.completed),
            updated=updated,
        )
        self._seen("checkout_started", started, count=current is None)

    def _apply_customer(self, at: int, props: CustomerProperties) -> None:
        if props.first_name:
            self.first_name = props.first_name
        if props.last_name:
            self.last_name = props.last_name
        if props.tags:
            self.tags = list(props.tags)
        for key, value in props.attributes.items():
            if key == PREVIOUS_EMAIL:
                continue  # an email change: handled by identity resolution, not a trait
            if value is None:
                self.attributes.pop(key, None)
            else:
                self.attributes[key] = value
        consent = props.email_consent
        if consent is not None:
            self.add_consent_fact(consent.state, epoch(consent.updated_at) if consent.updated_at else at)

    def add_consent_fact(self, state: str, at: int) -> None:
        """Apply a consent fact. The latest fact by its own time wins, so a late retry cannot
        undo a newer choice; ``since`` is when the latest run of the same state began, whatever
        order the facts arrived in."""
        log = list(self.email_consent.log) if self.email_consent else []
        i = len(log)
        while i > 0 and log[i - 1][0] > at:
            i -= 1
        log.insert(i, (at, state))
        del log[:-CONSENT_FACTS_KEPT]
        current_at, current = log[-1]
        since = current_at
        for t, s in reversed(log):
            if s != current:
                break
            since = t
        self.email_consent = ConsentRecord(state=current, updated=current_at, since=since, log=log)

    def _apply_browse(self, at: int, signal: str, props: BrowseProperties) -> None:
        value = props.price if signal in ("product_viewed", "product_added") else (
            props.seconds if signal == "page_engaged" else props.depth_percent if signal == "page_scrolled" else None)
        self.browse.setdefault(signal, Columns()).insert(at, props.category, None if value is None else float(value))
        self._seen(signal, at, None if value is None else Decimal(str(value)))

    def _apply_email(self, at: int, type_: EventType, message_id: str) -> None:
        key = message_key(message_id)
        msg = self.messages.get(key)
        if type_ in SUPPRESSING:
            self.add_consent_fact(SUPPRESSING[type_], at)
            # counted for the segments of the message it came from when it is known, else today's
            self._fact(SUPPRESSING[type_], msg, at, message=key if msg is not None else "")
            return
        if msg is None:
            # the segments the person is in as the message arrives: its opens and clicks count for them
            msg = self.messages[key] = MessageRecord(d=at, s=self._segment_set() if self._live else None)
            self._seen("email_delivered", at)
            self._fact("delivered", msg, at, message=key)
        # An open or click implies delivery no later than it: delivery is the message's earliest event.
        msg.d = min(msg.d, at)
        if type_ == EventType.EMAIL_OPENED:
            if msg.o is None:
                self._seen("email_opened", at)
                self._fact("opened", msg, at, message=key)
            msg.o = at if msg.o is None else min(msg.o, at)
            self._seen("activity", at, count=False)  # every open is activity, not only the first
        elif type_ == EventType.EMAIL_CLICKED:
            if msg.c is None:
                self._seen("email_clicked", at)
                self._fact("clicked", msg, at, message=key)
            msg.c = at if msg.c is None else min(msg.c, at)
            self._seen("activity", at, count=False)

    # -- what events give the segments' figures ----------------------------------------------
    @property
    def facts(self) -> list[MetricFact]:
        """What the last :meth:`apply` gave the segments' figures (docs/measure.md)."""
        return list(self._facts)

    def forget_facts(self) -> None:
        self._facts = []

    def importing(self) -> None:
        """History follows: its messages are delivered to no known segments, and give no figures."""
        self._live = False

    def _segment_set(self) -> int:
        """The index of the current segments in :attr:`segment_sets` (added when new): messages
        refer to it, so a set shared by many messages is stored once."""
        # a family's instances (category-browsers:shoes) churn as people browse: each would make a new
        # set, so email figures are kept for segments, not for family instances (docs/measure.md)
        current = sorted(s for s in self.segments if ":" not in s)
        for i, known in enumerate(self.segment_sets):
            if known == current:
                return i
        self.segment_sets.append(current)
        return len(self.segment_sets) - 1

    def _delivered_to(self, msg: MessageRecord | None) -> tuple[str, ...]:
        if msg is None or msg.s is None or msg.s >= len(self.segment_sets):
            return ()
        return tuple(self.segment_sets[msg.s])

    def _fact(self, kind: str, msg: MessageRecord | None, at: int, revenue: Decimal | None = None,
              message: str = "") -> None:
        segments = (self._delivered_to(msg) if msg is not None and msg.s is not None
                    else tuple(sorted(s for s in self.segments if ":" not in s)))
        if segments:
            self._facts.append(MetricFact(kind, segments, at, revenue, message if msg is not None else ""))

    def _conversion(self, at: int, revenue: Decimal) -> None:
        """An order placed at most the attribution window after a click converts for the segments of
        the message clicked last before it."""
        clicked = [(k, m) for k, m in self.messages.items()
                   if m.c is not None and at - self._attribution <= m.c <= at]
        if clicked:
            key, msg = max(clicked, key=lambda km: km[1].c)
            self._fact("conversion", msg, at, revenue, message=key)

    def prune(self, now: int, retention: Retention) -> None:
        """Drop state that can no longer affect any segment or trait at or after ``now``."""
        self.checkouts = {k: c for k, c in self.checkouts.items() if now - c.started < retention.checkouts}
        # kept past the catalog's email windows for late opens and clicks, and for the figures
        # (attribution) even when no segment reads email
        keep_for = retention.email + EMAIL_GRACE_S
        self.messages = {k: m for k, m in self.messages.items() if now - m.d < keep_for}
        self._compact_segment_sets()
        for signal in list(self.browse):
            columns = self.browse[signal]
            columns.drop_before(now - retention.browse.get(signal, 0))
            if not columns.t:
                del self.browse[signal]

    def _compact_segment_sets(self) -> None:
        """Keep only the segment sets a remembered message refers to (indices renumbered)."""
        used = sorted({m.s for m in self.messages.values() if m.s is not None and m.s < len(self.segment_sets)})
        if len(used) == len(self.segment_sets):
            return
        renumber = {old: new for new, old in enumerate(used)}
        self.segment_sets = [self.segment_sets[i] for i in used]
        for m in self.messages.values():
            m.s = renumber.get(m.s) if m.s is not None else None

    # -- recording an evaluation --------------------------------------------------------
    def record_evaluation(
        self, segments: set[str], traits: dict, next_due_at: int | None, at: int, cause: str,
        catalog_version: str | None = None,
        watch: frozenset[str] = frozenset(), email_before: str | None = None,
    ) -> list[MembershipChange]:
        """Store an evaluation's result and return the membership changes it makes.

        The changes carry ``version`` = the version this write will have. ``watch`` names traits
        (and ``"email"``) whose changes matter downstream (the ESP sync copies them): when one of
        them changed, one ``"updated"`` change names them all. ``email_before``: the address before
        this event was applied (None: unchanged).
        """
        new_version = self.version + 1
        before = set(self.segments)
        updated = sorted(t for t in watch if t != "email" and self.traits.get(t) != traits.get(t))
        if "email" in watch and email_before is not None and email_before != self.email:
            updated.append("email")

        def change(segment_id: str, kind: str) -> MembershipChange:
            return MembershipChange(profile_id=self.profile_id, segment_id=segment_id, change=kind, at=at,
                                    cause=cause, version=new_version)

        changes = [change(s, "entered") for s in sorted(segments - before)]
        changes += [change(s, "exited") for s in sorted(before - segments)]
        if updated:
            changes.append(MembershipChange(profile_id=self.profile_id, change="updated", at=at, cause=cause,
                                            version=new_version, fields=tuple(updated)))
        self.segments = sorted(segments)
        self.traits = traits
        self.next_due_at = next_due_at
        self.evaluated_at = at
        if catalog_version is not None:
            self.catalog_version = catalog_version
        if cause != "time":
            self.remember(AppliedEvent.of(cause, changes, at), at)
        return changes

    def remember(self, applied: AppliedEvent, now: int) -> None:
        """Add ``applied`` to the memory of applied events, and forget those applied more than
        RECENT_EVENTS_KEPT_S before ``now`` and all but the last RECENT_EVENTS_KEPT.

        Entries stored before times were kept count as applied ``now``, the first time the profile
        is written since: they go RECENT_EVENTS_KEPT_S later, which is later than they would have."""
        for e in self.recent_events:
            if e.t is None:
                e.t = now
        kept = [e for e in [*self.recent_events, applied] if e.t > now - RECENT_EVENTS_KEPT_S]  # type: ignore[operator]
        self.recent_events = kept[-RECENT_EVENTS_KEPT:]

    # -- the outbox ---------------------------------------------------------------------
    def park(self, changes: list[MembershipChange]) -> None:
        """Keep ``changes`` to publish later: they are written with the profile, which is then due at
        once, so whoever touches it next (an event, the next sweep) publishes them."""
        self.outbox = [*self.outbox, *changes]

    def clear_parked(self) -> None:
        """The parked changes have been published: forget them (on the profile's next write)."""
        self.outbox = []


def due_entry(profile: Profile, indexed: int | None) -> int | None:
    """The instant under which the due index should hold ``profile`` after this write: its next due
    instant (at once, with changes parked in its outbox), or None (in no index entry).

    Most events push the due instant later (a page view moves the Recent Browsers exit by a week).
    Moving the index entry each time costs an index delete and put per event; so an entry already
    indexed that is still ahead of this evaluation and not later than the due instant stays where
    it is (``indexed``): the sweep then finds the profile a little early, sees it is not due yet,
    and moves the entry once (:meth:`ProfileStore.move_due`). An entry is never later than the due
    instant, so time-based changes still happen at their exact boundary.

    Leaving it pays only if the profile is written again before the entry falls due (the sweep's
    move costs a write of the whole item besides the index entry): it stays when the profile's
    events of the last RECENT_EVENTS_KEPT_S (its memory of applied events) make at least one more
    event expected by then, and moves now otherwise.

    Parked changes make the profile due at once: an entry at or before this evaluation already says
    so (the sweep found the profile under it), so it stays too, and the write that clears the outbox
    moves it once, straight to the due instant."""
    due = profile.next_due_at
    at = profile.evaluated_at or 0
    if profile.outbox:
        if indexed is not None and indexed <= at:
            return indexed
        due = min(due if due is not None else at, at)
    if due is None:
        return None
    if indexed is not None and at < indexed <= due and _expected_events(profile, at, indexed) >= 1:
        return indexed
    return due


def _expected_events(profile: Profile, now: int, until: int) -> float:
    """How many events ``profile`` may be expected to get from ``now`` to ``until``, at the rate of its
    last RECENT_EVENTS_KEPT_S."""
    recent = sum(1 for e in profile.recent_events if e.t is not None and e.t > now - RECENT_EVENTS_KEPT_S)
    return (until - now) * recent / RECENT_EVENTS_KEPT_S
