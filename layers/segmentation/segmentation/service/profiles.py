"""Applying one canonical event to its customer's profile.

Resolve identity -> apply -> evaluate -> conditional write -> publish changes.
A concurrent writer makes the conditional write fail; the whole step is then
redone on a fresh read, so no update is lost. A redelivered event (SQS and
EventBridge are at-least-once) is recognised by its id and re-publishes the
changes it caused, so a crash between the write and the publish loses nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from ..domain import identity
from ..domain.events import CustomerEvent, CustomerProperties, EventType, is_strong
from ..domain.profile import PREVIOUS_EMAIL, MembershipChange, MetricFact, Profile, epoch, iso
from ..domain.segments import SegmentEvaluator
from ..views import export_view, history_view
from .evaluation import deliver, flush_outbox
from .ports import LoadedProfile, ProfilePublisher, ProfileStore, ShopStore
from .retry import TooMuchContentionError, retry_on_conflict

__all__ = ["ProfileService", "TooMuchContentionError"]
logger = Logger(child=True)


@dataclass
class _Written:
    """What one successful attempt wrote, for publishing after it."""

    profile: Profile
    changes: list[MembershipChange]
    at: int = 0
    absorbed: list[Profile] = field(default_factory=list)
    ended: list[MembershipChange] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # aliases given up (a shop's identifiers, when it leaves)
    redelivery: bool = False  # the event was applied before: nothing written, its changes published again
    facts: list[MetricFact] = field(default_factory=list)  # what it gave the segments' figures


class ProfileService:
    def __init__(
        self,
        repository: ProfileStore,
        evaluator: SegmentEvaluator,
        publisher: ProfilePublisher,
        clock: Callable[[], int],
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        shops: ShopStore | None = None,
    ) -> None:
        """``shops``: also holds a person's identifiers (cart owners), forgotten on erasure."""
        self.repository = repository
        self.evaluator = evaluator
        self.publisher = publisher
        self.clock = clock
        self.new_id = new_id
        self.shops = shops

    def apply(self, event: CustomerEvent) -> list[MembershipChange]:
        """Apply ``event`` and return the membership changes it caused (published already).

        When the event's identities belong to several profiles, they are one person: the others
        are merged into the profile of the strongest identity (email first), nothing counted
        twice, and one ``ProfilesMerged`` is published.
        """
        aliases = event.identity.alias_keys(event.shop, event.source)
        if event.type == EventType.ERASURE:
            return self.erase(aliases, event.event_id)
        if event.type == EventType.SHOP_ERASURE:
            return self.erase_shop(event.source, event.shop, event.event_id)
        if event.type == EventType.DATA_REQUEST:
            profile = self.repository.load(aliases).profile
            if profile is not None:
                export = {**export_view(profile), "membership_history": self.history(profile)}
                self.publisher.publish_export(profile.profile_id, event.event_id, export)
            return []
        previous = _previous_email(event)
        strong = [a for a in aliases if is_strong(a)] + ([f"email#{previous}"] if previous else [])
        lookup = strong + [a for a in aliases if not is_strong(a)]
        at = epoch(event.occurred_at)

        def attempt() -> _Written | None:
            loaded = self.repository.load(lookup)
            # A weak identifier (phone) of an erased person says nothing about who this is.
            erased = max((loaded.erased_at.get(a, 0) for a in (strong or aliases)), default=0)
            if erased and at <= erased:
                # A late webhook about a person erased since: applying it would bring them back.
                logger.info("dropped: its person was erased", extra={"event_id": event.event_id})
                return None
            found, absorbed = self._resolve(lookup, loaded)
            if found is None and event.type == EventType.REFUND:
                return None  # a refund of an order we never saw: its order/* delivery carries the net total
            profile = found or Profile(profile_id=self.new_id())
            flush_outbox(profile, self.publisher)
            done = profile.applied(event.event_id)
            if done is not None:
                return _Written(profile, done, redelivery=True, facts=profile.redelivered_facts(
                    event, self.evaluator.retention.attribution))
            for other in absorbed:
                identity.merge(profile, other)
            new_aliases = [a for a in aliases if a not in profile.aliases and loaded.alias_owners.get(a) is None
                           and not (a.startswith("email#") and profile.email_outdated(a[6:], at))]
            email_before = profile.email
            removed = self._email_change(event, profile, previous, loaded.alias_owners)
            profile.apply(event, new_aliases, self.evaluator.retention.attribution)
            now = max(self.clock(), profile.evaluated_at or 0)
            profile.prune(now, self.evaluator.retention)
            result = self.evaluator.evaluate(profile, now)
            changes = profile.record_evaluation(
                set(result.segments), result.traits, result.next_due_at, now, cause=event.event_id,
                catalog_version=self.evaluator.version,
                watch=getattr(self.evaluator, "watch", frozenset()), email_before=email_before,
            )
            ended = [c for o in absorbed for c in _exits(o, now, event.event_id)]
            self.repository.save(profile, new_aliases, changes, absorbed=absorbed, removed_aliases=removed,
                                 ended=ended)
            return _Written(profile, changes, now, absorbed, ended, facts=profile.facts)

        written = retry_on_conflict(attempt, f"the profile of event {event.event_id}")
        if written is None:
            return []
        changes = written.changes
        if written.redelivery:
            if changes:  # the first delivery may have died before publishing
                self.publisher.publish_changes(changes)
            if written.facts:
                self.publisher.publish_metrics(written.profile.profile_id, event.event_id, written.facts)
            return changes
        if written.absorbed:
            self.publisher.publish_merged(written.profile.profile_id, [o.profile_id for o in written.absorbed],
                                          iso(written.at), event.event_id)
            self.publisher.publish_changes(written.ended)
        deliver(changes, written.profile, self.repository, self.publisher)
        if written.facts:
            # after the write, as the changes: a failure fails the record, and its redelivery
            # publishes them again (at least once)
            self.publisher.publish_metrics(written.profile.profile_id, event.event_id, written.facts)
        return changes

    def apply_history(self, events: list[CustomerEvent], cause: str = "import",
                      publish: bool = True) -> list[MembershipChange] | None:
        """One customer's history (docs/import.md): their events applied in time order exactly as
        :meth:`apply` would apply them at this instant, then evaluated once, in one read and one write.

        The membership changes go out once, with ``cause`` (``import``), not one per historic
        transition; with ``publish=False`` not at all. Orders, refunds, checkouts and messages are
        keyed by their ids inside the profile, so importing what the live path already applied (or
        the same file twice) counts nothing twice. An event from before its person was erased is
        skipped, as a late webhook would be. Returns the changes (published unless ``publish`` is off),
        or None when nothing was written (every event was about a person erased since).
        """
        history = sorted((e for e in events if e.type not in (EventType.ERASURE, EventType.SHOP_ERASURE,
                                                              EventType.DATA_REQUEST)),
                         key=lambda e: (e.occurred_at, e.event_id))
        if not history:
            return None
        per_event = [(e, e.identity.alias_keys(e.shop, e.source), _previous_email(e)) for e in history]
        strong = [a for _, aliases, previous in per_event
                  for a in [*aliases, *([f"email#{previous}"] if previous else [])] if is_strong(a)]
        lookup = list(dict.fromkeys(strong + [a for _, aliases, _ in per_event for a in aliases if not is_strong(a)]))

        def attempt() -> _Written | None:
            loaded = self.repository.load(lookup)
            found, absorbed = self._resolve(lookup, loaded)
            profile = found or Profile(profile_id=self.new_id())
            flush_outbox(profile, self.publisher)
            for other in absorbed:
                identity.merge(profile, other)
            profile.importing()
            email_before = profile.email
            now = max(self.clock(), profile.evaluated_at or 0)
            new_aliases: list[str] = []
            removed: list[str] = []
            applied = 0
            for event, aliases, previous in per_event:
                at = epoch(event.occurred_at)
                own = [a for a in aliases if is_strong(a)] or aliases
                if at <= max((loaded.erased_at.get(a, 0) for a in own), default=0):
                    continue  # about a person erased since: applying it would bring them back
                fresh = [a for a in aliases if a not in profile.aliases and a not in new_aliases
                         and loaded.alias_owners.get(a) is None
                         and not (a.startswith("email#") and profile.email_outdated(a[6:], at))]
                gone = self._email_change(event, profile, previous, loaded.alias_owners)
                removed += gone
                new_aliases = [a for a in new_aliases if a not in gone]
                profile.apply(event, fresh, self.evaluator.retention.attribution)
                new_aliases += fresh
                profile.prune(now, self.evaluator.retention)  # as the live path does after each event
                applied += 1
            if not applied:
                return None
            profile.forget_facts()  # history is not today's email figures (docs/measure.md)
            result = self.evaluator.evaluate(profile, now)
            changes = profile.record_evaluation(
                set(result.segments), result.traits, result.next_due_at, now, cause=cause,
                catalog_version=self.evaluator.version,
                watch=getattr(self.evaluator, "watch", frozenset()), email_before=email_before,
            )
            ended = [c for o in absorbed for c in _exits(o, now, cause)]
            self.repository.save(profile, new_aliases, changes, absorbed=absorbed, removed_aliases=removed,
                                 ended=ended)
            return _Written(profile, changes, now, absorbed, ended)

        # (the label goes into logs: no identifier of the person)
        written = retry_on_conflict(attempt, f"an imported customer history of {len(history)} events")
        if written is None:
            return None
        if publish:
            if written.absorbed:
                self.publisher.publish_merged(written.profile.profile_id, [o.profile_id for o in written.absorbed],
                                              iso(written.at), cause)
                self.publisher.publish_changes(written.ended)
            deliver(written.changes, written.profile, self.repository, self.publisher)
        return written.changes

    def _resolve(self, lookup: list[str], loaded: LoadedProfile) -> tuple[Profile | None, list[Profile]]:
        """Which profile an event belongs to, and which profiles it proves to be the same person.

        The identity policy (docs/identity.md): strong identifiers (email, platform customer id,
        order, Segment userId) may merge the profiles holding them. Weak ones (phone, anonymous id)
        find a profile only when the event has no strong identifier that does, and bring in only a
        profile that has no strong identifier of its own (anonymous browsing): a phone number typed
        by two customers never makes them one.
        """
        owners = loaded.alias_owners
        strong_owners = list(dict.fromkeys(owners[a] for a in lookup if is_strong(a) and a in owners))
        weak_owners = [o for o in dict.fromkeys(owners[a] for a in lookup if not is_strong(a) and a in owners)
                       if o not in strong_owners]
        cache = {loaded.profile.profile_id: loaded.profile} if loaded.profile is not None else {}

        def fetch(pid: str) -> Profile | None:
            if pid not in cache:
                cache[pid] = self.repository.get(pid)
            return cache[pid]

        if not any(is_strong(a) for a in lookup):
            return (fetch(weak_owners[0]) if weak_owners else None), []
        anonymous = [p for p in map(fetch, weak_owners)
                     if p is not None and not any(is_strong(a) for a in p.aliases)]
        if strong_owners:
            others = [p for p in map(fetch, strong_owners[1:]) if p is not None]
            return fetch(strong_owners[0]), others + anonymous
        return (anonymous[0], anonymous[1:]) if anonymous else (None, [])

    def erase(self, aliases: list[str], cause: str) -> list[MembershipChange]:
        """Forget the person: profile, aliases, memberships, history, cart-owner records. What stays
        is a tombstone per identifier (a SHA-256) so that late webhooks about them are dropped.
        Their memberships end (published)."""
        now = int(self.clock())

        def attempt() -> _Written | None:
            profile = self.repository.load(aliases).profile
            if profile is None:
                # Nothing stored (or erased already): still remember the identifiers, so that a
                # webhook delivered after this request cannot create the person.
                self.repository.tombstone(aliases, now)
                self._forget(aliases)
                return None
            ended = _exits(profile, now, cause)
            if getattr(self.evaluator, "watch", None):
                # the ESP sync takes the person out of every destination, including those where they
                # were in no synced segment (their properties, and its memory of them, go too)
                ended.append(MembershipChange(profile_id=profile.profile_id, change="updated", at=now, cause=cause,
                                              version=profile.version + 1, fields=("erased",)))
            self.repository.erase(profile, now)
            return _Written(profile, ended, now)

        erased = retry_on_conflict(attempt, f"the profile erased by {cause}")
        if erased is None:
            return []
        self._forget([*aliases, *erased.profile.aliases])
        self.publisher.publish_changes(erased.changes)
        return erased.changes

    def erase_shop(self, source: str, shop: str | None, cause: str) -> list[MembershipChange]:
        """A shop's data must go (Shopify ``shop/redact``, 48 hours after it uninstalled): its orders,
        checkouts, shop-scoped identifiers and carts. A profile that other sources also fed (another
        shop, an ESP, site tracking) keeps the rest and is evaluated again; one that only this shop
        fed is erased whole. The shop's identifiers are tombstoned, so a late webhook from it is dropped."""
        scope = f"{source}#{shop or '-'}#"
        owners = (self.repository.owners_with_alias_prefix(f"cust#{scope}")
                  | self.repository.owners_with_alias_prefix(f"order#{scope}"))
        changes: list[MembershipChange] = []
        for owner in sorted(owners):
            changes += self._forget_shop_of(owner, source, shop, cause)
        if self.shops is not None:
            self.shops.forget_shop(shop or "-")
        return changes

    def _forget_shop_of(self, profile_id: str, source: str, shop: str | None, cause: str) -> list[MembershipChange]:
        def attempt() -> _Written | None:
            profile = self.repository.get(profile_id)
            if profile is None:
                return None
            email_before = profile.email
            gone = identity.forget_origin(profile, source, shop)
            if not profile.origins:  # nothing but this shop's data: the whole profile goes (below)
                return _Written(profile, [], removed=gone)
            now = max(self.clock(), profile.evaluated_at or 0)
            result = self.evaluator.evaluate(profile, now)
            changes = profile.record_evaluation(
                set(result.segments), result.traits, result.next_due_at, now, cause=cause,
                catalog_version=self.evaluator.version,
                watch=getattr(self.evaluator, "watch", frozenset()), email_before=email_before,
            )
            self.repository.save(profile, [], changes, removed_aliases=gone)
            return _Written(profile, changes, now, removed=gone)

        written = retry_on_conflict(attempt, f"profile {profile_id} (shop erasure {cause})")
        if written is None:
            return []
        if not written.profile.origins:
            return self.erase([*written.removed, *written.profile.aliases], cause)
        self.repository.tombstone(written.removed, int(self.clock()))
        deliver(written.changes, written.profile, self.repository, self.publisher)
        return written.changes

    def history(self, profile: Profile) -> list[dict]:
        """Every membership change kept for the person (newest first), for exports."""
        out, cursor = [], None
        while True:
            page = self.repository.history_page(profile, int(self.clock()), 1000, cursor)
            out += history_view(page.changes)
            if page.cursor is None:
                return out
            cursor = page.cursor

    def _forget(self, aliases: list[str]) -> None:
        if self.shops is not None:
            self.shops.forget(list(dict.fromkeys(aliases)))

    @staticmethod
    def _email_change(event: CustomerEvent, profile: Profile, previous: str | None, owners: dict) -> list[str]:
        """An email change moves the alias: explicit (Mailchimp upemail carries the old address) or a
        platform's customer record now showing another address. Returns the aliases given up."""
        new = event.identity.email
        if event.type != EventType.CUSTOMER or not new:
            return []
        at = epoch(event.occurred_at)
        if profile.email_changed_at is not None and at <= profile.email_changed_at:
            return []  # an older fact than the latest change (deliveries are unordered): it cannot undo it
        old = previous or (profile.email if event.identity.customer_ids else None)
        if not old or old == new or owners.get(f"email#{new}", profile.profile_id) != profile.profile_id:
            return []
        if f"email#{old}" not in profile.aliases:
            return []
        identity.change_email(profile, new, old, at)
        return [f"email#{old}"]


def _exits(profile: Profile, at: int, cause: str) -> list[MembershipChange]:
    """Every membership of ``profile`` ending at ``at`` (it is merged away or erased)."""
    return [MembershipChange(profile_id=profile.profile_id, segment_id=s, change="exited", at=at, cause=cause,
                             version=profile.version + 1) for s in profile.segments]


def _previous_email(event: CustomerEvent) -> str | None:
    props = event.properties
    if isinstance(props, CustomerProperties):
        old = props.attributes.get(PREVIOUS_EMAIL)
        if isinstance(old, str) and "@" in old:
            return old.strip().lower()
    return None
