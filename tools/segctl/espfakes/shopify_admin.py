"""A local fake of Shopify's Admin GraphQL API, as far as ``segctl import shopify`` uses it: bulk queries.

``FakeShopifyAdmin`` is an HTTP server on 127.0.0.1 (a free port) holding a shop's customers and
orders in memory, as the nodes of :data:`~segmentation.history.shopify_bulk.CUSTOMERS_QUERY` and
:data:`~segmentation.history.shopify_bulk.ORDERS_QUERY` select them (build them with
:func:`customer`, :func:`order` and :func:`line_item`). Use it as
``with FakeShopifyAdmin(customers=[...], orders=[...]) as fake:`` and point the client at
``fake.base_url`` with ``fake.token``.

``POST /admin/api/<version>/graphql.json`` (``X-Shopify-Access-Token`` must be the token, else 401
with Shopify's text) answers:

* ``bulkOperationRunQuery(query:)``: a query whose top-level field is ``customers`` or ``orders``
  starts an operation (CREATED); anything else is a userError ``INVALID``; more than
  ``max_running`` operations running at once is a userError ``OPERATION_IN_PROGRESS``;
* ``node(id:)`` on a BulkOperation: RUNNING for its first ``polls`` polls (objectCount growing), then
  COMPLETED with ``url``, ``objectCount``, ``rootObjectCount`` and ``fileSize``; FAILED with
  ``errorCode: ACCESS_DENIED`` when the token lacks the scope of its field (read_customers,
  read_orders; or their write_ scope, which includes it). Counts are strings, as Shopify serialises UnsignedInt64;
* ``currentAppInstallation { accessScopes { handle } }``: ``scopes``.

``GET /bulk/<n>.jsonl`` serves a completed operation's JSONL without authentication (at Shopify, a
signed storage link): one line per node, line items as lines of their own with ``__parentId``. By
default every order comes before any line item (ungrouped, as ``groupObjects: false`` allows);
``grouped=True`` puts each order's line items right below it. Orders older than 60 days are left
out unless the scopes hold ``read_all_orders``, as Shopify does.

Every GraphQL request is kept in ``calls`` (an operation name per request: ``run``, ``poll``,
``scopes``, ``throttled``), every download in ``downloads``, and the tokens seen in ``tokens_seen``
(``download_tokens`` on downloads); ``throttle_next(n)`` answers the next requests ``THROTTLED``,
as an empty cost bucket does.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from .local_server import LocalServer

DEFAULT_SHOP = "demo-shop.myshopify.com"
DEFAULT_TOKEN = "shpat_00000000000000000000000000fake"
ALL_SCOPES = ("read_customers", "read_orders", "read_all_orders")
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
_PATH = re.compile(r"^/admin/api/(\d{4}-\d{2}|unstable)/graphql\.json$")
_DOWNLOAD = re.compile(r"^/bulk/(\d+)\.jsonl$")
_ROOT = re.compile(r"^\s*(?:query\s*\w*\s*)?\{\s*(\w+)\b")
_SCOPE = {"customers": "read_customers", "orders": "read_orders"}


# -- nodes as the import's queries select them --------------------------------------------------


def customer(cid: int, *, email: str | None = None, phone: str | None = None, first_name: str | None = None,
             last_name: str | None = None, tags: Iterable[str] = (), consent: str | None = None,
             consent_at: str | None = None, created_at: str, updated_at: str | None = None) -> dict:
    """A Customer node (``consent``: SUBSCRIBED, NOT_SUBSCRIBED, PENDING, UNSUBSCRIBED, INVALID)."""
    return {
        "id": f"gid://shopify/Customer/{cid}", "firstName": first_name, "lastName": last_name,
        "defaultEmailAddress": None if email is None else {
            "emailAddress": email, "marketingState": consent or "NOT_SUBSCRIBED", "marketingUpdatedAt": consent_at},
        "defaultPhoneNumber": None if phone is None else {"phoneNumber": phone},
        "tags": list(tags), "createdAt": created_at, "updatedAt": updated_at or created_at,
    }


def line_item(lid: int, *, title: str, price: str, quantity: int = 1, sku: str | None = None,
              product_id: int | None = None, product_type: str | None = None, category: str | None = None) -> dict:
    """A LineItem node (``product_id`` None: a deleted product)."""
    product = None if product_id is None else {
        "id": f"gid://shopify/Product/{product_id}", "productType": product_type or "",
        "category": None if category is None else {"name": category}}
    return {"id": f"gid://shopify/LineItem/{lid}", "title": title, "sku": sku, "quantity": quantity,
            "originalUnitPriceSet": {"shopMoney": {"amount": price}}, "product": product}


def order(oid: int, *, created_at: str, total: str, currency: str = "EUR", email: str | None = None,
          phone: str | None = None, customer_id: int | None = None, customer_email: str | None = None,
          updated_at: str | None = None, cancelled_at: str | None = None, financial_status: str = "PAID",
          line_items: Iterable[dict] = ()) -> dict:
    """An Order node; ``lineItems`` holds its LineItem nodes (served as lines of their own)."""
    buyer = None if customer_id is None else {
        "id": f"gid://shopify/Customer/{customer_id}",
        "defaultEmailAddress": None if customer_email is None else {"emailAddress": customer_email},
        "defaultPhoneNumber": None}
    return {
        "id": f"gid://shopify/Order/{oid}", "email": email, "phone": phone, "createdAt": created_at,
        "updatedAt": updated_at or cancelled_at or created_at, "cancelledAt": cancelled_at,
        "displayFinancialStatus": financial_status,
        "currentTotalPriceSet": {"shopMoney": {"amount": total, "currencyCode": currency}},
        "customer": buyer, "lineItems": list(line_items),
    }


def jsonl(nodes: Iterable[dict], grouped: bool = False) -> list[str]:
    """Lines of a bulk query's JSONL for ``nodes`` (customers or orders): an order's ``lineItems``
    become lines with ``__parentId``, after all orders (``grouped``: right below their order)."""
    lines, children = [], []
    for node in nodes:
        node = dict(node)
        items = [{**item, "__parentId": node["id"]} for item in node.pop("lineItems", None) or []]
        lines.append(json.dumps(node, separators=(",", ":")))
        (lines if grouped else children).extend(json.dumps(i, separators=(",", ":")) for i in items)
    return lines + children


class FakeShopifyAdmin(LocalServer):
    """Start with ``with FakeShopifyAdmin(...) as fake:``; see the module docstring."""

    name = "fake-shopify-admin"

    def __init__(self, *, shop: str = DEFAULT_SHOP, token: str = DEFAULT_TOKEN, customers: Iterable[dict] = (),
                 orders: Iterable[dict] = (), scopes: Iterable[str] = ALL_SCOPES, polls: int = 1,
                 max_running: int = 5, grouped: bool = False, now: datetime | None = None) -> None:
        self.shop = shop
        self.token = token
        self.customers = list(customers)
        self.orders = list(orders)
        self.scopes = set(scopes)
        self.polls = polls  # polls that answer RUNNING before COMPLETED
        self.max_running = max_running
        self.grouped = grouped
        self.now = now  # the 60-day window of orders without read_all_orders (None: the wall clock)
        self.calls: list[str] = []
        self.downloads: list[str] = []
        self.tokens_seen: list[str | None] = []
        self.download_tokens: list[str | None] = []  # X-Shopify-Access-Token on downloads: never sent
        self._operations: dict[str, dict[str, Any]] = {}
        self._throttled = 0
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """What replaces ``https://<shop>`` (the client appends ``/admin/api/<version>/graphql.json``)."""
        return f"http://127.0.0.1:{self.port}"

    def throttle_next(self, n: int = 1) -> None:
        """Answer the next ``n`` authenticated GraphQL requests as Shopify does when the app's cost
        bucket is empty: 200 with a ``THROTTLED`` error."""
        with self._lock:
            self._throttled += n

    def running(self) -> list[str]:
        with self._lock:
            return [i for i, op in self._operations.items() if op["status"] in ("CREATED", "RUNNING")]

    # -- HTTP ---------------------------------------------------------------------------------

    def respond(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        download = _DOWNLOAD.match(target)
        if download and method == "GET":
            self.download_tokens.append(headers.get("X-Shopify-Access-Token"))
            return self._download(download[1])
        if not _PATH.match(target):
            return _json(404, {"errors": "Not Found"})
        if method != "POST":
            return _json(405, {"errors": "Method Not Allowed"})
        token = headers.get("X-Shopify-Access-Token")
        self.tokens_seen.append(token)
        if token != self.token:
            return _json(401, {"errors": UNAUTHORIZED})
        try:
            request = json.loads(raw)
            query, variables = request["query"], request.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return _json(400, {"errors": [{"message": "Parse error: the body is not a GraphQL request"}]})
        with self._lock:
            if self._throttled:
                self._throttled -= 1
                self.calls.append("throttled")
                return _json(200, {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]})
            if "bulkOperationRunQuery" in query:
                self.calls.append("run")
                return _json(200, {"data": {"bulkOperationRunQuery": self._run(str(variables.get("query", "")))}})
            if "node(" in query:
                self.calls.append("poll")
                return _json(200, {"data": {"node": self._poll(str(variables.get("id", "")))}})
            if "currentAppInstallation" in query:
                self.calls.append("scopes")
                scopes = [{"handle": s} for s in sorted(self.scopes)]
                return _json(200, {"data": {"currentAppInstallation": {"accessScopes": scopes}}})
        return _json(200, {"errors": [{"message": "the fake Shopify Admin API does not answer this query",
                                       "extensions": {"code": "undefinedField"}}]})

    def _run(self, query: str) -> dict:
        root = _ROOT.match(query)
        field = root[1] if root else None
        if field not in _SCOPE:
            return {"bulkOperation": None, "userErrors": [{"field": ["query"], "code": "INVALID",
                    "message": "Bulk queries must contain one top-level connection field (the fake reads "
                               "customers or orders)"}]}
        running = [i for i, op in self._operations.items() if op["status"] in ("CREATED", "RUNNING")]
        if len(running) >= self.max_running:
            which = f": {running[0]}" if running else ""
            return {"bulkOperation": None, "userErrors": [{"field": None, "code": "OPERATION_IN_PROGRESS",
                    "message": f"A bulk query operation for this app and shop is already in progress{which}."}]}
        number = len(self._operations) + 1
        gid = f"gid://shopify/BulkOperation/{number}"
        self._operations[gid] = {"number": number, "field": field, "status": "CREATED", "polls": 0, "lines": None}
        return {"bulkOperation": {"id": gid, "status": "CREATED"}, "userErrors": []}

    def _poll(self, gid: str) -> dict | None:
        op = self._operations.get(gid)
        if op is None:
            return None
        if op["status"] in ("CREATED", "RUNNING"):
            op["polls"] += 1
            needed = _SCOPE[op["field"]]
            if needed not in self.scopes and needed.replace("read_", "write_") not in self.scopes:
                op.update(status="FAILED", error="ACCESS_DENIED")
            elif op["polls"] > self.polls:
                op.update(status="COMPLETED", lines=self._export(op["field"]))
            else:
                op["status"] = "RUNNING"
        lines = op["lines"] or []
        total = len(lines) if op["status"] == "COMPLETED" else len(self._nodes(op["field"])) * op["polls"] // (self.polls + 1)
        roots = sum(1 for line in lines if '"__parentId"' not in line)
        completed = op["status"] == "COMPLETED"
        return {"id": gid, "status": op["status"], "errorCode": op.get("error"), "objectCount": str(total),
                "rootObjectCount": str(roots if completed else 0),
                "fileSize": str(sum(len(line) + 1 for line in lines)) if completed and lines else None,
                "url": f"{self.base_url}/bulk/{op['number']}.jsonl" if completed and lines else None,
                "partialDataUrl": None}

    def _nodes(self, field: str) -> list[dict]:
        if field == "customers":
            return self.customers
        if "read_all_orders" in self.scopes:
            return self.orders
        since = (self.now or datetime.now(UTC)) - timedelta(days=60)
        return [o for o in self.orders if datetime.fromisoformat(o["createdAt"].replace("Z", "+00:00")) >= since]

    def _export(self, field: str) -> list[str]:
        return jsonl(self._nodes(field), self.grouped)

    def _download(self, number: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            op = next((o for o in self._operations.values() if str(o["number"]) == number), None)
            self.downloads.append(number)
        if op is None or op["status"] != "COMPLETED":
            return 403, {"Content-Type": "application/xml"}, b"<Error><Code>AccessDenied</Code></Error>"
        body = "".join(line + "\n" for line in op["lines"]).encode()
        return 200, {"Content-Type": "application/jsonl"}, body


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()
