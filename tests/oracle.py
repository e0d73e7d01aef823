"""A brute-force oracle: every default segment of docs/segments.md, recomputed from the full
raw history at one instant, written straight from the design's words and independent of the
engine (no catalog, no compact state, no incremental anything).

The history is a list of (event, arrival) pairs: ``arrival`` is the clock when the event was
applied (non-decreasing). It matters for one documented rule only: an email message is
remembered for 90 days after its delivery (a checkout for 30): one delivered 90 days before the
previous event's arrival is forgotten, and a later open of it counts as a new message.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from segmentation.domain.events import CustomerEvent, EventType

DAY, HOUR = 86400, 3600
EMAIL_MEMORY = 90 * DAY  # the 30-day email window plus the 60-day grace
SUPPRESSED_STATES = {"unsubscribed", "cleaned", "bounced", "spam"}
SUPPRESSING = {EventType.EMAIL_BOUNCED: "bounced", EventType.EMAIL_SPAM: "spam", EventType.EMAIL_UNSUBSCRIBED: "unsubscribed"}
VIEWS = {EventType.PAGE_VIEWED, EventType.PRODUCT_VIEWED, EventType.CATEGORY_VIEWED}
ACTIVITY = VIEWS | {EventType.PRODUCT_ADDED, EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED}


def ts(e: CustomerEvent) -> int:
    return int(e.occurred_at.timestamp())


def state_of(history: list[tuple[CustomerEvent, int]]) -> dict:
    """Fold the raw history into plain facts (orders, checkouts, messages, consent)."""
    orders: dict[str, dict] = {}
    checkouts: dict[str, dict] = {}
    messages: list[dict] = []  # each: {id, d, o, c, first}
    facts: list[tuple[int, str]] = []
    activity: list[int] = []
    previous = None  # the clock of the previous event: state is forgotten after each event
    for event, arrival in history:
        t, p = ts(event), event.properties
        clock, previous = previous, arrival
        if event.type == EventType.ORDER:
            upd = int(p.updated_at.timestamp())
            cur = orders.get(p.order_id)
            if cur is None or cur["updated"] <= upd:
                cats = [i.category for i in p.items if i.category] or (cur["cats"] if cur else [])
                orders[p.order_id] = {"at": t, "total": p.total, "status": p.status, "updated": upd, "cats": cats}
                activity.append(t)
        elif event.type == EventType.CHECKOUT:
            upd = int(p.updated_at.timestamp())
            cur = checkouts.get(p.checkout_id)
            if cur is not None and clock is not None and clock - cur["started"] >= 30 * DAY:
                cur = None  # forgotten (older than any window that reads checkouts)
            if cur is None or cur["updated"] <= upd:
                checkouts[p.checkout_id] = {
                    "started": cur["started"] if cur else t, "updated": upd,
                    "completed": p.completed_at is not None or bool(cur and cur["completed"]),
                }
                activity.append(checkouts[p.checkout_id]["started"])
        elif event.type == EventType.CUSTOMER and p.email_consent is not None:
            at = int(p.email_consent.updated_at.timestamp()) if p.email_consent.updated_at else t
            facts.append((at, p.email_consent.state))
        elif event.type in SUPPRESSING:
            facts.append((t, SUPPRESSING[event.type]))
        elif event.type in (EventType.EMAIL_DELIVERED, EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED):
            live = [m for m in messages if m["id"] == p.message_id and (clock is None or clock - m["d"] < EMAIL_MEMORY)]
            if not live:
                live = [{"id": p.message_id, "d": t, "o": None, "c": None}]
                messages.append(live[0])
            m = live[0]
            m["d"] = min(m["d"], t)
            if event.type == EventType.EMAIL_OPENED:
                m["o"] = t if m["o"] is None else min(m["o"], t)
            if event.type == EventType.EMAIL_CLICKED:
                m["c"] = t if m["c"] is None else min(m["c"], t)
        if event.type in ACTIVITY:
            activity.append(t)
    return {"orders": orders, "checkouts": checkouts, "messages": messages, "consent": _consent(facts),
            "activity": activity, "events": [e for e, _ in history]}


def _consent(facts: list[tuple[int, str]]) -> dict | None:
    """The latest fact by its own time wins (ties: the later arrival); "since" is when the final run
    of that state began, in time order."""
    if not facts:
        return None
    ordered = sorted(facts, key=lambda f: f[0])  # stable: arrival order among equal times
    state = ordered[-1][1]
    since = ordered[-1][0]
    for at, s in reversed(ordered):
        if s != state:
            break
        since = at
    return {"state": state, "updated": ordered[-1][0], "since": since}


def segments(history: list[tuple[CustomerEvent, int]], now: int) -> set[str]:
    s = state_of(history)
    placed = [o for o in s["orders"].values() if o["status"] == "placed"]
    purchases = [o["at"] for o in placed]
    revenue = sum((o["total"] for o in placed), Decimal(0))

    def in_last(t: int, days: float) -> bool:
        return t > now - days * DAY

    def views(types) -> list[CustomerEvent]:
        return [e for e in s["events"] if e.type in types]

    out = set()
    c = s["consent"]
    suppressed = c is not None and c["state"] in SUPPRESSED_STATES
    if c is not None and c["state"] == "subscribed" and in_last(c["since"], 30):
        out.add("new-subscribers")
    if any(in_last(ts(e), 7) for e in views(VIEWS)):
        out.add("recent-browsers")
    pv14 = [e for e in views({EventType.PRODUCT_VIEWED}) if in_last(ts(e), 14)]
    if len(pv14) >= 3 and not any(in_last(t, 14) for t in purchases):
        out.add("high-intent-browsers")
    for ch in s["checkouts"].values():
        st = ch["started"]
        if not ch["completed"] and now - st > HOUR and in_last(st, 7) and not any(t >= st for t in purchases):
            out.add("cart-abandoners")
    if any(in_last(t, 14) for t in purchases):
        out.add("recent-buyers")
    if len(purchases) >= 2:
        out.add("repeat-buyers")
    if revenue >= 500:
        out.add("high-value")
    if any(in_last(t, 14) for t in purchases) and any(
            e.properties.category == "accessories" and in_last(ts(e), 14) for e in views({EventType.PRODUCT_VIEWED})):
        out.add("cross-sell-accessories")
    cats = {e.properties.category for e in views({EventType.PRODUCT_VIEWED, EventType.CATEGORY_VIEWED})
            if e.properties.category and in_last(ts(e), 30)}
    if not any(in_last(t, 30) for t in purchases):
        out.update(f"category-browsers:{cat}" for cat in cats)
    delivered = [m for m in s["messages"] if in_last(m["d"], 30)]
    opened = [m for m in delivered if m["o"] is not None]
    if len(delivered) >= 4 and len(opened) / len(delivered) > 0.75:
        out.add("high-engagement")
    if s["activity"]:
        age = now - max(s["activity"])
        if 30 * DAY < age <= 60 * DAY:
            out.add("at-risk")
        if age > 60 * DAY:
            out.add("inactive")
    if sum(1 for m in s["messages"] if in_last(m["d"], 7)) >= 5:
        out.add("fatigued")
    if suppressed:
        out = set()  # synced segments never include a suppressed profile
        out.add("suppressed")
    return out


def traits(history: list[tuple[CustomerEvent, int]], now: int) -> dict:
    s = state_of(history)
    placed = [o for o in s["orders"].values() if o["status"] == "placed"]
    delivered = [m for m in s["messages"] if m["d"] > now - 30 * DAY]
    seen: Counter = Counter()
    latest: dict[str, int] = {}
    for e in s["events"]:
        if e.type in (EventType.PRODUCT_VIEWED, EventType.CATEGORY_VIEWED) and e.properties.category and ts(e) > now - 90 * DAY:
            seen[e.properties.category] += 1
            latest[e.properties.category] = max(latest.get(e.properties.category, 0), ts(e))
    for o in placed:
        if o["at"] > now - 90 * DAY:
            for cat in o["cats"]:
                seen[cat] += 1
                latest[cat] = max(latest.get(cat, 0), o["at"])
    preferred = max(seen, key=lambda k: (seen[k], latest[k], k)) if seen else None
    return {
        "order_count": len(placed),
        "lifetime_value": sum((o["total"] for o in placed), Decimal(0)),
        "last_activity_at": max(s["activity"], default=None),
        "email_open_rate_30d": None if not delivered else round(sum(1 for m in delivered if m["o"] is not None) / len(delivered), 4),
        "preferred_category": preferred,
    }
