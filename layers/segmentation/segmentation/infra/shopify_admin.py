"""A small client of Shopify's Admin GraphQL API for bulk queries (``segctl import shopify``).

A bulk query runs at Shopify in the background (shopify.dev/docs/api/usage/bulk-operations/queries):
``bulkOperationRunQuery`` starts it, its status is polled until it is COMPLETED (or FAILED,
CANCELED, EXPIRED), and its result is a JSONL file at a signed ``url`` (on Shopify's storage, not
the shop's domain: the access token is never sent there), read here line by line as it downloads.

Requests go through :class:`~segmentation.infra.esp.http.JsonApi` (urllib3, retries of 429 and 5xx
with backoff, ``Retry-After`` honoured). The access token travels in ``X-Shopify-Access-Token`` and is
never logged; neither are bodies. Errors say what to do: a token Shopify refuses (401/403) or a
missing scope names the scopes the import needs (:data:`SCOPES`); a bulk query already running says
so; Shopify's ``userErrors`` are raised with their message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from urllib3.exceptions import HTTPError

from ..service.ports import DestinationUnavailableError
from .esp.http import JsonApi

#: The Admin API version the queries are written for (a stable version is supported for 12 months;
#: 2026-10: up to five bulk queries at a time per app and shop, children not grouped under parents).
API_VERSION = "2026-10"
#: What the import's access token needs: customers and orders; without read_all_orders Shopify
#: exports only the orders of the last 60 days.
SCOPES = ("read_customers", "read_orders", "read_all_orders")
SCOPES_HELP = ("the token needs the Admin API scopes read_customers and read_orders, and read_all_orders "
               "for orders older than 60 days (a custom app's Admin API access scopes)")
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})
USER_AGENT = "segmentation-engine-import"
#: Polls start this often and slow down by half each time, to at most POLL_MAX seconds apart.
POLL_START = 2.0
POLL_MAX = 15.0
#: How long a bulk query may run before the client stops waiting (it goes on at Shopify).
BULK_TIMEOUT = 6 * 3600.0
THROTTLE_RETRIES = 5

RUN_QUERY = """
mutation RunBulkQuery($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: false) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
STATUS_QUERY = """
query BulkOperationStatus($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode objectCount rootObjectCount fileSize url partialDataUrl }
  }
}
"""
SCOPES_QUERY = "{ currentAppInstallation { accessScopes { handle } } }"


class ShopifyAdminError(Exception):
    """The Admin API refused or failed; the message says why and what to do (no token, no data)."""


@dataclass(frozen=True)
class BulkOperation:
    id: str
    status: str
    object_count: int = 0  # every object processed so far (customers, orders, line items)
    root_object_count: int = 0  # top-level objects only (customers or orders)
    url: str | None = None  # the JSONL, once COMPLETED (None: the query found nothing)
    error_code: str | None = None  # why it FAILED (ACCESS_DENIED, INTERNAL_SERVER_ERROR, TIMEOUT)
    file_size: int | None = None

    @classmethod
    def of(cls, node: dict) -> BulkOperation:
        def count(key: str) -> int:  # UnsignedInt64 travels as a string
            try:
                return int(node.get(key) or 0)
            except (TypeError, ValueError):
                return 0

        size = node.get("fileSize")
        return cls(id=str(node.get("id")), status=str(node.get("status")), object_count=count("objectCount"),
                   root_object_count=count("rootObjectCount"), url=node.get("url") or None,
                   error_code=node.get("errorCode") or None, file_size=count("fileSize") if size else None)


class ShopifyAdmin:
    """One shop's Admin GraphQL API. ``base_url`` replaces ``https://<shop>`` (a local fake)."""

    def __init__(self, shop: str, token: str, *, base_url: str | None = None, api_version: str = API_VERSION,
                 attempts: int = 5, timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shop = shop
        self.endpoint = f"{(base_url or f'https://{shop}').rstrip('/')}/admin/api/{api_version}/graphql.json"
        self.api = JsonApi(self.endpoint, {"X-Shopify-Access-Token": token, "User-Agent": USER_AGENT},
                           name=f"Shopify Admin API of {shop}", attempts=attempts, timeout=timeout, max_wait=60.0)
        self.sleep = sleep
        self.clock = clock

    # -- GraphQL ------------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """``data`` of one GraphQL request; GraphQL errors raise, a throttled request is retried."""
        body = json.dumps({"query": query, "variables": variables or {}}, separators=(",", ":")).encode()
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                raw, requests = self.api.send("POST", self.endpoint, body, self.api.headers, f"{self.api.name}: POST")
            except DestinationUnavailableError as exc:
                raise ShopifyAdminError(f"{exc}; check the shop's domain ({self.shop}) and the network") from None
            if raw.status in (401, 403):
                raise ShopifyAdminError(f"Shopify refused the access token for {self.shop} ({raw.status}"
                                        f"{_said(raw.data)}): {SCOPES_HELP}")
            if raw.status != 200:
                raise ShopifyAdminError(f"the Admin API of {self.shop} answered {raw.status} after {requests} "
                                        f"request(s){_said(raw.data)}")
            try:
                answer = json.loads(raw.data)
            except ValueError:
                raise ShopifyAdminError(f"the Admin API of {self.shop} answered with something that is not JSON") from None
            errors = answer.get("errors") if isinstance(answer, dict) else None
            if not errors:
                return answer.get("data") or {}
            errors = errors if isinstance(errors, list) else [{"message": str(errors)}]
            codes = {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)}
            messages = "; ".join(str(e.get("message", e) if isinstance(e, dict) else e)[:200] for e in errors[:3])
            if "THROTTLED" in codes:
                if attempt == THROTTLE_RETRIES:
                    break
                self.sleep(2.0 * (attempt + 1))  # the cost bucket refills at its restore rate
                continue
            if "ACCESS_DENIED" in codes:
                raise ShopifyAdminError(f"Shopify denied access ({messages}): {SCOPES_HELP}")
            raise ShopifyAdminError(f"the Admin API of {self.shop} answered with errors: {messages}")
        raise ShopifyAdminError(f"the Admin API of {self.shop} kept throttling the requests; try again later")

    def access_scopes(self) -> set[str]:
        """The scopes granted to the token (its app installation's)."""
        data = self.graphql(SCOPES_QUERY)
        scopes = ((data.get("currentAppInstallation") or {}).get("accessScopes")) or []
        return {s.get("handle") for s in scopes if isinstance(s, dict) and s.get("handle")}

    # -- bulk queries -------------------------------------------------------------------------

    def start(self, query: str) -> BulkOperation:
        """Start a bulk query; raises with Shopify's userErrors (one already running says so)."""
        payload = self.graphql(RUN_QUERY, {"query": query}).get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        if errors:
            messages = "; ".join(str(e.get("message"))[:300] for e in errors if isinstance(e, dict))
            codes = {e.get("code") for e in errors if isinstance(e, dict)}
            if codes & {"OPERATION_IN_PROGRESS", "LIMIT_REACHED"} or "in progress" in messages.lower():
                raise ShopifyAdminError(
                    f"a bulk query is already running for this app on {self.shop} ({messages}): wait for it to "
                    "finish, or cancel it (bulkOperationCancel), then run the import again")
            raise ShopifyAdminError(f"Shopify refused the bulk query: {messages}")
        operation = payload.get("bulkOperation")
        if not isinstance(operation, dict) or not operation.get("id"):
            raise ShopifyAdminError("Shopify started no bulk operation (no id in its answer)")
        return BulkOperation.of(operation)

    def status(self, operation_id: str) -> BulkOperation:
        node = self.graphql(STATUS_QUERY, {"id": operation_id}).get("node")
        if not isinstance(node, dict):
            raise ShopifyAdminError(f"Shopify does not know the bulk operation {operation_id}")
        return BulkOperation.of(node)

    def wait(self, operation: BulkOperation, progress: Callable[[BulkOperation, float], None] | None = None,
             timeout: float = BULK_TIMEOUT) -> BulkOperation:
        """Poll until the operation ends; ``progress(operation, seconds)`` after every poll. Returns it
        COMPLETED; raises when it failed, was canceled or expired, or ``timeout`` passed."""
        started = self.clock()
        interval = POLL_START
        while True:
            operation = self.status(operation.id)
            elapsed = self.clock() - started
            if progress:
                progress(operation, elapsed)
            if operation.status in TERMINAL:
                break
            if elapsed >= timeout:
                raise ShopifyAdminError(f"the bulk operation {operation.id} still runs after {elapsed / 60:.0f} min "
                                        "(it goes on at Shopify); run the import again later")
            self.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX)
        if operation.status == "COMPLETED":
            return operation
        if operation.error_code == "ACCESS_DENIED":
            raise ShopifyAdminError(f"the bulk operation {operation.id} failed: access denied; {SCOPES_HELP}")
        why = f" ({operation.error_code})" if operation.error_code else ""
        raise ShopifyAdminError(f"the bulk operation {operation.id} ended {operation.status}{why}; nothing was "
                                "imported: run the import again")

    def export(self, query: str, progress: Callable[[BulkOperation, float], None] | None = None,
               timeout: float = BULK_TIMEOUT) -> BulkOperation:
        """Run a bulk query to its end: the COMPLETED operation (its ``url`` is the JSONL)."""
        return self.wait(self.start(query), progress, timeout)

    def lines(self, url: str) -> Iterator[str]:
        """The lines of a bulk operation's JSONL, read as they download (no token sent: the URL is signed)."""
        try:
            response = self.api.pool.request("GET", url, preload_content=False, headers={"User-Agent": USER_AGENT})
        except HTTPError as exc:
            raise ShopifyAdminError(f"downloading the bulk operation's result failed: {type(exc).__name__}") from None
        try:
            if response.status != 200:
                raise ShopifyAdminError(f"downloading the bulk operation's result answered {response.status} "
                                        "(the link lasts 7 days); run the import again")
            pending = b""
            for chunk in response.stream(1 << 16):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
        except HTTPError as exc:
            raise ShopifyAdminError(f"the download of the bulk operation's result broke off ({type(exc).__name__}); "
                                    "run the import again") from None
        finally:
            response.release_conn()


def _said(data: bytes | None) -> str:
    """Shopify's own error text (``{"errors": ...}``), short; never a body that could hold data."""
    try:
        errors = json.loads(data or b"{}").get("errors")
    except (ValueError, AttributeError):
        return ""
    if not errors:
        return ""
    if isinstance(errors, list):
        errors = "; ".join(str(e.get("message", e) if isinstance(e, dict) else e) for e in errors[:2])
    return f": {str(errors)[:200]}"
