"""Backfill: after a catalog change, re-evaluate every profile with the new catalog.

The profiles are split into parallel scan segments; each segment is worked page by page and can
stop at any page boundary and resume from its last key (a new message in AWS, the next loop
locally). Progress per segment is recorded under the catalog version, so it can be shown and a
rerun skips profiles already at the new version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..domain.segments import SegmentEvaluator
from ..infra.profile_store import ProfileRepository
from .evaluation import ChangePublisher, reevaluate

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
    def __init__(self, repository: ProfileRepository, evaluator: SegmentEvaluator, publisher: ChangePublisher,
                 clock: Callable[[], int]) -> None:
        self.repository = repository
        self.evaluator = evaluator
        self.publisher = publisher
        self.clock = clock

    @property
    def job(self) -> str:
        return f"backfill-{self.evaluator.version}"

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
                    publisher=self.publisher, cause="catalog", touched=None,
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
