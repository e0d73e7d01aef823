"""The ESP sync: membership and trait changes on the bus -> Klaviyo lists and properties, Mailchimp
tags and merge fields, signed webhooks (issue 12; docs/destinations.md).

The queue hands the sync a batch of bus events (``SegmentEntered``, ``SegmentExited``,
``ProfileUpdated``) gathered over its batching window. For each ESP destination:

1. the events say only *which* profiles to look at again (:func:`~..destinations.desired.coalesce`):
   many changes of one profile in a batch, duplicates and replays count once, in any order;
2. the profiles are read as they are now (in bulk), and so is the sync's memory of what the
   destination holds for each (:class:`~.ports.SyncStateStore`);
3. the desired state of each (:func:`~..destinations.desired.desired_state`: consent is sacred, a
   suppressed profile is in no target, an erased one is removed from all) is compared with the
   memory (:func:`~..destinations.desired.diff`) and only the difference is sent, every profile of
   the destination in one bulk :meth:`~.ports.EspClient.push`;
4. what was applied is remembered (the provider's ids learnt on the way too).

A destination that fails (:class:`~.ports.DestinationUnavailableError`) fails only the events that
concern it: they go back to the queue and come again (the other destinations are done and, being
desired state, are not disturbed by a second pass). Nothing is lost, nothing is sent twice that
would change anything.

Identity at the ESP: the address is the profile's email. A profile without one syncs nothing. When
a profile's address changes, the old one is taken out of every target it held. When a profile no
longer exists, the sync asks who holds its last address now: nobody (an erasure) -> the address is
removed from every target and forgotten; another profile (the two were merged) -> that profile is
synced instead, the ESP's holdings under the dead profile counted as the survivor's.

Webhook destinations get every membership change as it came (signed; see
``segmentation.infra.esp.webhook``), with a stable id per change so that receivers can deduplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from ..destinations.config import Destinations, KlaviyoDestination, WebhookDestination
from ..destinations.desired import (
    AnyDestination,
    Change,
    DesiredState,
    apply,
    changes_for,
    coalesce,
    desired_state,
    diff,
)
from ..domain.catalog import Catalog
from ..domain.profile import Profile
from .ports import DestinationUnavailableError, EspClient, ProfileStore, Push, SyncedState, SyncStateStore

logger = Logger(child=True)

#: the bus events the sync consumes, and the kind of change each is
KINDS = {"SegmentEntered": "entered", "SegmentExited": "exited", "ProfileUpdated": "updated"}


class WebhookSender(Protocol):
    def send(self, messages: Sequence[dict]) -> int:
        """POST each message (signed); returns the number of requests. Raises
        DestinationUnavailableError if the receiver does not take them."""
        ...


@dataclass(frozen=True)
class Notice:
    """One bus event as the queue delivered it (``message_id`` names the queue message)."""

    message_id: str
    kind: str  # entered | exited | updated
    profile_id: str
    version: int
    at: int
    cause: str = ""
    segment_id: str | None = None
    fields: tuple[str, ...] = ()

    @classmethod
    def from_bus_event(cls, message_id: str, event: Mapping[str, Any]) -> Notice:
        """From an EventBridge event (the body of the queue message); ValueError if it is not one of
        :data:`KINDS` or lacks what the sync needs."""
        kind = KINDS.get(str(event.get("detail-type")))
        detail = event.get("detail")
        if kind is None or not isinstance(detail, Mapping):
            raise ValueError(f"not a change the ESP sync consumes: {event.get('detail-type')!r}")
        try:
            at = int(datetime.fromisoformat(str(detail["at"]).replace("Z", "+00:00")).timestamp())
            return cls(message_id=message_id, kind=kind, profile_id=str(detail["profile_id"]),
                       version=int(detail["version"]), at=at, cause=str(detail.get("cause", "")),
                       segment_id=detail.get("segment_id") if kind != "updated" else None,
                       fields=tuple(detail.get("fields") or ()))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"a {event.get('detail-type')} event without {e}") from None


@dataclass
class DestinationReport:
    pushes: int = 0  # profiles (addresses) sent something
    calls: int = 0  # HTTP requests, retries included
    refused: int = 0  # addresses the provider refused for good
    failed: str | None = None  # why the destination failed (its notices are retried)


@dataclass
class SyncOutcome:
    failed_messages: set[str] = field(default_factory=set)
    destinations: dict[str, DestinationReport] = field(default_factory=dict)


@dataclass
class Plan:
    """What to send to one destination and what to remember once it is applied."""

    pushes: list[Push] = field(default_factory=list)
    #: profile id -> (the state after the push, and the address it concerns) or None to forget
    after: dict[str, tuple[SyncedState | None, str | None]] = field(default_factory=dict)
    #: addresses pushed, with the profile id whose memory they update
    owners: dict[str, str] = field(default_factory=dict)


def klaviyo_id(profile: Profile) -> str | None:
    """The Klaviyo profile id a Klaviyo webhook taught us (alias ``cust#klaviyo#<account>#<id>``),
    if there is exactly one."""
    ids = {a.rsplit("#", 1)[1] for a in profile.aliases if a.startswith("cust#klaviyo#")}
    return ids.pop() if len(ids) == 1 else None


def _as_desired(state: SyncedState, managed: frozenset[str]) -> DesiredState:
    return DesiredState(email=state.email, targets=state.targets, properties=dict(state.properties), managed=managed)


class EspSync:
    def __init__(
        self,
        destinations: Destinations,
        profiles: ProfileStore,
        states: SyncStateStore,
        clients: Callable[[AnyDestination], EspClient | WebhookSender],
        catalog: Catalog | None = None,
    ) -> None:
        self.destinations = destinations
        self.profiles = profiles
        self.states = states
        self.clients = clients
        self.catalog = catalog

    # -- the batch ---------------------------------------------------------------------------
    def sync(self, notices: Sequence[Notice]) -> SyncOutcome:
        outcome = SyncOutcome()
        esp = [d for d in self.destinations.destinations if not isinstance(d, WebhookDestination)]
        hooks = [d for d in self.destinations.destinations if isinstance(d, WebhookDestination)]
        concerned: dict[str, set[str]] = {d.id: set() for d in self.destinations.destinations}
        changes: list[Change] = []
        for n in notices:
            for c in changes_for(n.profile_id, n.segment_id, n.kind, n.version, n.at, esp):
                changes.append(c)
                concerned[c.destination_id].add(n.message_id)
        latest = coalesce(changes)
        membership = [n for n in notices if n.kind in ("entered", "exited")]
        profile_ids = list(dict.fromkeys([*(pid for pid, _ in latest),
                                          *(n.profile_id for n in membership if hooks)]))
        profiles = self.profiles.get_many(profile_ids) if profile_ids else {}
        for d in esp:
            pids = [pid for pid, did in latest if did == d.id]
            if not pids:
                continue
            report = outcome.destinations.setdefault(d.id, DestinationReport())
            try:
                self._sync_destination(d, pids, profiles, report)
            except DestinationUnavailableError as e:
                report.failed = str(e)
                outcome.failed_messages |= concerned[d.id]
                logger.warning("destination unavailable: its changes go back to the queue",
                               extra={"destination": d.id, "reason": str(e)})
        for d in hooks:
            if not membership:
                continue
            report = outcome.destinations.setdefault(d.id, DestinationReport())
            try:
                messages = webhook_messages(membership, profiles)
                report.calls += self.clients(d).send(messages)
                report.pushes += len(messages)
            except DestinationUnavailableError as e:
                report.failed = str(e)
                outcome.failed_messages |= {n.message_id for n in membership}
                logger.warning("webhook destination unavailable: its changes go back to the queue",
                               extra={"destination": d.id, "reason": str(e)})
        return outcome

    def _sync_destination(self, d: AnyDestination, pids: list[str], profiles: dict[str, Profile],
                          report: DestinationReport) -> None:
        plan = self.plan(d, pids, profiles)
        if not plan.pushes and not plan.after:
            return
        result = self.clients(d).push(plan.pushes) if plan.pushes else None
        failed = set(result.failed) if result else set()
        learned = result.learned_ids if result else {}
        remember: dict[str, SyncedState | None] = {}
        for pid, (state, email) in plan.after.items():
            if email is not None and email in failed:
                continue  # refused for good: keep the old memory, so the next change tries again
            if state is not None and email in learned and learned[email] != state.esp_id:  # new, or a refreshed id
                state = SyncedState(email=state.email, targets=state.targets, properties=state.properties,
                                    esp_id=learned[email], version=state.version)
            remember[pid] = state
        self.states.put_many(d.id, remember)
        if result is not None:
            report.calls += result.calls
            report.refused += len(result.failed)
        report.pushes += len(plan.pushes)

    # -- planning ----------------------------------------------------------------------------
    def plan(self, d: AnyDestination, pids: Iterable[str], profiles: dict[str, Profile],
             memory: dict[str, SyncedState] | None = None) -> Plan:
        """The pushes that bring ``d`` to the desired state of these profiles, from the memory (or
        from ``memory`` as given: the reconcile passes what the ESP really holds)."""
        pids = list(dict.fromkeys(pids))
        memory = self.states.get_many(d.id, pids) if memory is None else memory
        # A profile that is gone: erased (nobody holds its address) or merged into another (who does).
        folded: dict[str, list[SyncedState]] = {}
        plan = Plan()
        managed = desired_state(None, d).managed
        for pid in [p for p in pids if p not in profiles and p in memory]:
            state = memory[pid]
            owner = self.profiles.find(f"email#{state.email}")
            if owner is not None and owner.profile_id != pid:
                profiles[owner.profile_id] = owner
                folded.setdefault(owner.profile_id, []).append(state)
                if owner.profile_id not in pids:
                    pids.append(owner.profile_id)
                plan.after[pid] = (None, None)
                continue
            gone = desired_state(None, d, last_email=state.email, catalog=self.catalog)
            ops = diff(_as_desired(state, managed), gone)
            if ops:
                plan.pushes.append(Push(email=state.email, remove=ops.remove, esp_id=state.esp_id))
            plan.after[pid] = (None, state.email)
        extra = self.states.get_many(d.id, [p for p in pids if p not in memory and p in folded]) if folded else {}
        memory.update(extra)
        for pid in pids:
            profile = profiles.get(pid)
            if profile is None:
                continue
            self._plan_profile(d, profile, memory.get(pid), folded.get(pid, []), managed, plan)
        return plan

    def _plan_profile(self, d: AnyDestination, profile: Profile, state: SyncedState | None,
                      folded: list[SyncedState], managed: frozenset[str], plan: Plan) -> None:
        desired = desired_state(profile, d, catalog=self.catalog)
        current: DesiredState | None = None
        esp_id = None
        for held in [*([state] if state else []), *folded]:
            if desired.email is not None and held.email == desired.email:
                current = (_as_desired(held, managed) if current is None else
                           DesiredState(email=current.email, targets=current.targets | held.targets,
                                        properties={**held.properties, **current.properties}, managed=managed))
                esp_id = esp_id or held.esp_id
            elif held.targets:  # an address the profile no longer uses: out of everything it held
                plan.pushes.append(Push(email=held.email, remove=held.targets, esp_id=held.esp_id))
        if desired.email is None:
            plan.after[profile.profile_id] = (None, None)
            return
        if current is None:
            # never synced under this address: as far as we know the ESP holds it in nothing (a
            # reconcile asserts the rest, such as strays added by hand)
            current = DesiredState(email=desired.email, managed=managed)
        ops = diff(current, desired)
        if isinstance(d, KlaviyoDestination):
            esp_id = esp_id or klaviyo_id(profile)
        if ops:
            plan.pushes.append(Push(email=desired.email, add=ops.add, remove=ops.remove, set=dict(ops.set),
                                    esp_id=esp_id))
        held = apply(current, ops, managed)
        if state is None or ops or folded or state.email != desired.email or (esp_id and not state.esp_id):
            plan.after[profile.profile_id] = (
                SyncedState(email=desired.email, targets=held.targets, properties=dict(held.properties),
                            esp_id=esp_id, version=profile.version),
                desired.email,
            )


def webhook_messages(notices: Iterable[Notice], profiles: Mapping[str, Profile]) -> list[dict]:
    """One Standard Webhooks message per membership change, with a stable id (the same change
    delivered twice has the same id, so receivers can deduplicate)."""
    out: dict[str, dict] = {}
    for n in notices:
        # a header value: ASCII, whatever the segment id holds (category names may not be)
        natural = f"{n.profile_id}\n{n.version}\n{n.kind}\n{n.segment_id}"
        message_id = "msg_" + hashlib.sha256(natural.encode()).hexdigest()[:32]
        profile = profiles.get(n.profile_id)
        out[message_id] = {
            "id": message_id,
            "type": f"segment.{n.kind}",
            "timestamp": datetime.fromtimestamp(n.at, UTC).isoformat().replace("+00:00", "Z"),
            "data": {"profile_id": n.profile_id, "segment_id": n.segment_id,
                     "email": profile.email if profile is not None else None,
                     "cause": n.cause, "version": n.version},
        }
    return list(out.values())


def parse_messages(records: Iterable[tuple[str, str]]) -> tuple[list[Notice], list[str]]:
    """Queue records (message id, body) -> notices, and the ids of bodies that are not bus events
    the sync understands (logged by id and dropped: retrying would not make them readable)."""
    notices, unreadable = [], []
    for message_id, body in records:
        try:
            notices.append(Notice.from_bus_event(message_id, json.loads(body)))
        except ValueError:
            unreadable.append(message_id)
    return notices, unreadable
