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

from collections.abc import Callable

from aws_lambda_powertools import Logger

from ..domain.profile import MembershipChange, Profile
from ..domain.segments import SegmentEvaluator
from .ports import ChangePublisher, ConcurrentUpdateError, ProfileStore
from .retry import TooMuchContentionError, retry_on_conflict

__all__ = ["ChangePublisher", "TooMuchContentionError", "deliver", "flush_outbox", "publish_parked", "reevaluate"]
logger = Logger(child=True)


def flush_outbox(profile: Profile, publisher: ChangePublisher) -> None:
    """Publish changes an earlier writer could not; they are dropped from the profile on its next write."""
    if profile.outbox:
        publisher.publish_changes(list(profile.outbox))
        profile.clear_parked()


def deliver(changes: list[MembershipChange], profile: Profile, repository: ProfileStore,
            publisher: ChangePublisher) -> None:
    """Publish ``changes`` of a profile just written; on a bus failure park them in its outbox."""
    if not changes:
        return
    try:
        publisher.publish_changes(changes)
    except Exception:
        logger.exception("publishing membership changes failed; parking them in the profile's outbox")
        profile.park(changes)
        repository.save(profile, [], [])  # raises if someone wrote meanwhile: then the caller retries


def publish_parked(profile: Profile, repository: ProfileStore, publisher: ChangePublisher) -> None:
    """Publish the outbox of a profile just written, then clear it (a second write). If the bus
    fails the changes stay parked, and the profile due; if another writer got there first, it has
    published them already (flush_outbox)."""
    if not profile.outbox:
        return
    try:
        publisher.publish_changes(list(profile.outbox))
    except Exception:
        logger.exception("publishing membership changes failed; they stay in the profile's outbox for the next sweep")
        return
    profile.clear_parked()
    try:
        repository.save(profile, [], [])
    except ConcurrentUpdateError:
        pass  # the other writer read the outbox and flushed it: published twice at worst


def reevaluate(
    profile: Profile,
    now: int,
    *,
    repository: ProfileStore,
    evaluator: SegmentEvaluator,
    publisher: ChangePublisher,
    cause: str,
    still_needed: Callable[[Profile], bool],
) -> list[MembershipChange] | None:
    """Evaluate ``profile`` at ``max(now, its last evaluation)``, write it, publish its changes.

    ``still_needed`` is asked again after every re-read (a racing writer may have done the work);
    returns None when it was not needed, else the changes.
    """
    read = [profile]  # the first attempt uses the profile given (from the due index or a scan)

    def attempt() -> tuple[Profile, list[MembershipChange]] | None:
        current = read.pop() if read else repository.get(profile.profile_id)
        if current is None or not still_needed(current):
            return None
        flush_outbox(current, publisher)
        at = max(now, current.evaluated_at or 0)
        current.prune(at, evaluator.retention)
        result = evaluator.evaluate(current, at)
        changes = current.record_evaluation(
            set(result.segments), result.traits, result.next_due_at, at, cause,
            catalog_version=evaluator.version,
            watch=getattr(evaluator, "watch", frozenset()),
        )
        current.park(changes)  # write-ahead: see the module docstring
        repository.save(current, [], changes)
        return current, changes

    written = retry_on_conflict(attempt, f"profile {profile.profile_id}")
    if written is None:
        return None
    current, changes = written
    publish_parked(current, repository, publisher)
    return changes
