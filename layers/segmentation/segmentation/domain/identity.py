"""Who a profile is: merging two profiles of one person, email changes, and a shop's data leaving.

The policy that decides *when* these happen (strong and weak identifiers, event time) is in
:mod:`segmentation.service.profiles` and docs/identity.md; this module says what each does to the
profiles, counting nothing twice. Pure: no boto3, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TypeVar

from .events import scope_key
from .profile import ACTIVITY_SIGNALS, RECENT_EVENTS_KEPT, Columns, Profile, Totals

T = TypeVar("T", int, Decimal)


def _least(a: T | None, b: T | None) -> T | None:
    """The smaller of two optional values (None when both are)."""
    return b if a is None else a if b is None else min(a, b)


def _most(a: T | None, b: T | None) -> T | None:
    return b if a is None else a if b is None else max(a, b)


def _extend(target: list[str], items: Iterable[str], skip: str | None = None) -> None:
    """Append the ``items`` not in ``target`` yet, in order (and never ``skip``)."""
    for item in items:
        if item not in target and item != skip:
            target.append(item)


def _segment_set(profile: Profile, other: Profile, index: int | None) -> int | None:
    """``other``'s segment set ``index`` as an index into ``profile``'s (added there if new)."""
    if index is None or index >= len(other.segment_sets):
        return None
    wanted = other.segment_sets[index]
    if wanted not in profile.segment_sets:
        profile.segment_sets.append(list(wanted))
    return profile.segment_sets.index(wanted)


def merge(profile: Profile, other: Profile) -> None:
    """Fold ``other`` (another profile of the same person) into ``profile``, counting nothing twice:
    orders and checkouts by key (the latest version wins), messages by key (their earliest times),
    browsing and counters added (each event belongs to one profile only), consent facts interleaved
    by time. ``other`` is left as it was; the caller deletes it."""
    _extend(profile.aliases, other.aliases)
    _extend(profile.merged_from, (other.profile_id, *other.merged_from), skip=profile.profile_id)
    _extend(profile.origins, other.origins)
    _extend(profile.emails, other.emails)
    profile.email_changed_at = _most(profile.email_changed_at, other.email_changed_at)
    profile.email = profile.email or other.email
    profile.phone = profile.phone or other.phone
    profile.first_name = profile.first_name or other.first_name
    profile.last_name = profile.last_name or other.last_name
    profile.tags = profile.tags or other.tags
    profile.attributes = {**other.attributes, **profile.attributes}
    for records, theirs in ((profile.orders, other.orders), (profile.checkouts, other.checkouts)):
        for key, record in theirs.items():
            if key not in records or record.updated > records[key].updated:
                records[key] = record
    for key, msg in other.messages.items():
        # its delivery segments, as an index into the survivor's segment sets (not the other's)
        theirs = msg.model_copy(update={"s": _segment_set(profile, other, msg.s)})
        mine = profile.messages.setdefault(key, theirs)
        if mine is not theirs:
            if theirs.d < mine.d:  # the earlier delivery's segments are the message's
                mine.s = theirs.s
            mine.d, mine.o, mine.c = min(mine.d, theirs.d), _least(mine.o, theirs.o), _least(mine.c, theirs.c)
    for signal, cols in other.browse.items():
        target = profile.browse.setdefault(signal, Columns())
        for t, c, v in zip(cols.t, cols.c, cols.v, strict=True):
            target.insert(t, c, v)
    for signal, tot in other.totals.items():
        mine = profile.totals.setdefault(signal, Totals())
        mine.n += tot.n
        mine.sum += tot.sum
        mine.min, mine.max = _least(mine.min, tot.min), _most(mine.max, tot.max)
    for signal, t in other.first_at.items():
        profile.first_at[signal] = min(t, profile.first_at.get(signal, t))
    for signal, t in other.last_at.items():
        profile.last_at[signal] = max(t, profile.last_at.get(signal, t))
    profile.first_seen_at = _least(profile.first_seen_at, other.first_seen_at)
    for at, state in other.email_consent.log if other.email_consent is not None else ():
        profile.add_consent_fact(state, at)
    profile.recent_events = (other.recent_events + profile.recent_events)[-RECENT_EVENTS_KEPT:]
    profile.evaluated_at = _most(profile.evaluated_at, other.evaluated_at)
    profile.catalog_version = None  # evaluate everything again
    profile.outbox = [*profile.outbox, *other.outbox]


def change_email(profile: Profile, new: str, old: str | None, at: int) -> None:
    """Make ``new`` the primary email as of event time ``at``; ``old`` (if given) is no longer one of
    the customer's, and its alias goes."""
    profile.email_changed_at = _most(profile.email_changed_at, at)
    if old and old in profile.emails:
        profile.emails.remove(old)
    _extend(profile.emails, [new])
    profile.email = new
    if old and f"email#{old}" in profile.aliases:
        profile.aliases.remove(f"email#{old}")


def forget_origin(profile: Profile, source: str, shop: str | None) -> list[str]:
    """Remove what one shop brought (Shopify ``shop/redact``): its orders, checkouts and shop-scoped
    identifiers. Returns the aliases given up. What other sources brought stays; recency of
    purchases, checkouts and activity is recomputed from what remains."""
    origin = scope_key(source, shop, "")[:-1]
    prefix = origin + "#"
    profile.orders = {k: o for k, o in profile.orders.items() if not k.startswith(prefix)}
    profile.checkouts = {k: c for k, c in profile.checkouts.items() if not k.startswith(prefix)}
    profile.origins = [o for o in profile.origins if o != origin]
    gone = [a for a in profile.aliases if a.startswith((f"cust#{source}#{shop or '-'}#", f"order#{prefix}"))]
    profile.aliases = [a for a in profile.aliases if a not in gone]
    for signal, times in (("order_any", [o.at for o in profile.orders.values()]),
                          ("checkout_started", [c.started for c in profile.checkouts.values()])):
        profile.first_at.pop(signal, None)
        profile.last_at.pop(signal, None)
        if times:
            profile.first_at[signal], profile.last_at[signal] = min(times), max(times)
    profile.totals["checkout_started"] = Totals(n=len(profile.checkouts))
    active = [t for s, t in profile.last_at.items() if s in ACTIVITY_SIGNALS or s == "order_any"]
    active += [t for m in profile.messages.values() for t in (m.o, m.c) if t is not None]
    profile.last_at.pop("activity", None)
    if active:
        profile.last_at["activity"] = max(active)
    return gone
