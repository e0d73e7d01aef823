"""A local fake of the Mailchimp Marketing API v3 for the ESP sync's tests (issue 12).

``FakeMailchimp`` is an HTTP server (``http.server`` in a thread, 127.0.0.1, a free port) under the
base path ``/3.0``. Use it as ``with FakeMailchimp(lists={"aud1": ["FNAME", "SCORE"]}) as fake:`` and
point the client at ``fake.base_url`` (``http://127.0.0.1:<port>/3.0``) with ``fake.api_key``.

Every request is handled in this order, and refused before anything changes:

1. the simultaneous-request limit (10, as Mailchimp): 429 above it (peak kept in ``peak_concurrency``);
2. HTTP Basic auth, any user name, the API key as password (401 otherwise);
3. injected faults (``fail_next``): e.g. 429 with ``Retry-After``;
4. path, method and body against Mailchimp's documented shapes (400/404/405), then the endpoint.

Errors use Mailchimp's problem JSON ``{"type", "title", "status", "detail", "instance"}``. Refused
requests are kept in ``invalid`` (a sync test asserts ``fake.invalid == []``), every request in
``calls`` as ``(method, path)`` and in ``requests`` with its query and status. Answers that are not the
client's mistake stay out of ``invalid``: a lookup of an absent member (404) and an address that
Mailchimp refuses as one that "looks fake or invalid" (400: Mailchimp judges more than syntax, so a
client cannot know in advance).

Endpoints (members are addressed by subscriber hash = MD5 hex of the lower-cased email):

- ``GET|PUT|PATCH /lists/{list_id}/members/{hash}``; PUT upserts (``email_address`` must hash to
  ``{hash}``; ``status_if_new`` is required for a new member); merge tags must be configured;
- ``POST /lists/{list_id}/members/{hash}/tags`` ``{"tags": [{"name", "status": "active"|"inactive"}]}`` (204);
- ``GET|POST /lists/{list_id}/segments`` (static segments = tags; GET pages with count/offset, count 10 by default);
- ``POST /lists/{list_id}/segments/{id}`` with ``members_to_add``/``members_to_remove`` (at most 500 each);
- ``GET /lists/{list_id}/segments/{id}/members`` (count/offset, count 10 by default, at most 1000; as
  Mailchimp, transactional, unsubscribed and cleaned members only with ``include_transactional``,
  ``include_unsubscribed``, ``include_cleaned`` = ``true``);
- ``GET|POST /lists/{list_id}/merge-fields``;
- ``POST /batches``, ``GET /batches/{id}``: the operations are applied in order, at once (status
  ``finished`` from the start) or, with ``batch_polls=n``, on the n-th ``GET`` of the batch (before it:
  ``pending``, then ``started``, nothing applied), as Mailchimp processes batches asynchronously. A
  finished batch's ``response_body_url`` is a gzipped tar archive of JSON files, each an array of
  ``{"status_code", "operation_id", "response"}`` (``response``: the JSON body as a string), served
  without authentication outside ``/3.0`` (at Mailchimp, a pre-signed download link).

Consent: ``new_member_statuses(list_id)`` says which status each member created through the API got,
``statuses_sent`` lists every ``status``/``status_if_new`` value a request carried, and
``consent_violations()`` lists those that would create marketing consent ("subscribed"/"pending").
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import io
import json
import re
import tarfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .local_server import LocalServer, Refusal

DEFAULT_KEY = "0123456789abcdef0123456789abcdef-us21"
DEFAULT_LIST = "a1b2c3d4e5"
# The merge fields every new Mailchimp audience has.
DEFAULT_MERGE_FIELDS = ("FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY")
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
CONSENT_STATUSES = ("subscribed", "pending")
MAX_SEGMENT_MEMBERS = 500  # members_to_add / members_to_remove per request
MAX_CONNECTIONS = 10
MAX_TAG_NAME = 100
MERGE_FIELD_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
ERROR_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"
_ARCHIVES = "/batch-results/"
_KEY = re.compile(r"^[0-9a-f]{32}-(us\d+)$")
_HASH = re.compile(r"^[0-9a-f]{32}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TITLES = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 hex of the lower-cased email address."""
    return hashlib.md5(email.lower().encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    status: int


@dataclass
class _Member:
    email_address: str
    status: str
    merge_fields: dict[str, Any] = field(default_factory=dict)
    created_with: str | None = None  # status_if_new it was created with (None: seeded by the test)


@dataclass
class _Segment:
    id: int
    name: str
    members: set[str] = field(default_factory=set)  # subscriber hashes
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)


@dataclass
class _List:
    merge_fields: list[str]
    members: dict[str, _Member] = field(default_factory=dict)  # by subscriber hash
    segments: dict[int, _Segment] = field(default_factory=dict)


class _Answer(Exception):
    """An error answer: ``invalid`` says whether the request is the client's mistake (kept in ``invalid``)."""

    def __init__(self, status: int, detail: str, *, invalid: bool = True, errors: list | None = None):
        super().__init__(detail)
        self.status, self.detail, self.invalid, self.errors = status, detail, invalid, errors


class FakeMailchimp(LocalServer):
    """Start with ``with FakeMailchimp() as fake:`` (or ``start()``/``stop()``); see the module docstring."""

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        lists: Iterable[str] | Mapping[str, Iterable[str]] = (DEFAULT_LIST,),
        merge_fields: Iterable[str] = DEFAULT_MERGE_FIELDS,
        max_connections: int = MAX_CONNECTIONS,
        latency: float = 0.0,
        batch_polls: int = 0,
    ):
        match = _KEY.match(api_key)
        if not match:
            raise ValueError("a Mailchimp API key is 32 hex digits and a data center suffix, e.g. '...-us21'")
        self.api_key = api_key
        self.dc = match.group(1)
        self.max_connections = max_connections
        self.latency = latency  # seconds each request takes, to make concurrency observable
        self.batch_polls = batch_polls  # GETs of a batch before it is processed (0: processed when created)
        fields = list(merge_fields)
        if isinstance(lists, Mapping):
            self._lists = {lid: _List(merge_fields=list(mf)) for lid, mf in lists.items()}
        else:
            self._lists = {lid: _List(merge_fields=list(fields)) for lid in lists}
        self._lock = threading.RLock()
        self._next_segment = 1
        self._batches: dict[str, dict[str, Any]] = {}
        self._faults: list[tuple[int, int | None]] = []
        self._active = 0
        self.peak_concurrency = 0
        self.calls: list[tuple[str, str]] = []
        self.requests: list[Request] = []
        self.invalid: list[Refusal] = []
        #: (tag, email, "added" | "removed") for every tag that really changed on a member
        self.membership_log: list[tuple[str, str, str]] = []
        self.statuses_sent: list[tuple[str, str, str, str]] = []  # (list_id, email, field, value)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        """The API root without ``/3.0`` (as ``https://<dc>.api.mailchimp.com``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/3.0"

    def auth_header(self, key: str | None = None, user: str = "anystring") -> dict[str, str]:
        token = base64.b64encode(f"{user}:{key or self.api_key}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    # -- test API ---------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 429, retry_after: int | None = None) -> None:
        """Answer the next ``n`` authenticated requests with ``status`` before any state change."""
        if retry_after is None and status == 429:
            retry_after = 1
        with self._lock:
            self._faults.extend([(status, retry_after)] * n)

    def add_member(
        self,
        list_id: str,
        email: str,
        status: str = "subscribed",
        merge_fields: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Seed an existing member (not recorded as created by the sync)."""
        with self._lock:
            lst = self._lists[list_id]
            h = subscriber_hash(email)
            lst.members[h] = _Member(email, status, dict(merge_fields or {}))
            for tag in tags:
                self._segment_named(lst, tag, create=True).members.add(h)

    def add_merge_field(self, list_id: str, tag: str) -> None:
        with self._lock:
            self._lists[list_id].merge_fields.append(tag)

    def members(self, list_id: str) -> dict[str, dict[str, Any]]:
        """email -> {"status", "merge_fields" (those set), "tags" (set of names)}."""
        with self._lock:
            lst = self._lists[list_id]
            return {
                m.email_address: {
                    "status": m.status,
                    "merge_fields": copy.deepcopy(m.merge_fields),
                    "tags": {s.name for s in lst.segments.values() if h in s.members},
                }
                for h, m in lst.members.items()
            }

    def tag_members(self, list_id: str, tag: str) -> set[str]:
        """Emails of the members carrying ``tag`` (empty if the tag does not exist)."""
        with self._lock:
            lst = self._lists[list_id]
            seg = self._segment_named(lst, tag)
            return {lst.members[h].email_address for h in seg.members} if seg else set()

    def tags(self, list_id: str) -> dict[str, int]:
        """Tag (static segment) name -> id."""
        with self._lock:
            return {s.name: s.id for s in self._lists[list_id].segments.values()}

    def new_member_statuses(self, list_id: str) -> dict[str, str]:
        """email -> the status_if_new each member created through the API got."""
        with self._lock:
            return {
                m.email_address: m.created_with
                for m in self._lists[list_id].members.values()
                if m.created_with is not None
            }

    def consent_violations(self) -> list[tuple[str, str, str, str]]:
        """Every status/status_if_new sent as "subscribed" or "pending" (the sync must never create consent)."""
        with self._lock:
            return [s for s in self.statuses_sent if s[3] in CONSENT_STATUSES]

    def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        """Per operation: operation_id, status_code, response (what Mailchimp puts in the results archive)."""
        with self._lock:
            return copy.deepcopy(self._batches[batch_id]["_results"])

    # -- request handling -------------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        status, payload, out = self._handle(method, target, headers, raw)
        if isinstance(payload, bytes):  # a batch results archive, with its own Content-Type
            data = payload
        else:
            data = b"" if payload is None else json.dumps(payload).encode()
        if data and "Content-Type" not in out:
            out = {"Content-Type": "application/problem+json" if status >= 400 else "application/json", **out}
        return status, out, data

    def _handle(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        split = urlsplit(target)
        path, query = split.path, split.query
        with self._lock:
            self._active += 1
            self.peak_concurrency = max(self.peak_concurrency, self._active)
            over = self._active > self.max_connections
        try:
            if self.latency:
                time.sleep(self.latency)
            try:
                if path.startswith(_ARCHIVES):
                    # the results archive is a pre-signed download: no API key, no injected fault
                    return self._record(method, path, query, *self._archive(method, path))
                if over:
                    raise _Answer(
                        429, f"You have exceeded the limit of {self.max_connections} simultaneous connections."
                    )
                self._check_auth(headers.get("Authorization"))
                with self._lock:
                    if self._faults:
                        status, retry_after = self._faults.pop(0)
                        extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                        return self._record(
                            method, path, query, status, self._problem(status, "Injected fault."), extra
                        )
                if not path.startswith("/3.0/"):
                    raise _Answer(404, "The requested resource could not be found.")
                body = self._parse(raw) if raw else None
                with self._lock:
                    status, payload = self._dispatch(method, path[len("/3.0") :], parse_qs(query), body)
                return self._record(method, path, query, status, payload, {})
            except _Answer as answer:
                with self._lock:
                    if answer.invalid:
                        self.invalid.append(Refusal(method, path, answer.status, answer.detail))
                payload = self._problem(answer.status, answer.detail, answer.errors)
                return self._record(method, path, query, answer.status, payload, {})
        finally:
            with self._lock:
                self._active -= 1

    def _record(self, method: str, path: str, query: str, status: int, payload: Any, headers: dict[str, str]):
        with self._lock:
            self.calls.append((method, path))
            self.requests.append(Request(method, path, query, status))
        return status, payload, headers

    @staticmethod
    def _problem(status: int, detail: str, errors: list | None = None) -> dict[str, Any]:
        body = {
            "type": ERROR_DOC,
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
            "instance": str(uuid.uuid4()),
        }
        if errors:
            body["errors"] = errors
        return body

    def _check_auth(self, header: str | None) -> None:
        refused = _Answer(401, "Your API key may be invalid, or you've attempted to access the wrong datacenter.")
        if not header or not header.startswith("Basic "):
            raise refused
        try:
            _user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise refused from None
        if password != self.api_key:
            raise refused

    @staticmethod
    def _parse(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise _Answer(400, "We encountered an unspecified JSON parsing error.") from None

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts == ["batches"]:
            return self._allow(method, "POST") or self._create_batch(body)
        if len(parts) == 2 and parts[0] == "batches":
            self._allow(method, "GET")
            batch = self._batches.get(parts[1])
            if batch is None:
                raise _Answer(404, "The requested resource could not be found.")
            if batch["status"] != "finished":
                batch["_polls_left"] -= 1
                if batch["_polls_left"] <= 0:
                    self._run_batch(batch)
                else:
                    batch["status"] = "started"
            return 200, {k: v for k, v in batch.items() if not k.startswith("_")}
        if len(parts) < 3 or parts[0] != "lists":
            raise _Answer(404, "The requested resource could not be found.")
        lst = self._lists.get(parts[1])
        if lst is None:
            raise _Answer(404, "The requested resource could not be found.")
        list_id, rest = parts[1], parts[2:]
        if rest[0] == "members" and len(rest) == 2:
            if method == "GET":
                return 200, self._get_member(lst, list_id, rest[1])
            self._allow(method, "PUT", "PATCH")
            return self._put_member(lst, list_id, rest[1], body, create=method == "PUT")
        if rest[0] == "members" and len(rest) == 3 and rest[2] == "tags":
            self._allow(method, "POST")
            return self._member_tags(lst, list_id, rest[1], body)
        if rest == ["segments"]:
            if method == "GET":
                return 200, self._list_segments(lst, list_id, query)
            self._allow(method, "POST")
            return self._create_segment(lst, list_id, body)
        if rest[0] == "segments" and len(rest) == 3 and rest[2] == "members":
            seg = lst.segments.get(int(rest[1])) if rest[1].isdigit() else None
            if seg is None:
                raise _Answer(404, "The requested resource could not be found.")
            self._allow(method, "GET")
            return 200, self._list_segment_members(lst, list_id, seg, query)
        if rest[0] == "segments" and len(rest) == 2:
            seg = lst.segments.get(int(rest[1])) if rest[1].isdigit() else None
            if seg is None:
                raise _Answer(404, "The requested resource could not be found.")
            if method == "GET":
                return 200, self._segment_json(seg, list_id)
            self._allow(method, "POST")
            return self._segment_members(lst, list_id, seg, body)
        if rest == ["merge-fields"]:
            if method == "GET":
                return 200, {
                    "merge_fields": [{"tag": t, "name": t, "list_id": list_id} for t in lst.merge_fields],
                    "list_id": list_id,
                    "total_items": len(lst.merge_fields),
                }
            self._allow(method, "POST")
            return self._create_merge_field(lst, list_id, body)
        raise _Answer(404, "The requested resource could not be found.")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _Answer(405, f"This API Root Resource does not accept the {method} method.")

    @staticmethod
    def _object(body: Any, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Answer(400, "The resource submitted could not be validated: the body must be a JSON object.")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise _Answer(400, f"The resource submitted could not be validated: unknown fields {unknown}.")
        return body

    @staticmethod
    def _array(body: dict[str, Any], field: str) -> list:
        """``body[field]``, which the schema says is an array (Mailchimp's 400 otherwise)."""
        value = body.get(field)
        if not isinstance(value, list):
            raise _Answer(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": field, "message": "Schema describes array, another type found instead."}],
            )
        return value

    # members

    def _member_json(self, lst: _List, list_id: str, h: str) -> dict[str, Any]:
        m = lst.members[h]
        tags = [{"id": s.id, "name": s.name} for s in lst.segments.values() if h in s.members]
        return {
            "id": h,
            "email_address": m.email_address,
            "unique_email_id": h[:10],
            "status": m.status,
            "merge_fields": {**dict.fromkeys(lst.merge_fields, ""), **m.merge_fields},
            "tags_count": len(tags),
            "tags": tags,
            "list_id": list_id,
        }

    def _get_member(self, lst: _List, list_id: str, h: str) -> dict[str, Any]:
        if h not in lst.members:
            # a lookup of an absent member is a legitimate probe, not the client's mistake
            raise _Answer(404, "The requested resource could not be found.", invalid=False)
        return self._member_json(lst, list_id, h)

    def _put_member(self, lst: _List, list_id: str, h: str, body: Any, *, create: bool) -> tuple[int, Any]:
        body = self._object(
            body,
            (
                "email_address",
                "status_if_new",
                "status",
                "merge_fields",
                "email_type",
                "language",
                "vip",
                "skip_merge_validation",
            ),
        )
        if not _HASH.match(h):
            raise _Answer(404, "The requested resource could not be found.")
        existing = lst.members.get(h)
        if not create and existing is None:
            raise _Answer(404, "The requested resource could not be found.")
        email = body.get("email_address", existing.email_address if existing else None)
        if create and not isinstance(body.get("email_address"), str):
            raise _Answer(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "email_address", "message": "This value should not be blank."}],
            )
        if not isinstance(email, str) or not _EMAIL.match(email):
            # Mailchimp's own judgement of an address (more than syntax): not a malformed request
            raise _Answer(400, f"{email!r} looks fake or invalid, please enter a real email address.", invalid=False)
        if subscriber_hash(email) != h:
            raise _Answer(
                400,
                f"The subscriber hash {h} does not match the email address {email!r} "
                f"(MD5 of the lower-cased email is {subscriber_hash(email)}).",
            )
        for key in ("status_if_new", "status"):
            if key in body and body[key] not in STATUSES:
                raise _Answer(
                    400,
                    "The resource submitted could not be validated.",
                    errors=[{"field": key, "message": f"Value must be one of {', '.join(STATUSES)}"}],
                )
        if existing is None and "status_if_new" not in body and "status" not in body:
            raise _Answer(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "status_if_new", "message": "Required for new members."}],
            )
        merge_fields = body.get("merge_fields", {})
        if not isinstance(merge_fields, dict):
            raise _Answer(400, "The resource submitted could not be validated: merge_fields must be an object.")
        unknown = sorted(set(merge_fields) - set(lst.merge_fields))
        if unknown:
            raise _Answer(
                400,
                "Your merge fields were invalid.",
                errors=[{"field": t, "message": "Merge field does not exist on this audience."} for t in unknown],
            )
        for tag, value in merge_fields.items():
            if not isinstance(value, str | int | float | dict) or isinstance(value, bool):
                raise _Answer(
                    400,
                    "Your merge fields were invalid.",
                    errors=[{"field": tag, "message": "Please enter a string, number or address."}],
                )
        # accepted: record and apply
        for key in ("status_if_new", "status"):
            if key in body:
                self.statuses_sent.append((list_id, email, key, body[key]))
        if existing is None:
            new_status = body.get("status", body.get("status_if_new"))
            lst.members[h] = existing = _Member(email, new_status, created_with=new_status)
            status = 200
        else:
            if "status" in body:
                existing.status = body["status"]
            status = 200
        existing.merge_fields.update(merge_fields)
        return status, self._member_json(lst, list_id, h)

    def _member_tags(self, lst: _List, list_id: str, h: str, body: Any) -> tuple[int, Any]:
        body = self._object(body, ("tags", "is_syncing"))
        tags = self._array(body, "tags")
        for tag in tags:
            if not isinstance(tag, dict) or set(tag) != {"name", "status"}:
                raise _Answer(400, 'The resource submitted could not be validated: each tag is {"name", "status"}.')
            if not isinstance(tag["name"], str) or not tag["name"].strip() or len(tag["name"]) > MAX_TAG_NAME:
                raise _Answer(400, f"Tag names are 1 to {MAX_TAG_NAME} characters.")
            if tag["status"] not in ("active", "inactive"):
                raise _Answer(
                    400,
                    "The resource submitted could not be validated.",
                    errors=[{"field": "status", "message": "Value must be one of active, inactive"}],
                )
        if "is_syncing" in body and not isinstance(body["is_syncing"], bool):
            raise _Answer(400, "The resource submitted could not be validated: is_syncing is a boolean.")
        if h not in lst.members:
            raise _Answer(404, "The requested resource could not be found.")
        for tag in tags:
            seg = self._segment_named(lst, tag["name"], create=tag["status"] == "active")
            if seg is None:
                continue
            self._tag(lst, seg, h, tag["status"] == "active")
            seg.updated_at = _now()
        return 204, None

    # segments (tags)

    def _segment_named(self, lst: _List, name: str, *, create: bool = False) -> _Segment | None:
        for seg in lst.segments.values():
            if seg.name == name:
                return seg
        if not create:
            return None
        seg = _Segment(self._next_segment, name)
        self._next_segment += 1
        lst.segments[seg.id] = seg
        return seg

    @staticmethod
    def _segment_json(seg: _Segment, list_id: str) -> dict[str, Any]:
        return {
            "id": seg.id,
            "name": seg.name,
            "member_count": len(seg.members),
            "type": "static",
            "created_at": seg.created_at,
            "updated_at": seg.updated_at,
            "list_id": list_id,
        }

    def _list_segments(self, lst: _List, list_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        kind = query.get("type", [None])[0]
        if kind not in (None, "static", "saved", "fuzzy"):
            raise _Answer(400, "The type filter is one of static, saved, fuzzy.")
        try:
            count = int(query.get("count", ["10"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            raise _Answer(400, "count and offset are integers.") from None
        if not 1 <= count <= 1000 or offset < 0:
            raise _Answer(400, "count is 1 to 1000 and offset is at least 0.")
        segs = [] if kind in ("saved", "fuzzy") else sorted(lst.segments.values(), key=lambda s: s.id)
        return {
            "segments": [self._segment_json(s, list_id) for s in segs[offset : offset + count]],
            "list_id": list_id,
            "total_items": len(segs),
        }

    def _list_segment_members(
        self, lst: _List, list_id: str, seg: _Segment, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        try:
            count = int(query.get("count", ["10"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            raise _Answer(400, "count and offset are integers.") from None
        if not 1 <= count <= 1000 or offset < 0:
            raise _Answer(400, "count is 1 to 1000 and offset is at least 0.")
        shown = {"subscribed", "pending"}
        for status in ("transactional", "unsubscribed", "cleaned"):
            flag = query.get(f"include_{status}", ["false"])[0]
            if flag not in ("true", "false"):
                raise _Answer(400, f"include_{status} is true or false.")
            if flag == "true":
                shown.add(status)
        hashes = sorted(h for h in seg.members if lst.members[h].status in shown)
        return {
            "members": [self._member_json(lst, list_id, h) for h in hashes[offset : offset + count]],
            "total_items": len(hashes),
            "list_id": list_id,
        }

    def _create_segment(self, lst: _List, list_id: str, body: Any) -> tuple[int, Any]:
        body = self._object(body, ("name", "static_segment", "options"))
        if "options" in body:
            raise _Answer(400, "The fake supports static segments (tags) only: omit options.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TAG_NAME:
            raise _Answer(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "name", "message": f"1 to {MAX_TAG_NAME} characters."}],
            )
        emails = body.get("static_segment", [])
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise _Answer(400, "static_segment is an array of email addresses.")
        if self._segment_named(lst, name):
            raise _Answer(400, f"Sorry, a segment or tag with the name {name!r} already exists.")
        seg = self._segment_named(lst, name, create=True)
        assert seg is not None
        seg.members.update(subscriber_hash(e) for e in emails if subscriber_hash(e) in lst.members)
        return 200, self._segment_json(seg, list_id)

    def _tag(self, lst: _List, seg: _Segment, h: str, on: bool) -> None:
        if on == (h in seg.members):
            return
        (seg.members.add if on else seg.members.discard)(h)
        self.membership_log.append((seg.name, lst.members[h].email_address, "added" if on else "removed"))

    def _segment_members(self, lst: _List, list_id: str, seg: _Segment, body: Any) -> tuple[int, Any]:
        body = self._object(body, ("members_to_add", "members_to_remove"))
        lists = {}
        for key in ("members_to_add", "members_to_remove"):
            emails = body.get(key, [])
            if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
                raise _Answer(400, f"{key} is an array of email addresses.")
            if len(emails) > MAX_SEGMENT_MEMBERS:
                raise _Answer(400, f"{key} holds at most {MAX_SEGMENT_MEMBERS} email addresses ({len(emails)} sent).")
            lists[key] = emails
        added, removed, missing = [], [], []
        for email in lists["members_to_add"]:
            h = subscriber_hash(email)
            if h not in lst.members:
                missing.append(email)
                continue
            self._tag(lst, seg, h, True)
            added.append(self._member_json(lst, list_id, h))
        for email in lists["members_to_remove"]:
            h = subscriber_hash(email)
            if h not in lst.members:
                missing.append(email)
                continue
            self._tag(lst, seg, h, False)
            removed.append(self._member_json(lst, list_id, h))
        seg.updated_at = _now()
        errors = [{"email_addresses": missing, "error": "Email addresses are not in this audience."}] if missing else []
        return 200, {
            "members_added": added,
            "members_removed": removed,
            "errors": errors,
            "total_added": len(added),
            "total_removed": len(removed),
            "error_count": len(missing),
        }

    def _create_merge_field(self, lst: _List, list_id: str, body: Any) -> tuple[int, Any]:
        body = self._object(body, ("tag", "name", "type", "required", "default_value", "public", "options"))
        name, tag = body.get("name"), body.get("tag")
        if not isinstance(name, str) or not name or body.get("type") not in MERGE_FIELD_TYPES:
            raise _Answer(400, "A merge field needs a name and a valid type.")
        if tag is None:
            tag = re.sub(r"[^A-Z0-9]", "", name.upper())[:10] or f"MERGE{len(lst.merge_fields)}"
        if not isinstance(tag, str) or not re.fullmatch(r"[A-Z0-9_]{1,10}", tag):
            raise _Answer(400, "A merge tag is 1 to 10 upper-case letters, digits or underscores.")
        if tag in lst.merge_fields:
            raise _Answer(400, f"A merge field with the tag {tag!r} already exists.")
        lst.merge_fields.append(tag)
        return 200, {"tag": tag, "name": name, "type": body["type"], "list_id": list_id}

    # batches

    def _create_batch(self, body: Any) -> tuple[int, Any]:
        body = self._object(body, ("operations",))
        ops = self._array(body, "operations")
        for op in ops:
            if (
                not isinstance(op, dict)
                or not {"method", "path"} <= set(op)
                or set(op) - {"method", "path", "params", "body", "operation_id"}
            ):
                raise _Answer(400, "Each operation is {method, path[, params, body, operation_id]}.")
            if op["method"] not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                raise _Answer(400, f"Unknown operation method {op['method']!r}.")
            if "body" in op and not isinstance(op["body"], str):
                # Mailchimp's operation body is the JSON document as a string
                raise _Answer(
                    400, "Schema describes string, object found instead (operations[].body is a JSON string)."
                )
        batch_id = uuid.uuid4().hex[:10]
        self._batches[batch_id] = batch = {
            "id": batch_id,
            "status": "pending",
            "total_operations": len(ops),
            "finished_operations": 0,
            "errored_operations": 0,
            "submitted_at": _now(),
            "completed_at": "",
            "response_body_url": "",
            "_operations": ops,
            "_results": [],
            "_polls_left": self.batch_polls,
        }
        if self.batch_polls <= 0:
            self._run_batch(batch)
        return 200, {k: v for k, v in batch.items() if not k.startswith("_")}

    def _run_batch(self, batch: dict[str, Any]) -> None:
        """Apply a batch's operations in order and keep their results (Mailchimp's processing)."""
        results, errored = [], 0
        for op in batch.pop("_operations"):
            path = op["path"] if op["path"].startswith("/") else "/" + op["path"]
            try:
                body_op = self._parse(op["body"].encode()) if op.get("body") else None
                query = {k: [str(v)] for k, v in (op.get("params") or {}).items()}
                status, payload = self._dispatch(op["method"], path, query, body_op)
            except _Answer as answer:
                errored += 1
                if answer.invalid:
                    self.invalid.append(
                        Refusal(op["method"], f"batch {batch['id']}: {path}", answer.status, answer.detail)
                    )
                status, payload = answer.status, self._problem(answer.status, answer.detail, answer.errors)
            results.append({"operation_id": op.get("operation_id"), "status_code": status, "response": payload})
        batch.update(
            status="finished",
            finished_operations=len(results),
            errored_operations=errored,
            completed_at=_now(),
            response_body_url=f"{self.root_url}{_ARCHIVES}{batch['id']}.tar.gz",
            _results=results,
        )

    def _archive(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        """A finished batch's results, as Mailchimp's archive: JSON files of at most 500 results each,
        every ``response`` the operation's JSON body as a string."""
        if method != "GET":
            return 405, None, {}
        batch_id = path[len(_ARCHIVES) :].removesuffix(".tar.gz")
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch["status"] != "finished":
                return 404, None, {}
            results = copy.deepcopy(batch["_results"])
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for n, start in enumerate(range(0, len(results), 500)):
                chunk = [
                    {**r, "response": "" if r["response"] is None else json.dumps(r["response"])}
                    for r in results[start : start + 500]
                ]
                data = json.dumps(chunk).encode()
                info = tarfile.TarInfo(f"{batch_id}/{n}.json")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return 200, out.getvalue(), {"Content-Type": "application/x-gzip"}


FakeMailchimp.name = "fake-mailchimp"
