"""Backfill after a catalog change.

* Invoked directly with ``{"segments": N}``: fans out N parallel scan segments as queue messages.
* From the queue: works one segment until it ends or time runs short, then queues its own
  continuation (resumable).
"""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from segmentation import bootstrap

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
#: stop this long before the function's timeout and queue the continuation
MARGIN_MS = 20000


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    backfill = bootstrap.backfill()
    if "Records" not in event:
        return backfill.start(int(event.get("segments", 8)))

    def record_handler(record: SQSRecord) -> None:
        progress = backfill.resume(json.loads(record.body),
                                   time_left=lambda: (context.get_remaining_time_in_millis() - MARGIN_MS) / 1000)
        logger.info("backfill", extra={"segment": progress.segment, "scanned": progress.scanned,
                                       "updated": progress.updated, "done": progress.done})

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
