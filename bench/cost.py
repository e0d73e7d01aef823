"""DynamoDB write units per ingested event, all-in, from DynamoDB's billing rules on real item sizes
(issue 13), and a cost model of the whole path per million events.

:class:`WriteMeter` hooks a boto3 DynamoDB client: for every write it reads the item before and after
(with a second, unhooked client) and bills it as DynamoDB does on-demand:

* a write costs one write unit per started KB of the larger of the item before and after;
* a transaction costs twice that per item;
* every global secondary index whose keys the item has (before or after) is written too: an index
  entry put (or updated) costs its projected size per started KB; an entry whose key changed costs a
  delete of the old one as well; an item leaving the index costs the delete of its entry.

Item sizes follow DynamoDB's documented rules (names and values in UTF-8 bytes, numbers about one
byte per two digits plus one, 3 bytes per list or map plus one per element, 100 bytes of overhead
per index entry).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

KB = 1024


def value_size(value: dict[str, Any]) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = len(str(v).lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(str(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum(value_size({"N": x}) for x in v)
    if kind == "BS":
        return sum(len(x) for x in v)
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def units(size: int) -> int:
    return max(1, math.ceil(size / KB)) if size else 0


@dataclass
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str
    include: tuple[str, ...] = ()


@dataclass
class TableInfo:
    name: str
    keys: tuple[str, ...]
    indexes: list[Index] = field(default_factory=list)

    def index_entry(self, index: Index, item: dict | None) -> dict | None:
        if not item or any(k not in item for k in index.keys):
            return None
        names = set(index.keys) | set(self.keys)
        if index.projection == "ALL":
            names = set(item)
        elif index.projection == "INCLUDE":
            names |= set(index.include)
        return {n: item[n] for n in names if n in item}


class WriteMeter:
    """Bills every write a hooked client makes, per phase (``meter.phase = "sweep"``)."""

    def __init__(self, client: Any, raw: Any) -> None:
        self.raw = raw
        self.tables: dict[str, TableInfo] = {}
        self.phase = "event"
        self.wcu: dict[str, float] = defaultdict(float)
        self.requests: dict[str, int] = defaultdict(int)
        self.by_table: dict[tuple[str, str], float] = defaultdict(float)
        #: write requests per (phase, table) that wrote an item of that table (a transaction counts once per table)
        self.write_requests: dict[tuple[str, str], int] = defaultdict(int)
        self.rru: dict[str, float] = defaultdict(float)
        self.index_wcu: dict[str, float] = defaultdict(float)  # the part of ``wcu`` spent on index entries
        self.aws_seconds = 0.0  # time inside DynamoDB calls (moto here), to tell our own CPU apart
        self._pending: list[tuple[str, dict, dict | None, int]] = []
        self._started = 0.0
        self._consistent = False
        client.meta.events.register("before-parameter-build.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _info(self, table: str) -> TableInfo:
        if table not in self.tables:
            d = self.raw.describe_table(TableName=table)["Table"]
            keys = tuple(k["AttributeName"] for k in d["KeySchema"])
            indexes = [Index(i["IndexName"], tuple(k["AttributeName"] for k in i["KeySchema"]),
                             i["Projection"]["ProjectionType"], tuple(i["Projection"].get("NonKeyAttributes", [])))
                       for i in d.get("GlobalSecondaryIndexes", [])]
            self.tables[table] = TableInfo(table, keys, indexes)
        return self.tables[table]

    def _get(self, table: str, key: dict) -> dict | None:
        return self.raw.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def _key(self, table: str, item_or_key: dict) -> dict:
        return {k: item_or_key[k] for k in self._info(table).keys}

    def _writes(self, operation: str, params: dict) -> list[tuple[str, dict, int]]:
        """(table, key, multiplier) of every item a write request touches."""
        if operation in ("PutItem",):
            return [(params["TableName"], self._key(params["TableName"], params["Item"]), 1)]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(params["TableName"], params["Key"], 1)]
        if operation == "TransactWriteItems":
            out = []
            for t in params["TransactItems"]:
                (kind, body), = t.items()
                if kind == "ConditionCheck":
                    continue  # billed as a read
                key = body["Item"] if kind == "Put" else body["Key"]
                out.append((body["TableName"], self._key(body["TableName"], key), 2))
            return out
        if operation == "BatchWriteItem":
            out = []
            for table, requests in params["RequestItems"].items():
                for r in requests:
                    key = r["PutRequest"]["Item"] if "PutRequest" in r else r["DeleteRequest"]["Key"]
                    out.append((table, self._key(table, key), 1))
            return out
        return []

    def _before(self, model, params, **_):
        self._started = time.perf_counter()  # from here to the end of _after: the call and this metering
        self.requests[self.phase] += 1
        self._consistent = bool(params.get("ConsistentRead")) or any(
            r.get("ConsistentRead") for r in (params.get("RequestItems") or {}).values() if isinstance(r, dict))
        self._pending = [(t, k, self._get(t, k), m) for t, k, m in self._writes(model.name, params)]

    def _reads(self, operation: str, parsed: dict) -> None:
        """Read units: 4 KB per unit, strongly consistent reads twice eventually consistent ones;
        GetItem/BatchGetItem per item, Query per page (its items summed)."""
        per = 1.0 if self._consistent else 0.5
        if operation == "GetItem":
            self.rru[self.phase] += per * max(1, math.ceil(item_size(parsed.get("Item")) / (4 * KB)))
        elif operation == "BatchGetItem":
            for items in (parsed.get("Responses") or {}).values():
                for item in items:
                    self.rru[self.phase] += per * max(1, math.ceil(item_size(item) / (4 * KB)))
        elif operation in ("Query", "Scan"):
            size = sum(item_size(i) for i in parsed.get("Items") or [])
            self.rru[self.phase] += per * max(1, math.ceil(size / (4 * KB)))

    def _after(self, model, http_response, parsed, **_):
        try:
            self._bill(model, http_response, parsed)
        finally:
            self.aws_seconds += time.perf_counter() - self._started

    def _bill(self, model, http_response, parsed) -> None:
        if http_response.status_code < 300:
            self._reads(model.name, parsed)
        if http_response.status_code >= 300 or not self._pending:
            self._pending = []
            return
        for table in {t for t, _, _, _ in self._pending}:
            self.write_requests[(self.phase, table)] += 1
        for table, key, old, multiplier in self._pending:
            new = self._get(table, key)
            cost = units(max(item_size(old), item_size(new))) * multiplier
            info = self._info(table)
            for index in info.indexes:
                before, after = info.index_entry(index, old), info.index_entry(index, new)
                if before is None and after is None:
                    continue
                moved = before is not None and after is not None and any(before[k] != after[k] for k in index.keys)
                index_cost = 0
                if after is not None and before != after:
                    index_cost += units(item_size(after) + 100)
                if before is not None and (after is None or moved):
                    index_cost += units(item_size(before) + 100)
                cost += index_cost
                self.index_wcu[self.phase] += index_cost
            self.wcu[self.phase] += cost
            self.by_table[(self.phase, table)] += cost
        self._pending = []
