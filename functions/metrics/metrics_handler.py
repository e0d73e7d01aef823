"""SQS batch of SegmentMetrics / SegmentEntered / SegmentExited (from the bus) -> each segment's daily
figures, summed over the batch and added once (docs/measure.md)."""

from __future__ import annotations

import hashlib

from aws_lambda_powertools import Logger
from segmentation import bootstrap
from segmentation.service.segment_metrics import parse, summed

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    records = event.get("Records", [])
    sums = summed(parse(r["body"]) for r in records)
    # the batch's identity: a retry of the same messages adds nothing (the store's markers)
    token = hashlib.sha256("\n".join(sorted(r["messageId"] for r in records)).encode()).hexdigest()
    bootstrap.metrics_store().add(sums, token)
    logger.info("figures added", extra={"messages": len(records), "segment_days": len(sums)})
    return {"batchItemFailures": []}
