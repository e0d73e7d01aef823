"""The ESP sync's Mailchimp client (issue 12): segment memberships as tags, traits as merge fields,
for one audience, in bulk, through the Marketing API v3.

Endpoints, in the order a :meth:`MailchimpClient.push` uses them:

1. ``GET /lists/{list}/merge-fields?count=1000`` once per client (cached), and ``POST
   /lists/{list}/merge-fields`` ``{"tag", "name", "type": "text"}`` for a merge tag the audience
   lacks: a member update naming an unknown merge tag is refused.
2. ``PUT /lists/{list}/members/{subscriber hash}`` (the hash is the MD5 of the lower-cased email, so
   no lookup is needed) with ``email_address``, ``status_if_new: "transactional"`` and
   ``merge_fields``, for every push that sets fields or adds a tag: it creates the member if needed
   (a tag can only go to a member of the audience) and writes the fields. Up to
   :data:`DIRECT_PUTS` pushes go as direct requests (one round trip each, for latency); more go as one
   ``POST /batches`` of PUT operations (several batches above :data:`BATCH_OPERATIONS`).
3. ``GET /lists/{list}/segments?type=static&count=1000`` once per client (cached for
   ``cache_ttl`` seconds): a tag is a static segment, found by name (case-insensitively, as
   Mailchimp compares tags); ``POST /lists/{list}/segments`` ``{"name", "static_segment": []}``
   creates a tag that does not exist yet.
4. ``POST /lists/{list}/segments/{id}`` with ``members_to_add`` / ``members_to_remove``: the tags of
   many members in one request, at most :data:`SEGMENT_CHUNK` (500) emails in each list per request,
   Mailchimp's limit.

:meth:`MailchimpClient.members` pages ``GET /lists/{list}/segments/{id}/members`` (1,000 per page,
with transactional, unsubscribed and cleaned members included: Mailchimp leaves them out by default).

**Never a subscription.** No request carries a ``status``; new members are created with
``status_if_new: "transactional"`` (never ``subscribed`` or ``pending``), which gives no marketing
consent. An existing member's status is never written, so an unsubscribed or cleaned member stays
so while its tags and merge fields change. Tags are not consent either. The bulk ``POST /lists/{list}``
("batch subscribe") is not used because it requires a ``status`` per member and would overwrite it.
``skip_merge_validation=true`` keeps an audience's *required* merge fields (an address, say) from
refusing the new transactional members the sync creates.

**Batches are asynchronous.** ``POST /batches`` only queues the operations: the client polls ``GET
/batches/{id}`` with growing sleeps until ``finished``, for at most ``batch_wait`` seconds; a batch
still running then raises :class:`DestinationUnavailableError`, so the whole push is sent again
later (it is desired state: applying it twice is harmless, and the tags step never runs before the
members exist). When operations errored, the results archive (``response_body_url``, a gzipped tar
of JSON files) says which: a 400 (an address Mailchimp refuses, such as one that "looks fake or
invalid") puts that email in :attr:`PushResult.failed`. If the archive URL is missing, errored
operations cannot be told apart: the emails whose tags then cannot be added (not in the audience)
are failed in the tags step, but a refused fields-only update goes unreported.

**Limits.** Mailchimp allows 10 simultaneous connections per account: the client sends its requests
one at a time (no threads) on a pool of at most 10 connections. 429 (with ``Retry-After``) and 5xx
are retried by :class:`~segmentation.infra.esp.http.JsonApi`, then raise
:class:`DestinationUnavailableError`; so do 401/403 (a bad key), a 404 on the audience, and any
answer this client does not understand. Every HTTP request, retries included, counts in
:attr:`PushResult.calls`.

Merge field values: ``None`` and ``""`` clear a field (``""``); booleans become ``"true"`` /
``"false"`` and lists or objects compact JSON (the merge fields this client creates are text).

Nothing is logged; the key and emails never appear in exception messages (a refusal's reason in
:attr:`PushResult.failed` has its email replaced by ``<email>``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from urllib3.exceptions import HTTPError, MaxRetryError

from ...service.ports import DestinationUnavailableError, Push, PushResult
from .http import JsonApi, Response

#: at most this many member updates go as direct PUTs; more go as a batch
DIRECT_PUTS = 3
#: operations per ``POST /batches`` (a batch of 1,000 pushes is one batch)
BATCH_OPERATIONS = 2000
#: emails per ``members_to_add`` / ``members_to_remove`` (Mailchimp's limit)
SEGMENT_CHUNK = 500
#: Mailchimp's simultaneous connections per account
MAX_CONNECTIONS = 10
#: what new members become: a contact that may receive transactional email only, no marketing consent
STATUS_IF_NEW = "transactional"
PAGE = 1000

_DC = re.compile(r"^[a-z]+\d+$")


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id in an audience: the MD5 hex of the lower-cased email."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


def merge_value(value: Any) -> Any:
    """A value as a text merge field takes it (``""`` clears the field)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class _Wanted:
    """Everything the pushes of one batch want for one email (pushes of the same email merged)."""

    email: str
    add: set[str] = field(default_factory=set)
    remove: set[str] = field(default_factory=set)
    set: dict[str, Any] = field(default_factory=dict)


class MailchimpClient:
    """:class:`~segmentation.service.ports.EspClient` for one Mailchimp audience (``list_id``).

    ``api_key`` ends in ``-<data center>`` (``...-us21``), which names the API host
    (``https://us21.api.mailchimp.com``) unless ``base_url`` is given (the root, without ``/3.0``:
    a test server, or ``MAILCHIMP_API_URL``). ``http_options`` go to
    :class:`~segmentation.infra.esp.http.JsonApi` (``attempts``, ``backoff_factor``, ``max_wait``...;
    ``pool_size`` at most 10). ``batch_wait``: how long to wait for a batch to finish;
    ``cache_ttl``: how long the tags and merge fields read from the audience are trusted."""

    def __init__(
        self,
        api_key: str,
        list_id: str,
        *,
        base_url: str | None = None,
        batch_wait: float = 30.0,
        cache_ttl: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        **http_options: Any,
    ) -> None:
        secret, _, dc = api_key.strip().rpartition("-")
        if not secret or not _DC.match(dc):
            raise ValueError(
                "the Mailchimp API key must end with its data center, such as '-us21' (copy the whole "
                "key from Mailchimp: Profile > Extras > API keys)"
            )
        if not list_id:
            raise ValueError("a Mailchimp audience id (list_id) is required")
        pool_size = http_options.setdefault("pool_size", MAX_CONNECTIONS)
        if not 1 <= pool_size <= MAX_CONNECTIONS:
            raise ValueError(f"pool_size must be 1 to {MAX_CONNECTIONS}: Mailchimp allows {MAX_CONNECTIONS} "
                             "simultaneous connections per account")
        root = (base_url or f"https://{dc}.api.mailchimp.com").rstrip("/").removesuffix("/3.0")
        token = base64.b64encode(f"segmentation:{api_key.strip()}".encode()).decode()
        self._api = JsonApi(root + "/3.0", {"Authorization": f"Basic {token}"}, name="mailchimp", **http_options)
        self.list_id = list_id
        self.batch_wait = batch_wait
        self.cache_ttl = cache_ttl
        self._sleep = sleep
        self._merge_fields: set[str] | None = None
        self._merge_fields_at = 0.0
        self._segments: dict[str, int] | None = None  # casefolded tag name -> static segment id
        self._segments_at = 0.0
        self._segments_reloaded = False  # the tags were read from Mailchimp during this push
        self._calls = 0

    # -- EspClient --------------------------------------------------------------------------------

    def push(self, pushes: Sequence[Push]) -> PushResult:
        self._calls = 0
        self._segments_reloaded = False
        result = PushResult()
        try:
            wanted = self._merge(pushes)
            if wanted:
                members = [w for w in wanted.values() if w.add or w.set]
                if members:
                    self._ensure_merge_fields({tag for w in members for tag in w.set})
                    result.failed.update(self._upsert_members(members))
                self._apply_tags(wanted, result.failed)
        finally:
            result.calls = self._calls
        return result

    def members(self, target: str) -> Iterator[tuple[str, str | None]]:
        self._segments_reloaded = False
        segment_id = self._segment_id(target, create=False)
        if segment_id is None:
            return
        seen: set[str] = set()
        offset = 0
        while True:
            page = self._ok(self._request("GET", f"/lists/{self.list_id}/segments/{segment_id}/members", params={
                "count": str(PAGE), "offset": str(offset), "fields": "members.email_address,total_items",
                "include_transactional": "true", "include_unsubscribed": "true", "include_cleaned": "true",
            }), "list a tag's members")
            rows = page.get("members") or []
            for row in rows:
                email = str(row.get("email_address", "")).lower()
                if email and email not in seen:
                    seen.add(email)
                    yield email, None
            offset += len(rows)
            if not rows or offset >= int(page.get("total_items") or 0):
                return

    # -- the steps of a push ----------------------------------------------------------------------

    @staticmethod
    def _merge(pushes: Sequence[Push]) -> dict[str, _Wanted]:
        """One entry per email (lower-cased key), in order; a later push wins over an earlier one."""
        out: dict[str, _Wanted] = {}
        for p in pushes:
            w = out.setdefault(p.email.lower(), _Wanted(p.email))
            w.add = (w.add - p.remove) | set(p.add)
            w.remove = (w.remove - p.add) | set(p.remove)
            w.set.update({tag: merge_value(v) for tag, v in p.set.items()})
        return out

    def _ensure_merge_fields(self, tags: set[str]) -> None:
        if not tags:
            return
        known = self._known_merge_fields()
        for tag in sorted(tags - known):
            r = self._request("POST", f"/lists/{self.list_id}/merge-fields",
                              body={"tag": tag, "name": tag, "type": "text"})
            if r.status == 400 and "already exists" in _detail(r):
                pass  # created meanwhile by someone else
            else:
                self._ok(r, f"create merge field {tag}")
            known.add(tag)

    def _known_merge_fields(self) -> set[str]:
        if self._merge_fields is None or time.monotonic() - self._merge_fields_at > self.cache_ttl:
            tags: set[str] = set()
            offset = 0
            while True:
                page = self._ok(self._request("GET", f"/lists/{self.list_id}/merge-fields",
                                              params={"count": str(PAGE), "offset": str(offset)}),
                                "list merge fields")
                rows = page.get("merge_fields") or []
                tags.update(str(row["tag"]) for row in rows if row.get("tag"))
                offset += len(rows)
                if not rows or offset >= int(page.get("total_items") or 0):
                    break
            self._merge_fields, self._merge_fields_at = tags, time.monotonic()
        assert self._merge_fields is not None
        return self._merge_fields

    def _member_body(self, w: _Wanted) -> dict[str, Any]:
        body: dict[str, Any] = {"email_address": w.email, "status_if_new": STATUS_IF_NEW}
        if w.set:
            body["merge_fields"] = dict(w.set)
        return body

    def _upsert_members(self, members: list[_Wanted]) -> dict[str, str]:
        """Create or update every member; email -> reason for those Mailchimp refused."""
        failed: dict[str, str] = {}
        if len(members) <= DIRECT_PUTS:
            for w in members:
                r = self._request("PUT", f"/lists/{self.list_id}/members/{subscriber_hash(w.email)}",
                                  body=self._member_body(w), params={"skip_merge_validation": "true"})
                if r.status == 400:
                    failed[w.email] = _reason(r.status, r.data, w.email)
                else:
                    self._ok(r, "update a member")
            return failed
        batches = []
        for start in range(0, len(members), BATCH_OPERATIONS):
            chunk = members[start : start + BATCH_OPERATIONS]
            operations = [
                {
                    "method": "PUT",
                    "path": f"/lists/{self.list_id}/members/{subscriber_hash(w.email)}",
                    "params": {"skip_merge_validation": "true"},
                    "body": json.dumps(self._member_body(w), separators=(",", ":")),
                    "operation_id": str(start + i),
                }
                for i, w in enumerate(chunk)
            ]
            batches.append(self._ok(self._request("POST", "/batches", body={"operations": operations}),
                                    "submit a batch"))
        for batch in self._wait_for(batches):
            if int(batch.get("errored_operations") or 0):
                failed.update(self._batch_failures(batch, members))
        return failed

    def _wait_for(self, batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
        deadline = time.monotonic() + self.batch_wait
        pause = 0.25
        done = [b for b in batches if b.get("status") == "finished"]
        pending = [b for b in batches if b.get("status") != "finished"]
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DestinationUnavailableError(
                    f"mailchimp: {len(pending)} batch(es) not finished after {self.batch_wait:g} s; "
                    "the push will be sent again")
            self._sleep(min(pause, remaining))
            pause = min(pause * 2, 5.0)
            still = []
            for b in pending:
                b = self._ok(self._request("GET", f"/batches/{b['id']}"), "read a batch")
                (done if b.get("status") == "finished" else still).append(b)
            pending = still
        return done

    def _batch_failures(self, batch: dict[str, Any], members: list[_Wanted]) -> dict[str, str]:
        url = batch.get("response_body_url")
        if not url:
            return {}  # cannot tell which operations errored: see the module docstring
        failed: dict[str, str] = {}
        for row in self._archive(url):
            status = int(row.get("status_code") or 0)
            if status < 300:
                continue
            try:
                email = members[int(row.get("operation_id"))].email
            except (TypeError, ValueError, IndexError):
                continue
            try:
                data = json.loads(row.get("response") or "null")
            except ValueError:
                data = None
            if status == 400:
                failed[email] = _reason(status, data, email)
            else:  # a 404 (no such audience), 429 or 5xx inside the batch: send the whole push again
                raise DestinationUnavailableError(
                    f"mailchimp: a batch operation answered {status} {_title(data)}; the push will be sent again")
        return failed

    def _archive(self, url: str) -> Iterator[dict[str, Any]]:
        """The rows of a batch results archive. A pre-signed download: sent without the API key."""
        try:
            raw = self._api.pool.request("GET", url, headers={"User-Agent": "segmentation-engine-esp-sync"})
        except (MaxRetryError, HTTPError) as e:
            self._calls += 1
            raise DestinationUnavailableError(
                f"mailchimp: the batch results could not be downloaded: {type(e).__name__}") from None
        self._calls += 1 + len(raw.retries.history if raw.retries is not None else ())
        if raw.status != 200:
            raise DestinationUnavailableError(f"mailchimp: the batch results download answered {raw.status}")
        try:
            with tarfile.open(fileobj=io.BytesIO(raw.data), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if not member.isfile() or not member.name.endswith(".json"):
                        continue
                    handle = tar.extractfile(member)
                    rows = json.load(handle) if handle is not None else []
                    yield from (r for r in rows if isinstance(r, dict))
        except (tarfile.TarError, OSError, ValueError):
            raise DestinationUnavailableError("mailchimp: the batch results archive could not be read") from None

    def _apply_tags(self, wanted: dict[str, _Wanted], failed: dict[str, str]) -> None:
        adds: dict[str, list[str]] = {}
        removes: dict[str, list[str]] = {}
        names: dict[str, str] = {}  # casefolded -> as given first
        for w in wanted.values():
            for tag in w.add:
                if w.email not in failed:  # a refused member cannot carry a tag
                    adds.setdefault(tag.casefold(), []).append(w.email)
                    names.setdefault(tag.casefold(), tag)
            for tag in w.remove:
                removes.setdefault(tag.casefold(), []).append(w.email)
                names.setdefault(tag.casefold(), tag)
        for key in sorted(names):
            to_add, to_remove = adds.get(key, []), removes.get(key, [])
            if to_add or to_remove:
                self._update_segment(names[key], to_add, to_remove, failed)

    def _update_segment(self, tag: str, to_add: list[str], to_remove: list[str], failed: dict[str, str]) -> None:
        for attempt in (1, 2):
            segment_id = self._segment_id(tag, create=bool(to_add))
            if segment_id is None:
                return  # nothing to add, and nobody carries a tag that does not exist
            path = f"/lists/{self.list_id}/segments/{segment_id}"
            adding = {e.lower(): e for e in to_add}
            for i in range(0, max(len(to_add), len(to_remove)), SEGMENT_CHUNK):
                body = {}
                if to_add[i : i + SEGMENT_CHUNK]:
                    body["members_to_add"] = to_add[i : i + SEGMENT_CHUNK]
                if to_remove[i : i + SEGMENT_CHUNK]:
                    body["members_to_remove"] = to_remove[i : i + SEGMENT_CHUNK]
                r = self._request("POST", path, body=body)
                if r.status == 404 and i == 0 and attempt == 1:
                    self._segments = None  # the tag was deleted meanwhile: look it up (or create it) again
                    break
                data = self._ok(r, "update a tag's members")
                for error in data.get("errors") or []:
                    for email in error.get("email_addresses") or []:
                        original = adding.get(str(email).lower())
                        if original is not None and original not in failed:
                            # removing someone who is not a member is not a failure; adding is
                            failed[original] = f"tag {tag!r} not added: {error.get('error') or 'refused'}"
            else:
                return

    def _segment_id(self, tag: str, *, create: bool) -> int | None:
        """The static segment of ``tag`` (created if ``create``), or None. A tag missing from the
        cache is looked up again (once per push): another invocation may have created it."""
        key = tag.casefold()
        segments = self._segments
        if segments is None or time.monotonic() - self._segments_at > self.cache_ttl:
            segments = self._load_segments()
        if key not in segments and not self._segments_reloaded:
            segments = self._load_segments()
        if key in segments or not create:
            return segments.get(key)
        r = self._request("POST", f"/lists/{self.list_id}/segments", body={"name": tag, "static_segment": []})
        if r.status == 400 and "already exists" in _detail(r):
            return self._load_segments().get(key)  # created meanwhile
        data = self._ok(r, "create a tag")
        segments[key] = int(data["id"])
        return segments[key]

    def _load_segments(self) -> dict[str, int]:
        segments: dict[str, int] = {}
        offset = 0
        while True:
            page = self._ok(self._request("GET", f"/lists/{self.list_id}/segments",
                                          params={"type": "static", "count": str(PAGE), "offset": str(offset),
                                                  "fields": "segments.id,segments.name,total_items"}),
                            "list tags")
            rows = page.get("segments") or []
            for row in rows:
                segments.setdefault(str(row["name"]).casefold(), int(row["id"]))
            offset += len(rows)
            if not rows or offset >= int(page.get("total_items") or 0):
                break
        self._segments, self._segments_at, self._segments_reloaded = segments, time.monotonic(), True
        return segments

    # -- HTTP -------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
                 ) -> Response:
        try:
            r = self._api.request(method, path, body=body, params=params)
        except DestinationUnavailableError:
            self._calls += 1  # at least one request went out
            raise
        self._calls += r.requests
        return r

    @staticmethod
    def _ok(r: Response, what: str) -> dict[str, Any]:
        if 200 <= r.status < 300 and isinstance(r.data, dict):
            return r.data
        if r.status == 204:
            return {}
        raise DestinationUnavailableError(f"mailchimp: {what} answered {r.status} {_title(r.data)}")


def _title(data: Any) -> str:
    return str(data.get("title") or "") if isinstance(data, dict) else ""


def _detail(r: Response) -> str:
    return str(r.data.get("detail") or "") if isinstance(r.data, dict) else ""


def _reason(status: int, data: Any, email: str) -> str:
    """Mailchimp's refusal, without the address (a reason may be logged)."""
    parts = [str(status), _title(data)]
    if isinstance(data, dict):
        parts.append(str(data.get("detail") or ""))
        for error in data.get("errors") or []:
            if isinstance(error, dict):
                parts.append(f"{error.get('field', '')}: {error.get('message', '')}")
    text = " ".join(p for p in parts if p).strip()
    return re.sub(re.escape(email), "<email>", text, flags=re.IGNORECASE)

