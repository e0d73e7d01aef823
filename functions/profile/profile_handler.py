"""SQS batch of CustomerEvent (from the bus) -> profile update, segment evaluation, changes published."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from segmentation import bootstrap
from segmentation.domain.events import CustomerEvent

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    # The body is the EventBridge envelope; only ``detail`` is ours. (Not Powertools'
    # EventBridgeModel: it requires ``account``, which local deliveries lack.)
    detail = json.loads(record.body)["detail"]
    event = CustomerEvent.model_validate(detail)
    try:
        changes = bootstrap.profile_service().apply(event)
    except Exception:
        # The record fails alone (partial batch response) and SQS redelivers it, then dead-letters it;
        # say so at ERROR, with the event id only (no payload: it may hold personal data).
        logger.exception("fault while applying the event; the record is retried",
                         extra={"event_id": event.event_id, "type": event.type})
        raise
    logger.info("applied", extra={"event_id": event.event_id, "type": event.type, "changes": len(changes)})


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
