"""The pure core of the ESP sync: what one profile should look like at one destination, which of
many changes in a batch matter, and what to send to get there (issue 12).

The sync sends **desired state, not deltas**. For a (profile, destination) pair it computes a
:class:`DesiredState` from the profile as it is now (:func:`desired_state`), compares it with what
the ESP is known to hold (:func:`diff`) and sends only the difference (:class:`Operations`). A
membership change only says *which* pairs to look at again (:func:`coalesce`); its direction is
never replayed, so enter-then-exit inside one batch, duplicates and out-of-order deliveries all end
in the profile's final state, and sending the same desired state twice sends nothing the second
time.

**Consent is sacred, and membership is not consent.** Being in a Klaviyo list or carrying a
Mailchimp tag is *not* a subscription: nothing here ever asks an ESP to subscribe anyone, change a
consent status, or create a marketing subscription. An :class:`Operations` can only add to or remove
from the destination's lists/tags and set properties or merge fields; whether the person may be
emailed stays the ESP's own consent record, which this module never writes. On top of that:

* a profile in the ``suppressed`` segment, or whose email consent state is one of
  :data:`NO_CONSENT` (unsubscribed, cleaned, spam, bounced, redacted, invalid), is in **no** target
  of the destination: it is removed from every one and never (re-)added while suppressed, and no
  properties are written for it;
* an erased profile (``None``, with the email it was last synced under) is removed from every
  target of the destination (``remove_everywhere``), and nothing about it is written;
* a profile without an email syncs nothing at all.

No HTTP, no AWS, no clock: everything here is a function of its arguments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..domain.catalog import Catalog
from ..domain.profile import Profile
from .config import SEGMENTS, KlaviyoDestination, MailchimpDestination, WebhookDestination

AnyDestination = KlaviyoDestination | MailchimpDestination | WebhookDestination

#: email consent states under which a profile is in no synced target
NO_CONSENT = frozenset({"unsubscribed", "cleaned", "spam", "bounced", "redacted", "invalid"})
#: the catalog's segment of profiles without email consent (``sync: false``)
SUPPRESSED = "suppressed"
#: trait kinds whose values are decimal strings ("12.50", exact) but are numbers at the ESP
_DECIMAL_STRING_KINDS = frozenset({"sum", "avg"})


# -- the desired state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredState:
    """One profile at one destination.

    ``targets`` are Klaviyo list ids or Mailchimp tag names; ``managed`` is every target of the
    destination (so that a state can say "in none of them"); ``properties`` are Klaviyo custom
    properties or Mailchimp merge fields with the values the ESP expects. ``remove_everywhere``:
    the profile was erased; take ``email`` out of every target and write nothing about it.
    ``email is None``: nothing to sync.
    """

    email: str | None
    targets: frozenset[str] = frozenset()
    properties: Mapping[str, Any] = field(default_factory=dict)
    remove_everywhere: bool = False
    managed: frozenset[str] = frozenset()


def _managed(destination: AnyDestination) -> frozenset[str]:
    if isinstance(destination, KlaviyoDestination):
        return frozenset(t.list_id for t in destination.segments.values())
    if isinstance(destination, MailchimpDestination):
        return frozenset(t.tag for t in destination.segments.values())
    return frozenset()


def _targets(destination: AnyDestination, segments: Iterable[str]) -> frozenset[str]:
    current = set(segments)
    if isinstance(destination, KlaviyoDestination):
        return frozenset(t.list_id for s, t in destination.segments.items() if s in current)
    if isinstance(destination, MailchimpDestination):
        return frozenset(t.tag for s, t in destination.segments.items() if s in current)
    return frozenset()


def is_suppressed(profile: Profile, suppressed_segment_id: str = SUPPRESSED) -> bool:
    """In the suppressed segment, or an email consent state that forbids syncing."""
    if suppressed_segment_id in profile.segments:
        return True
    consent = profile.email_consent
    return consent is not None and consent.state.lower() in NO_CONSENT


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def render(value: Any, mailchimp: bool, decimal_string: bool = False) -> Any:
    """A trait value as the ESP takes it: None stays None (Klaviyo) or ``""`` (Mailchimp clears a
    merge field with an empty string); dates as ISO strings; numbers as numbers (a trait that the
    engine keeps as an exact decimal string, ``sum``/``avg``, becomes a number)."""
    if value is None:
        return "" if mailchimp else None
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and decimal_string:
        try:
            number = Decimal(value)
        except InvalidOperation:
            return value
        return _number(number) if number.is_finite() else value
    if isinstance(value, dict | list) and mailchimp:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))  # merge fields are flat
    return value


def _properties(profile: Profile, destination: AnyDestination, catalog: Catalog | None) -> dict[str, Any]:
    mailchimp = isinstance(destination, MailchimpDestination)
    out: dict[str, Any] = {}
    for name, trait in destination.fields.items():
        if trait == SEGMENTS:
            ids = sorted(set(profile.segments))
            out[name] = ",".join(ids) if mailchimp else ids
            continue
        spec = catalog.traits.get(trait) if catalog is not None else None
        decimal_string = spec is not None and spec.kind in _DECIMAL_STRING_KINDS
        out[name] = render(profile.traits.get(trait), mailchimp, decimal_string)
    return out


def desired_state(
    profile: Profile | None,
    destination: AnyDestination,
    suppressed_segment_id: str = SUPPRESSED,
    *,
    last_email: str | None = None,
    catalog: Catalog | None = None,
) -> DesiredState:
    """What ``destination`` should hold for ``profile`` now.

    ``profile is None``: the profile was erased; ``last_email`` is the address it was synced under
    (without one there is nothing to remove). ``catalog`` (optional) lets ``sum``/``avg`` traits,
    which profiles keep as exact decimal strings, go out as numbers.

    The result never implies a subscription: see the module's docstring.
    """
    managed = _managed(destination)
    if profile is None:
        if not last_email:
            return DesiredState(email=None, managed=managed)
        return DesiredState(email=last_email, remove_everywhere=True, managed=managed)
    if not profile.email:
        return DesiredState(email=None, managed=managed)
    if is_suppressed(profile, suppressed_segment_id):
        return DesiredState(email=profile.email, managed=managed)
    return DesiredState(
        email=profile.email,
        targets=_targets(destination, profile.segments),
        properties=_properties(profile, destination, catalog),
        managed=managed,
    )


# -- coalescing a batch --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """Something happened to a profile that may change what a destination holds: ``kind`` is
    ``"entered"``, ``"exited"``, ``"traits"``, ``"erased"``... Only the latest per (profile,
    destination) matters, since the sync recomputes the desired state from the profile."""

    profile_id: str
    destination_id: str
    version: int
    at: int
    kind: str


def _rank(change: Change) -> tuple[int, int, str]:
    # the latest version wins, then the later time; ``kind`` only breaks exact ties, so that the
    # result never depends on arrival order
    return (change.version, change.at, change.kind)


def coalesce(changes: Iterable[Change]) -> dict[tuple[str, str], Change]:
    """The latest change per (profile id, destination id): by ``version``, ties by ``at``.

    Order- and duplicate-insensitive: an enter then an exit of one profile inside a batch, in any
    order and delivered any number of times, leaves one entry, the final one."""
    latest: dict[tuple[str, str], Change] = {}
    for change in changes:
        key = (change.profile_id, change.destination_id)
        held = latest.get(key)
        if held is None or _rank(change) > _rank(held):
            latest[key] = change
    return latest


def changes_for(profile_id: str, segment_id: str | None, kind: str, version: int, at: int,
                destinations: Iterable[AnyDestination], suppressed_segment_id: str = SUPPRESSED) -> list[Change]:
    """The :class:`Change` per ESP destination that a change of a profile concerns.

    A membership change (``segment_id``) concerns the destinations mapping the segment and those
    sending the segment ids as a property; entering or leaving the suppressed segment concerns every
    ESP destination (it empties or refills all their targets). Any other update of the profile
    (``segment_id=None``: traits, consent, email) concerns every ESP destination too: the diff then
    sends nothing where nothing changed."""
    out = []
    for d in destinations:
        if isinstance(d, WebhookDestination):
            continue  # webhooks get every change as it is, not a state
        if segment_id is None or segment_id == suppressed_segment_id:
            concerned = True
        else:
            concerned = segment_id in d.segments or SEGMENTS in d.fields.values()
        if concerned:
            out.append(Change(profile_id=profile_id, destination_id=d.id, version=version, at=at, kind=kind))
    return out


# -- what to send --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operations:
    """What to send for one profile at one destination. ``email is None`` or all empty: nothing.
    ``remove_everywhere``: the profile was erased (the ``remove`` set already names every target).
    There is deliberately no way to say "subscribe"."""

    email: str | None
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    set: Mapping[str, Any] = field(default_factory=dict)
    remove_everywhere: bool = False

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.set or self.remove_everywhere)

    def __bool__(self) -> bool:
        return not self.empty


def _known(current: DesiredState | None, desired: DesiredState) -> DesiredState | None:
    """``current`` if it describes the same address and can be trusted, else None (unknown)."""
    if current is None or current.email != desired.email or current.remove_everywhere:
        return None
    return current


def diff(current: DesiredState | None, desired: DesiredState) -> Operations:
    """What to send so that the ESP holds ``desired``, given that it holds ``current`` (None:
    unknown, e.g. the first sync or another address: then the whole state is asserted, including
    removal from every target of the destination the profile should not be in).

    ``diff(desired, desired)`` is empty, and so is every later diff once the operations were
    applied: desired state, not deltas."""
    if desired.email is None:
        return Operations(email=None)
    if desired.remove_everywhere:
        if current is not None and current.remove_everywhere and current.email == desired.email:
            return Operations(email=desired.email)  # already done
        held = current.targets if current is not None and current.email == desired.email else frozenset()
        return Operations(email=desired.email, remove=desired.managed | held, remove_everywhere=True)
    known = _known(current, desired)
    if known is None:
        return Operations(
            email=desired.email,
            add=desired.targets,
            remove=desired.managed - desired.targets,
            set=dict(desired.properties),
        )
    changed = {k: v for k, v in desired.properties.items()
               if k not in known.properties or known.properties[k] != v}
    return Operations(
        email=desired.email,
        add=desired.targets - known.targets,
        remove=known.targets - desired.targets,
        set=changed,
    )


def apply(current: DesiredState | None, ops: Operations, managed: frozenset[str] = frozenset()) -> DesiredState:
    """The state the ESP holds after ``ops`` (a model of the ESP, for tests and dry runs).

    Properties not in ``ops.set`` keep their values, as at the ESP."""
    if current is not None:
        managed = current.managed | managed
    if ops.email is None:
        return DesiredState(email=None, managed=managed)
    if ops.empty and current is not None and current.email == ops.email:
        return replace(current, managed=managed)  # nothing sent: nothing changes
    if ops.remove_everywhere:
        return DesiredState(email=ops.email, remove_everywhere=True, managed=managed)
    same = current is not None and current.email == ops.email and not current.remove_everywhere
    targets = current.targets if same else frozenset()
    properties = dict(current.properties) if same else {}
    properties.update(ops.set)
    return DesiredState(email=ops.email, targets=(targets - ops.remove) | ops.add, properties=properties,
                        managed=managed)
