"""Profile storage in DynamoDB: :class:`DynamoDBProfileStore` implements the
:class:`~segmentation.service.ports.ProfileStore` port and is the only code that knows the table layout.

Layout (one table each, names from template.yaml through the environment):

* profiles     ``profile_id`` -> ``version`` (N), ``state`` (B, the profile as zlib-compressed JSON
  without its id), and when anything is due: ``next_due_at`` (N) + ``due_shard`` (S), the keys of
  the sparse, keys-only ``DueIndex``
* aliases      ``alias`` (e.g. ``email#ana@example.com``) -> ``profile_id``
* memberships  ``segment_id`` + ``profile_id`` -> ``entered_at``, ``version``; and the segment's
  size as counters sharded over ``#size#<segment_id>`` + ``<shard>`` so that no single item
  takes every write of a popular segment; each counter also holds ``last_change_at``.
* history      ``profile_id`` + ``seq`` (``<at>#<version>#<segment_id>``) -> ``change``, ``at``,
  ``cause``, ``version``, ``expires`` (TTL): append-only, written in the membership's transaction.
* tombstones   in the aliases table: ``erased#<sha256 of an alias>`` -> ``erased_at``. Erasure leaves
  only these, so that a webhook about the erased person that arrives late is recognised and dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..domain.profile import MembershipChange, Profile, due_entry
from ..service.ports import (
    ConcurrentUpdateError,
    HistoryPage,
    InvalidCursorError,
    LoadedProfile,
    MembersPage,
    SegmentStats,
)

__all__ = ["ConcurrentUpdateError", "DynamoDBProfileStore", "HistoryPage", "InvalidCursorError", "LoadedProfile",
           "MembersPage", "SegmentStats", "decode_state", "encode_state", "inflate_state", "tombstone_key"]

SIZE_SHARDS = 8
DUE_INDEX = "DueIndex"
SIZE_PREFIX = "#size#"
FAMILY_PREFIX = "#family#"
TOMBSTONE_PREFIX = "erased#"
TRANSACTION_LIMIT = 100
BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100


def tombstone_key(alias: str) -> str:
    """The only trace an erasure keeps of an identifier: its SHA-256 (see docs/api.md, Erasure)."""
    return TOMBSTONE_PREFIX + hashlib.sha256(alias.encode()).hexdigest()


def _shard(profile_id: str) -> str:
    return str(zlib.crc32(profile_id.encode()) % SIZE_SHARDS)


#: Preset dictionaries the state is compressed with, by the id zlib writes into the stream (Adler-32
#: of the dictionary). Each is a stored format: kept forever, never edited (tools/state_dictionary.py).
_DICTIONARY_FILES = ("state_dictionary_v1.json", "state_dictionary_v2.json")
_dictionaries: dict[int, bytes] = {}


def _dictionary(dict_id: int | None = None) -> bytes:
    """The dictionary with ``dict_id``, or the newest (which new writes use)."""
    if not _dictionaries:
        for name in _DICTIONARY_FILES:  # oldest first
            data = (Path(__file__).parent / name).read_bytes()
            _dictionaries[zlib.adler32(data)] = data
    if dict_id is None:
        dict_id = list(_dictionaries)[-1]
    if dict_id not in _dictionaries:
        raise ValueError(f"profile state compressed with an unknown dictionary ({dict_id:#010x}): written by a newer version?")
    return _dictionaries[dict_id]


def encode_state(profile: Profile) -> bytes:
    """The profile as zlib-compressed JSON (DynamoDB Binary), with a preset dictionary of the names
    and structure every profile repeats: about a quarter smaller than plain zlib, which is what
    keeps most profile writes under the next kilobyte of write units (docs/architecture.md, "Cost")."""
    out = zlib.compressobj(6, zdict=_dictionary())
    # the id is the item's key: not again in the state
    return out.compress(profile.model_dump_json(exclude={"version", "profile_id"}, exclude_none=True).encode()) + out.flush()


def inflate_state(data: bytes) -> bytes:
    """Stored state back to its JSON, whichever dictionary (or none, before dictionaries) wrote it."""
    if len(data) > 6 and data[1] & 0x20:  # zlib's FDICT flag: a dictionary id follows the header
        reader = zlib.decompressobj(zdict=_dictionary(int.from_bytes(data[2:6], "big")))
        return reader.decompress(data) + reader.flush()
    return zlib.decompress(data)


def decode_state(data: bytes, profile_id: str) -> Profile:
    """The stored state of the profile ``profile_id`` (the item's key; states written before kept it
    inside too)."""
    raw = inflate_state(data)
    if not raw.startswith(b'{"profile_id":'):
        raw = b'{"profile_id":' + json.dumps(profile_id).encode() + (b"," + raw[1:] if raw != b"{}" else b"}")
    return Profile.model_validate_json(raw)


class DynamoDBProfileStore:
    """Profiles in DynamoDB through the low-level client (no resource layer: faster cold start)."""

    def __init__(self, client: Any, profiles_table: str, aliases_table: str, memberships_table: str,
                 due_shards: int = 32, history_table: str | None = None, history_retention_s: int = 400 * 86400):
        self.client = client
        self.profiles = profiles_table
        self.aliases = aliases_table
        self.memberships = memberships_table
        self.due_shards = due_shards
        self.history = history_table
        self.history_retention_s = history_retention_s
        #: family values this store has registered (or seen registered): registrations are never
        #: removed, so one per value and execution environment is enough (docs/architecture.md, "Cost")
        self._families_known: set[str] = set()

    def due_shard(self, profile_id: str) -> str:
        return str(zlib.crc32(profile_id.encode()) % self.due_shards)

    # -- reads ------------------------------------------------------------------------------
    def load(self, alias_keys: list[str]) -> LoadedProfile:
        owners: dict[str, str] = {}
        erased: dict[str, int] = {}
        if alias_keys:
            # The tombstones of the same identifiers come in the same request: no extra read.
            unique = list(dict.fromkeys(alias_keys))
            hashed = {tombstone_key(a): a for a in unique}
            keys = [{"alias": {"S": a}} for a in [*unique, *hashed]]
            request = {self.aliases: {"Keys": keys, "ConsistentRead": True}}
            while request:
                out = self.client.batch_get_item(RequestItems=request)
                for item in out["Responses"].get(self.aliases, []):
                    key = item["alias"]["S"]
                    if key in hashed:
                        erased[hashed[key]] = int(item["erased_at"]["N"])
                    else:
                        owners[key] = item["profile_id"]["S"]
                request = out.get("UnprocessedKeys") or None
        owner = next((owners[a] for a in alias_keys if a in owners), None)
        return LoadedProfile(profile=self.get(owner) if owner else None, alias_owners=owners, erased_at=erased)

    def get(self, profile_id: str) -> Profile | None:
        out = self.client.get_item(
            TableName=self.profiles, Key={"profile_id": {"S": profile_id}}, ConsistentRead=True
        )
        item = out.get("Item")
        return self._from_item(item) if item else None

    def get_many(self, profile_ids: Sequence[str]) -> dict[str, Profile]:
        out: dict[str, Profile] = {}
        unique = list(dict.fromkeys(profile_ids))
        for i in range(0, len(unique), BATCH_GET_LIMIT):
            keys = [{"profile_id": {"S": pid}} for pid in unique[i:i + BATCH_GET_LIMIT]]
            request = {self.profiles: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.profiles, []):
                    profile = self._from_item(item)
                    out[profile.profile_id] = profile
                request = answer.get("UnprocessedKeys") or None
        return out

    @staticmethod
    def _from_item(item: dict) -> Profile:
        profile = decode_state(item["state"]["B"], item["profile_id"]["S"])
        profile.version = int(item["version"]["N"])
        profile._indexed_due = int(item["next_due_at"]["N"]) if "next_due_at" in item else None
        return profile

    def find(self, alias_key: str) -> Profile | None:
        out = self.client.get_item(TableName=self.aliases, Key={"alias": {"S": alias_key}})
        item = out.get("Item")
        return self.get(item["profile_id"]["S"]) if item else None

    # -- writes -----------------------------------------------------------------------------
    def _profile_put(self, profile: Profile) -> dict:
        item: dict[str, Any] = {
            "profile_id": {"S": profile.profile_id},
            "version": {"N": str(profile.version + 1)},
            "state": {"B": encode_state(profile)},
        }
        due = due_entry(profile, profile._indexed_due)  # parked changes: at once; a later due may keep the entry
        if due is not None:
            # Only due profiles are in DueIndex (sparse), spread over shards.
            item["next_due_at"] = {"N": str(due)}
            item["due_shard"] = {"S": self.due_shard(profile.profile_id)}
        put: dict[str, Any] = {"TableName": self.profiles, "Item": item}
        if profile.version == 0:
            put["ConditionExpression"] = "attribute_not_exists(profile_id)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = {":v": {"N": str(profile.version)}}
        return put

    def _membership_writes(self, changes: list[MembershipChange], sizes: dict | None = None) -> list[dict]:
        """Membership puts/deletes for ``changes``; size deltas are added to ``sizes`` (one counter
        item may be touched by several changes of one transaction, so they are summed, with the
        latest instant of change)."""
        sizes = {} if sizes is None else sizes
        writes = []
        for c in changes:
            key = {"segment_id": {"S": c.segment_id}, "profile_id": {"S": c.profile_id}}
            if c.change == "entered":
                writes.append({"Put": {"TableName": self.memberships, "Item": {
                    **key, "entered_at": {"N": str(c.at)}, "version": {"N": str(c.version)}}}})
                if ":" in c.segment_id and c.segment_id not in self._families_known:
                    # a family instance: register its value so the API can list it (once per value and
                    # execution environment: the put is idempotent and a registration is never removed)
                    family, value = c.segment_id.split(":", 1)
                    writes.append({"Put": {"TableName": self.memberships, "Item": {
                        "segment_id": {"S": FAMILY_PREFIX + family}, "profile_id": {"S": value}}}})
            else:
                writes.append({"Delete": {"TableName": self.memberships, "Key": key}})
            _add_size(sizes, c.segment_id, c.profile_id, 1 if c.change == "entered" else -1, c.at)
        return writes

    def _size_updates(self, sizes: dict) -> list[dict]:
        return [self._size_update(seg, shard, delta, at) for (seg, shard), (delta, at) in sorted(sizes.items())]

    def _size_update(self, segment_id: str, shard: str, delta: int, at: int) -> dict:
        return {"Update": {
            "TableName": self.memberships,
            "Key": {"segment_id": {"S": SIZE_PREFIX + segment_id}, "profile_id": {"S": shard}},
            "UpdateExpression": "ADD size_count :d SET last_change_at = :at",
            "ExpressionAttributeValues": {":d": {"N": str(delta)}, ":at": {"N": str(at)}},
        }}

    def _history_put(self, c: MembershipChange) -> dict:
        return {"Put": {"TableName": self.history, "Item": {
            "profile_id": {"S": c.profile_id}, "seq": {"S": f"{c.at:010d}#{c.version:010d}#{c.segment_id}"},
            "segment_id": {"S": c.segment_id}, "change": {"S": c.change}, "at": {"N": str(c.at)},
            "cause": {"S": c.cause}, "version": {"N": str(c.version)},
            "expires": {"N": str(c.at + self.history_retention_s)},
        }}}

    def _batch_write(self, table: str, requests: list[dict]) -> None:
        """BatchWriteItem in chunks of 25, retrying what DynamoDB leaves unprocessed."""
        for i in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending = {table: requests[i:i + BATCH_WRITE_LIMIT]}
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or None

    def save(self, profile: Profile, new_aliases: list[str], changes: list[MembershipChange],
             absorbed: Sequence[Profile] = (), removed_aliases: Sequence[str] = (),
             ended: Sequence[MembershipChange] = ()) -> None:
        changes = [c for c in changes if c.segment_id]  # a ProfileUpdated notice is no membership
        put = self._profile_put(profile)
        cc = self.client.exceptions
        if not new_aliases and not changes and not absorbed and not removed_aliases:
            try:
                self.client.put_item(**put)
            except cc.ConditionalCheckFailedException:
                raise ConcurrentUpdateError(profile.profile_id) from None
        else:
            me = {":p": {"S": profile.profile_id}}
            writes = [{"Put": put}]
            sizes: dict[tuple[str, str], int] = {}
            for alias in new_aliases:
                writes.append({"Put": {
                    "TableName": self.aliases,
                    "Item": {"alias": {"S": alias}, "profile_id": {"S": profile.profile_id}},
                    "ConditionExpression": "attribute_not_exists(alias) OR profile_id = :p",
                    "ExpressionAttributeValues": me,
                }})
            for alias in removed_aliases:
                # The alias still points at whichever profile held it before this write.
                holder = next((o.profile_id for o in absorbed if alias in o.aliases), profile.profile_id)
                writes.append({"Delete": {"TableName": self.aliases, "Key": {"alias": {"S": alias}},
                                          "ConditionExpression": "attribute_not_exists(alias) OR profile_id = :h",
                                          "ExpressionAttributeValues": {":h": {"S": holder}}}})
            for other in absorbed:
                # The other profile goes; its aliases now lead here; its memberships end.
                writes.append({"Delete": {
                    "TableName": self.profiles, "Key": {"profile_id": {"S": other.profile_id}},
                    "ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": str(other.version)}},
                }})
                for alias in other.aliases:
                    if alias in removed_aliases:
                        continue  # given up by this write (an email change): deleted above instead
                    writes.append({"Put": {
                        "TableName": self.aliases,
                        "Item": {"alias": {"S": alias}, "profile_id": {"S": profile.profile_id}},
                        "ConditionExpression": "profile_id = :o",
                        "ExpressionAttributeValues": {":o": {"S": other.profile_id}},
                    }})
                for segment_id in other.segments:
                    writes.append({"Delete": {"TableName": self.memberships, "Key": {
                        "segment_id": {"S": segment_id}, "profile_id": {"S": other.profile_id}}}})
                    _add_size(sizes, segment_id, other.profile_id, -1, profile.evaluated_at or 0)
            writes += self._membership_writes(changes, sizes)
            writes += self._size_updates(sizes)
            if len(writes) > TRANSACTION_LIMIT:
                raise ValueError(f"one profile write touches {len(writes)} items (limit {TRANSACTION_LIMIT})")
            history = [self._history_put(c) for c in [*changes, *ended]] if self.history else []
            # History goes in the same transaction; only a write too large for one transaction
            # (a merge of profiles with many memberships) appends it right after instead.
            inline = len(writes) + len(history) <= TRANSACTION_LIMIT
            try:
                self.client.transact_write_items(TransactItems=writes + history if inline else writes)
            except cc.TransactionCanceledException:
                raise ConcurrentUpdateError(profile.profile_id) from None
            self._families_known.update(c.segment_id for c in changes if c.change == "entered" and ":" in c.segment_id)
            if not inline:
                self._batch_write(self.history, [{"PutRequest": {"Item": h["Put"]["Item"]}} for h in history])
        profile.version += 1
        profile._indexed_due = due_entry(profile, profile._indexed_due)

    def erase(self, profile: Profile, at: int) -> None:
        # History first: if anything later fails, a retry still finds the profile and erases again.
        for pid in (profile.profile_id, *profile.merged_from):
            self._delete_history(pid)
        writes: list[dict] = []
        for alias in profile.aliases:
            writes.append({"Delete": {"TableName": self.aliases, "Key": {"alias": {"S": alias}},
                                      "ConditionExpression": "attribute_not_exists(alias) OR profile_id = :p",
                                      "ExpressionAttributeValues": {":p": {"S": profile.profile_id}}}})
            writes.append({"Put": {"TableName": self.aliases, "Item": self._tombstone(alias, at)}})
        for segment_id in profile.segments:
            writes.append({"Delete": {"TableName": self.memberships, "Key": {
                "segment_id": {"S": segment_id}, "profile_id": {"S": profile.profile_id}}}})
            writes.append(self._size_update(segment_id, _shard(profile.profile_id), -1, at))
        delete_profile = {"Delete": {
            "TableName": self.profiles, "Key": {"profile_id": {"S": profile.profile_id}},
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": str(profile.version)}},
        }}
        # The profile goes last, in the final transaction: if anything before fails, a retry
        # still finds the profile and its lists of aliases and memberships.
        chunks = [writes[i:i + TRANSACTION_LIMIT - 1] for i in range(0, len(writes), TRANSACTION_LIMIT - 1)] or [[]]
        chunks[-1].append(delete_profile)
        for chunk in chunks:
            try:
                self.client.transact_write_items(TransactItems=chunk)
            except self.client.exceptions.TransactionCanceledException:
                raise ConcurrentUpdateError(profile.profile_id) from None

    @staticmethod
    def _tombstone(alias: str, at: int) -> dict:
        return {"alias": {"S": tombstone_key(alias)}, "erased_at": {"N": str(at)}}

    def tombstone(self, aliases: list[str], at: int) -> None:
        self._batch_write(self.aliases, [{"PutRequest": {"Item": self._tombstone(a, at)}}
                                         for a in dict.fromkeys(aliases)])

    def _delete_history(self, profile_id: str) -> None:
        if not self.history:
            return
        kwargs: dict[str, Any] = {
            "TableName": self.history, "KeyConditionExpression": "profile_id = :p",
            "ExpressionAttributeValues": {":p": {"S": profile_id}}, "ProjectionExpression": "profile_id, seq",
        }
        while True:
            out = self.client.query(**kwargs)
            self._batch_write(self.history, [{"DeleteRequest": {"Key": i}} for i in out["Items"]])
            if "LastEvaluatedKey" not in out:
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def history_page(self, profile: Profile, now: int, limit: int, cursor: str | None) -> HistoryPage:
        """The profile's membership changes within the retention, newest first, including those of
        the profiles merged into it (one time-ordered stream; ``cursor`` continues it)."""
        ids = [profile.profile_id, *profile.merged_from]
        positions = _decode_history_cursor(cursor, ids) if cursor else {}
        since = f"{max(0, now - self.history_retention_s):010d}"
        fetched: dict[str, tuple[list[dict], bool]] = {}
        for pid in ids:
            pos = positions.get(pid, "")
            if pos is None:
                continue  # this part of the stream is used up
            kwargs: dict[str, Any] = {
                "TableName": self.history, "KeyConditionExpression": "profile_id = :p AND seq > :since",
                "ExpressionAttributeValues": {":p": {"S": pid}, ":since": {"S": since}},
                "ScanIndexForward": False, "Limit": limit, "ConsistentRead": True,
            }
            if pos:
                kwargs["ExclusiveStartKey"] = {"profile_id": {"S": pid}, "seq": {"S": pos}}
            out = self.client.query(**kwargs)
            fetched[pid] = (out["Items"], "LastEvaluatedKey" in out)
        merged = sorted(((i["seq"]["S"], pid, i) for pid, (items, _) in fetched.items() for i in items), reverse=True)
        page = merged[:limit]
        new_positions = dict(positions)
        for seq, pid, _ in page:
            new_positions[pid] = seq
        more = len(merged) > limit
        for pid, (items, has_more) in fetched.items():
            taken = sum(1 for _, p, _ in page if p == pid)
            if taken == len(items) and not has_more:
                new_positions[pid] = None  # nothing left under this id
            else:
                more = True
        changes = [{"profile_id": pid, "segment_id": i["segment_id"]["S"], "change": i["change"]["S"],
                    "at": int(i["at"]["N"]), "cause": i["cause"]["S"], "version": int(i["version"]["N"])}
                   for _, pid, i in page]
        return HistoryPage(changes, _encode_history_cursor(profile.profile_id, new_positions) if more else None)

    # -- the due index and scans -------------------------------------------------------------
    def due_page(self, shard: int, now: int, limit: int, start: dict | None) -> tuple[list[Profile], dict | None]:
        """Profiles of one shard whose next_due_at <= now, oldest first: their keys from DueIndex,
        then the profiles themselves in one BatchGetItem.

        The index holds keys only (KEYS_ONLY): a profile write that does not move its due instant
        does not write the index at all, and one that does writes a ~150-byte entry, not the whole
        state again (docs/architecture.md, "Cost"). The index is eventually consistent: a profile
        may since have become due later, which the sweep checks again on the item read.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.profiles, "IndexName": DUE_INDEX,
            "KeyConditionExpression": "due_shard = :s AND next_due_at <= :now",
            "ExpressionAttributeValues": {":s": {"S": str(shard)}, ":now": {"N": str(now)}},
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        out = self.client.query(**kwargs)
        ids = [i["profile_id"]["S"] for i in out["Items"]]
        found = self.get_many(ids) if ids else {}
        return [found[pid] for pid in ids if pid in found], out.get("LastEvaluatedKey")

    def move_due(self, profile: Profile) -> None:
        due = due_entry(profile, None)
        update: dict[str, Any] = {
            "TableName": self.profiles, "Key": {"profile_id": {"S": profile.profile_id}},
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": {":v": {"N": str(profile.version)}},
        }
        if due is None:
            update["UpdateExpression"] = "REMOVE next_due_at, due_shard"
        else:
            update["UpdateExpression"] = "SET next_due_at = :d, due_shard = :s"
            update["ExpressionAttributeValues"].update({":d": {"N": str(due)},
                                                        ":s": {"S": self.due_shard(profile.profile_id)}})
        try:
            self.client.update_item(**update)
        except self.client.exceptions.ConditionalCheckFailedException:
            return  # written meanwhile: that write placed the entry
        profile._indexed_due = due

    def scan_page(self, segment: int, total: int, limit: int, start: dict | None) -> tuple[list[Profile], dict | None]:
        """One page of one parallel scan segment over every profile."""
        kwargs: dict[str, Any] = {"TableName": self.profiles, "Segment": segment, "TotalSegments": total, "Limit": limit}
        if start:
            kwargs["ExclusiveStartKey"] = start
        out = self.client.scan(**kwargs)
        return [self._from_item(i) for i in out["Items"]], out.get("LastEvaluatedKey")

    def owners_with_alias_prefix(self, prefix: str) -> set[str]:
        """Profile ids holding an alias that starts with ``prefix`` (a scan: for rare, shop-wide work)."""
        owners, kwargs = set(), {
            "TableName": self.aliases, "FilterExpression": "begins_with(alias, :p)",
            "ExpressionAttributeValues": {":p": {"S": prefix}}, "ProjectionExpression": "profile_id",
        }
        while True:
            out = self.client.scan(**kwargs)
            owners.update(i["profile_id"]["S"] for i in out["Items"])
            if "LastEvaluatedKey" not in out:
                return owners
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def count_profiles(self) -> int:
        """Approximate (DynamoDB refreshes it about every six hours; exact under moto)."""
        return int(self.client.describe_table(TableName=self.profiles)["Table"].get("ItemCount", 0))

    def record_progress(self, job: str, part: str, scanned: int, updated: int, done: bool) -> None:
        self.client.put_item(TableName=self.memberships, Item={
            "segment_id": {"S": f"#job#{job}"}, "profile_id": {"S": part},
            "scanned": {"N": str(scanned)}, "updated": {"N": str(updated)}, "done": {"BOOL": done},
        })

    def progress(self, job: str) -> list[dict]:
        out = self.client.query(TableName=self.memberships, KeyConditionExpression="segment_id = :s",
                                ExpressionAttributeValues={":s": {"S": f"#job#{job}"}}, ConsistentRead=True)
        return [{"part": i["profile_id"]["S"], "scanned": int(i["scanned"]["N"]), "updated": int(i["updated"]["N"]),
                 "done": i["done"]["BOOL"]} for i in out["Items"]]

    # -- segments ---------------------------------------------------------------------------
    def segment_size(self, segment_id: str) -> int:
        return self.segment_stats(segment_id).size

    def segment_stats(self, segment_id: str) -> SegmentStats:
        """Size (the sum of the sharded counters) and the latest instant a membership changed."""
        total, last = 0, None
        kwargs: dict[str, Any] = {
            "TableName": self.memberships,
            "KeyConditionExpression": "segment_id = :s",
            "ExpressionAttributeValues": {":s": {"S": SIZE_PREFIX + segment_id}},
            "ConsistentRead": True,
        }
        while True:
            out = self.client.query(**kwargs)
            for i in out["Items"]:
                total += int(i.get("size_count", {"N": "0"})["N"])
                if "last_change_at" in i:
                    last = max(last or 0, int(i["last_change_at"]["N"]))
            if "LastEvaluatedKey" not in out:
                return SegmentStats(total, last)
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def family_values(self, family: str) -> list[str]:
        """Every value a family has had members for (``category-browsers`` -> categories)."""
        values, kwargs = [], {
            "TableName": self.memberships, "KeyConditionExpression": "segment_id = :s",
            "ExpressionAttributeValues": {":s": {"S": FAMILY_PREFIX + family}},
        }
        while True:
            out = self.client.query(**kwargs)
            values += [i["profile_id"]["S"] for i in out["Items"]]
            if "LastEvaluatedKey" not in out:
                self._families_known.update(f"{family}:{v}" for v in values)
                return values
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def all_members(self, segment_id: str) -> set[str]:
        """Every member of a segment (reads the whole segment: for analysis, not the hot path)."""
        out: set[str] = set()
        cursor = None
        while True:
            page = self.members(segment_id, 1000, cursor)
            out.update(page.profile_ids)
            if not page.cursor:
                return out
            cursor = page.cursor

    def members(self, segment_id: str, limit: int, cursor: str | None) -> MembersPage:
        kwargs: dict[str, Any] = {
            "TableName": self.memberships,
            "KeyConditionExpression": "segment_id = :s",
            "ExpressionAttributeValues": {":s": {"S": segment_id}},
            "ProjectionExpression": "profile_id",
            "Limit": limit,
            "ConsistentRead": True,  # pages agree with the size counters, written in the same transactions
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = {
                "segment_id": {"S": segment_id}, "profile_id": {"S": _decode_cursor(cursor, segment_id)}
            }
        out = self.client.query(**kwargs)
        ids = [i["profile_id"]["S"] for i in out["Items"]]
        last = out.get("LastEvaluatedKey")
        return MembersPage(ids, _encode_cursor(segment_id, last["profile_id"]["S"]) if last else None)


def _add_size(sizes: dict, segment_id: str, profile_id: str, delta: int, at: int) -> None:
    key = (segment_id, _shard(profile_id))
    total, last = sizes.get(key, (0, 0))
    sizes[key] = (total + delta, max(last, at))


def _encode_history_cursor(profile_id: str, positions: dict[str, str | None]) -> str:
    raw = json.dumps({"p": profile_id, "at": positions}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_history_cursor(cursor: str, ids: list[str]) -> dict[str, str | None]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        positions = data["at"]
        ok = data["p"] == ids[0] and isinstance(positions, dict) and all(
            k in ids and (v is None or isinstance(v, str)) for k, v in positions.items())
    except (binascii.Error, ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise InvalidCursorError("cursor is not one this API issued for this profile")
    return positions


def _encode_cursor(segment_id: str, profile_id: str) -> str:
    raw = json.dumps([segment_id, profile_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, segment_id: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        seg, pid = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidCursorError("cursor is not one this API issued") from None
    if seg != segment_id or not isinstance(pid, str) or not pid:
        raise InvalidCursorError("cursor belongs to another segment")
    return pid
