"""Backfill after a catalog change.

* Invoked directly with ``{"segments": N}``: fans out N parallel scan segments as queue messages.
* From the queue: works one segment until it ends or time runs short, then queues its own
  continuation (resumable).
"""

from __future__ import annotations

import json

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from segmentation import bootstrap
from segmentation.service.backfill import SegmentProgress
from segmentation.settings import load_settings

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
MARGIN_MS = 20000
_context = None


def _queue(message: dict) -> None:
    boto3.client("sqs").send_message(QueueUrl=load_settings().backfill_queue_url, MessageBody=json.dumps(message))


def record_handler(record: SQSRecord) -> None:
    msg = json.loads(record.body)
    progress = SegmentProgress(segment=msg["segment"], total=msg["total"], scanned=msg.get("scanned", 0),
                               updated=msg.get("updated", 0), resume_from=msg.get("resume_from"))
    progress = bootstrap.backfill().work(
        progress, time_left=lambda: (_context.get_remaining_time_in_millis() - MARGIN_MS) / 1000)
    if not progress.done:
        _queue({**msg, "scanned": progress.scanned, "updated": progress.updated, "resume_from": progress.resume_from})
    logger.info("backfill", extra={"segment": progress.segment, "scanned": progress.scanned,
                                   "updated": progress.updated, "done": progress.done})


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    global _context
    _context = context
    if "Records" not in event:
        segments = int(event.get("segments", 8))
        for segment in range(segments):
            _queue({"segment": segment, "total": segments, "version": bootstrap.evaluator().version})
        return {"started": segments, "catalog_version": bootstrap.evaluator().version}
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
