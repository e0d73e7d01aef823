"""Reconcile one destination, or every one (``{"destination": "*"}``, the daily schedule), with the
full desired state of its synced segments (docs/destinations.md, "Reconcile").

Event: ``{"destination": "klaviyo-main", "dry_run": false}``. Returns each destination's report
(what it added and removed per list/tag, how many properties it wrote, the API calls it took).
A destination that fails does not stop the others; it is reported with its error, and the next
run (or a retry of the invocation) picks up from what is still different.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from segmentation import bootstrap
from segmentation.destinations.config import WebhookDestination
from segmentation.errors import SegmentationError

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    wanted = str(event.get("destination") or "*")
    dry_run = bool(event.get("dry_run", False))
    destinations = bootstrap.destinations().destinations
    ids = ([d.id for d in destinations if not isinstance(d, WebhookDestination)] if wanted == "*" else [wanted])
    reconcile = bootstrap.esp_reconcile(progress=lambda line: logger.info(line))
    reports = []
    for destination_id in ids:
        try:
            reports.append(reconcile.run(destination_id, dry_run=dry_run).as_dict())
        except SegmentationError as e:
            logger.error("reconcile failed", extra={"destination": destination_id, "reason": str(e)})
            reports.append({"destination": destination_id, "error": str(e)})
    logger.info("reconciled", extra={"reports": reports})
    return {"reports": reports}
