"""`segctl import csv`: import a shop's history from CSV files of orders and customers (docs/import.md).

Against the endpoint `segctl local start-api` prints (``AWS_ENDPOINT_URL``), the import runs in this
process with a progress bar. Run it again with the same files after an interruption: it resumes
where it stopped; once finished, running it again changes nothing (orders are kept by their ids).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from .progress import Progress
from .template import Template


class ImportBar:
    """The import's progress (customers written of the history's, and the rate): a bar on a
    terminal, plain lines in a log (progress.Progress)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.progress = Progress("customers")

    def __call__(self, done: int, total: int) -> None:
        rate = done / max(time.monotonic() - self.started, 1e-6)
        self.progress.update(done, total, f"{rate:,.0f}/s")

    def finish(self) -> None:
        self.progress.finish()


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def print_report(report: dict) -> None:
    print(f"records: {report['records']:,} read, {report['imported']:,} imported, {report['skipped']:,} skipped "
          f"(nothing to import), {report['rejected']:,} rejected")
    for reason in report["reasons"]:
        print(f"  {reason}")
    resumed = f", resumed after {report['resumed_from']:,}" if report["resumed_from"] else ""
    failed = f", {report['failed']:,} failed (reasons above)" if report["failed"] else ""
    failed += f", {report['erased']:,} left out (erased since)" if report["erased"] else ""
    print(f"customers: {report['customers']:,} in the history, {report['written']:,} written{resumed}{failed}")
    entered = ", ".join(f"{s} {n:,}" for s, n in sorted(report["segments"].items(), key=lambda kv: (-kv[1], kv[0])))
    print(f"segments entered: {entered or 'none'} ({report['changes']:,} membership changes)")


def import_csv(template: Template, orders: list[str], customers: list[str], platform: str, shop: str | None,
               quiet: bool) -> int:
    if not orders and not customers:
        raise SystemExit("segctl: give --orders FILE and/or --customers FILE")
    files = [(Path(p), "customers") for p in customers] + [(Path(p), "orders") for p in orders]
    for path, _ in files:
        if not path.is_file():
            raise SystemExit(f"segctl: {path}: no such file")
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("segctl: set AWS_ENDPOINT_URL to the endpoint `segctl local start-api` prints "
                         "(its data lives there); an embedded endpoint would be empty")
    from .runtime import LocalStack

    stack = LocalStack(template, log_level="WARNING").start()
    try:
        return run_import(files, platform, shop, quiet)
    except KeyboardInterrupt:
        print("\nsegctl: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        stack.stop()


def run_import(files: list[tuple[Path, str]], platform: str, shop: str | None, quiet: bool) -> int:
    """The import itself, on the components bootstrap builds (the local stack's, or any)."""
    from datetime import UTC, datetime

    from segmentation.history.csv_files import read_customers, read_orders
    from segmentation.service.history_import import job_id

    now = datetime.now(UTC)
    job = job_id([platform, shop or "", str(quiet), *(f"{kind}:{_digest(p)}" for p, kind in files)])

    def records():
        for path, kind in files:
            with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
                if kind == "orders":
                    yield from read_orders(f, platform, shop, now=now, name=path.name)
                else:
                    yield from read_customers(f, platform, shop, name=path.name)

    what = f"{', '.join(str(p) for p, _ in files)} as {platform}" + (f" ({shop})" if shop else "")
    return import_with_progress(what, records(), job, quiet)


def import_with_progress(what: str, records, job: str, quiet: bool, started: float | None = None) -> int:
    """Import ``records`` on bootstrap's components with a progress bar, then print the report;
    "took" counts from ``started`` (when the command began fetching, if it did)."""
    from segmentation import bootstrap

    importing = time.monotonic()
    started = importing if started is None else started
    print(f"importing {what}" + (" quietly (no membership events)" if quiet else ""))
    bar = ImportBar(importing)
    report = bootstrap.history_import(progress=bar).run(records, job, quiet=quiet)
    bar.finish()
    print_report(report.as_dict())
    print(f"took {time.monotonic() - started:.1f} s")
    return 1 if report.failed else 0
