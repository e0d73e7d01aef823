"""Backfill: after a catalog change, re-evaluate every profile with the new catalog.

The profiles are split into parallel scan segments; each segment is worked page by page and can
stop at any page boundary and resume from its last key (a new message in AWS, the next loop
locally). Progress per segment is recorded under the catalog version, so it can be shown and a
rerun skips profiles already at the new version.

In AWS the segments travel as queue messages (:meth:`Backfill.start` fans them out,
:meth:`Backfill.resume` works one and queues its continuation); locally ``segctl backfill`` calls
:meth:`Backfill.work` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..domain.segments import SegmentEvaluator
from .evaluation import reevaluate
from .ports import ChangePublisher, ProfileStore, WorkQueue

PAGE = 100


@dataclass
class SegmentProgress:
    segment: int
    total: int
    scanned: int = 0
    updated: int = 0
    resume_from: dict | None = None

    @property
    def done(self) -> bool:
        return self.resume_from is None


class Backfill:
    def __init__(self, repository: ProfileStore, evaluator: SegmentEvaluator, publisher: ChangePublisher,
                 clock: Callable[[], int], queue: WorkQueue | None = None) -> None:
        """``queue``: where segments and their continuations are sent (needed by start and resume only)."""
        self.repository = repository
        self.evaluator = evaluator
        self.publisher = publisher
        self.clock = clock
        self.queue = queue

    @property
    def job(self) -> str:
        return f"backfill-{self.evaluator.version}"

    def start(self, segments: int) -> dict:
        """Fan out: one queue message per scan segment, each worked by :meth:`resume`."""
        version = self.evaluator.version
        for segment in range(segments):
            self._queue().send({"segment": segment, "total": segments, "version": version})
        return {"started": segments, "catalog_version": version}

    def resume(self, message: dict, time_left: Callable[[], float]) -> SegmentProgress:
        """Work the scan segment a queue message names, from where it stopped, until it ends or
        ``time_left()`` runs out; then queue its continuation (the same message, further on)."""
        progress = SegmentProgress(segment=message["segment"], total=message["total"],
                                   scanned=message.get("scanned", 0), updated=message.get("updated", 0),
                                   resume_from=message.get("resume_from"))
        progress = self.work(progress, time_left=time_left)
        if not progress.done:
            self._queue().send({**message, "scanned": progress.scanned, "updated": progress.updated,
                                "resume_from": progress.resume_from})
        return progress

    def _queue(self) -> WorkQueue:
        if self.queue is None:
            raise RuntimeError("this backfill has no queue (BACKFILL_QUEUE_URL is not set)")
        return self.queue

    def work(self, progress: SegmentProgress, time_left: Callable[[], float] = lambda: float("inf"),
             on_page: Callable[[SegmentProgress, int], None] | None = None, page: int = PAGE) -> SegmentProgress:
        """Re-evaluate one scan segment from where it stopped until it ends or time runs out."""
        version = self.evaluator.version
        start = progress.resume_from
        while True:
            profiles, last = self.repository.scan_page(progress.segment, progress.total, page, start)
            for profile in profiles:
                changes = reevaluate(
                    profile, self.clock(), repository=self.repository, evaluator=self.evaluator,
                    publisher=self.publisher, cause="catalog",
                    still_needed=lambda p: p.catalog_version != version,
                )
                progress.updated += changes is not None
            progress.scanned += len(profiles)
            progress.resume_from = last
            self.repository.record_progress(self.job, str(progress.segment), progress.scanned, progress.updated,
                                            last is None)
            if on_page:
                on_page(progress, len(profiles))
            if last is None or time_left() <= 0:
                return progress
            start = last
