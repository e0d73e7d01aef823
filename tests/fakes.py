"""In-memory implementations of the service ports (segmentation.service.ports), for service tests
without AWS. Cosmic Python's FakeRepository is the model: each fake keeps the semantics a service
can observe (conditional writes, alias ownership, sharded size counters, history retention, the due
index's ``next_due_at <= now``, scan segments) and nothing of the DynamoDB layout.

tests/integration/test_store_contract.py runs the same checks against these fakes and the DynamoDB
implementations on moto, so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segmentation.domain.events import CustomerEvent, Identity, LineItem
from segmentation.domain.profile import MembershipChange, Profile, due_entry
from segmentation.service.ports import (
    ConcurrentUpdateError,
    DestinationUnavailableError,
    HistoryPage,
    InvalidCursorError,
    LoadedProfile,
    MembersPage,
    PageKey,
    Push,
    PushResult,
    SegmentStats,
    SyncedState,
)
from segmentation.sources.errors import SecretNotConfiguredError

#: as many size counters per segment as the DynamoDB store keeps (each remembers its own last change)
SIZE_SHARDS = 8


def _shard(profile_id: str, shards: int) -> int:
    return zlib.crc32(profile_id.encode()) % shards


def _encode(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, TypeError):
        raise InvalidCursorError("cursor is not one this API issued") from None


@dataclass
class _Stored:
    version: int
    state: str  # the profile as JSON: what is stored is a copy, never the caller's object
    due_at: int | None


@dataclass
class _Counter:
    size: int = 0
    last_change_at: int | None = None


class InMemoryProfileStore:
    """The ProfileStore port in memory. Thread-safe (one lock: every write is atomic, as a
    DynamoDB transaction is), so racing writers can be tested with threads."""

    def __init__(self, due_shards: int = 32, history_retention_s: int = 400 * 86400) -> None:
        self.due_shards = due_shards
        self.history_retention_s = history_retention_s
        self._lock = threading.RLock()
        self._profiles: dict[str, _Stored] = {}
        self._aliases: dict[str, str] = {}
        self._erased: dict[str, int] = {}
        self._members: dict[str, set[str]] = {}
        self._sizes: dict[tuple[str, int], _Counter] = {}
        self._families: dict[str, set[str]] = {}
        self._history: dict[str, dict[str, MembershipChange]] = {}
        self._progress: dict[str, dict[str, dict]] = {}

    # -- reads ------------------------------------------------------------------------------
    def load(self, alias_keys: list[str]) -> LoadedProfile:
        with self._lock:
            owners = {a: self._aliases[a] for a in alias_keys if a in self._aliases}
            erased = {a: self._erased[a] for a in alias_keys if a in self._erased}
            owner = next((owners[a] for a in alias_keys if a in owners), None)
            return LoadedProfile(profile=self.get(owner) if owner else None, alias_owners=owners, erased_at=erased)

    def get(self, profile_id: str) -> Profile | None:
        with self._lock:
            stored = self._profiles.get(profile_id)
            return None if stored is None else self._profile(stored)

    def profile_ids(self) -> list[str]:
        """Every stored profile's id (tests only)."""
        with self._lock:
            return sorted(self._profiles)

    def get_many(self, profile_ids: Sequence[str]) -> dict[str, Profile]:
        with self._lock:
            return {pid: self._profile(self._profiles[pid]) for pid in profile_ids if pid in self._profiles}

    @staticmethod
    def _profile(stored: _Stored) -> Profile:
        profile = Profile.model_validate_json(stored.state)
        profile.version = stored.version
        profile._indexed_due = stored.due_at
        return profile

    def find(self, alias_key: str) -> Profile | None:
        with self._lock:
            owner = self._aliases.get(alias_key)
            return self.get(owner) if owner else None

    # -- writes -----------------------------------------------------------------------------
    @staticmethod
    def _due_at(profile: Profile) -> int | None:
        # at once with parked changes; an entry still ahead and not later than the due stays (due_entry)
        return due_entry(profile, profile._indexed_due)

    def _check_version(self, profile: Profile) -> None:
        stored = self._profiles.get(profile.profile_id)
        if (stored is None) != (profile.version == 0) or (stored is not None and stored.version != profile.version):
            raise ConcurrentUpdateError(profile.profile_id)

    def save(self, profile: Profile, new_aliases: list[str], changes: list[MembershipChange],
             absorbed: Sequence[Profile] = (), removed_aliases: Sequence[str] = (),
             ended: Sequence[MembershipChange] = ()) -> None:
        changes = [c for c in changes if c.segment_id]  # a ProfileUpdated notice is no membership
        with self._lock:
            me = profile.profile_id
            # Every condition first: a write that fails changes nothing.
            self._check_version(profile)
            if any(self._aliases.get(a, me) != me for a in new_aliases):
                raise ConcurrentUpdateError(me)
            for alias in removed_aliases:
                holder = next((o.profile_id for o in absorbed if alias in o.aliases), me)
                if self._aliases.get(alias, holder) != holder:
                    raise ConcurrentUpdateError(me)
            for other in absorbed:
                stored = self._profiles.get(other.profile_id)
                if stored is None or stored.version != other.version:
                    raise ConcurrentUpdateError(me)
                if any(self._aliases.get(a) != other.profile_id for a in other.aliases if a not in removed_aliases):
                    raise ConcurrentUpdateError(me)
            # Then the writes.
            sizes: dict[tuple[str, int], tuple[int, int]] = {}
            for alias in new_aliases:
                self._aliases[alias] = me
            for alias in removed_aliases:
                self._aliases.pop(alias, None)
            for other in absorbed:
                del self._profiles[other.profile_id]
                for alias in other.aliases:
                    if alias not in removed_aliases:
                        self._aliases[alias] = me
                for segment_id in other.segments:
                    self._members.get(segment_id, set()).discard(other.profile_id)
                    self._add_size(sizes, segment_id, other.profile_id, -1, profile.evaluated_at or 0)
            for c in changes:
                if c.change == "entered":
                    self._members.setdefault(c.segment_id, set()).add(c.profile_id)
                    if ":" in c.segment_id:
                        family, value = c.segment_id.split(":", 1)
                        self._families.setdefault(family, set()).add(value)
                else:
                    self._members.get(c.segment_id, set()).discard(c.profile_id)
                self._add_size(sizes, c.segment_id, c.profile_id, 1 if c.change == "entered" else -1, c.at)
            for (segment_id, shard), (delta, at) in sizes.items():
                counter = self._sizes.setdefault((segment_id, shard), _Counter())
                counter.size += delta
                counter.last_change_at = at  # set, not max: as the DynamoDB counter's SET
            for c in [*changes, *ended]:
                self._history.setdefault(c.profile_id, {})[f"{c.at:010d}#{c.version:010d}#{c.segment_id}"] = c
            due = self._due_at(profile)
            self._profiles[me] = _Stored(profile.version + 1,
                                         profile.model_dump_json(exclude={"version"}, exclude_none=True), due)
            profile.version += 1
            profile._indexed_due = due

    @staticmethod
    def _add_size(sizes: dict, segment_id: str, profile_id: str, delta: int, at: int) -> None:
        key = (segment_id, _shard(profile_id, SIZE_SHARDS))
        total, last = sizes.get(key, (0, 0))
        sizes[key] = (total + delta, max(last, at))

    def erase(self, profile: Profile, at: int) -> None:
        with self._lock:
            me = profile.profile_id
            for pid in (me, *profile.merged_from):  # history first, as the DynamoDB store
                self._history.pop(pid, None)
            stored = self._profiles.get(me)
            if stored is None or stored.version != profile.version:
                raise ConcurrentUpdateError(me)
            if any(self._aliases.get(a, me) != me for a in profile.aliases):
                raise ConcurrentUpdateError(me)
            for alias in profile.aliases:
                self._aliases.pop(alias, None)
                self._erased[alias] = at
            for segment_id in profile.segments:
                self._members.get(segment_id, set()).discard(me)
                counter = self._sizes.setdefault((segment_id, _shard(me, SIZE_SHARDS)), _Counter())
                counter.size -= 1
                counter.last_change_at = at
            del self._profiles[me]

    def tombstone(self, aliases: list[str], at: int) -> None:
        with self._lock:
            for alias in aliases:
                self._erased[alias] = at

    # -- history ----------------------------------------------------------------------------
    def history_page(self, profile: Profile, now: int, limit: int, cursor: str | None) -> HistoryPage:
        with self._lock:
            ids = [profile.profile_id, *profile.merged_from]
            since = f"{max(0, now - self.history_retention_s):010d}"
            stream = sorted(((seq, pid, c) for pid in ids for seq, c in self._history.get(pid, {}).items()
                             if seq > since), key=lambda e: (e[0], e[1]), reverse=True)
            if cursor:
                after = _decode(cursor)
                if not (isinstance(after, list) and len(after) == 3 and after[0] == profile.profile_id
                        and all(isinstance(x, str) for x in after)):
                    raise InvalidCursorError("cursor is not one this API issued for this profile")
                stream = [e for e in stream if (e[0], e[1]) < (after[1], after[2])]
            page = stream[:limit]
            changes = [{"profile_id": pid, "segment_id": c.segment_id, "change": c.change, "at": c.at,
                        "cause": c.cause, "version": c.version} for _, pid, c in page]
            more = len(stream) > limit
            return HistoryPage(changes, _encode([profile.profile_id, page[-1][0], page[-1][1]]) if more else None)

    # -- segments ---------------------------------------------------------------------------
    def segment_size(self, segment_id: str) -> int:
        return self.segment_stats(segment_id).size

    def segment_stats(self, segment_id: str) -> SegmentStats:
        with self._lock:
            counters = [c for (sid, _), c in self._sizes.items() if sid == segment_id]
            last = max((c.last_change_at for c in counters if c.last_change_at is not None), default=None)
            return SegmentStats(sum(c.size for c in counters), last)

    def family_values(self, family: str) -> list[str]:
        with self._lock:
            return sorted(self._families.get(family, ()))

    def members(self, segment_id: str, limit: int, cursor: str | None) -> MembersPage:
        with self._lock:
            ids = sorted(self._members.get(segment_id, ()))
            if cursor:
                after = _decode(cursor)
                if not (isinstance(after, list) and len(after) == 2 and after[0] == segment_id
                        and isinstance(after[1], str) and after[1]):
                    raise InvalidCursorError("cursor belongs to another segment")
                ids = [i for i in ids if i > after[1]]
            page = ids[:limit]
            return MembersPage(page, _encode([segment_id, page[-1]]) if len(ids) > limit else None)

    def all_members(self, segment_id: str) -> set[str]:
        with self._lock:
            return set(self._members.get(segment_id, ()))

    # -- the due index and scans -------------------------------------------------------------
    def move_due(self, profile: Profile) -> None:
        with self._lock:
            stored = self._profiles.get(profile.profile_id)
            if stored is None or stored.version != profile.version:
                return  # written meanwhile: that write placed the entry
            stored.due_at = due_entry(profile, None)
            profile._indexed_due = stored.due_at

    def due_page(self, shard: int, now: int, limit: int, start: dict | None) -> tuple[list[Profile], dict | None]:
        with self._lock:
            due = sorted((s.due_at, pid) for pid, s in self._profiles.items()
                         if s.due_at is not None and s.due_at <= now and _shard(pid, self.due_shards) == shard)
            if start:
                due = [d for d in due if d > (start["next_due_at"], start["profile_id"])]
            page = due[:limit]
            last = {"next_due_at": page[-1][0], "profile_id": page[-1][1]} if len(due) > limit else None
            return [self._profile(self._profiles[pid]) for _, pid in page], last

    def scan_page(self, segment: int, total: int, limit: int, start: dict | None) -> tuple[list[Profile], dict | None]:
        with self._lock:
            ids = sorted(pid for pid in self._profiles if _shard(pid, total) == segment)
            if start:
                ids = [i for i in ids if i > start["profile_id"]["S"]]
            page = ids[:limit]
            last = {"profile_id": {"S": page[-1]}} if len(ids) > limit else None
            return [self._profile(self._profiles[pid]) for pid in page], last

    def owners_with_alias_prefix(self, prefix: str) -> set[str]:
        with self._lock:
            return {pid for alias, pid in self._aliases.items() if alias.startswith(prefix)}

    def count_profiles(self) -> int:
        with self._lock:
            return len(self._profiles)

    # -- job progress -----------------------------------------------------------------------
    def record_progress(self, job: str, part: str, scanned: int, updated: int, done: bool) -> None:
        with self._lock:
            self._progress.setdefault(job, {})[part] = {"part": part, "scanned": scanned, "updated": updated,
                                                        "done": done}

    def progress(self, job: str) -> list[dict]:
        with self._lock:
            return [dict(p) for _, p in sorted(self._progress.get(job, {}).items())]


class InMemoryShopStore:
    """The ShopStore port in memory: product categories, carts and cart owners per shop."""

    def __init__(self) -> None:
        self.products: dict[tuple[str, str], str] = {}
        self.carts: dict[tuple[str, str], list[LineItem]] = {}
        self.owners: dict[tuple[str, str], Identity] = {}

    def put_product(self, shop: str, product_id: str, category: str | None) -> None:
        if category:
            self.products[(shop, product_id)] = category
        else:
            self.products.pop((shop, product_id), None)

    def categories(self, shop: str, product_ids: list[str]) -> dict[str, str]:
        return {pid: self.products[(shop, pid)] for pid in product_ids if (shop, pid) in self.products}

    def put_cart(self, shop: str, token: str, items: list[LineItem], now: int) -> None:
        self.carts[(shop, token)] = [i.model_copy() for i in items]

    def cart(self, shop: str, token: str) -> list[LineItem] | None:
        items = self.carts.get((shop, token))
        return None if items is None else [i.model_copy() for i in items]

    def put_cart_owner(self, shop: str, token: str, identity: Identity, now: int) -> None:
        self.owners[(shop, token)] = identity.model_copy()

    def cart_owner(self, shop: str, token: str) -> Identity | None:
        owner = self.owners.get((shop, token))
        return None if owner is None else owner.model_copy()

    def forget(self, aliases: list[str]) -> int:
        wanted = set(aliases)
        gone = [key for key, identity in self.owners.items() if wanted & set(identity.alias_keys(key[0] or None))]
        for key in gone:
            self.carts.pop(key, None)
            del self.owners[key]
        return len(gone)

    def forget_shop(self, shop: str) -> int:
        deleted = 0
        for table in (self.products, self.carts, self.owners):
            for key in [k for k in table if k[0] == shop]:
                del table[key]
                deleted += 1
        return deleted


class InMemoryDeliveryLog:
    """The DeliveryLog port in memory: delivery -> expires. ``requests`` counts the calls (the real one
    makes one DynamoDB request each); ``fault``, when set, is raised instead (a throttled put)."""

    def __init__(self) -> None:
        self.items: dict[str, int] = {}
        self.requests = 0
        self.fault: Exception | None = None

    def remember(self, delivery: str, now: int, expires: int) -> bool:
        self.requests += 1
        if self.fault is not None:
            raise self.fault
        if delivery in self.items and self.items[delivery] > now:
            return False
        self.items[delivery] = expires
        return True


class RecordingPublisher:
    """The publisher ports (changes, merges, exports, customer events), recording what would go on
    the bus. :meth:`drain` returns it as EventBridge would deliver it (``detail-type`` and a JSON
    ``detail``), like tests/support.Outbox does for the real bus."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.published: list[dict] = []

    def _record(self, source: str, detail_type: str, detail: dict) -> None:
        with self._lock:
            self.published.append({"source": source, "detail-type": detail_type,
                                   "detail": json.loads(json.dumps(detail, default=str))})

    def publish_changes(self, changes: Iterable[MembershipChange]) -> None:
        for c in changes:
            self._record("segmentation.profiles", c.detail_type, c.detail())

    def publish_merged(self, survivor: str, absorbed: list[str], at: str, cause: str) -> None:
        self._record("segmentation.profiles", "ProfilesMerged",
                     {"profile_id": survivor, "merged": absorbed, "at": at, "cause": cause})

    def publish_export(self, profile_id: str, request: str, export: dict) -> None:
        self._record("segmentation.profiles", "ProfileDataExported",
                     {"profile_id": profile_id, "request": request, "export": export})

    def publish_metrics(self, profile_id: str, cause: str, facts) -> None:
        self._record("segmentation.profiles", "SegmentMetrics",
                     {"profile_id": profile_id, "cause": cause, "facts": [f.detail() for f in facts]})

    def publish_events(self, events: Iterable[CustomerEvent]) -> None:
        for e in events:
            self._record("segmentation.ingest", "CustomerEvent", json.loads(e.model_dump_json()))

    def drain(self) -> list[dict]:
        """Everything published since the last drain, oldest first."""
        with self._lock:
            out, self.published = self.published, []
            return out

    def customer_events(self) -> list[dict]:
        """The CustomerEvents recorded and not yet taken, oldest first, left in place: what the
        template's CustomerEvent rule would have queued for ProfileFunction."""
        with self._lock:
            return [m for m in self.published if m["detail-type"] == "CustomerEvent"]

    def take_customer_events(self) -> list[dict]:
        """The CustomerEvents recorded, removed from the record (ProfileFunction consumed them);
        everything else stays."""
        with self._lock:
            taken = [m for m in self.published if m["detail-type"] == "CustomerEvent"]
            self.published = [m for m in self.published if m["detail-type"] != "CustomerEvent"]
            return taken


@dataclass
class StaticSecrets:
    """The WebhookSecretStore port over a dict (source -> secret, or a list of two while rotating)."""

    values: dict[str, str | list[str]] = field(default_factory=dict)

    def for_source(self, source: str) -> list[bytes]:
        raw = self.values.get(source)
        secrets = [v.encode() for v in ([raw] if isinstance(raw, str) else raw or []) if v]
        if not secrets:
            raise SecretNotConfiguredError(f"no secret configured for {source}")
        return secrets[:2]


class RecordingQueue:
    """The WorkQueue port: messages kept in order, taken with :meth:`take`."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send(self, message: dict) -> None:
        self.messages.append(json.loads(json.dumps(message)))

    def take(self) -> list[dict]:
        out, self.messages = self.messages, []
        return out


class InMemorySyncStateStore:
    """The ESP sync's memory (SyncStateStore), in a dict; properties round-trip through JSON as in
    DynamoDB."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _dump(state: SyncedState) -> str:
        return json.dumps({"email": state.email, "targets": sorted(state.targets),
                           "properties": state.properties, "esp_id": state.esp_id, "version": state.version},
                          sort_keys=True, default=str)

    @staticmethod
    def _load(text: str) -> SyncedState:
        raw = json.loads(text)
        return SyncedState(email=raw["email"], targets=frozenset(raw["targets"]), properties=raw["properties"],
                           esp_id=raw["esp_id"], version=raw["version"])

    def get_many(self, destination_id: str, profile_ids: Sequence[str]) -> dict[str, SyncedState]:
        with self._lock:
            return {pid: self._load(self._states[(destination_id, pid)])
                    for pid in profile_ids if (destination_id, pid) in self._states}

    def put_many(self, destination_id: str, states: Mapping[str, SyncedState | None]) -> None:
        with self._lock:
            for pid, state in states.items():
                if state is None:
                    self._states.pop((destination_id, pid), None)
                else:
                    self._states[(destination_id, pid)] = self._dump(state)

    def page(self, destination_id: str, limit: int,
             start: PageKey | None) -> tuple[list[tuple[str, SyncedState]], PageKey | None]:
        with self._lock:
            pids = sorted(pid for d, pid in self._states if d == destination_id)
        after = (start or {}).get("profile_id")
        pids = [p for p in pids if after is None or p > after]
        chunk = pids[:limit]
        with self._lock:
            items = [(p, self._load(self._states[(destination_id, p)])) for p in chunk]
        return items, ({"profile_id": chunk[-1]} if len(pids) > limit else None)


class InMemoryEsp:
    """An ESP destination in memory (the EspClient port): who is in which target, the properties
    written, the provider's ids. ``fail_next(n)`` makes the next n pushes raise
    DestinationUnavailableError before applying anything. A model of the real ones (tests/esp has
    HTTP fakes of Klaviyo and Mailchimp); it can be told that it has no subscription at all."""

    def __init__(self, name: str = "esp") -> None:
        self.name = name
        self.members_of: dict[str, set[str]] = {}
        self.properties: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str] = {}
        self.pushes: list[list[Push]] = []
        self.refuse: set[str] = set()  # addresses refused for good
        self._failures = 0

    def fail_next(self, n: int = 1) -> None:
        self._failures += n

    def push(self, pushes: Sequence[Push]) -> PushResult:
        if self._failures:
            self._failures -= 1
            raise DestinationUnavailableError(f"{self.name}: injected outage")
        self.pushes.append(list(pushes))
        result = PushResult(calls=1)
        for p in pushes:
            if p.email in self.refuse:
                result.failed[p.email] = "refused"
                continue
            if p.email not in self.ids and (p.add or p.set):
                self.ids[p.email] = f"id-{len(self.ids) + 1}"
            for t in p.remove:
                self.members_of.get(t, set()).discard(p.email)
            for t in p.add:
                self.members_of.setdefault(t, set()).add(p.email)
            if p.set:
                self.properties.setdefault(p.email, {}).update(p.set)
            if p.esp_id is None and p.email in self.ids:
                result.learned_ids[p.email] = self.ids[p.email]
        return result

    def members(self, target: str) -> list[tuple[str, str | None]]:
        return [(e, self.ids.get(e)) for e in sorted(self.members_of.get(target, ()))]

    def holdings(self) -> dict[str, set[str]]:
        """email -> the targets holding it (only non-empty)."""
        out: dict[str, set[str]] = {}
        for target, emails in self.members_of.items():
            for e in emails:
                out.setdefault(e, set()).add(target)
        return out


class InMemoryMetricsStore:
    """The MetricsStore port in memory: sums per (segment, day), a retried token applied once."""

    def __init__(self) -> None:
        from segmentation.service.segment_metrics import DayFigures

        self._new = DayFigures
        self.figures: dict[tuple[str, str], object] = {}
        self.tokens: set[str] = set()

    def add(self, sums, token: str) -> None:
        if token in self.tokens:
            return
        self.tokens.add(token)
        for key, f in sums.items():
            mine = self.figures.setdefault(key, self._new())
            for name, n in f.counts.items():
                mine.add(name, n)
            mine.revenue += f.revenue

    def days(self, segment_id: str, first: str, last: str):
        return {day: f for (seg, day), f in sorted(self.figures.items()) if seg == segment_id and first <= day <= last}
