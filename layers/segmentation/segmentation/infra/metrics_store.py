"""Per-segment daily figures in DynamoDB (MetricsTable: ``segment_id`` + ``day``), the
:class:`~segmentation.service.segment_metrics.MetricsStore` port."""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from typing import Any

from ..service.segment_metrics import COUNTS, DayFigures

TRANSACTION_LIMIT = 100
BATCH_MARKER = "#batch#"
MARKER_TTL_S = 14 * 86400  # the queue keeps a message at most 14 days


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class DynamoDBMetricsStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def add(self, sums: dict[tuple[str, str], DayFigures], token: str) -> None:
        """One ``ADD`` per (segment, day), in transactions of up to 99 with a marker of the batch
        (``token``) and its chunk, written only if absent: a retried batch finds its markers and adds
        nothing (markers expire after MARKER_TTL_S, far beyond the queue's retries)."""
        updates = []
        for (segment, day), figures in sorted(sums.items()):
            names = [n for n in COUNTS if figures.counts.get(n)]
            values = {f":{n}": {"N": str(figures.counts[n])} for n in names}
            if figures.revenue:
                names.append("revenue")
                values[":revenue"] = {"N": str(figures.revenue)}
            if not names:
                continue
            updates.append({"Update": {
                "TableName": self.table, "Key": {"segment_id": {"S": segment}, "day": {"S": day}},
                "UpdateExpression": "ADD " + ", ".join(f"{n} :{n}" for n in names),
                "ExpressionAttributeValues": values,
            }})
        step = TRANSACTION_LIMIT - 1  # and the chunk's marker
        for i in range(0, len(updates), step):
            marker = {"Put": {
                "TableName": self.table, "ConditionExpression": "attribute_not_exists(segment_id)",
                "Item": {"segment_id": {"S": BATCH_MARKER}, "day": {"S": f"{_digest(token)}#{i}"},
                         "expires": {"N": str(int(time.time()) + MARKER_TTL_S)}},
            }}
            try:
                self.client.transact_write_items(TransactItems=[marker, *updates[i:i + step]])
            except self.client.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons") or []
                if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                    continue  # this chunk of this batch was added before (a retry): nothing more
                raise

    def days(self, segment_id: str, first: str, last: str) -> dict[str, DayFigures]:
        out: dict[str, DayFigures] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "segment_id = :s AND #d BETWEEN :a AND :b",
            "ExpressionAttributeNames": {"#d": "day"},
            "ExpressionAttributeValues": {":s": {"S": segment_id}, ":a": {"S": first}, ":b": {"S": last}},
        }
        while True:
            page = self.client.query(**kwargs)
            for item in page["Items"]:
                figures = DayFigures(counts={n: int(item[n]["N"]) for n in COUNTS if n in item},
                                     revenue=Decimal(item["revenue"]["N"]) if "revenue" in item else Decimal(0))
                out[item["day"]["S"]] = figures
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
