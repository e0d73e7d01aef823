"""The ESP sync's Klaviyo client (issue 12): segment memberships as Klaviyo list memberships, traits
as custom profile properties, in bulk, through Klaviyo's JSON:API (revision ``2026-07-15``).

Endpoints, in the order a :meth:`KlaviyoClient.push` uses them:

1. ``POST /api/profile-bulk-import-jobs`` for every push that adds to a list or sets properties.
   A job upserts its profiles by email (properties are merged into the profile's) and, through its
   ``relationships.lists``, adds all of them to those lists; so the profiles are grouped: one job per
   list being added to (its profiles carry their properties too), and one job without lists for the
   profiles that only have properties to set. A property whose value is ``None`` is unset with the
   profile's ``meta.patch_properties.unset``, which the document allows in a bulk import profile
   (the bulk import does not clear a property sent as ``null``). A job holds at most
   :data:`JOB_PROFILES` profiles (Klaviyo: 10,000) and :data:`JOB_BYTES` bytes (Klaviyo: 5 MB); a
   profile over :data:`PROFILE_BYTES` (Klaviyo: 100 KB) is failed without being sent.
2. ``GET /api/profiles?filter=any(email,[...])&fields[profile]=email&page[size]=100``: the profile
   ids of the pushes that leave a list and whose ``esp_id`` is unknown, up to 100 emails per request
   (the page size maximum), returned in :attr:`PushResult.learned_ids`. An email Klaviyo does not
   know is in no list: there is nothing to remove, and it is not a failure.
3. ``DELETE /api/lists/{id}/relationships/profiles``, up to :data:`RELATIONSHIP_CHUNK` (1,000)
   profile ids per request (Klaviyo's limit). If Klaviyo refuses ids the caller gave (a profile
   merged or deleted since), they are looked up again by email and the removal sent once more.

So 1,000 pushes (adds to one list with properties, properties only, removals with known ids) cost 3
requests; each 100 removals without a known id cost one lookup more.

:meth:`KlaviyoClient.members` pages ``GET /api/lists/{id}/profiles?fields[profile]=email`` (100 per
page, Klaviyo's maximum) following ``links.next``.

**Never a subscription.** No request goes to the subscription endpoints
(``/api/profile-subscription-bulk-create-jobs`` and ``-delete-jobs``) nor to the suppression ones, and
no profile carries ``subscriptions`` or any consent field: being in a list is not consent to
marketing, and whether a person may be emailed stays Klaviyo's own record (an unsubscribe or a
suppression at Klaviyo is never undone by the sync).

**Refusals.** Klaviyo checks a bulk request as a whole: one bad profile (an email that is not an
address, a property too large) refuses the whole job with 400 and applies none of it. Its errors
name the bad profiles in ``source.pointer`` (``/data/attributes/profiles/data/<i>/...``): those are
put in :attr:`PushResult.failed` (email -> a short reason, with any address in Klaviyo's message
replaced by ``<email>``) and the rest is sent again. A refusal that names no profile (no
``source.pointer``, or 413) is narrowed down by sending each half again, recursively, at most
:data:`ISOLATION_CALLS` requests more per refused request (beyond that, the profiles not yet told
apart are failed too). A refusal that points at the request itself (``/data``: a list that no
longer exists, say), or a 4xx other than 400, 413 and 422 that names no profile (404...), fails
every profile of that request at once, since each half would be refused alike; the profiles of the
other requests are applied. A job that Klaviyo *accepts* runs asynchronously: a profile that fails while the job runs is
only reported by ``GET /api/profile-bulk-import-jobs/{id}/import-errors``, which this client does
not poll (it would cost a request per job and a wait); the reconcile, which compares
:meth:`KlaviyoClient.members` with the desired state, catches such a profile later.

**Rate limits** (``x-klaviyo-ratelimit`` in Klaviyo's document): bulk import jobs and list
relationship changes: burst 10/s, steady 150/m; ``GET /api/profiles`` and
``GET /api/lists/{id}/profiles``: burst 75/s, steady 750/m. The client sends one request at a time
and leaves 429 (honouring ``Retry-After``) and 5xx to :class:`~segmentation.infra.esp.http.JsonApi`,
which retries within its budget and then raises :class:`DestinationUnavailableError`, as it does for
401/403 (a bad or under-scoped key: ``lists:read``, ``lists:write``, ``profiles:read`` and
``profiles:write`` are needed). Every HTTP request, retries included, counts in
:attr:`PushResult.calls`.

Emails are lower-cased (stripped) on the way in and out. Nothing is logged; emails and the key never
appear in exception messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from ...service.ports import DestinationUnavailableError, Push, PushResult
from .http import JsonApi, Response

JSON_API = "application/vnd.api+json"
REVISION = "2026-07-15"
#: profiles per bulk import job (Klaviyo's limit: 10,000)
JOB_PROFILES = 10_000
#: bytes per bulk import job body (Klaviyo's limit: 5 MB; kept under 5,000,000 and 5 MiB alike)
JOB_BYTES = 4_500_000
#: bytes per profile in a job (Klaviyo's limit: 100 KB)
PROFILE_BYTES = 100_000
#: profile ids per list relationship change (Klaviyo's limit: 1,000)
RELATIONSHIP_CHUNK = 1_000
#: page size of every listing (the document's maximum), and emails per ``any(email,[...])`` lookup
PAGE_SIZE = 100
#: characters of ``filter`` per lookup: long addresses make smaller lookups (the URL stays short)
LOOKUP_FILTER_CHARS = 4_000
#: requests allowed, beyond the first, to tell the bad profiles of one refused request from the others
ISOLATION_CALLS = 32

_JOB_ENVELOPE_BYTES = 512  # the job's body around its profiles, generously
_ROW_OF_JOB = re.compile(r"/data/attributes/profiles/data/(\d+)(?:/(.*))?")
_ROW_OF_RELATIONSHIPS = re.compile(r"/data/(\d+)(?:/(.*))?")
_ADDRESS = re.compile(r"""[^\s@"'<>(),;:\[\]]+@[^\s@"'<>(),;:\[\]]+""")


@dataclass
class _Wanted:
    """Everything the pushes of one batch want for one email (pushes of the same email merged, the
    later winning)."""

    email: str
    add: set[str] = field(default_factory=set)
    remove: set[str] = field(default_factory=set)
    set: dict[str, Any] = field(default_factory=dict)
    esp_id: str | None = None


@dataclass(frozen=True)
class _Item:
    """One profile in a request: its email and what the request says of it (a profile resource, an id)."""

    email: str
    payload: Any
    given: bool = False  # an id the caller gave (esp_id), not one looked up now


@dataclass(frozen=True)
class _Refusal:
    reason: str
    rows: Mapping[int, str]  # the items the errors point at -> their reason
    whole: bool  # an error points at the request itself: every part of it would be refused alike


def _merge(pushes: Sequence[Push]) -> dict[str, _Wanted]:
    wanted: dict[str, _Wanted] = {}
    for push in pushes:
        email = push.email.strip().lower()
        if not email:
            continue
        w = wanted.setdefault(email, _Wanted(email))
        w.remove = (w.remove - set(push.add)) | set(push.remove)
        w.add = (w.add - set(push.remove)) | set(push.add)
        w.set.update(push.set)
        w.esp_id = push.esp_id or w.esp_id
    return wanted


def _size(value: Any) -> int:
    """Bytes of ``value`` as :class:`JsonApi` sends it."""
    return len(json.dumps(value, separators=(",", ":")))


def _profile(w: _Wanted) -> dict[str, Any]:
    """A bulk import profile: identified by email only, its properties, the ``None`` ones unset."""
    attributes: dict[str, Any] = {"email": w.email}
    properties = {k: v for k, v in w.set.items() if v is not None}
    if properties:
        attributes["properties"] = properties
    resource: dict[str, Any] = {"type": "profile", "attributes": attributes}
    unset = sorted(k for k, v in w.set.items() if v is None)
    if unset:
        resource["meta"] = {"patch_properties": {"unset": unset}}
    return resource


def _job(items: Sequence[_Item], list_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": [item.payload for item in items]}},
    }
    if list_id is not None:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return {"data": data}


def _jobs(items: Sequence[_Item]) -> Iterator[list[_Item]]:
    """``items`` in jobs of at most :data:`JOB_PROFILES` profiles and :data:`JOB_BYTES` bytes."""
    job: list[_Item] = []
    size = _JOB_ENVELOPE_BYTES
    for item in items:
        item_size = _size(item.payload) + 1
        if job and (len(job) >= JOB_PROFILES or size + item_size > JOB_BYTES):
            yield job
            job, size = [], _JOB_ENVELOPE_BYTES
        job.append(item)
        size += item_size
    if job:
        yield job


def _quoted(email: str) -> str | None:
    """``email`` as a string of Klaviyo's filter syntax, or None if it cannot be one (both quotes)."""
    if '"' not in email:
        return f'"{email}"'
    if "'" not in email:
        return f"'{email}'"
    return None


def _lookups(emails: Sequence[str]) -> Iterator[list[_Item]]:
    """``emails`` in lookups of at most :data:`PAGE_SIZE` emails and :data:`LOOKUP_FILTER_CHARS`."""
    batch: list[_Item] = []
    size = 0
    for email in emails:
        quoted = _quoted(email)
        assert quoted is not None
        if batch and (len(batch) >= PAGE_SIZE or size + len(quoted) + 1 > LOOKUP_FILTER_CHARS):
            yield batch
            batch, size = [], 0
        batch.append(_Item(email, quoted))
        size += len(quoted) + 1
    if batch:
        yield batch


def _mask(text: str) -> str:
    return _ADDRESS.sub("<email>", text)


def _refusal(answer: Response, size: int, row: re.Pattern[str] | None) -> _Refusal:
    """What a 4xx answer says: which of the request's ``size`` items its errors point at (``row``:
    how a pointer names one), and whether one points at the request itself."""
    errors = answer.data.get("errors") if isinstance(answer.data, dict) else None
    rows: dict[int, str] = {}
    whole = answer.status not in (400, 413, 422)  # a 404 (no such list), a 409...: not about one profile
    first = ""
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        code = str(error.get("code") or "")
        detail = _mask(str(error.get("detail") or error.get("title") or ""))
        source = error.get("source")
        pointer = source.get("pointer") if isinstance(source, dict) else None
        match = row.fullmatch(pointer) if row is not None and isinstance(pointer, str) else None
        if match and int(match.group(1)) < size:
            where = f" at {match.group(2)}" if match.group(2) else ""
            rows.setdefault(int(match.group(1)), f"Klaviyo refused it ({answer.status} {code}{where}): {detail}"[:200])
        elif isinstance(pointer, str) and pointer:
            whole = True
        first = first or f"{answer.status} {code}: {detail}"
    return _Refusal(reason=(first or f"{answer.status}")[:200], rows=rows, whole=whole and not rows)


class KlaviyoClient:
    """:class:`~segmentation.service.ports.EspClient` for one Klaviyo account (a private API key with
    the ``lists`` and ``profiles`` read and write scopes). ``target`` / ``Push.add`` / ``Push.remove``
    are Klaviyo list ids; ``Push.set`` are custom properties; ``Push.esp_id`` is a Klaviyo profile id.
    ``http_options`` go to :class:`~segmentation.infra.esp.http.JsonApi` (``attempts``,
    ``backoff_factor``, ``backoff_max``, ``max_wait``, ``timeout``...)."""

    def __init__(self, api_key: str, *, base_url: str = "https://a.klaviyo.com", revision: str = REVISION,
                 **http_options: Any) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("a Klaviyo private API key is required")
        headers = {"Authorization": f"Klaviyo-API-Key {api_key.strip()}", "revision": revision, "Accept": JSON_API}
        self._api = JsonApi(base_url, headers, name="klaviyo", content_type=JSON_API, **http_options)
        self._base_path = urlsplit(self._api.base_url).path

    def __repr__(self) -> str:  # never the key
        return f"KlaviyoClient({self._api.base_url!r})"

    # -- EspClient --------------------------------------------------------------------------------

    def push(self, pushes: Sequence[Push]) -> PushResult:
        result = PushResult()
        wanted = _merge(pushes)
        self._import(wanted, result)
        self._remove(wanted, result)
        return result

    def members(self, target: str) -> Iterator[tuple[str, str | None]]:
        path = f"/api/lists/{quote(target, safe='')}/profiles"
        params = {"fields[profile]": "email", "page[size]": str(PAGE_SIZE)}
        while True:
            answer = self._api.request("GET", path, params=params)
            if answer.status >= 300:
                raise DestinationUnavailableError(
                    f"klaviyo: listing the members of list {target} answered {answer.status}"
                    + (" (no such list)" if answer.status == 404 else ""))
            page = answer.data if isinstance(answer.data, dict) else {}
            for item in page.get("data") or []:
                email = ((item.get("attributes") or {}).get("email") or "").strip().lower()
                if email:  # a member without email (a phone number only) is nobody the sync knows
                    yield email, item.get("id")
            following = (page.get("links") or {}).get("next")
            if not following:
                return
            path, params = self._follow(following)

    # -- additions and properties: bulk import jobs -------------------------------------------------

    def _import(self, wanted: Mapping[str, _Wanted], result: PushResult) -> None:
        by_list: dict[str | None, list[_Item]] = {}
        for w in wanted.values():
            if not (w.add or w.set):
                continue
            item = _Item(w.email, _profile(w))
            if _size(item.payload) > PROFILE_BYTES:
                result.failed[w.email] = f"the profile is over Klaviyo's {PROFILE_BYTES:,} bytes (its properties)"
                continue
            for list_id in sorted(w.add) or [None]:
                by_list.setdefault(list_id, []).append(item)
        for list_id in sorted(by_list, key=lambda k: (k is None, k or "")):
            what = f"the bulk import to list {list_id}" if list_id is not None else "the bulk import of properties"
            for job in _jobs(by_list[list_id]):
                self._settle(job, lambda part, list_id=list_id: self._call(
                    "POST", "/api/profile-bulk-import-jobs", result, body=_job(part, list_id)),
                    _ROW_OF_JOB, result, what)

    # -- removals: ids, then list relationships -----------------------------------------------------

    def _remove(self, wanted: Mapping[str, _Wanted], result: PushResult) -> None:
        leaving = [w for w in wanted.values() if w.remove]
        if not leaving:
            return
        ids = self._lookup([w.email for w in leaving if not w.esp_id], result)
        result.learned_ids.update(ids)
        by_list: dict[str, list[_Item]] = {}
        for w in leaving:
            profile_id = w.esp_id or ids.get(w.email)
            if profile_id is None:
                continue  # not in Klaviyo, so in no list (or not looked up: failed already)
            for list_id in sorted(w.remove):
                by_list.setdefault(list_id, []).append(_Item(w.email, profile_id, given=bool(w.esp_id)))
        for list_id in sorted(by_list):
            items = by_list[list_id]
            for start in range(0, len(items), RELATIONSHIP_CHUNK):
                self._remove_chunk(list_id, items[start:start + RELATIONSHIP_CHUNK], result)

    def _remove_chunk(self, list_id: str, chunk: list[_Item], result: PushResult) -> None:
        path = f"/api/lists/{quote(list_id, safe='')}/relationships/profiles"

        def send(part: Sequence[_Item]) -> Response:
            return self._call("DELETE", path, result,
                              body={"data": [{"type": "profile", "id": item.payload} for item in part]})

        answer = send(chunk)
        if answer.status < 300:
            return
        given = [item.email for item in chunk if item.given]
        if given:  # ids the caller remembered may be stale (a profile merged, deleted): ask Klaviyo again
            fresh = self._lookup(given, result)
            result.learned_ids.update(fresh)
            chunk = [item if not item.given else _Item(item.email, fresh[item.email])
                     for item in chunk if not item.given or item.email in fresh]
            if not chunk:
                return
        self._settle(chunk, send, _ROW_OF_RELATIONSHIPS, result, f"the removal from list {list_id}",
                     first=None if given else answer)

    def _lookup(self, emails: Sequence[str], result: PushResult) -> dict[str, str]:
        """Klaviyo's profile ids of ``emails`` (those it has), 100 emails per request."""
        found: dict[str, str] = {}
        searchable = []
        for email in dict.fromkeys(emails):
            if _quoted(email) is None:
                result.failed[email] = "the address has both quote characters: it cannot be looked up in Klaviyo"
            else:
                searchable.append(email)

        def send(part: Sequence[_Item]) -> Response:
            wanted = {item.email for item in part}
            path, params = "/api/profiles", {
                "filter": f"any(email,[{','.join(item.payload for item in part)}])",
                "fields[profile]": "email",
                "page[size]": str(PAGE_SIZE),
            }
            while True:
                answer = self._call("GET", path, result, params=params)
                if answer.status >= 300 or not isinstance(answer.data, dict):
                    return answer
                for profile in answer.data.get("data") or []:
                    email = ((profile.get("attributes") or {}).get("email") or "").strip().lower()
                    if email in wanted and profile.get("id"):
                        found[email] = profile["id"]
                following = (answer.data.get("links") or {}).get("next")
                if not following:
                    return answer
                path, params = self._follow(following)

        for batch in _lookups(searchable):
            self._settle(batch, send, None, result, "the lookup of its Klaviyo profile")
        return found

    # -- requests -----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, result: PushResult, *, body: Any = None,
              params: Mapping[str, str] | None = None) -> Response:
        answer = self._api.request(method, path, body=body, params=params)
        result.calls += answer.requests
        if answer.status >= 300 and not 400 <= answer.status < 500:
            raise DestinationUnavailableError(f"klaviyo: {method} {path} answered {answer.status}")
        return answer

    def _follow(self, url: str) -> tuple[str, dict[str, str]]:
        """A ``links.next`` as a path under ``base_url`` and its query (the host is not trusted)."""
        split = urlsplit(url)
        path = split.path
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path):]
        if not path.startswith("/api/"):
            raise DestinationUnavailableError("klaviyo: a page's next link is not an API path")
        return path, dict(parse_qsl(split.query, keep_blank_values=True))

    def _settle(self, items: list[_Item], send: Callable[[Sequence[_Item]], Response],
                row: re.Pattern[str] | None, result: PushResult, what: str,
                first: Response | None = None) -> None:
        """Send ``items`` in one request; if Klaviyo refuses it (4xx), find which items it refuses
        (the errors' pointers, else halves), fail those and send the rest again.

        ``first``: the answer to a request of ``items`` already sent (not sent again)."""
        pending = [items]
        sent = 0  # requests of these items so far: 1 + ISOLATION_CALLS at most
        while pending:
            part = pending.pop()
            if first is not None:
                answer, first = first, None
            elif sent > ISOLATION_CALLS:
                for item in part:
                    result.failed[item.email] = (f"{what} was refused (with other profiles; not told apart "
                                                 f"within {ISOLATION_CALLS} requests)")
                continue
            else:
                answer = send(part)
            sent += 1
            if answer.status < 300:
                continue
            refusal = _refusal(answer, len(part), row)
            if refusal.rows:
                for i, reason in refusal.rows.items():
                    result.failed[part[i].email] = reason.replace(part[i].email, "<email>")
                rest = [item for i, item in enumerate(part) if i not in refusal.rows]
                if rest:
                    pending.append(rest)
            elif refusal.whole or len(part) == 1:
                for item in part:
                    result.failed[item.email] = f"Klaviyo refused {what} ({refusal.reason})"[:200]
            else:
                half = len(part) // 2
                pending.extend([part[half:], part[:half]])
