"""Re-evaluating a stored profile and publishing what changed: shared by the sweep and the backfill.

A write is conditional on the profile's version; when another writer (an event, another sweep)
got there first, the profile is read again and the evaluation redone, so nothing is lost.

Membership changes are written to the profile's outbox in the same write as the evaluation
(write-ahead), published, then cleared by a second write. A profile whose outbox is not empty is
due at once in the due index, so if the function dies between the write and the publish, or the
bus fails, the next sweep (a minute later) publishes the parked changes. Consumers may see a
change twice (at-least-once), never zero times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from ..domain.profile import MembershipChange, Profile
from ..domain.segments import SegmentEvaluator
from ..infra.profile_store import ConcurrentUpdateError, ProfileRepository

MAX_ATTEMPTS = 8
log = logging.getLogger(__name__)


class ChangePublisher(Protocol):
    def publish_changes(self, changes: list[MembershipChange]) -> None: ...


class TooMuchContentionError(Exception):
    """The profile kept changing under us; the work is left for a retry."""


def flush_outbox(profile: Profile, publisher: ChangePublisher) -> None:
    """Publish changes an earlier writer could not; they are dropped from the profile on its next write."""
    if profile.outbox:
        publisher.publish_changes(list(profile.outbox))
        profile.outbox = []


def deliver(changes: list[MembershipChange], profile: Profile, repository: ProfileRepository,
            publisher: ChangePublisher) -> None:
    """Publish ``changes`` of a profile just written; on a bus failure park them in its outbox."""
    if not changes:
        return
    try:
        publisher.publish_changes(changes)
    except Exception:
        log.exception("publishing membership changes failed; parking them in the profile's outbox")
        profile.outbox = [*profile.outbox, *changes]
        repository.save(profile, [], [])  # raises if someone wrote meanwhile: then the caller retries


def publish_parked(profile: Profile, repository: ProfileRepository, publisher: ChangePublisher) -> None:
    """Publish the outbox of a profile just written, then clear it (a second write). If the bus
    fails the changes stay parked, and the profile due; if another writer got there first, it has
    published them already (flush_outbox)."""
    if not profile.outbox:
        return
    try:
        publisher.publish_changes(list(profile.outbox))
    except Exception:
        log.exception("publishing membership changes failed; they stay in the profile's outbox for the next sweep")
        return
    profile.outbox = []
    try:
        repository.save(profile, [], [])
    except ConcurrentUpdateError:
        pass  # the other writer read the outbox and flushed it: published twice at worst


def reevaluate(
    profile: Profile,
    now: int,
    *,
    repository: ProfileRepository,
    evaluator: SegmentEvaluator,
    publisher: ChangePublisher,
    cause: str,
    touched: frozenset[str] | None,
    still_needed: Callable[[Profile], bool],
) -> list[MembershipChange] | None:
    """Evaluate ``profile`` at ``max(now, its last evaluation)``, write it, publish its changes.

    ``still_needed`` is asked again after every re-read (a racing writer may have done the work);
    returns None when it was not needed, else the changes.
    """
    for _ in range(MAX_ATTEMPTS):
        if profile is None or not still_needed(profile):
            return None
        flush_outbox(profile, publisher)
        at = max(now, profile.evaluated_at or 0)
        profile.prune(at, evaluator.retention)
        result = evaluator.evaluate(profile, at, touched)
        changes = profile.record_evaluation(
            set(result.segments), result.traits, result.next_due_at, at, cause,
            catalog_version=evaluator.version, unit_due=result.unit_due,
        )
        profile.outbox = list(changes)  # write-ahead: see the module docstring
        try:
            repository.save(profile, [], changes)
        except ConcurrentUpdateError:
            profile = repository.get(profile.profile_id)
            continue
        publish_parked(profile, repository, publisher)
        return changes
    raise TooMuchContentionError(f"profile {profile.profile_id} changed {MAX_ATTEMPTS} times")
