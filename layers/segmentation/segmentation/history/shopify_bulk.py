"""Shopify's own export: the JSONL of an Admin GraphQL bulk query over customers and orders (docs/import.md).

A bulk query (``bulkOperationRunQuery``) runs in the background at Shopify, which then serves its result
as one JSONL file: one JSON object per line, one line per node of each connection the query selects.
Nested connections are flattened: an order's line items are not inside the order's line but lines of
their own, each carrying ``__parentId``, the gid of the order it belongs to, and coming after it (not
necessarily right after it: since API version 2026-01 Shopify no longer groups children under their
parent unless asked to, ``groupObjects``). Nested objects that are not connections (an order's
customer, a line item's product) stay inline. Every object is named by its gid,
``gid://shopify/<Type>/<numeric id>``.

A bulk query has one top-level field, so an import runs two, :data:`CUSTOMERS_QUERY` and
:data:`ORDERS_QUERY`; :func:`read_bulk` reads either result, or both concatenated (the gid's type
tells a customer from an order).

The events are the ones Shopify's webhooks produce for the same records
(:mod:`segmentation.sources.shopify`), with the same ids: an order is the ``orders/updated`` of its
last update (status from ``cancelledAt`` and the financial status, total after refunds), a customer
the ``customers/update`` of its last update. So an order imported here and delivered later by a
webhook (or the other way round) counts once.

Memory: an order's event is complete only once all its line items are read, and nothing promises
they come before the next order, so the orders (as events) and their line items are held until the
end of the file: measured at under 10 KB per order with three line items, so about 1 GB per 100,000
orders and tens of GB for millions. The import holds every event in memory anyway (it groups them
per person before writing), so this adds little to it; acceptable for now. A file grouped by parent
(``groupObjects: true``), or sorted so, could be streamed order by order instead. Reading takes
about 0.7 ms per order (mostly the events' validation, email syntax included, as on the live path).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from ..domain.events import (
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
)
from ..sources.fields import ident, money, quantity, receiving_at, text, utc_time
from ..sources.shopify import CONSENT_STATES, MAX_ITEMS, SOURCE
from .csv_files import REFUND_WINDOW
from .records import Parsed, Rejected

#: The bulk query of customers (the fields :func:`read_bulk` reads). ``defaultEmailAddress`` and
#: ``defaultPhoneNumber`` replace ``email``, ``phone`` and ``emailMarketingConsent`` (deprecated since
#: 2025-04); an export made with the older fields reads the same.
CUSTOMERS_QUERY = """
{
  customers {
    edges {
      node {
        id
        firstName
        lastName
        defaultEmailAddress { emailAddress marketingState marketingUpdatedAt }
        defaultPhoneNumber { phoneNumber }
        tags
        createdAt
        updatedAt
      }
    }
  }
}
"""

#: The bulk query of orders and their line items (two connections, two levels: within Shopify's
#: limits of five connections and two levels of nesting).
ORDERS_QUERY = """
{
  orders {
    edges {
      node {
        id
        email
        phone
        createdAt
        updatedAt
        cancelledAt
        displayFinancialStatus
        currentTotalPriceSet { shopMoney { amount currencyCode } }
        customer { id defaultEmailAddress { emailAddress } defaultPhoneNumber { phoneNumber } }
        lineItems {
          edges {
            node {
              id
              title
              sku
              quantity
              originalUnitPriceSet { shopMoney { amount } }
              product { id productType category { name } }
            }
          }
        }
      }
    }
  }
}
"""

_GID = re.compile(r"gid://shopify/([A-Za-z]+)/([^/?#\s]+)(?:\?.*)?")
_ROOTS = ("Customer", "Order")
_CHILDREN = ("LineItem",)


def _gid(value: Any, field: str) -> tuple[str, str]:
    """(type, id) of a gid such as ``gid://shopify/Order/5512345678901``."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a Shopify gid string")
    match = _GID.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{field} is not a Shopify gid (gid://shopify/<type>/<id>)")
    return match[1], ident(match[2], field)


def _object(value: Any, field: str) -> dict:
    """A nested object; absent or null is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object")
    return value


def _at(node: dict, path: str) -> Any:
    """``node["a"]["b"]["c"]`` for ``"a.b.c"``; None when a level is absent or null."""
    *parents, last = path.split(".")
    for depth, key in enumerate(parents):
        node = _object(node.get(key), ".".join(parents[:depth + 1]))
    return node.get(last)


def _first(node: dict, *paths: str) -> tuple[Any, str]:
    """The first of ``paths`` with a value, and that path (the field named when it is wrong)."""
    for path in paths:
        value = _at(node, path)
        if value is not None and value != "":
            return value, path
    return None, paths[0]


def _consent(node: dict) -> EmailConsent | None:
    for state_path, time_path in (("defaultEmailAddress.marketingState", "defaultEmailAddress.marketingUpdatedAt"),
                                  ("emailMarketingConsent.marketingState", "emailMarketingConsent.consentUpdatedAt")):
        state = _at(node, state_path)
        if state is None:
            continue
        if not isinstance(state, str) or state.lower() not in CONSENT_STATES:
            raise ValueError(f"{state_path} must be one of {', '.join(s.upper() for s in sorted(CONSENT_STATES))}")
        since = _at(node, time_path)
        return EmailConsent(state=state.lower(), updated_at=utc_time(since, time_path) if since else None)
    return None


def _tags(value: Any) -> list[str]:
    """GraphQL gives a list of strings; a comma-separated string (REST's) reads too."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise ValueError("tags must be a list of strings")
    return [t for t in (text(v, "tags") for v in value) if t][:250]


def _customer(node: dict, customer_id: str, shop: str) -> CustomerEvent:
    """As ``customers/update`` (sources.shopify._customer): its id and time, so the ids match."""
    stamp, stamp_field = _first(node, "updatedAt", "createdAt")
    if stamp is None:
        raise ValueError("missing field 'updatedAt'")
    updated = utc_time(stamp, stamp_field)
    email, email_field = _first(node, "defaultEmailAddress.emailAddress", "email")
    phone, phone_field = _first(node, "defaultPhoneNumber.phoneNumber", "phone")
    props = CustomerProperties(first_name=text(node.get("firstName"), "firstName"),
                               last_name=text(node.get("lastName"), "lastName"),
                               tags=_tags(node.get("tags")), email_consent=_consent(node))
    identity = Identity(email=text(email, email_field, 320), phone=text(phone, phone_field, 40),
                        customer_ids={SOURCE: customer_id})
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "customer", customer_id, updated.isoformat()),
        source=SOURCE, type=EventType.CUSTOMER, occurred_at=updated, shop=shop, identity=identity,
        properties=props)


def _order(node: dict, order_id: str, shop: str, now: datetime) -> CustomerEvent | None:
    """As ``orders/updated`` (sources.shopify._order), without its line items (added at the end of the
    file); None when it names nobody (no email, phone or customer)."""
    created_at = node.get("createdAt")
    if created_at is None or created_at == "":
        raise ValueError("missing field 'createdAt'")
    created = utc_time(created_at, "createdAt")
    stamp, stamp_field = _first(node, "updatedAt", "cancelledAt", "createdAt")
    updated = utc_time(stamp, stamp_field)
    cancelled = node.get("cancelledAt")
    if cancelled is not None:
        utc_time(cancelled, "cancelledAt")
    financial = node.get("displayFinancialStatus")
    if financial is not None and not isinstance(financial, str):
        raise ValueError("displayFinancialStatus must be a string")
    # as the webhook decides it: cancelled by cancelledAt, refunded when fully refunded
    status = "cancelled" if cancelled else "refunded" if (financial or "").upper() == "REFUNDED" else "placed"
    # currentTotalPriceSet is after refunds and edits (REST's current_total_price), in the shop's currency
    total_path = "currentTotalPriceSet" if node.get("currentTotalPriceSet") is not None else "totalPriceSet"
    total = money(_at(node, f"{total_path}.shopMoney.amount"), f"{total_path}.shopMoney.amount")
    currency = text(_at(node, f"{total_path}.shopMoney.currencyCode"), f"{total_path}.shopMoney.currencyCode", 3)

    customer = _object(node.get("customer"), "customer")
    email, email_field = _first(node, "email", "customer.defaultEmailAddress.emailAddress", "customer.email")
    phone, phone_field = _first(node, "phone", "customer.defaultPhoneNumber.phoneNumber", "customer.phone")
    customer_id = _gid(customer["id"], "customer.id")[1] if customer.get("id") is not None else None
    identity = Identity(email=text(email, email_field, 320), phone=text(phone, phone_field, 40),
                        customer_ids={SOURCE: customer_id} if customer_id else {})
    if identity.is_empty():
        return None
    if updated >= now - REFUND_WINDOW:  # as the webhook gives it: a later refunds/create finds the order
        identity = identity.model_copy(update={"order_ref": order_id})
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "order", order_id, updated.isoformat(), status),
        source=SOURCE, type=EventType.ORDER, occurred_at=created, shop=shop, identity=identity,
        properties=OrderProperties(order_id=order_id, status=status, total=total, currency=currency,
                                   updated_at=updated))


def _line_item(node: dict) -> LineItem:
    """A line item; its category is the product's type, else its taxonomy category (what the
    ``products/*`` webhooks teach the live path)."""
    product = _object(node.get("product"), "lineItems.product")
    product_id = _gid(product["id"], "lineItems.product.id")[1] if product.get("id") is not None else None
    category = (text(product.get("productType"), "lineItems.product.productType")
                or text(_at(product, "category.name"), "lineItems.product.category.name"))
    return LineItem(
        product_id=product_id, sku=text(node.get("sku"), "lineItems.sku"),
        title=text(node.get("title"), "lineItems.title"), category=category,
        quantity=quantity(node.get("quantity"), "lineItems.quantity"),
        price=money(_at(node, "originalUnitPriceSet.shopMoney.amount"), "lineItems.originalUnitPriceSet.shopMoney.amount"))


def read_bulk(lines: Iterable[str], shop: str, now: datetime, name: str = "export.jsonl") -> Iterator[Parsed | Rejected]:
    """The records of a bulk query's JSONL (:data:`CUSTOMERS_QUERY`, :data:`ORDERS_QUERY`, or both).

    Customers, and lines that cannot be read, are yielded as they are read; orders at the end of the
    file, each with its line items, in the file's order; then the line items whose order is not in
    the file. A line that is not JSON, a field of the wrong type, a time that is not one (or out of
    range: :mod:`segmentation.sources.fields`, ``now`` being the arrival), a negative amount: the line
    is rejected with its number and the field. A line item that cannot be read is rejected and its
    order imported without it; the line items of a rejected order go with it. Times are checked
    against ``now``, and orders updated within :data:`~.csv_files.REFUND_WINDOW` of it keep an order
    alias (as the webhooks give one), so that a later ``refunds/create`` finds their customer."""
    arrival = int(now.timestamp())
    orders: list[tuple[int, str, CustomerEvent | None]] = []  # (line, gid, event without items)
    items: dict[str, list[LineItem]] = {}  # order gid -> its line items, in file order
    children: list[tuple[int, str]] = []  # (line, parent gid) of every line item read
    rejected_orders: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            node = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield Rejected(number, f"not JSON ({exc.msg} at column {exc.pos + 1})", name)
            continue
        except (ValueError, RecursionError):
            yield Rejected(number, "not JSON (nested too deeply, or not text)", name)
            continue
        if not isinstance(node, dict):
            yield Rejected(number, "not a JSON object", name)
            continue
        kind = parent = None
        try:
            if node.get("id") is None:
                raise ValueError("missing field 'id'")
            kind, oid = _gid(node["id"], "id")
            parent = node.get("__parentId")
            if parent is not None:
                parent_kind = _gid(parent, "__parentId")[0]
                if kind not in _CHILDREN or parent_kind != "Order":
                    raise ValueError(f"a {kind} of a {parent_kind}: this import reads customers, orders and "
                                     "their line items (CUSTOMERS_QUERY, ORDERS_QUERY)")
            elif kind not in _ROOTS:
                raise ValueError(f"a {kind}: this import reads customers, orders and their line items "
                                 "(CUSTOMERS_QUERY, ORDERS_QUERY)")
            with receiving_at(arrival):  # around the reading only: never across a yield
                if parent is not None:
                    items.setdefault(parent.strip(), []).append(_line_item(node))
                    children.append((number, parent.strip()))
                    continue
                if kind == "Order":
                    orders.append((number, node["id"].strip(), _order(node, oid, shop, now)))
                    continue
                record = Parsed(number, [_customer(node, oid, shop)])
        except ValueError as exc:
            if kind == "Order" and parent is None:
                rejected_orders.add(node["id"].strip())  # its line items go with it
            yield Rejected(number, str(exc), name)
            continue
        yield record
    known = set()
    for number, gid, event in orders:
        known.add(gid)
        if event is None:
            yield Parsed(number, [], skipped="no email, phone or customer")
            continue
        props = event.properties.model_copy(update={"items": items.get(gid, [])[:MAX_ITEMS]})
        yield Parsed(number, [event.model_copy(update={"properties": props})])
    for number, parent in children:
        if parent not in known and parent not in rejected_orders:
            yield Rejected(number, f"its order {parent} (__parentId) is not in the file", name)
