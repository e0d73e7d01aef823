"""SQS batch of SegmentEntered / SegmentExited / ProfileUpdated (from the bus) -> the ESP
destinations of the destinations file, in bulk (docs/destinations.md).

The whole batch is synced at once (that is what makes 1,000 changes cost a handful of API calls),
so the partial batch response is built here: the records of a destination that failed are
reported as failures and come back after the visibility timeout; after eight receives they go to
the dead-letter queue (alarmed). Records that are not bus events the sync reads are logged by
message id and dropped (a retry would not make them readable).
"""

from __future__ import annotations

import os
import time

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from segmentation import bootstrap
from segmentation.service.esp_sync import parse_messages

logger = Logger()
# template.yaml sets POWERTOOLS_METRICS_NAMESPACE; the default keeps an import without it (tests, tools) working
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Segmentation")


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    records = [(r["messageId"], r["body"]) for r in event.get("Records", [])]
    notices, unreadable = parse_messages(records)
    if unreadable:
        logger.error("records that are not changes the ESP sync reads were dropped",
                     extra={"message_ids": unreadable})
    if not bootstrap.destinations().destinations or not notices:
        return {"batchItemFailures": []}
    outcome = bootstrap.esp_sync().sync(notices)
    now = time.time()
    metrics.add_metric(name="EspSyncLagSeconds", unit=MetricUnit.Seconds, value=max(now - n.at for n in notices))
    for destination_id, report in outcome.destinations.items():
        metrics.add_metric(name="EspSyncApiCalls", unit=MetricUnit.Count, value=report.calls)
        metrics.add_metric(name="EspSyncPushes", unit=MetricUnit.Count, value=report.pushes)
        metrics.add_metric(name="EspSyncRefused", unit=MetricUnit.Count, value=report.refused)
        metrics.add_metric(name="EspSyncDestinationFailures", unit=MetricUnit.Count, value=int(bool(report.failed)))
        logger.info("synced", extra={"destination": destination_id, "pushes": report.pushes, "calls": report.calls,
                                     "refused": report.refused, "failed": report.failed})
    metrics.flush_metrics()  # only batches that synced something have metrics to publish
    return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(outcome.failed_messages)]}
