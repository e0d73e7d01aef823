"""The sweep: apply time-based membership changes to the profiles that are due, and only those.

Each run reads the due index shard by shard (oldest first, round robin so a backlog in one shard
does not starve the others) and stops a few seconds before its deadline; what is left stays in
the index for the next run, so no due profile is skipped and a backlog drains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..domain.profile import MembershipChange
from ..domain.segments import SegmentEvaluator
from .evaluation import reevaluate
from .ports import ChangePublisher, ProfileStore

PAGE = 50


@dataclass
class SweepReport:
    at: int
    due_read: int = 0  # index items read
    evaluated: int = 0
    moved: int = 0  # entries moved to the profile's due instant without an evaluation
    changes: list[MembershipChange] = field(default_factory=list)
    finished: bool = True  # False: stopped for time, the rest waits for the next run
    oldest_due: int | None = None  # the earliest due instant among the due profiles read

    @property
    def lag(self) -> int:
        """Seconds the oldest due profile read has waited past its due instant (0: none was due).

        Each shard's index is read oldest first, and every shard's first page before any second
        one, so this is the backlog's age at the start of the run (the sweep-lag alarm's metric)."""
        return 0 if self.oldest_due is None else max(0, self.at - self.oldest_due)


class Sweep:
    def __init__(self, repository: ProfileStore, evaluator: SegmentEvaluator, publisher: ChangePublisher,
                 shards: int) -> None:
        self.repository = repository
        self.evaluator = evaluator
        self.publisher = publisher
        self.shards = shards

    def run(self, now: int, time_left: Callable[[], float] = lambda: float("inf"), page: int = PAGE) -> SweepReport:
        """Evaluate every profile with ``next_due_at <= now`` while ``time_left()`` seconds remain."""
        report = SweepReport(at=now)
        cursors: dict[int, dict | None] = {shard: None for shard in range(self.shards)}
        while cursors:
            for shard in list(cursors):
                if time_left() <= 0:
                    report.finished = False
                    return report
                profiles, last = self.repository.due_page(shard, now, page, cursors[shard])
                report.due_read += len(profiles)
                due = [p.next_due_at for p in profiles if p.next_due_at is not None and p.next_due_at <= now]
                if due:
                    report.oldest_due = min(due if report.oldest_due is None else [*due, report.oldest_due])
                for profile in profiles:
                    if time_left() <= 0:
                        report.finished = False
                        return report
                    if not profile.outbox and (profile.next_due_at is None or profile.next_due_at > now):
                        # its entry was left early (due_entry) or an event re-evaluated it since the
                        # index was read: nothing to evaluate, the entry goes to the due instant
                        self.repository.move_due(profile)
                        report.moved += 1
                        continue
                    changes = reevaluate(
                        profile, now, repository=self.repository, evaluator=self.evaluator, publisher=self.publisher,
                        cause="time",
                        # An event may have re-evaluated it since the index was read. A profile with
                        # parked changes is due at once, to publish them.
                        still_needed=lambda p: bool(p.outbox) or (p.next_due_at is not None and p.next_due_at <= now),
                    )
                    if changes is not None:
                        report.evaluated += 1
                        report.changes += changes
                if last is None:
                    del cursors[shard]
                else:
                    cursors[shard] = last
        return report
