"""`segctl sweep` and `segctl backfill`: the time-based work, run against a local (or any) endpoint."""

from __future__ import annotations

import os
import re
import sys
import threading
from datetime import UTC, datetime, timedelta

from .progress import Progress
from .runtime import LocalStack, scheduled_event
from .template import Template


def parse_when(text: str) -> datetime:
    """``now``, ``+30d`` / ``+90m`` / ``+2h`` (from now), or an ISO time."""
    now = datetime.now(UTC).replace(microsecond=0)
    if text == "now":
        return now
    m = re.fullmatch(r"\+(\d+)([smhd])", text)
    if m:
        return now + timedelta(seconds=int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"segctl: --at {text!r}: give now, +30d, +2h, +90m or an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _stack(template: Template) -> LocalStack:
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("segctl: set AWS_ENDPOINT_URL to the endpoint `segctl local start-api` prints "
                         "(its data lives there); an embedded endpoint would be empty")
    return LocalStack(template, log_level="WARNING").start()


#: the scheduled sweep of template.yaml (its ``Schedule`` event runs it every SweepSchedule)
SWEEP_FUNCTION = "InactivitySweepFunction"


def run_sweep(stack: LocalStack, when: datetime, max_runs: int = 20) -> dict:
    """Invoke the template's sweep function as its schedule does, with the scheduled event's ``time``
    set to ``when`` (the instant it evaluates at), again while a run stops for time, as the next
    scheduled runs would. Returns the totals: at, runs, due_read, evaluated, changes, finished."""
    total = {"at": None, "runs": 0, "due_read": 0, "evaluated": 0, "changes": 0, "finished": False}
    while total["runs"] < max_runs and not total["finished"]:
        result = stack.invoke(SWEEP_FUNCTION, scheduled_event(when, stack.template.arn(SWEEP_FUNCTION)))
        total["runs"] += 1
        total["at"] = result["at"]
        total["finished"] = bool(result["finished"])
        for key in ("due_read", "evaluated", "changes"):
            total[key] += result[key]
    return total


def sweep(template: Template, at: str) -> int:
    when = parse_when(at)  # a bad --at is said before anything starts
    stack = _stack(template)
    try:
        result = stack.invoke(SWEEP_FUNCTION, scheduled_event(when, template.arn(SWEEP_FUNCTION)))
    finally:
        stack.stop()
    print(f"sweep at {result['at']}: {result['due_read']} due read, {result['evaluated']} evaluated, "
          f"{result['changes']} membership changes" + ("" if result["finished"] else " (stopped for time; run again)"))
    return 0


def backfill(template: Template, segments: int) -> int:
    """Re-evaluate every profile with the current catalog, ``segments`` scan segments in parallel."""
    stack = _stack(template)
    from segmentation import bootstrap
    from segmentation.service.backfill import SegmentProgress

    job = bootstrap.backfill()
    total = max(1, bootstrap.repository().count_profiles())
    lock = threading.Lock()
    seen = {"scanned": 0, "updated": 0}
    bar = Progress("profiles")

    def on_page(progress: SegmentProgress, n: int) -> None:
        with lock:
            seen["scanned"] += n
            done = min(seen["scanned"], total)
        bar.update(done, total, f"{progress.updated} updated in segment {progress.segment}")

    parts = [SegmentProgress(segment=s, total=segments) for s in range(segments)]
    errors: list[BaseException] = []

    def work(part: SegmentProgress) -> None:
        try:
            job.work(part, on_page=on_page)
        except BaseException as exc:  # reported below; the job is resumable
            errors.append(exc)

    print(f"backfill to catalog {bootstrap.evaluator().version} over {segments} scan segments")
    threads = [threading.Thread(target=work, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.finish()
    stack.stop()
    if errors:
        print(f"segctl: backfill failed in {len(errors)} segment(s): {errors[0]!r}; run it again to resume",
              file=sys.stderr)
        return 1
    print(f"done: {sum(p.scanned for p in parts)} profiles scanned, {sum(p.updated for p in parts)} re-evaluated")
    return 0
