"""Reconcile: push the full desired state of every synced segment to one destination, measured
against what the ESP really holds (``segctl sync reconcile``; the scheduled EspReconcileFunction).

The event-driven sync compares the desired state with its *memory* of the destination; a reconcile
reads the destination itself, so it also repairs what the memory cannot know: a new destination, a
changed mapping, an outage that outlived the queue's retention, somebody editing a synced list or
tag by hand, a bulk job the provider dropped.

1. Who: the members of every segment the destination syncs, plus every profile the memory says
   was synced there.
2. What the ESP holds: every member of every target (list / tag), read through the provider.
3. For each of those profiles, the desired state (consent is sacred: suppressed in no target) is
   compared with what the ESP holds for its address (and, for properties, with what the memory
   says was written); anyone else the ESP holds in a target is a stray and is removed: a synced
   list or tag belongs to the sync (docs/destinations.md says to give it dedicated lists/tags).
4. The pushes go out in chunks, each followed by the memory of its profiles.

Resumable by construction: the diff is computed afresh on every run, so a reconcile interrupted
after some chunks, run again, finds those applied and sends only the rest. ``dry_run`` reports the
diff and sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..destinations.config import Destinations, WebhookDestination
from ..destinations.desired import desired_state
from ..domain.catalog import Catalog
from ..errors import InvalidInputError, NotFoundError
from .esp_sync import EspSync
from .ports import EspClient, ProfileStore, Push, SyncedState, SyncStateStore

READ_CHUNK = 100


@dataclass
class TargetDiff:
    added: int = 0
    removed: int = 0


@dataclass
class ReconcileReport:
    destination: str
    dry_run: bool
    profiles: int = 0  # profiles considered
    held: int = 0  # (address, target) pairs the ESP held before
    targets: dict[str, TargetDiff] = field(default_factory=dict)
    properties_set: int = 0  # addresses whose properties / merge fields were (to be) written
    strays: int = 0  # addresses in a synced target that no profile wants there
    pushes: int = 0
    calls: int = 0
    refused: int = 0
    chunks_done: int = 0

    def as_dict(self) -> dict:
        return {
            "destination": self.destination, "dry_run": self.dry_run, "profiles": self.profiles,
            "held": self.held, "properties_set": self.properties_set, "strays": self.strays,
            "pushes": self.pushes, "calls": self.calls, "refused": self.refused,
            "targets": {t: {"added": d.added, "removed": d.removed} for t, d in sorted(self.targets.items())},
        }


class Reconcile:
    def __init__(
        self,
        destinations: Destinations,
        profiles: ProfileStore,
        states: SyncStateStore,
        clients: Callable[..., EspClient],
        catalog: Catalog | None = None,
        *,
        chunk: int = 1000,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.destinations = destinations
        self.profiles = profiles
        self.states = states
        self.clients = clients
        self.catalog = catalog
        self.chunk = chunk
        self.progress = progress

    def run(self, destination_id: str, dry_run: bool = False) -> ReconcileReport:
        try:
            d = self.destinations.get(destination_id)
        except KeyError:
            known = ", ".join(x.id for x in self.destinations.destinations) or "none"
            raise NotFoundError(f"no destination {destination_id!r} in the destinations file (it has: {known})") from None
        if isinstance(d, WebhookDestination):
            raise InvalidInputError(f"{d.id} is a webhook destination: it receives changes as they happen and "
                                    "holds no state to reconcile")
        report = ReconcileReport(destination=d.id, dry_run=dry_run)
        client = self.clients(d)
        managed = desired_state(None, d).managed

        # 1. who
        pids: set[str] = set()
        for segment_id in d.segments:
            pids |= self.profiles.all_members(segment_id)
        memory: dict[str, SyncedState] = {}
        start = None
        while True:
            page, start = self.states.page(d.id, 1000, start)
            memory.update(page)
            if start is None:
                break
        pids |= set(memory)
        self.progress(f"{d.id}: {len(pids):,} profiles to check ({len(memory):,} remembered)")

        # 2. what the ESP holds
        held: dict[str, set[str]] = {}
        ids: dict[str, str] = {}
        for n, target in enumerate(sorted(managed), 1):
            count = 0
            for email, esp_id in client.members(target):
                held.setdefault(email, set()).add(target)
                if esp_id:
                    ids[email] = esp_id
                count += 1
            report.held += count
            self.progress(f"{d.id}: read target {n}/{len(managed)} ({count:,} members)")

        # 3. the diff, profile by profile (read in chunks)
        planner = EspSync(self.destinations, self.profiles, self.states, self.clients, self.catalog)
        ordered = sorted(pids)
        claimed: set[str] = set()
        pushes: list[tuple[Push, str | None, SyncedState | None]] = []
        for i in range(0, len(ordered), READ_CHUNK):
            chunk = ordered[i:i + READ_CHUNK]
            live = self.profiles.get_many(chunk)
            report.profiles += len(live)
            as_held: dict[str, SyncedState] = {}
            for pid, profile in live.items():
                if not profile.email:
                    continue
                claimed.add(profile.email)
                remembered = memory.get(pid)
                same = remembered is not None and remembered.email == profile.email
                as_held[pid] = SyncedState(
                    email=profile.email, targets=frozenset(held.get(profile.email, ())),
                    properties=dict(remembered.properties) if same else {},
                    esp_id=(remembered.esp_id if same else None) or ids.get(profile.email), version=0)
            plan = planner.plan(d, list(live), dict(live), memory=as_held)
            after = {pid: state for pid, (state, _) in plan.after.items()}
            by_email = {state.email: pid for pid, state in after.items() if state is not None}
            for push in plan.pushes:
                if push.email not in claimed:
                    continue  # an old address: handled with the strays below, from what the ESP holds
                pid = by_email.get(push.email)
                pushes.append((push, pid, after.get(pid) if pid else None))
            for pid in chunk:
                if pid not in live:
                    pushes.append((None, pid, None))  # gone: forget it (its address is a stray now)
        for email in sorted(set(held) - claimed):
            report.strays += 1
            pushes.append((Push(email=email, remove=frozenset(held[email]), esp_id=ids.get(email)), None, None))

        for push, _, _ in pushes:
            if push is None:
                continue
            for t in push.add:
                report.targets.setdefault(t, TargetDiff()).added += 1
            for t in push.remove:
                report.targets.setdefault(t, TargetDiff()).removed += 1
            report.properties_set += bool(push.set)
        real = [p for p in pushes if p[0] is not None]
        report.pushes = len(real)
        self.progress(f"{d.id}: {len(real):,} addresses to change, {report.strays:,} of them strays"
                      + (" (dry run: nothing sent)" if dry_run else ""))
        if dry_run:
            return report

        # 4. push in chunks, remembering each chunk once applied
        forget = {pid: None for push, pid, _ in pushes if push is None and pid}
        if forget:
            self.states.put_many(d.id, forget)
        for i in range(0, len(real), self.chunk):
            part = real[i:i + self.chunk]
            result = client.push([p for p, _, _ in part])
            report.calls += result.calls
            report.refused += len(result.failed)
            remember: dict[str, SyncedState | None] = {}
            for push, pid, state in part:
                if pid is None or state is None or push.email in result.failed:
                    continue
                learned = result.learned_ids.get(push.email)
                if learned and learned != state.esp_id:
                    state = SyncedState(email=state.email, targets=state.targets, properties=state.properties,
                                        esp_id=learned, version=state.version)
                remember[pid] = state
            self.states.put_many(d.id, remember)
            report.chunks_done += 1
            self.progress(f"{d.id}: pushed {min(i + self.chunk, len(real)):,}/{len(real):,}")
        return report
