"""The ports: what the use cases need from storage, the bus, secrets and queues.

Each is a :class:`typing.Protocol`. The AWS implementations live in :mod:`segmentation.infra`
(DynamoDB, EventBridge, Secrets Manager, SQS) and are wired in :mod:`segmentation.bootstrap`;
``tests/fakes.py`` implements the same ports in memory, so service tests need no AWS at all, and a
contract test runs both implementations through the same checks so that they cannot drift apart.

The data types and exceptions the ports speak in live here too, so that a service imports nothing
from :mod:`segmentation.infra`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the webhook function, which never holds a profile, skips their import
    from ..domain.events import CustomerEvent, Identity, LineItem
    from ..domain.profile import MembershipChange, MetricFact, Profile
from ..errors import ConflictError, InvalidInputError, SegmentationError

#: A position in a paginated read (the due index, a scan segment): opaque to the caller, given back
#: as ``start`` to continue after it; JSON-serialisable (the backfill puts it in queue messages).
PageKey = dict[str, Any]


class ConcurrentUpdateError(ConflictError):
    """Another writer changed the profile (or claimed one of its aliases) first: reload and retry."""


class InvalidCursorError(InvalidInputError):
    """A pagination cursor that this API did not issue."""


@dataclass
class LoadedProfile:
    """A profile as read for an update, with the alias owners found for the event's identities."""

    profile: Profile | None
    alias_owners: dict[str, str] = field(default_factory=dict)
    #: alias -> when a person holding it was erased (from the tombstones)
    erased_at: dict[str, int] = field(default_factory=dict)


@dataclass
class MembersPage:
    profile_ids: list[str]
    cursor: str | None


@dataclass
class HistoryPage:
    #: newest first: dicts with profile_id, segment_id, change, at, cause, version
    changes: list[dict]
    cursor: str | None


@dataclass
class SegmentStats:
    size: int
    last_change_at: int | None


class ProfileStore(Protocol):
    """Profiles, the aliases that lead to them, their memberships with each segment's size, the
    history of membership changes, erasure tombstones, the due index and job progress.

    Every write of a profile is conditional on the version read, and atomic with the aliases,
    memberships, size counters and history entries it carries.
    """

    # -- reading profiles -------------------------------------------------------------------
    def load(self, alias_keys: list[str]) -> LoadedProfile:
        """Find the profile owning any of ``alias_keys`` (the first key that has an owner wins),
        with every key's owner and the erasure time of every key that has a tombstone."""
        ...

    def get(self, profile_id: str) -> Profile | None:
        """The profile as last written (strongly consistent), ``version`` set; None if there is none."""
        ...

    def get_many(self, profile_ids: Sequence[str]) -> dict[str, Profile]:
        """The stored profiles among ``profile_ids`` (strongly consistent), by id; missing ids are
        absent. In bulk: the ESP sync reads a whole batch's profiles at once."""
        ...

    def find(self, alias_key: str) -> Profile | None:
        """The profile an alias (``email#ana@example.com``) leads to, if any."""
        ...

    # -- writing profiles -------------------------------------------------------------------
    def save(self, profile: Profile, new_aliases: list[str], changes: list[MembershipChange],
             absorbed: Sequence[Profile] = (), removed_aliases: Sequence[str] = (),
             ended: Sequence[MembershipChange] = ()) -> None:
        """Write ``profile`` as version ``profile.version + 1`` if the stored version is still
        ``profile.version`` (or, for version 0, if there is none), together with its new aliases,
        membership changes (members, sizes, history), atomically.

        ``new_aliases``: claimed for this profile; an alias another profile holds fails the write.
        ``absorbed``: profiles merged into this one, deleted in the same write (each at the version
        read), their aliases re-pointed here and their memberships ended.
        ``removed_aliases``: aliases this profile gives up (an email change).
        ``ended``: the absorbed profiles' exits, recorded in the history.

        A profile with changes in its outbox is due at once (the next sweep publishes them).

        Raises :class:`ConcurrentUpdateError` when another writer got there first; nothing is
        written then. On success ``profile.version`` is incremented.
        """
        ...

    def erase(self, profile: Profile, at: int) -> None:
        """Delete the profile (at the version read), its aliases, memberships and history (its own
        and that of the profiles merged into it); keep hashed tombstones of its aliases, stamped
        ``at``. Raises :class:`ConcurrentUpdateError` if the profile changed since it was read."""
        ...

    def tombstone(self, aliases: list[str], at: int) -> None:
        """Record that whoever held ``aliases`` was erased at ``at`` (hashed; nothing else kept)."""
        ...

    # -- history ----------------------------------------------------------------------------
    def history_page(self, profile: Profile, now: int, limit: int, cursor: str | None) -> HistoryPage:
        """Membership changes of the profile (and those merged into it) within the retention,
        newest first, at most ``limit``; ``cursor`` continues a previous page. Raises
        :class:`InvalidCursorError` for a cursor not issued for this profile."""
        ...

    # -- segments ---------------------------------------------------------------------------
    def segment_size(self, segment_id: str) -> int: ...

    def segment_stats(self, segment_id: str) -> SegmentStats:
        """Size and the latest instant a membership of the segment changed."""
        ...

    def family_values(self, family: str) -> list[str]:
        """Every value a family has had members for (``category-browsers`` -> categories)."""
        ...

    def members(self, segment_id: str, limit: int, cursor: str | None) -> MembersPage:
        """One page of a segment's members, ordered by profile id. Raises
        :class:`InvalidCursorError` for a cursor not issued for this segment."""
        ...

    def all_members(self, segment_id: str) -> set[str]:
        """Every member of a segment (reads the whole segment: for analysis, not the hot path)."""
        ...

    # -- the due index and scans -------------------------------------------------------------
    def due_page(self, shard: int, now: int, limit: int, start: PageKey | None) -> tuple[list[Profile], PageKey | None]:
        """Profiles of one due shard whose due instant is ``<= now``, oldest first, from ``start``;
        and the key to continue from (None when the shard is read to its end). A profile with
        parked changes is due at once. The index may be a little stale: the version condition of
        the next write catches that."""
        ...

    def move_due(self, profile: Profile) -> None:
        """Put ``profile``'s due index entry at its due instant, if no one wrote it since it was
        read (the entry was left earlier than the due instant; see ``domain.profile.due_entry``)."""
        ...

    def scan_page(self, segment: int, total: int, limit: int,
                  start: PageKey | None) -> tuple[list[Profile], PageKey | None]:
        """One page of scan segment ``segment`` of ``total`` over every profile (the segments
        partition the profiles), and the key to continue from (None at the segment's end). The key
        is ``{"profile_id": {"S": <id>}}``."""
        ...

    def owners_with_alias_prefix(self, prefix: str) -> set[str]:
        """Profile ids holding an alias that starts with ``prefix`` (a scan: for rare, shop-wide work)."""
        ...

    def count_profiles(self) -> int:
        """How many profiles there are (approximate in DynamoDB: it refreshes about every six hours)."""
        ...

    # -- job progress -----------------------------------------------------------------------
    def record_progress(self, job: str, part: str, scanned: int, updated: int, done: bool) -> None: ...

    def progress(self, job: str) -> list[dict]:
        """Each part's progress of a job: dicts with part, scanned, updated, done; ordered by part."""
        ...


class ShopStore(Protocol):
    """What the webhook path learns about a shop: product categories, open carts and their owners."""

    def put_product(self, shop: str, product_id: str, category: str | None) -> None:
        """Remember a product's category; None forgets it."""
        ...

    def categories(self, shop: str, product_ids: list[str]) -> dict[str, str]:
        """product id -> category, for the ids known."""
        ...

    def put_cart(self, shop: str, token: str, items: list[LineItem], now: int) -> None: ...

    def cart(self, shop: str, token: str) -> list[LineItem] | None: ...

    def put_cart_owner(self, shop: str, token: str, identity: Identity, now: int) -> None: ...

    def cart_owner(self, shop: str, token: str) -> Identity | None: ...

    def forget(self, aliases: list[str]) -> int:
        """Erasure: delete the cart-owner records naming any of ``aliases`` and the carts they own;
        returns how many owner records."""
        ...

    def forget_shop(self, shop: str) -> int:
        """Delete everything learnt about one shop (products, carts, cart owners); returns how many items."""
        ...


class ChangePublisher(Protocol):
    """Publishes membership changes (``SegmentEntered`` / ``SegmentExited``)."""

    def publish_changes(self, changes: Iterable[MembershipChange]) -> None: ...


class ProfilePublisher(ChangePublisher, Protocol):
    """Everything the profile path publishes: membership changes, merges and data exports."""

    def publish_merged(self, survivor: str, absorbed: list[str], at: str, cause: str) -> None:
        """``ProfilesMerged``: the absorbed profile ids now live on as ``survivor``."""
        ...

    def publish_export(self, profile_id: str, request: str, export: dict) -> None:
        """``ProfileDataExported``: everything stored about one person, for a data request."""
        ...

    def publish_metrics(self, profile_id: str, cause: str, facts: list[MetricFact]) -> None:
        """``SegmentMetrics``: what one event gave the segments' figures (docs/measure.md)."""
        ...


class CustomerEventPublisher(Protocol):
    """Puts canonical events on the bus (the webhook path)."""

    def publish_events(self, events: Iterable[CustomerEvent]) -> None: ...


class DeliveryLog(Protocol):
    """The webhook deliveries accepted lately (the opt-in "duplicate" answer, WebhookDuplicateAnswer).
    Informative only: nothing is published or dropped because of it."""

    def remember(self, delivery: str, now: int, expires: int) -> bool:
        """Record ``delivery`` (an opaque, PII-free key) until ``expires`` (epoch seconds), in one
        conditional write; True if it is new (or its record had expired by ``now``), False if it was
        recorded before and has not expired (the record is kept as it was). Raises on faults
        (throttling, a missing table)."""
        ...


class WebhookSecretStore(Protocol):
    def for_source(self, source: str) -> list[bytes]:
        """The secrets configured for ``source`` (two while one rotates); raises
        ``SecretNotConfiguredError`` if there are none."""
        ...


class WorkQueue(Protocol):
    """A queue of work messages (the backfill's scan segments and their continuations)."""

    def send(self, message: dict) -> None: ...


class ObjectStore(Protocol):
    """A bucket of objects (S3): the history import's input files, its work parts and its reports."""

    def lines(self, key: str) -> Iterable[str]:
        """The object's text, line by line (streamed; UTF-8, a byte-order mark dropped)."""
        ...

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> None: ...

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, in key order."""
        ...

    def metadata(self, key: str) -> dict[str, str]:
        """The object's user metadata (``x-amz-meta-*``) and its ``etag``."""
        ...


# -- the ESP sync (issue 12) ---------------------------------------------------------------------


class DestinationUnavailableError(SegmentationError):
    """A destination did not take a push even after its retries (429 beyond the wait allowed, 5xx,
    a network error, a bad key). Nothing of the batch counts as synced: the queue delivers it again
    later, and since the sync sends desired state, sending it twice is harmless."""


@dataclass(frozen=True)
class Push:
    """What one profile needs at one ESP destination: be added to the ``add`` targets (Klaviyo list
    ids or Mailchimp tag names), removed from ``remove``, and have ``set`` written (custom
    properties or merge fields). ``esp_id`` is the provider's own id when known (a Klaviyo profile
    id), so that a removal needs no lookup. There is no way to say "subscribe"."""

    email: str
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    set: Mapping[str, Any] = field(default_factory=dict)
    esp_id: str | None = None


@dataclass
class PushResult:
    """What became of a batch of pushes. ``failed``: email -> reason, for pushes the provider
    refused for good (an address it rejects, say); every other push was applied. ``learned_ids``:
    email -> the provider's id, learnt on the way (lookups), to remember for next time.
    ``calls``: how many HTTP requests the batch took (for metrics and the bench)."""

    failed: dict[str, str] = field(default_factory=dict)
    learned_ids: dict[str, str] = field(default_factory=dict)
    calls: int = 0


class EspClient(Protocol):
    """One ESP destination's API, in bulk. Implementations: ``segmentation.infra.esp``."""

    def push(self, pushes: Sequence[Push]) -> PushResult:
        """Apply every push, with as few requests as the provider's bulk endpoints allow. Retries
        429 (honouring ``Retry-After``) and 5xx within its own budget, then raises
        :class:`DestinationUnavailableError`. Never subscribes anyone to marketing."""
        ...

    def members(self, target: str) -> Iterable[tuple[str, str | None]]:
        """Everyone the destination holds in ``target`` (a Klaviyo list id, a Mailchimp tag name), as
        (lower-cased email, provider id or None), paging through the provider's listing; for the
        reconcile, which compares them with the desired state. Raises
        :class:`DestinationUnavailableError` like :meth:`push`."""
        ...


@dataclass(frozen=True)
class SyncedState:
    """What the sync last put at one destination for one profile: the address it used, the targets
    it holds there, the properties written, the provider's id for the person if known, and the
    profile version it came from."""

    email: str
    targets: frozenset[str] = frozenset()
    properties: Mapping[str, Any] = field(default_factory=dict)
    esp_id: str | None = None
    version: int = 0


class SyncStateStore(Protocol):
    """The sync's memory of each destination, per profile (what the ESP holds, as far as we know)."""

    def get_many(self, destination_id: str, profile_ids: Sequence[str]) -> dict[str, SyncedState]:
        """The remembered states of these profiles at the destination; unknown ones are absent."""
        ...

    def put_many(self, destination_id: str, states: Mapping[str, SyncedState | None]) -> None:
        """Remember these states (by profile id); None forgets one (an erased person: no email kept)."""
        ...

    def page(self, destination_id: str, limit: int,
             start: PageKey | None) -> tuple[list[tuple[str, SyncedState]], PageKey | None]:
        """Every remembered state of the destination, a page at a time (for the reconcile)."""
        ...
