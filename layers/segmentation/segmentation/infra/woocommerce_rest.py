"""A paged reader of a WooCommerce store's REST API v3, for the history import (docs/import.md).

``GET {site}/wp-json/wc/v3/orders`` (and ``/customers``) with ``per_page=100`` (the API's largest
page), ``page=1, 2, …`` and ``orderby=id&order=asc``, so a page's contents do not move while new
orders arrive (they get larger ids, at the end). WooCommerce's documented pagination: the
``X-WP-Total`` and ``X-WP-TotalPages`` headers on every page; the reader stops after the last page
(``page >= X-WP-TotalPages``), at an empty page, or, when a site strips the headers, at a page shorter
than ``per_page``.

Authentication: the REST API key's consumer key and secret as HTTP Basic credentials, which
WooCommerce accepts over HTTPS only (over plain HTTP it asks for OAuth 1.0a signatures): an
``http://`` site is refused before anything is sent. The key needs **Read** permission
(WooCommerce > Settings > Advanced > REST API).

Requests go through the ESP clients' retrying :class:`~segmentation.infra.esp.http.JsonApi`
(429 and 5xx retried with backoff, ``Retry-After`` honoured). What cannot be read raises
:class:`WooCommerceRestError` with a sentence saying what to do: 401/403 (a wrong key, or one without
Read permission), 404 or an answer that is not JSON (no REST API at that address: WooCommerce not
installed, or plain permalinks, which the REST API's ``/wp-json/`` routes need), a redirect (give the
site's final address). Neither the key nor the records are ever logged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from ..errors import SegmentationError
from ..service.ports import DestinationUnavailableError
from .esp.http import JsonApi

#: the REST API's largest page (``per_page`` is capped at 100)
PER_PAGE = 100
API_PATH = "/wp-json/wc/v3"
Resource = Literal["orders", "customers"]
#: ``progress(resource, page, total_pages or None, records read so far)``, after each page
Progress = Callable[[str, int, int | None, int], None]


class WooCommerceRestError(SegmentationError):
    """The store's REST API could not be read; the message says why and what to do."""


@dataclass(frozen=True)
class Page:
    number: int
    total_pages: int | None  # X-WP-TotalPages, when the site sends it
    total: int | None  # X-WP-Total
    records: list[Any]


def _header_int(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class WooCommerceRest:
    """Reads one store's orders and customers, page by page."""

    def __init__(self, site: str, consumer_key: str, consumer_secret: str, *, base_url: str | None = None,
                 per_page: int = PER_PAGE, attempts: int = 5, backoff_factor: float = 0.5,
                 timeout: float = 60.0) -> None:
        """``site``: the store's address (``https://shop.example.com``); ``base_url`` replaces it for
        the requests only (a local fake in tests). Raises WooCommerceRestError for an unusable site
        or key, before any request."""
        root = (base_url or site).strip().rstrip("/")
        parts = urlsplit(root)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WooCommerceRestError(f"the site must be an https:// address, not {site[:80]!r}")
        if parts.scheme != "https" and base_url is None:
            raise WooCommerceRestError(
                "WooCommerce accepts a REST API key over HTTPS only: give the site's https:// address")
        if not consumer_key or not consumer_secret:
            raise WooCommerceRestError("give the REST API key's consumer key (ck_…) and consumer secret (cs_…)")
        if not 1 <= per_page <= PER_PAGE:
            raise ValueError(f"per_page must be 1 to {PER_PAGE}")
        self.site = site
        self.per_page = per_page
        self.api = JsonApi(root + API_PATH, {"User-Agent": "segmentation-engine-history-import"},
                           name="WooCommerce", attempts=attempts, backoff_factor=backoff_factor, timeout=timeout)
        token = base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode()
        self._headers = {**self.api.headers, "Authorization": f"Basic {token}"}
        self._headers.pop("Content-Type", None)  # GETs carry no body
        self.requests = 0

    def page(self, resource: Resource, number: int) -> Page:
        """One page of ``resource`` (1-based)."""
        path = f"/{resource}"
        query = {"per_page": str(self.per_page), "page": str(number), "orderby": "id", "order": "asc"}
        where = f"WooCommerce: GET {API_PATH}{path} page {number}"
        try:
            raw, requests = self.api.send("GET", f"{self.api.base_url}{path}?{urlencode(query)}", None,
                                          self._headers, where)
        except DestinationUnavailableError as exc:
            if "redirect" in str(exc):  # JsonApi follows none: a redirect is a wrong address here
                raise WooCommerceRestError(
                    f"{where} was redirected: give the site's final address (https, with or without www. as "
                    "the site uses it)") from None
            raise WooCommerceRestError(f"{exc}; is {self.site} reachable?") from None
        self.requests += requests
        status = raw.status
        if status in (401, 403):
            raise WooCommerceRestError(
                f"{where} answered {status} ({_error(raw.data)}): the REST API key was refused. Use a key with "
                "Read permission (WooCommerce > Settings > Advanced > REST API > Add key, Permissions: Read), "
                "and its consumer key and secret as shown when it was made")
        if 300 <= status < 400:
            raise WooCommerceRestError(
                f"{where} was redirected: give the site's final address (https, with or without www. as the "
                "site uses it)")
        if status == 404:
            raise WooCommerceRestError(
                f"{where} answered 404: no WooCommerce REST API at {self.site}. Check the address, that "
                "WooCommerce is active, and that permalinks are not 'Plain' (Settings > Permalinks)")
        if status >= 400:
            raise WooCommerceRestError(f"{where} answered {status} ({_error(raw.data)})")
        try:
            records = json.loads(raw.data)
        except (ValueError, RecursionError):
            kind = (raw.headers.get("Content-Type") or "no content type").split(";")[0]
            raise WooCommerceRestError(
                f"{where} answered {status} with {kind}, not JSON: {self.site} does not serve the WooCommerce "
                "REST API there. Check the address, that WooCommerce is active, and that permalinks are not "
                "'Plain' (Settings > Permalinks)") from None
        if not isinstance(records, list):
            raise WooCommerceRestError(f"{where} answered JSON that is not a list of {resource}")
        return Page(number, _header_int(raw.headers, "X-WP-TotalPages"), _header_int(raw.headers, "X-WP-Total"),
                    records)

    def pages(self, resource: Resource, progress: Progress | None = None) -> Iterator[Page]:
        """Every page of ``resource`` in order, ``progress`` called after each."""
        number, read = 1, 0
        while True:
            page = self.page(resource, number)
            read += len(page.records)
            if progress:
                progress(resource, number, page.total_pages, read)
            if page.records:
                yield page
            last = page.total_pages is not None and number >= page.total_pages
            short = page.total_pages is None and len(page.records) < self.per_page
            if not page.records or last or short:
                return
            number += 1

    def records(self, resource: Resource, progress: Progress | None = None) -> Iterator[tuple[int, Any]]:
        """``(n, record)`` for every record of ``resource``, ``n`` counting from 1 across pages (what a
        rejection's "line" is for records that come from the API)."""
        n = 0
        for page in self.pages(resource, progress):
            for record in page.records:
                n += 1
                yield n, record


def _error(data: bytes) -> str:
    """WooCommerce's error from an error body (``woocommerce_rest_authentication_error: Consumer key is
    invalid.``), or a stand-in. The body names no secret."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return "no JSON error"
    if not isinstance(body, dict) or not body.get("code"):
        return "no error code"
    message = body.get("message")
    return f"{str(body['code'])[:80]}" + (f": {message[:160]}" if isinstance(message, str) and message else "")
