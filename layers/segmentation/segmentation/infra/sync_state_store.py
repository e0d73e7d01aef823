"""The ESP sync's memory in DynamoDB: one item per (destination, profile) in the sync table.

Item: ``destination_id`` (partition key), ``profile_id`` (sort key), ``email``, ``targets`` (a list
of list ids or tag names), ``properties`` (JSON text: values as sent to the ESP), ``esp_id`` (the
provider's id for the person), ``version`` (the profile version synced). Reads are batched
(BatchGetItem, 100 keys), writes too (BatchWriteItem, 25), so a batch of 1,000 changes costs
about 50 requests, not 2,000. An erased person's item is deleted, not kept: nothing of them stays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..service.ports import PageKey, SyncedState

BATCH_GET = 100
BATCH_WRITE = 25


def _item(destination_id: str, profile_id: str, state: SyncedState) -> dict[str, Any]:
    item: dict[str, Any] = {
        "destination_id": {"S": destination_id},
        "profile_id": {"S": profile_id},
        "email": {"S": state.email},
        "targets": {"L": [{"S": t} for t in sorted(state.targets)]},
        "properties": {"S": json.dumps(state.properties, sort_keys=True, separators=(",", ":"), default=str)},
        "version": {"N": str(state.version)},
    }
    if state.esp_id:
        item["esp_id"] = {"S": state.esp_id}
    return item


def _state(item: dict[str, Any]) -> SyncedState:
    return SyncedState(
        email=item["email"]["S"],
        targets=frozenset(t["S"] for t in item.get("targets", {}).get("L", [])),
        properties=json.loads(item.get("properties", {}).get("S") or "{}"),
        esp_id=item.get("esp_id", {}).get("S"),
        version=int(item.get("version", {}).get("N", "0")),
    )


class DynamoDBSyncStateStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def get_many(self, destination_id: str, profile_ids: Sequence[str]) -> dict[str, SyncedState]:
        out: dict[str, SyncedState] = {}
        unique = list(dict.fromkeys(profile_ids))
        for i in range(0, len(unique), BATCH_GET):
            keys = [{"destination_id": {"S": destination_id}, "profile_id": {"S": pid}}
                    for pid in unique[i:i + BATCH_GET]]
            request = {self.table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table, []):
                    out[item["profile_id"]["S"]] = _state(item)
                request = answer.get("UnprocessedKeys") or None
        return out

    def put_many(self, destination_id: str, states: Mapping[str, SyncedState | None]) -> None:
        requests = []
        for pid, state in states.items():
            if state is None:
                requests.append({"DeleteRequest": {"Key": {"destination_id": {"S": destination_id},
                                                           "profile_id": {"S": pid}}}})
            else:
                requests.append({"PutRequest": {"Item": _item(destination_id, pid, state)}})
        for i in range(0, len(requests), BATCH_WRITE):
            pending = {self.table: requests[i:i + BATCH_WRITE]}
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or None

    def page(self, destination_id: str, limit: int,
             start: PageKey | None) -> tuple[list[tuple[str, SyncedState]], PageKey | None]:
        query: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "destination_id = :d",
            "ExpressionAttributeValues": {":d": {"S": destination_id}}, "Limit": limit, "ConsistentRead": True,
        }
        if start:
            query["ExclusiveStartKey"] = start
        answer = self.client.query(**query)
        items = [(item["profile_id"]["S"], _state(item)) for item in answer.get("Items", [])]
        return items, answer.get("LastEvaluatedKey")
