"""Importing a shop's or an ESP's history (docs/import.md).

Records from a source (:mod:`segmentation.history`) become canonical events, are grouped per person
(:func:`~segmentation.history.records.group_customers`) and each person's history is applied in time
order and evaluated once, at the import's instant, through the live path's own code
(:meth:`ProfileService.apply_history`): one read and one write per person however many orders they
have, and the same profile the live path would have built from the same events.

Resumable: the people are taken in a stable order and the count done is recorded under the import's
job id (a hash of its inputs) every ``checkpoint_every`` people, in the store's progress records; a
run of the same inputs after a crash or a timeout starts from there. Idempotent: orders, refunds,
checkouts and messages are kept by their ids, so running the same file again changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from ..domain.events import CustomerEvent
from ..history.records import Customer, Parsed, Rejected, group_customers
from .ports import ProfileStore
from .profiles import ProfileService

__all__ = ["HistoryImport", "ImportReport", "job_id"]
logger = Logger(child=True)
#: how many reasons a report keeps (the counts are complete)
REASONS_KEPT = 10


@dataclass
class ImportReport:
    records: int = 0  # records read (lines of data)
    imported: int = 0  # records that became events
    skipped: int = 0  # records with nothing to import (e.g. no identity)
    rejected: int = 0  # records that could not be read
    reasons: list[str] = field(default_factory=list)  # the first rejections: "orders.csv line 12: total is not a decimal"
    customers: int = 0  # people in the history
    written: int = 0  # people whose profile this run wrote
    resumed_from: int = 0  # people done by an earlier run of the same import
    failed: int = 0  # people whose history could not be written (reasons above)
    erased: int = 0  # people left out: erased since their records were made
    changes: int = 0  # membership changes the import made (published once each, unless quiet)
    segments: dict[str, int] = field(default_factory=dict)  # segment -> people who entered it

    def tally(self, records: Iterable[Parsed | Rejected]) -> list[CustomerEvent]:
        """Count ``records`` (read, imported, skipped, rejected with their first reasons) and return
        the events of those that had some."""
        events: list[CustomerEvent] = []
        for record in records:
            self.records += 1
            if isinstance(record, Rejected):
                self.rejected += 1
                self.reject(f"{record.file or 'input'} line {record.line}", record.reason)
            elif record.events:
                self.imported += 1
                events += record.events
            else:
                self.skipped += 1
        return events

    def reject(self, where: str, reason: str) -> None:
        if len(self.reasons) < REASONS_KEPT:
            self.reasons.append(f"{where}: {reason}")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def job_id(parts: Iterable[bytes | str]) -> str:
    """An import's id: the same inputs (and options) give the same id, so a rerun resumes."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return "import#" + digest.hexdigest()[:24]


class HistoryImport:
    def __init__(self, profiles: ProfileService, store: ProfileStore, checkpoint_every: int = 100,
                 progress: Callable[[int, int], None] | None = None) -> None:
        """``progress(done, total)`` is called as people are imported (a progress bar)."""
        self.profiles = profiles
        self.store = store
        self.checkpoint_every = checkpoint_every
        self.progress = progress

    def run(self, records: Iterable[Parsed | Rejected], job: str, quiet: bool = False,
            time_left: Callable[[], float] = lambda: float("inf")) -> ImportReport:
        """Import ``records``; ``quiet``: publish no membership change (a reconcile pushes the
        state to the ESPs). Stops when ``time_left()`` runs out (the next run resumes)."""
        report = ImportReport()
        customers = group_customers(report.tally(records))
        report.customers = len(customers)
        done = self._done(job)
        report.resumed_from = done
        for n, customer in enumerate(customers[done:], start=done):
            if time_left() <= 0:
                self._record(job, n, report, finished=False)
                return report
            self._one(customer, quiet, report)
            if (n + 1) % self.checkpoint_every == 0:
                self._record(job, n + 1, report, finished=False)
            if self.progress:
                self.progress(n + 1, len(customers))
        self._record(job, len(customers), report, finished=True)
        return report

    def _one(self, customer: Customer, quiet: bool, report: ImportReport) -> None:
        try:
            changes = self.profiles.apply_history(customer.events, cause="import", publish=not quiet)
        except ValueError as exc:  # e.g. more identifiers than one write holds: this person only
            report.failed += 1
            report.reject(f"a customer with {len(customer.events)} records", str(exc))
            return
        if changes is None:
            report.erased += 1
            return
        report.written += 1
        for c in changes:
            if c.segment_id:
                report.changes += 1
                if c.change == "entered":
                    report.segments[c.segment_id] = report.segments.get(c.segment_id, 0) + 1

    def _done(self, job: str) -> int:
        parts = self.store.progress(job)
        return max((p["scanned"] for p in parts if not p["done"]), default=0)

    def _record(self, job: str, done: int, report: ImportReport, finished: bool) -> None:
        # a finished import leaves done=True: a later run of the same inputs imports again (idempotent)
        self.store.record_progress(job, "people", done, report.written, finished)
