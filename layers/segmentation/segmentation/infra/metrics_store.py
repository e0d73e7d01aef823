"""Per-segment daily figures in DynamoDB (MetricsTable: ``segment_id`` + ``day``), the
:class:`~segmentation.service.segment_metrics.MetricsStore` port."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from ..service.segment_metrics import COUNTS, DayFigures

#: How many recent batches each (segment, day) item remembers, in slots picked by the batch's digest.
SLOTS = 8


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


class DynamoDBMetricsStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def add(self, sums: dict[tuple[str, str], DayFigures], token: str) -> None:
        """One conditional ``UpdateItem`` per (segment, day): ``ADD`` the batch's sums and remember the
        batch (``token``) in one of the item's SLOTS, on condition that no slot holds it already.

        A retry of the same batch skips every item it added before and adds the rest, so a batch that
        failed half way is completed, not doubled. One write unit per item (no transaction, no marker
        items). What it does not cover: SQS regrouping a failed batch's messages with others (a new
        token), or more than SLOTS batches touching an item between a failure and its retry whose
        digests share the failed one's slot (docs/measure.md)."""
        for (segment, day), figures in sorted(sums.items()):
            names = [n for n in COUNTS if figures.counts.get(n)]
            values: dict[str, Any] = {f":{n}": {"N": str(figures.counts[n])} for n in names}
            if figures.revenue:
                names.append("revenue")
                values[":revenue"] = {"N": str(figures.revenue)}
            if not names:
                continue
            digest = _digest(token)
            slot = int(digest[:8], 16) % SLOTS
            values[":t"] = {"S": digest}
            try:
                self.client.update_item(
                    TableName=self.table, Key={"segment_id": {"S": segment}, "day": {"S": day}},
                    UpdateExpression="ADD " + ", ".join(f"{n} :{n}" for n in names) + f" SET b{slot} = :t",
                    ConditionExpression=" AND ".join(f"(attribute_not_exists(b{i}) OR b{i} <> :t)"
                                                     for i in range(SLOTS)),
                    ExpressionAttributeValues=values)
            except self.client.exceptions.ConditionalCheckFailedException:
                continue  # this batch added to this item before (a retry)

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
