"""SQS batch of SegmentMetrics / SegmentEntered / SegmentExited (from the bus) -> each segment's daily
figures, summed over the batch and added once (docs/measure.md); then, with SEGMENT_CLOUDWATCH_METRICS,
each segment the batch touched as CloudWatch metrics in the log (EMF: no API call): SegmentSize,
SegmentEntries, SegmentExits, dimensions ``segment`` and ``stack`` (not family instances: one metric each would cost
more than it tells)."""

from __future__ import annotations

import hashlib
import os

from aws_lambda_powertools import Logger
from segmentation import bootstrap
from segmentation.service.segment_metrics import ACCOUNT, parse, summed

logger = Logger()
NAMESPACE = "Segmentation"


def publish_cloudwatch(sums: dict) -> None:
    """One EMF document per touched segment: its size now and the batch's entries and exits."""
    from aws_lambda_powertools.metrics import Metrics, MetricUnit

    touched: dict[str, list[int]] = {}
    for (segment, _day), figures in sums.items():
        if segment == ACCOUNT or ":" in segment:
            continue
        moves = touched.setdefault(segment, [0, 0])
        moves[0] += figures.counts.get("entered", 0)
        moves[1] += figures.counts.get("exited", 0)
    store = bootstrap.repository()
    metrics = Metrics(namespace=NAMESPACE)
    if os.environ.get("STACK_NAME"):  # two stacks in one account keep their figures apart
        metrics.set_default_dimensions(stack=os.environ["STACK_NAME"])
    for segment, (entered, exited) in sorted(touched.items()):
        metrics.add_dimension(name="segment", value=segment)
        metrics.add_metric(name="SegmentSize", unit=MetricUnit.Count, value=store.segment_size(segment))
        metrics.add_metric(name="SegmentEntries", unit=MetricUnit.Count, value=entered)
        metrics.add_metric(name="SegmentExits", unit=MetricUnit.Count, value=exited)
        metrics.flush_metrics()  # one document per segment: its own dimension


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    records = event.get("Records", [])
    good, failures = [], []
    for r in records:
        try:
            message = parse(r["body"])
            summed([message])  # a message the sums cannot read fails alone, not with its batch
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.error("unreadable figures message; it goes to the dead-letter queue after its retries",
                         extra={"message_id": r.get("messageId")})
            failures.append({"itemIdentifier": r["messageId"]})
            continue
        good.append((r["messageId"], message))
    sums = summed(m for _, m in good)
    # the batch's identity: a retry of the same messages adds only what it had not added
    token = hashlib.sha256("\n".join(sorted(i for i, _ in good)).encode()).hexdigest()
    bootstrap.metrics_store().add(sums, token)
    logger.info("figures added", extra={"messages": len(good), "segment_days": len(sums)})
    if os.environ.get("SEGMENT_CLOUDWATCH_METRICS", "false").lower() == "true":
        publish_cloudwatch(sums)
    return {"batchItemFailures": failures}
