"""A local fake of Klaviyo's API that checks every request against Klaviyo's published OpenAPI document.

``FakeKlaviyo`` is an HTTP server (``http.server`` in a thread, 127.0.0.1, a free port) for the ESP
sync's tests (issue 12). Every request is checked in this order, and refused before anything changes:

1. ``Authorization: Klaviyo-API-Key <key>`` (401 otherwise);
2. the ``revision`` header equal to ``2026-07-15`` (400 otherwise);
3. path, method, query, headers and the JSON:API body against the OpenAPI document
   (tests/contracts/klaviyo-openapi-stable-2026-07-15.json) with openapi-core: 404 for a path the
   document does not have, 405 for a method it does not have there, 400 for anything else;
4. injected faults (``fail_next``): 429 with ``Retry-After``, or 5xx bursts;
5. the endpoint itself, on the fake's state.

Refusals of steps 1-3 are kept in ``invalid`` (a sync test asserts ``fake.invalid == []``); every
request is kept in ``calls`` (with its body). The fake's own answers are checked against the document too
(``response_errors``), so the fake cannot drift from what Klaviyo answers.

Beyond the schema, the fake refuses what Klaviyo refuses in a well-formed request (the limits in the
endpoints' descriptions; the answers' shape as integrations report Klaviyo's). These are not kept in
``invalid``:

* a bulk import of more than 10,000 profiles (400), with a body over 5 MB (413), with a profile over
  100 KB or with an email that is not an address (400, one error per profile, each with
  ``source.pointer`` ``/data/attributes/profiles/data/<i>/...``), or naming a list that does not exist
  (400 at ``/data``): the whole job is refused and nothing of it applied;
* a list relationship change of more than 1,000 profiles (400).

A bulk import writes only non-null values, as Klaviyo's does: a property sent as ``null`` stays as it
was (``meta.patch_properties.unset`` removes it).

``error_pointers = False`` makes these refusals come without ``source`` (to test a client that must then
find the bad profiles itself). Filters: ``equals(<field>,"value")`` and ``any(<field>,["a","b"])``;
sparse fieldsets (``fields[profile]=email``) trim profile attributes.

State: profiles (by id, looked up by email), their custom ``properties`` and whether they are
suppressed, lists and their members, bulk import and suppression jobs (applied at once, reported
``complete``). ``snapshot()`` gives all of it as plain
data keyed by email, to compare before and after.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from .local_server import LocalServer, Refusal

if TYPE_CHECKING:
    from openapi_core import OpenAPI
    from openapi_core.testing import MockRequest

REVISION = "2026-07-15"
#: Klaviyo's published document, kept with the tests (tests/contracts/README.md says where it comes from)
DOCUMENT = Path(__file__).resolve().parents[3] / "tests" / "contracts" / f"klaviyo-openapi-stable-{REVISION}.json"
JSON_API = "application/vnd.api+json"
HOST = "https://a.klaviyo.com"  # the document's server: paths are matched against it
DEFAULT_KEY = "pk_fake_klaviyo_test_key"

# Klaviyo's limits (the endpoints' descriptions in the document)
BULK_IMPORT_MAX_PROFILES = 10_000
BULK_IMPORT_MAX_BYTES = 5_000_000
PROFILE_MAX_BYTES = 100_000
RELATIONSHIPS_MAX = 1_000
_ADDRESS = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")

# Profile attributes the fake keeps (besides ``properties``), as the document names them.
PROFILE_FIELDS = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)


@functools.cache
def openapi() -> OpenAPI | None:
    """Klaviyo's document, loaded once per process (about 0.03-0.1 s; a small request is then checked in ~3 ms).

    None where openapi-core (a dev dependency) or the document is missing: the fake then keeps state
    and records calls without checking them (the local runner outside a development install).

    openapi-spec-validator's check of the document itself is off: the published document fails it in
    a schema the sync never uses (a web-safe-font ``default`` that matches both branches of a
    ``oneOf``), and the check is not what we are testing. Request and response validation is on.
    """
    try:
        from openapi_core import Config, OpenAPI
    except ImportError:
        return None
    if not DOCUMENT.exists():
        return None
    return OpenAPI.from_dict(json.loads(DOCUMENT.read_text()), config=Config(spec_validator_cls=None))


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # without the query string
    query: str
    status: int
    body: bytes = b""


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: int | None


class _Answer(Exception):
    """Ends a request with a JSON:API error (or any status and body)."""

    def __init__(self, status: int, detail: str = "", *, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.body = body
        self.headers = headers or {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _new_id() -> str:
    return "01" + uuid.uuid4().hex[:24].upper()


def _error(status: int, code: str, title: str, detail: str) -> dict[str, Any]:
    return {"errors": [{"id": str(uuid.uuid4()), "code": code, "title": title, "detail": detail}]}


def _refusal(status: int, problems: list[tuple[str | None, str]], pointers: bool = True) -> _Answer:
    """Klaviyo's refusal of a well-formed request: one error per problem (pointer, detail)."""
    errors = []
    for pointer, detail in problems:
        error = {"id": str(uuid.uuid4()), "code": _code(status), "title": _title(status), "detail": detail}
        if pointers and pointer is not None:
            error["source"] = {"pointer": pointer}
        errors.append(error)
    return _Answer(status, body={"errors": errors})


class FakeKlaviyo(LocalServer):
    """Start with ``with FakeKlaviyo() as fake:`` (or ``start()``/``stop()``); point the client at ``fake.base_url``."""

    def __init__(self, api_key: str = DEFAULT_KEY, *, page_size_max: int = 100, error_pointers: bool = True):
        self.api_key = api_key
        self.page_size_max = page_size_max
        self.error_pointers = error_pointers  # refusals of bad profiles name them in source.pointer
        self._lock = threading.RLock()
        # state
        self.profiles: dict[
            str, dict[str, Any]
        ] = {}  # id -> {"id", "created", "updated", <PROFILE_FIELDS>, "properties"}
        self._by_email: dict[str, str] = {}  # email -> profile id
        self.lists: dict[str, dict[str, Any]] = {}  # id -> {"id", "name", "members": {profile id: joined_at}}
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> job resource (attributes + lists + profile ids)
        self.suppression_jobs: dict[str, dict[str, Any]] = {}  # id -> {"type", "id", "attributes"}
        # records
        self.calls: list[Call] = []
        self.invalid: list[Refusal] = []
        #: (list id, email, "added" | "removed") for every membership that really changed
        self.membership_log: list[tuple[str, str, str]] = []
        self.response_errors: list[str] = []
        self._faults: list[_Fault] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, key: str | None = None) -> dict[str, str]:
        """The headers Klaviyo expects, for tests that talk to the fake directly."""
        return {
            "Authorization": f"Klaviyo-API-Key {key or self.api_key}",
            "revision": REVISION,
            "Accept": JSON_API,
            "Content-Type": JSON_API,
        }

    # -- set-up and fault injection ----------------------------------------------------------

    def suppress(self, email: str, suppressed: bool = True) -> None:
        """The profile unsubscribes (or is suppressed) in Klaviyo itself, e.g. from a campaign's link."""
        with self._lock:
            profile = self._find(email=email)
            assert profile is not None, f"no profile with email {email}"
            profile["suppressed"] = suppressed

    def add_profile(self, email: str, lists: tuple[str, ...] = ()) -> str:
        """A profile as if made in Klaviyo (a sign-up form, an import), in ``lists``; returns its id."""
        with self._lock:
            profile, _ = self._upsert({"attributes": {"email": email}})
            for list_id in lists:
                self._join(list_id, profile["id"])
            return profile["id"]

    def remove_from_list(self, list_id: str, email: str) -> None:
        """Take ``email`` out of a list, as someone editing it in Klaviyo would."""
        with self._lock:
            profile = self._find(email=email)
            if profile is not None:
                self.lists[list_id]["members"].pop(profile["id"], None)

    def create_list(self, name: str, list_id: str | None = None) -> str:
        """A list as if made in Klaviyo's UI; returns its id."""
        with self._lock:
            list_id = list_id or uuid.uuid4().hex[:6].upper()
            now = _now()
            self.lists[list_id] = {
                "id": list_id,
                "name": name,
                "created": now,
                "updated": now,
                "opt_in_process": "single_opt_in",
                "members": {},
            }
            return list_id

    def fail_next(self, n: int = 1, status: int = 429, retry_after: int | None = 2) -> None:
        """The next ``n`` valid requests are answered ``status`` (429 with ``Retry-After``, or a 5xx burst) and change nothing."""
        with self._lock:
            self._faults.append(_Fault(n, status, retry_after if status == 429 else None))

    # -- reading the state ---------------------------------------------------------------------

    def profile_by_email(self, email: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._find(email=email)
            return copy.deepcopy(found) if found else None

    def members(self, list_id: str) -> set[str]:
        """The emails of the list's members (the profile id where a member has no email)."""
        with self._lock:
            return {self.profiles[p].get("email") or p for p in self.lists[list_id]["members"]}

    def call_count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests reached the fake (refused and faulted ones included), by method and/or path."""
        return sum(1 for c in self.calls if (method is None or c.method == method) and (path is None or c.path == path))

    def call_counts(self) -> Counter[tuple[str, str]]:
        return Counter((c.method, c.path) for c in self.calls)

    def snapshot(self) -> dict[str, Any]:
        """Profiles by email (attributes and properties, no ids or timestamps) and list members by list name."""
        with self._lock:
            profiles = {
                p.get("email") or p["id"]: {
                    k: copy.deepcopy(v) for k, v in p.items() if k not in ("id", "created", "updated")
                }
                for p in self.profiles.values()
            }
            lists = {
                lst["name"]: sorted(self.profiles[p].get("email") or p for p in lst["members"])
                for lst in self.lists.values()
            }
            return {"profiles": profiles, "lists": lists, "jobs": len(self.jobs)}

    # -- request handling (called by _Handler) -------------------------------------------------

    def respond(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers.items())
        split = urlsplit(target)
        path, query = split.path, split.query
        status, out_headers, payload = self._answer(method, path, query, headers, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        if payload is not None:
            out_headers = {"Content-Type": JSON_API, **out_headers}
        with self._lock:
            self.calls.append(Call(method, path, query, status, body))
        if status < 500 and status not in (401, 404, 405, 429):
            self._check_response(method, path, query, headers, body, status, data)
        return status, out_headers, data

    def _answer(self, method, path, query, headers, body) -> tuple[int, dict[str, str], Any]:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            if lower.get("authorization") != f"Klaviyo-API-Key {self.api_key}":
                self._refuse(method, path, 401, "missing or wrong Authorization: Klaviyo-API-Key <key>")
            if lower.get("revision") != REVISION:
                self._refuse(method, path, 400, f"revision header must be {REVISION}, got {lower.get('revision')!r}")
            if method == "POST" and _BULK_IMPORT.fullmatch(path) and len(body) > BULK_IMPORT_MAX_BYTES:
                raise _refusal(413, [(None, f"The payload is larger than {BULK_IMPORT_MAX_BYTES} bytes.")])
            self._validate(method, path, query, headers, body)
            with self._lock:
                fault = next((f for f in self._faults if f.remaining > 0), None)
                if fault is not None:
                    fault.remaining -= 1
                    extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    title = "Request was throttled." if fault.status == 429 else "A server error occurred."
                    raise _Answer(fault.status, title, headers=extra)
                return self._route(method, path, dict(parse_qsl(query)), json.loads(body) if body else None)
        except _Answer as answer:
            payload = (
                answer.body
                if answer.body is not None
                else _error(answer.status, _code(answer.status), _title(answer.status), answer.detail)
            )
            return answer.status, answer.headers, payload

    def _refuse(self, method: str, path: str, status: int, reason: str) -> None:
        with self._lock:
            self.invalid.append(Refusal(method, path, status, reason))
        raise _Answer(status, reason)

    @property
    def validating(self) -> bool:
        """Whether requests are checked against Klaviyo's document (openapi-core installed)."""
        return openapi() is not None

    def _request(self, method, path, query, headers, body) -> MockRequest:
        from openapi_core.testing import MockRequest

        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        return MockRequest(
            HOST,
            method.lower(),
            path,
            args=parse_qsl(query, keep_blank_values=True),
            headers=headers,
            data=body or None,
            content_type=ctype.split(";")[0].strip() if ctype else JSON_API,
        )

    def _validate(self, method, path, query, headers, body) -> None:
        if openapi() is None:
            return
        from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound

        # Validation only: openapi-core's unmarshalling (request.body as objects) is ~100x slower on big bodies.
        errors = list(openapi().iter_request_errors(self._request(method, path, query, headers, body)))
        for error in errors:
            if isinstance(error, PathNotFound):
                self._refuse(method, path, 404, f"no such path in the document: {path}")
            if isinstance(error, OperationNotFound):
                self._refuse(method, path, 405, f"no {method} on {path} in the document")
        if errors:
            self._refuse(method, path, 400, "; ".join(_describe(e) for e in errors))

    def _check_response(self, method, path, query, headers, body, status, data) -> None:
        if openapi() is None:
            return
        from openapi_core.testing import MockResponse

        response = MockResponse(data, status_code=status, content_type=JSON_API if data else None)
        errors = list(openapi().iter_response_errors(self._request(method, path, query, headers, body), response))
        if errors:
            with self._lock:
                self.response_errors.extend(f"{method} {path} {status}: {_describe(e)}" for e in errors)

    # -- endpoints -----------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], doc: Any) -> tuple[int, dict[str, str], Any]:
        for pattern, verb, action in _ROUTES:
            match = pattern.fullmatch(path)
            if match and verb == method:
                return action(self, query, doc, *match.groups())
        raise _Answer(501, f"{method} {path} is in Klaviyo's document but not in the fake")

    def _find(self, *, email: str | None = None, external_id: str | None = None, phone: str | None = None):
        if email and email in self._by_email:
            return self.profiles[self._by_email[email]]
        if not (external_id or phone):
            return None
        for p in self.profiles.values():
            if (
                (email and p.get("email") == email)
                or (external_id and p.get("external_id") == external_id)
                or (phone and p.get("phone_number") == phone)
            ):
                return p
        return None

    def _upsert(self, resource: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Klaviyo's create-or-update: match by id, then email, external id or phone; merge ``properties``."""
        attrs = resource.get("attributes") or {}
        profile = self.profiles.get(resource.get("id") or "") or self._find(
            email=attrs.get("email"), external_id=attrs.get("external_id"), phone=attrs.get("phone_number")
        )
        created = profile is None
        if created:
            if resource.get("id"):
                raise _Answer(404, f"profile {resource['id']} not found")
            profile = {"id": _new_id(), "created": _now(), "properties": {}, "suppressed": False}
            self.profiles[profile["id"]] = profile
        self._apply(profile, attrs, resource.get("meta"))
        return profile, created

    def _apply(self, profile: dict[str, Any], attrs: dict[str, Any], meta: dict[str, Any] | None) -> None:
        if "email" in attrs and attrs["email"] != profile.get("email"):
            self._by_email.pop(profile.get("email"), None)
            if attrs["email"]:
                self._by_email[attrs["email"]] = profile["id"]
        for field in PROFILE_FIELDS:
            if field in attrs:
                profile[field] = attrs[field]
        profile["properties"].update(attrs.get("properties") or {})
        unset = ((meta or {}).get("patch_properties") or {}).get("unset")
        for name in [unset] if isinstance(unset, str) else unset or []:
            profile["properties"].pop(name, None)
        profile["updated"] = _now()

    def _profile_resource(self, profile: dict[str, Any], fields: str | None = None) -> dict[str, Any]:
        attrs = {f: profile.get(f) for f in PROFILE_FIELDS}
        attrs.update(created=profile["created"], updated=profile["updated"], properties=profile["properties"])
        if fields:  # a sparse fieldset: fields[profile]=email,first_name
            wanted = set(fields.split(","))
            attrs = {k: v for k, v in attrs.items() if k in wanted}
        return {
            "type": "profile",
            "id": profile["id"],
            "attributes": attrs,
            "links": {"self": f"{self.base_url}/api/profiles/{profile['id']}/"},
        }

    def _create_profile(self, query, doc, *_):
        attrs = doc["data"].get("attributes") or {}
        existing = self._find(
            email=attrs.get("email"), external_id=attrs.get("external_id"), phone=attrs.get("phone_number")
        )
        if existing:
            body = _error(
                409, "duplicate_profile", "Conflict.", "A profile already exists with one of these identifiers."
            )
            body["errors"][0]["meta"] = {"duplicate_profile_id": existing["id"]}
            raise _Answer(409, body=body)
        profile, _ = self._upsert({"attributes": attrs, "meta": doc["data"].get("meta")})
        return 201, {}, {"data": self._profile_resource(profile)}

    def _import_profile(self, query, doc, *_):
        profile, created = self._upsert(doc["data"])
        return (201 if created else 200), {}, {"data": self._profile_resource(profile)}

    def _update_profile(self, query, doc, profile_id):
        profile = self.profiles.get(profile_id)
        if profile is None or doc["data"].get("id") != profile_id:
            raise _Answer(404, f"profile {profile_id} not found")
        self._apply(profile, doc["data"].get("attributes") or {}, doc["data"].get("meta"))
        return 200, {}, {"data": self._profile_resource(profile)}

    def _get_profile(self, query, doc, profile_id):
        if profile_id not in self.profiles:
            raise _Answer(404, f"profile {profile_id} not found")
        return 200, {}, {"data": self._profile_resource(self.profiles[profile_id])}

    def _get_profiles(self, query, doc, *_):
        profiles = _filtered(
            list(self.profiles.values()), query.get("filter"), ("email", "external_id", "id", "phone_number")
        )
        fields = query.get("fields[profile]")
        return self._page("/api/profiles", query, [self._profile_resource(p, fields) for p in profiles])

    # lists

    def _list_resource(self, lst: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "list",
            "id": lst["id"],
            "attributes": {
                "name": lst["name"],
                "created": lst["created"],
                "updated": lst["updated"],
                "opt_in_process": lst["opt_in_process"],
            },
            "links": {"self": f"{self.base_url}/api/lists/{lst['id']}/"},
        }

    def _create_list(self, query, doc, *_):
        attrs = doc["data"]["attributes"]
        list_id = self.create_list(attrs["name"])
        self.lists[list_id]["opt_in_process"] = attrs.get("opt_in_process") or "single_opt_in"
        return 201, {}, {"data": self._list_resource(self.lists[list_id])}

    def _get_lists(self, query, doc, *_):
        lists = _filtered(list(self.lists.values()), query.get("filter"), ("name", "id"))
        return self._page("/api/lists", query, [self._list_resource(lst) for lst in lists])

    def _get_list(self, query, doc, list_id):
        return 200, {}, {"data": self._list_resource(self._list(list_id))}

    def _delete_list(self, query, doc, list_id):
        self._list(list_id)
        del self.lists[list_id]
        return 204, {}, None

    def _list(self, list_id: str) -> dict[str, Any]:
        if list_id not in self.lists:
            raise _Answer(404, f"list {list_id} not found")
        return self.lists[list_id]

    def _list_members_change(self, query, doc, list_id, add: bool):
        members = self._list(list_id)["members"]
        ids = [item["id"] for item in doc["data"]]
        if len(ids) > RELATIONSHIPS_MAX:
            raise _refusal(400, [("/data", f"At most {RELATIONSHIPS_MAX} profiles per request.")], self.error_pointers)
        missing = [i for i in ids if i not in self.profiles]
        if missing:
            raise _Answer(404, f"profiles not found: {', '.join(missing)}")
        for profile_id in ids:
            if add:
                self._join(list_id, profile_id)
            elif members.pop(profile_id, None) is not None:
                self.membership_log.append((list_id, self.profiles[profile_id].get("email") or profile_id, "removed"))
        return 204, {}, None

    def _join(self, list_id: str, profile_id: str) -> None:
        members = self.lists[list_id]["members"]
        if profile_id not in members:
            members[profile_id] = _now()
            self.membership_log.append((list_id, self.profiles[profile_id].get("email") or profile_id, "added"))

    def _add_to_list(self, query, doc, list_id):
        return self._list_members_change(query, doc, list_id, add=True)

    def _remove_from_list(self, query, doc, list_id):
        return self._list_members_change(query, doc, list_id, add=False)

    def _list_relationships(self, query, doc, list_id):
        ids = list(self._list(list_id)["members"])
        return self._page(
            f"/api/lists/{list_id}/relationships/profiles", query, [{"type": "profile", "id": i} for i in ids]
        )

    def _list_profiles(self, query, doc, list_id):
        members = self._list(list_id)["members"]
        resources = []
        fields = query.get("fields[profile]")
        for profile_id, joined in members.items():
            resource = self._profile_resource(self.profiles[profile_id], fields)
            resource["attributes"]["joined_group_at"] = joined
            resources.append(resource)
        return self._page(f"/api/lists/{list_id}/profiles", query, resources)

    def _page(self, path: str, query: dict[str, str], items: list[Any]):
        size = int(query.get("page[size]", 20))
        start = int(query.get("page[cursor]", 0) or 0)
        links = {"self": f"{self.base_url}{path}"}
        if start + size < len(items):  # the next page keeps the filter and fields, as Klaviyo's links do
            following = {**{k: v for k, v in query.items() if k != "page[cursor]"}, "page[size]": size,
                         "page[cursor]": start + size}
            links["next"] = f"{self.base_url}{path}?{urlencode(following)}"
        return 200, {}, {"data": items[start : start + size], "links": links}

    def _bulk_import(self, query, doc, *_):
        data = doc["data"]
        list_ids = [item["id"] for item in ((data.get("relationships") or {}).get("lists") or {}).get("data") or []]
        for list_id in list_ids:
            if list_id not in self.lists:
                raise _refusal(400, [("/data", f"List ID {list_id} does not exist.")], self.error_pointers)
        resources = data["attributes"]["profiles"]["data"]
        if len(resources) > BULK_IMPORT_MAX_PROFILES:
            raise _refusal(400, [("/data/attributes/profiles/data",
                                  f"At most {BULK_IMPORT_MAX_PROFILES} profiles per job.")], self.error_pointers)
        problems = []
        for i, resource in enumerate(resources):
            email = (resource.get("attributes") or {}).get("email")
            if len(json.dumps(resource, separators=(",", ":"))) > PROFILE_MAX_BYTES:
                problems.append((f"/data/attributes/profiles/data/{i}",
                                 f"The profile is larger than {PROFILE_MAX_BYTES} bytes."))
            elif email is not None and not _ADDRESS.fullmatch(email):
                problems.append((f"/data/attributes/profiles/data/{i}/attributes/email",
                                 f"{email} is not a valid email address."))
        if problems:
            raise _refusal(400, problems, self.error_pointers)
        profile_ids = []
        for resource in resources:
            profile, _ = self._upsert(_without_nulls(resource))
            profile_ids.append(profile["id"])
            for list_id in list_ids:
                self._join(list_id, profile["id"])
        job_id = _new_id()
        now = _now()
        self.jobs[job_id] = {
            "id": job_id,
            "lists": list_ids,
            "profiles": profile_ids,
            "attributes": {
                "status": "complete",
                "created_at": now,
                "total_count": len(profile_ids),
                "completed_count": len(profile_ids),
                "failed_count": 0,
                "started_at": now,
                "completed_at": now,
                "expires_at": None,
            },
        }
        return 202, {}, {"data": self._job_resource(self.jobs[job_id])}

    def _job_resource(self, job: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/api/profile-bulk-import-jobs/{job['id']}"
        return {
            "type": "profile-bulk-import-job",
            "id": job["id"],
            "attributes": dict(job["attributes"]),
            "relationships": {"lists": {"data": [{"type": "list", "id": i} for i in job["lists"]]}},
            "links": {"self": f"{url}/"},
        }

    def _suppression_job(self, query, doc, *_, suppress: bool):
        """Bulk (un)suppression by email, applied at once; emails without a profile are skipped."""
        emails = [p["attributes"]["email"] for p in (doc["data"]["attributes"].get("profiles") or {}).get("data", [])]
        done = 0
        for email in emails:
            profile = self._find(email=email)
            if profile is not None:
                profile["suppressed"] = suppress
                done += 1
        job_id, now = _new_id(), _now()
        job = {
            "type": doc["data"]["type"],
            "id": job_id,
            "attributes": {
                "status": "complete",
                "created_at": now,
                "total_count": len(emails),
                "completed_count": done,
                "skipped_count": len(emails) - done,
                "completed_at": now,
            },
        }
        self.suppression_jobs[job_id] = job
        return 202, {}, {"data": {**job, "links": {"self": f"{self.base_url}/api/{job['type']}s/{job_id}/"}}}

    def _suppress(self, query, doc, *_):
        return self._suppression_job(query, doc, suppress=True)

    def _unsuppress(self, query, doc, *_):
        return self._suppression_job(query, doc, suppress=False)

    def _get_job(self, query, doc, job_id):
        if job_id not in self.jobs:
            raise _Answer(404, f"job {job_id} not found")
        return 200, {}, {"data": self._job_resource(self.jobs[job_id])}


_BULK_IMPORT = re.compile(r"/api/profile-bulk-import-jobs/?")


def _without_nulls(resource: dict[str, Any]) -> dict[str, Any]:
    """A bulk import profile as Klaviyo applies it: a ``null`` attribute or property changes nothing
    (Klaviyo's bulk import guide: only non-null values are written; ``meta.patch_properties.unset``
    removes a property)."""
    attrs = {k: v for k, v in (resource.get("attributes") or {}).items() if v is not None}
    if isinstance(attrs.get("properties"), dict):
        attrs["properties"] = {k: v for k, v in attrs["properties"].items() if v is not None}
    return {**resource, "attributes": attrs}

_ROUTES = [
    (re.compile(r"/api/profiles/?"), "POST", FakeKlaviyo._create_profile),
    (re.compile(r"/api/profiles/?"), "GET", FakeKlaviyo._get_profiles),
    (re.compile(r"/api/profiles/([^/]+)/?"), "GET", FakeKlaviyo._get_profile),
    (re.compile(r"/api/profiles/([^/]+)/?"), "PATCH", FakeKlaviyo._update_profile),
    (re.compile(r"/api/profile-import/?"), "POST", FakeKlaviyo._import_profile),
    (re.compile(r"/api/profile-bulk-import-jobs/?"), "POST", FakeKlaviyo._bulk_import),
    (re.compile(r"/api/profile-bulk-import-jobs/([^/]+)/?"), "GET", FakeKlaviyo._get_job),
    (re.compile(r"/api/lists/([^/]+)/relationships/profiles/?"), "POST", FakeKlaviyo._add_to_list),
    (re.compile(r"/api/lists/([^/]+)/relationships/profiles/?"), "DELETE", FakeKlaviyo._remove_from_list),
    (re.compile(r"/api/lists/([^/]+)/relationships/profiles/?"), "GET", FakeKlaviyo._list_relationships),
    (re.compile(r"/api/lists/([^/]+)/profiles/?"), "GET", FakeKlaviyo._list_profiles),
    (re.compile(r"/api/lists/?"), "POST", FakeKlaviyo._create_list),
    (re.compile(r"/api/lists/?"), "GET", FakeKlaviyo._get_lists),
    (re.compile(r"/api/lists/([^/]+)/?"), "GET", FakeKlaviyo._get_list),
    (re.compile(r"/api/lists/([^/]+)/?"), "DELETE", FakeKlaviyo._delete_list),
    (re.compile(r"/api/profile-suppression-bulk-create-jobs/?"), "POST", FakeKlaviyo._suppress),
    (re.compile(r"/api/profile-suppression-bulk-delete-jobs/?"), "POST", FakeKlaviyo._unsuppress),
]


_QUOTED = r"""(?:"[^"]*"|'[^']*')"""


def _filtered(items: list[dict[str, Any]], wanted: str | None, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Klaviyo's ``filter`` as far as the fake understands it: ``equals(<field>,'value')`` (or ``"value"``)
    and ``any(<field>,["a","b"])`` (the document allows both on every field the fake filters on)."""
    if not wanted:
        return items
    match = re.fullmatch(r"""equals\((\w+),\s*(["'])(.*)\2\)""", wanted)
    if match and match.group(1) in fields:
        field, _, value = match.groups()
        return [item for item in items if item.get(field) == value]
    match = re.fullmatch(rf"any\((\w+),\s*\[(\s*{_QUOTED}(?:\s*,\s*{_QUOTED})*\s*)\]\)", wanted)
    if match and match.group(1) in fields:
        field, inner = match.groups()
        values = {value[1:-1] for value in re.findall(_QUOTED, inner)}
        return [item for item in items if item.get(field) in values]
    raise _Answer(
        400, f"the fake understands only equals(<{'|'.join(fields)}>,'value') and any(<field>,['a','b']), not {wanted}"
    )


def _describe(error: Exception) -> str:
    """openapi-core's error and the schema errors it wraps (where, which rule), without the whole value."""
    parts = [type(error).__name__]
    chain, cause = [error], error.__cause__
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__
    for link in chain:
        for e in getattr(link, "schema_errors", None) or ():
            parts.append(f"{'/'.join(map(str, e.absolute_path)) or '<value>'}: {_short(e.message)}")
    if len(parts) == 1:
        parts.extend(f"{type(link).__name__}: {_short(str(link))}" for link in chain)
    return " | ".join(parts)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _code(status: int) -> str:
    return {
        400: "invalid",
        401: "not_authenticated",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        429: "throttled",
    }.get(status, "error")


def _title(status: int) -> str:
    return {
        400: "Invalid input.",
        401: "Authentication credentials were not provided.",
        404: "Not found.",
        413: "Request entity too large.",
        429: "Request was throttled.",
    }.get(status, "Error.")


FakeKlaviyo.name = "fake-klaviyo"
