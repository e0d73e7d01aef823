"""EventBridge schedule -> time-based membership changes for the profiles that are due.

Evaluates at the scheduled event's ``time`` (docs/contracts.md#time), which is how tests move time.
"""

from __future__ import annotations

from datetime import datetime

from aws_lambda_powertools import Logger
from segmentation import bootstrap

logger = Logger()
#: stop this long before the function's timeout; the rest waits in the index for the next run
MARGIN_MS = 5000


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    now = int(datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp())
    report = bootstrap.sweep().run(now, time_left=lambda: (context.get_remaining_time_in_millis() - MARGIN_MS) / 1000)
    summary = {"at": event["time"], "due_read": report.due_read, "evaluated": report.evaluated,
               "moved": report.moved, "changes": len(report.changes), "finished": report.finished}
    logger.info("sweep", extra=summary)
    return summary
