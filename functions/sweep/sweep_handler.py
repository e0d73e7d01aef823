"""EventBridge schedule -> time-based membership changes for the profiles that are due.

Evaluates at the scheduled event's ``time`` (docs/contracts.md#time), which is how tests move time.

Every run publishes ``SweepLagSeconds`` (how long the oldest due profile it found had waited past
its due instant; 0 when none was due) as a CloudWatch metric in Embedded Metric Format: a line in
the function's log that CloudWatch turns into the metric, no API call. template.yaml's
SweepLagAlarm watches it, and treats a missing value as breaching (a sweep that stopped running).
"""

from __future__ import annotations

import os
from datetime import datetime

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from segmentation import bootstrap

logger = Logger()
# template.yaml sets POWERTOOLS_METRICS_NAMESPACE; the default keeps an import without it (tests, tools) working
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Segmentation")
#: stop this long before the function's timeout; the rest waits in the index for the next run
MARGIN_MS = 5000
LAG_METRIC = "SweepLagSeconds"


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    now = int(datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp())
    report = bootstrap.sweep().run(now, time_left=lambda: (context.get_remaining_time_in_millis() - MARGIN_MS) / 1000)
    summary = {"at": event["time"], "due_read": report.due_read, "evaluated": report.evaluated,
               "moved": report.moved, "changes": len(report.changes), "finished": report.finished,
               "lag_seconds": report.lag}
    logger.info("sweep", extra=summary)
    # one stack's sweep apart from another's in the same account and namespace (the alarm's dimensions)
    if os.environ.get("STACK_NAME"):
        metrics.set_default_dimensions(stack=os.environ["STACK_NAME"])
    metrics.add_metric(name=LAG_METRIC, unit=MetricUnit.Seconds, value=report.lag)
    metrics.flush_metrics()
    return summary
