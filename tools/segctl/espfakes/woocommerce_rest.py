"""A local fake of a WooCommerce store's REST API v3 (orders and customers, read only), for the
history import's tests (issue 14).

``FakeWooCommerce`` is an HTTP server (``http.server`` in a thread, 127.0.0.1, a free port). Give it
the REST objects to serve and point the client at ``fake.base_url`` with ``fake.key`` / ``fake.secret``:

    with FakeWooCommerce(orders=[...], customers=[...]) as fake:
        WooCommerceRest("https://shop.example.com", fake.key, fake.secret, base_url=fake.base_url)

Every request is handled in this order, as WooCommerce does:

1. injected faults (``fail_next``): e.g. 503, or 429 with ``Retry-After``;
2. ``html_instead``: the site does not serve the REST API (plain permalinks, another CMS): every path
   answers 200 with an HTML page, as WordPress serves its front page then;
3. only ``GET /wp-json/wc/v3/orders`` and ``/customers`` exist (404 ``rest_no_route`` otherwise; 405
   is not modelled);
4. authentication: HTTP Basic with the consumer key as user and the secret as password, checked as
   ``WC_REST_Authentication`` does: no credentials -> 401 ``woocommerce_rest_cannot_view``; an
   unknown key -> 401 "Consumer key is invalid."; a wrong secret -> 401 "Consumer secret is
   invalid."; a key without read permission (``permissions="write"``) -> 401 "The API key provided
   does not have read permissions.";
5. the query: ``per_page`` 1 to 100 (default 10), ``page`` from 1 (default 1), ``orderby`` ``id`` or
   ``date`` (default ``date``; the API's other orders are not modelled), ``order`` ``asc`` or ``desc``
   (default ``desc``); anything else is a 400 ``rest_invalid_param``;
6. the page, with WordPress's pagination headers: ``X-WP-Total``, ``X-WP-TotalPages`` and a ``Link``
   header (``rel="prev"`` / ``rel="next"``). A page past the last is an empty list.

Errors are WordPress's ``{"code", "message", "data": {"status"}}``. Every request is kept in
``requests`` (path, query, status, whether it carried credentials); the credentials never are.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .local_server import LocalServer

DEFAULT_KEY = "ck_4f0b2c9d8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c"
DEFAULT_SECRET = "cs_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
API = "/wp-json/wc/v3"
RESOURCES = ("orders", "customers")
MAX_PER_PAGE = 100


@dataclass(frozen=True)
class Request:
    path: str
    query: str
    status: int
    authenticated: bool  # carried Basic credentials (right or wrong)


class _Answer(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _date_key(record: dict) -> str:
    return str(record.get("date_created_gmt") or record.get("date_created") or "")


class FakeWooCommerce(LocalServer):
    """See the module docstring."""

    name = "fake-woocommerce"

    def __init__(self, orders: Iterable[Any] = (), customers: Iterable[Any] = (), *, key: str = DEFAULT_KEY,
                 secret: str = DEFAULT_SECRET, permissions: str = "read", html_instead: bool = False) -> None:
        if permissions not in ("read", "write", "read_write"):
            raise ValueError("permissions is read, write or read_write (as WooCommerce's key settings)")
        self.key, self.secret, self.permissions = key, secret, permissions
        self.html_instead = html_instead
        self._records = {"orders": copy.deepcopy(list(orders)), "customers": copy.deepcopy(list(customers))}
        self._lock = threading.Lock()
        self._faults: list[tuple[int, int | None]] = []
        self.requests: list[Request] = []

    @property
    def base_url(self) -> str:
        """The site's root (``https://shop.example.com``'s stand-in): the client adds ``/wp-json/wc/v3``."""
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, n: int = 1, status: int = 503, retry_after: int | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (429 comes with ``Retry-After``, 1 s by default)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._faults.extend([(status, retry_after)] * n)

    def pages_served(self, resource: str) -> list[int]:
        """The page numbers of ``resource`` answered 200, in order."""
        out = []
        for r in self.requests:
            if r.path == f"{API}/{resource}" and r.status == 200:
                out.append(int(parse_qs(r.query).get("page", ["1"])[0]))
        return out

    # -- request handling -------------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(target)
        path, query = split.path.rstrip("/"), split.query
        auth = headers.get("Authorization")
        try:
            status, out, body = self._handle(method, path, query, auth)
        except _Answer as answer:
            status, out = answer.status, {"Content-Type": "application/json; charset=UTF-8", **answer.headers}
            body = json.dumps({"code": answer.code, "message": answer.message,
                               "data": {"status": answer.status}}).encode()
        with self._lock:
            self.requests.append(Request(path, query, status, bool(auth and auth.startswith("Basic "))))
        return status, out, body

    def _handle(self, method: str, path: str, query: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault:
            status, retry_after = fault
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            raise _Answer(status, "fault", "Injected fault.", extra)
        if self.html_instead:
            page = b"<!DOCTYPE html><html><head><title>Shop</title></head><body>Welcome</body></html>"
            return 200, {"Content-Type": "text/html; charset=UTF-8"}, page
        resource = path.removeprefix(API + "/") if path.startswith(API + "/") else None
        if resource not in RESOURCES or method not in ("GET", "HEAD"):
            raise _Answer(404, "rest_no_route", "No route was found matching the URL and request method.")
        self._authenticate(auth)
        per_page, page, orderby, order = self._query(query)
        records = list(self._records[resource])
        if orderby == "id":
            records.sort(key=lambda r: (int(r["id"]) if str(r.get("id", "")).isdigit() else 0), reverse=order == "desc")
        else:
            records.sort(key=_date_key, reverse=order == "desc")
        total = len(records)
        pages = math.ceil(total / per_page)
        chunk = records[(page - 1) * per_page: page * per_page]
        out = {"Content-Type": "application/json; charset=UTF-8", "X-WP-Total": str(total),
               "X-WP-TotalPages": str(pages)}
        links = []
        base = parse_qs(query)
        for rel, n in (("prev", page - 1), ("next", page + 1)):
            if 1 <= n <= pages:
                q = urlencode({**{k: v[0] for k, v in base.items()}, "page": str(n)})
                links.append(f'<{self.base_url}{path}?{q}>; rel="{rel}"')
        if links:
            out["Link"] = ", ".join(links)
        # PHP's json_encode escapes slashes, as the real API's bodies do
        body = json.dumps(chunk, separators=(",", ":")).replace("/", "\\/").encode()
        return 200, out, b"" if method == "HEAD" else body

    def _authenticate(self, header: str | None) -> None:
        if not header or not header.startswith("Basic "):
            raise _Answer(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Answer(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.") from None
        if user != self.key:
            raise _Answer(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if password != self.secret:
            raise _Answer(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
        if self.permissions not in ("read", "read_write"):
            raise _Answer(401, "woocommerce_rest_authentication_error",
                          "The API key provided does not have read permissions.")

    @staticmethod
    def _query(query: str) -> tuple[int, int, str, str]:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}

        def invalid(name: str, why: str) -> _Answer:
            return _Answer(400, "rest_invalid_param", f"Invalid parameter(s): {name} ({why})")

        try:
            per_page = int(params.get("per_page", "10"))
            page = int(params.get("page", "1"))
        except ValueError:
            raise invalid("per_page/page", "not an integer") from None
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise invalid("per_page", f"must be between 1 (inclusive) and {MAX_PER_PAGE} (inclusive)")
        if page < 1:
            raise invalid("page", "must be greater than or equal to 1")
        orderby, order = params.get("orderby", "date"), params.get("order", "desc")
        if orderby not in ("id", "date"):
            raise invalid("orderby", "orderby is not one of date, id")
        if order not in ("asc", "desc"):
            raise invalid("order", "order is not one of asc, desc")
        return per_page, page, orderby, order
