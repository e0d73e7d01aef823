"""Profile storage. :class:`ProfileRepository` states the contract;
:class:`DynamoDBProfileRepository` is the only code that knows the table layout.

Layout (one table each, names from template.yaml through the environment):

* profiles     ``profile_id`` -> ``version`` (N), ``state`` (B, the profile as zlib-compressed JSON),
  ``email`` (S), and when anything is due: ``next_due_at`` (N) + ``due_shard`` (S), the keys of
  the sparse ``DueIndex`` (which projects ``state`` and ``version``, so the sweep reads each due
  profile once)
* aliases      ``alias`` (e.g. ``email#ana@example.com``) -> ``profile_id``
* memberships  ``segment_id`` + ``profile_id`` -> ``entered_at``, ``version``; and the segment's
  size as counters sharded over ``#size#<segment_id>`` + ``<shard>`` so that no single item
  takes every write of a popular segment.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..domain.profile import MembershipChange, Profile

SIZE_SHARDS = 8
DUE_INDEX = "DueIndex"
SIZE_PREFIX = "#size#"
FAMILY_PREFIX = "#family#"
TRANSACTION_LIMIT = 100


class ConcurrentUpdateError(Exception):
    """Another writer changed the profile (or claimed one of its aliases) first: reload and retry."""


class InvalidCursorError(ValueError):
    """A pagination cursor that this API did not issue."""


@dataclass
class LoadedProfile:
    """A profile as read for an update, with the alias owners found for the event's identities."""

    profile: Profile | None
    alias_owners: dict[str, str] = field(default_factory=dict)


@dataclass
class MembersPage:
    profile_ids: list[str]
    cursor: str | None


class ProfileRepository(ABC):
    @abstractmethod
    def load(self, alias_keys: list[str]) -> LoadedProfile:
        """Find the profile owning any of ``alias_keys`` (the first key that has an owner wins)."""

    @abstractmethod
    def get(self, profile_id: str) -> Profile | None: ...

    @abstractmethod
    def find(self, alias_key: str) -> Profile | None: ...

    @abstractmethod
    def save(self, profile: Profile, new_aliases: list[str], changes: list[MembershipChange],
             absorbed: list[Profile] = (), removed_aliases: list[str] = ()) -> None:
        """Write ``profile`` as version ``profile.version + 1`` if the stored version is still
        ``profile.version``, together with its new aliases and membership changes, atomically.

        ``absorbed``: profiles merged into this one, deleted in the same transaction (each at the
        version read), their aliases re-pointed here and their memberships ended.
        ``removed_aliases``: aliases this profile gives up (an email change).

        Raises :class:`ConcurrentUpdateError` when another writer got there first.
        On success ``profile.version`` is incremented.
        """

    @abstractmethod
    def erase(self, profile: Profile) -> None:
        """Delete the profile, its aliases and its memberships."""

    @abstractmethod
    def segment_size(self, segment_id: str) -> int: ...

    @abstractmethod
    def family_values(self, family: str) -> list[str]:
        """Every value a family has had members for (``category-browsers`` -> categories)."""

    @abstractmethod
    def members(self, segment_id: str, limit: int, cursor: str | None) -> MembersPage: ...


def _shard(profile_id: str) -> str:
    return str(zlib.crc32(profile_id.encode()) % SIZE_SHARDS)


def encode_state(profile: Profile) -> bytes:
    """The profile as zlib-compressed JSON (DynamoDB Binary): compact state stays a few KB."""
    return zlib.compress(profile.model_dump_json(exclude={"version"}, exclude_none=True).encode(), 6)


def decode_state(data: bytes) -> Profile:
    return Profile.model_validate_json(zlib.decompress(data))


class DynamoDBProfileRepository(ProfileRepository):
    """Profiles in DynamoDB through the low-level client (no resource layer: faster cold start)."""

    def __init__(self, client: Any, profiles_table: str, aliases_table: str, memberships_table: str,
                 due_shards: int = 32):
        self.client = client
        self.profiles = profiles_table
        self.aliases = aliases_table
        self.memberships = memberships_table
        self.due_shards = due_shards

    def due_shard(self, profile_id: str) -> str:
        return str(zlib.crc32(profile_id.encode()) % self.due_shards)

    # -- reads ------------------------------------------------------------------------------
    def load(self, alias_keys: list[str]) -> LoadedProfile:
        owners: dict[str, str] = {}
        if alias_keys:
            keys = [{"alias": {"S": a}} for a in dict.fromkeys(alias_keys)]
            request = {self.aliases: {"Keys": keys, "ConsistentRead": True}}
            while request:
                out = self.client.batch_get_item(RequestItems=request)
                for item in out["Responses"].get(self.aliases, []):
                    owners[item["alias"]["S"]] = item["profile_id"]["S"]
                request = out.get("UnprocessedKeys") or None
        owner = next((owners[a] for a in alias_keys if a in owners), None)
        return LoadedProfile(profile=self.get(owner) if owner else None, alias_owners=owners)

    def get(self, profile_id: str) -> Profile | None:
        out = self.client.get_item(
            TableName=self.profiles, Key={"profile_id": {"S": profile_id}}, ConsistentRead=True
        )
        item = out.get("Item")
        return self._from_item(item) if item else None

    @staticmethod
    def _from_item(item: dict) -> Profile:
        profile = decode_state(item["state"]["B"])
        profile.version = int(item["version"]["N"])
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
        if profile.email:
            item["email"] = {"S": profile.email}
        if profile.next_due_at is not None:
            # Only due profiles are in DueIndex (sparse), spread over shards.
            item["next_due_at"] = {"N": str(profile.next_due_at)}
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
        item may be touched by several changes of one transaction, so they are summed)."""
        sizes = {} if sizes is None else sizes
        writes = []
        for c in changes:
            key = {"segment_id": {"S": c.segment_id}, "profile_id": {"S": c.profile_id}}
            if c.change == "entered":
                writes.append({"Put": {"TableName": self.memberships, "Item": {
                    **key, "entered_at": {"N": str(c.at)}, "version": {"N": str(c.version)}}}})
                if ":" in c.segment_id:  # a family instance: register its value so the API can list it
                    family, value = c.segment_id.split(":", 1)
                    writes.append({"Put": {"TableName": self.memberships, "Item": {
                        "segment_id": {"S": FAMILY_PREFIX + family}, "profile_id": {"S": value}}}})
            else:
                writes.append({"Delete": {"TableName": self.memberships, "Key": key}})
            key = (c.segment_id, _shard(c.profile_id))
            sizes[key] = sizes.get(key, 0) + (1 if c.change == "entered" else -1)
        return writes

    def _size_updates(self, sizes: dict) -> list[dict]:
        return [self._size_update(seg, shard, delta) for (seg, shard), delta in sorted(sizes.items()) if delta]

    def _size_update(self, segment_id: str, shard: str, delta: int) -> dict:
        return {"Update": {
            "TableName": self.memberships,
            "Key": {"segment_id": {"S": SIZE_PREFIX + segment_id}, "profile_id": {"S": shard}},
            "UpdateExpression": "ADD size_count :d",
            "ExpressionAttributeValues": {":d": {"N": str(delta)}},
        }}

    def save(self, profile: Profile, new_aliases: list[str], changes: list[MembershipChange],
             absorbed: list[Profile] = (), removed_aliases: list[str] = ()) -> None:
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
                    key = (segment_id, _shard(other.profile_id))
                    sizes[key] = sizes.get(key, 0) - 1
            writes += self._membership_writes(changes, sizes)
            writes += self._size_updates(sizes)
            if len(writes) > TRANSACTION_LIMIT:
                raise ValueError(f"one profile write touches {len(writes)} items (limit {TRANSACTION_LIMIT})")
            try:
                self.client.transact_write_items(TransactItems=writes)
            except cc.TransactionCanceledException:
                raise ConcurrentUpdateError(profile.profile_id) from None
        profile.version += 1

    def erase(self, profile: Profile) -> None:
        writes: list[dict] = []
        for alias in profile.aliases:
            writes.append({"Delete": {"TableName": self.aliases, "Key": {"alias": {"S": alias}},
                                      "ConditionExpression": "attribute_not_exists(alias) OR profile_id = :p",
                                      "ExpressionAttributeValues": {":p": {"S": profile.profile_id}}}})
        for segment_id in profile.segments:
            writes.append({"Delete": {"TableName": self.memberships, "Key": {
                "segment_id": {"S": segment_id}, "profile_id": {"S": profile.profile_id}}}})
            writes.append(self._size_update(segment_id, _shard(profile.profile_id), -1))
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

    # -- the due index and scans -------------------------------------------------------------
    def due_page(self, shard: int, now: int, limit: int, start: dict | None) -> tuple[list[Profile], dict | None]:
        """Profiles of one shard whose next_due_at <= now, oldest first, read from DueIndex.

        The index is eventually consistent: a profile may be a little stale, which the version
        condition on the write catches.
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
        return [self._from_item(i) for i in out["Items"]], out.get("LastEvaluatedKey")

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
        total = 0
        kwargs: dict[str, Any] = {
            "TableName": self.memberships,
            "KeyConditionExpression": "segment_id = :s",
            "ExpressionAttributeValues": {":s": {"S": SIZE_PREFIX + segment_id}},
            "ConsistentRead": True,
        }
        while True:
            out = self.client.query(**kwargs)
            total += sum(int(i.get("size_count", {"N": "0"})["N"]) for i in out["Items"])
            if "LastEvaluatedKey" not in out:
                return total
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
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = {
                "segment_id": {"S": segment_id}, "profile_id": {"S": _decode_cursor(cursor, segment_id)}
            }
        out = self.client.query(**kwargs)
        ids = [i["profile_id"]["S"] for i in out["Items"]]
        last = out.get("LastEvaluatedKey")
        return MembersPage(ids, _encode_cursor(segment_id, last["profile_id"]["S"]) if last else None)


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
