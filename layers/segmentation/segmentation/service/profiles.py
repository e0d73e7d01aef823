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

from ..adapters.repository import ConcurrentUpdateError, ProfileRepository
from ..domain.events import CustomerEvent
from ..domain.profile import MembershipChange, Profile, touched_inputs
from ..domain.segments import SegmentEvaluator
from .evaluation import ChangePublisher, TooMuchContentionError, deliver, flush_outbox

MAX_ATTEMPTS = 8
__all__ = ["ProfileService", "TooMuchContentionError"]



class ProfileService:
    def __init__(
        self,
        repository: ProfileRepository,
        evaluator: SegmentEvaluator,
        publisher: ChangePublisher,
        clock: Callable[[], int],
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.repository = repository
        self.evaluator = evaluator
        self.publisher = publisher
        self.clock = clock
        self.new_id = new_id

    def apply(self, event: CustomerEvent) -> list[MembershipChange]:
        """Apply ``event`` and return the membership changes it caused (published already)."""
        aliases = event.identity.alias_keys(event.shop)
        for _ in range(MAX_ATTEMPTS):
            loaded = self.repository.load(aliases)
            profile = loaded.profile or Profile(profile_id=self.new_id())
            flush_outbox(profile, self.publisher)
            done = profile.applied(event.event_id)
            if done is not None:
                changes = done.changes
                break
            # Aliases owned by another profile stay there (merging profiles is a later step).
            new_aliases = [
                a for a in aliases
                if a not in profile.aliases and loaded.alias_owners.get(a, profile.profile_id) == profile.profile_id
            ]
            profile.apply(event, new_aliases)
            now = max(self.clock(), profile.evaluated_at or 0)
            profile.prune(now, self.evaluator.retention)
            result = self.evaluator.evaluate(profile, now, touched_inputs(event))
            changes = profile.record_evaluation(
                set(result.segments), result.traits, result.next_due_at, now, cause=event.event_id,
                catalog_version=self.evaluator.version, unit_due=result.unit_due,
            )
            try:
                self.repository.save(profile, new_aliases, changes)
                break
            except ConcurrentUpdateError:
                continue
        else:
            raise TooMuchContentionError(f"profile for event {event.event_id} changed {MAX_ATTEMPTS} times")
        if done is not None:
            if changes:  # a redelivery: the first delivery may have died before publishing
                self.publisher.publish_changes(changes)
        else:
            deliver(changes, profile, self.repository, self.publisher)
        return changes
