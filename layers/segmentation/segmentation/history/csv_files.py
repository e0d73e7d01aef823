"""Generic CSV files of orders and of customers, for any platform (docs/import.md lists the columns).

A header row names the columns; their order is free and unknown columns are ignored. Each data row
becomes one event with its own time. A row that cannot be read is rejected with its line number and
the field at fault, and the rest of the file goes on.

``platform`` and ``shop`` say where the records come from (``shopify`` + ``x.myshopify.com``,
``woocommerce`` + ``shop.example.com``, or the default ``csv``): orders are kept per platform, shop
and order id, and the event ids are the ones that platform's webhooks produce, so importing orders
the live path has seen (or will see) counts each of them once.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from ..domain.events import (
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
)
from ..sources.fields import ident, money, optional_ident, text, utc_time
from .records import Parsed, Rejected

ORDER_COLUMNS = ("order_id", "email", "customer_id", "phone", "created_at", "updated_at", "total", "currency",
                 "status", "categories")
CUSTOMER_COLUMNS = ("email", "customer_id", "phone", "first_name", "last_name", "tags", "email_consent",
                    "consent_updated_at", "created_at", "updated_at")
STATUSES = ("placed", "cancelled", "refunded")
CONSENT = ("subscribed", "not_subscribed", "pending", "unsubscribed", "cleaned", "spam", "bounced", "redacted", "invalid")
#: Shopify orders newer than this get an order alias, as Shopify's order webhooks give them, so that a
#: refunds/create webhook that names only the order finds its customer; older ones are past refunding.
#: (The other platforms' webhooks give no order alias: their imports give none either.)
REFUND_WINDOW = timedelta(days=120)


def _rows(lines: Iterable[str], required: tuple[str, ...], known: tuple[str, ...], name: str
          ) -> Iterator[tuple[int, dict[str, str]] | Rejected]:
    reader = csv.DictReader(lines)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if not header or not any(h in known for h in header):
        yield Rejected(1, f"no header row naming the columns ({', '.join(known)})", name)
        return
    if missing:
        yield Rejected(1, f"the header lacks the column(s) {', '.join(missing)}", name)
        return
    reader.fieldnames = header
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Rejected(reader.line_num, f"not CSV: {exc}", name)
            continue
        if None in row:
            yield Rejected(reader.line_num, f"{len(row[None])} more value(s) than columns", name)
            continue
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}


def _identity(row: dict[str, str], platform: str) -> Identity:
    """The row's identities; an ``email`` given that is no address is refused (ValueError)."""
    cid = optional_ident(row.get("customer_id"), "customer_id")
    email = text(row.get("email"), "email", 320)
    identity = Identity(email=email, phone=text(row.get("phone"), "phone", 40),
                        customer_ids={platform: cid} if cid and platform != "csv" else {})
    if email and identity.email is None:
        raise ValueError("email is not an email address")
    return identity


def _categories(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split("|") if c.strip()][:50]


def read_orders(lines: Iterable[str], platform: str = "csv", shop: str | None = None,
                now: datetime | None = None, name: str = "orders") -> Iterator[Parsed | Rejected]:
    """Orders CSV: ``order_id``, ``created_at``, ``total`` and an ``email`` or a ``customer_id`` (see
    docs/import.md). The order's state is the row's: ``status`` placed (default), cancelled or
    refunded, ``total`` after refunds."""
    for item in _rows(lines, ("order_id", "created_at", "total"), ORDER_COLUMNS, name):
        if isinstance(item, Rejected):
            yield item
            continue
        line, row = item
        try:
            order_id = ident(row.get("order_id"), "order_id")
            created = utc_time(row.get("created_at"), "created_at")
            updated = utc_time(row["updated_at"], "updated_at") if row.get("updated_at") else created
            status = (row.get("status") or "placed").lower()
            if status not in STATUSES:
                raise ValueError(f"status must be one of {', '.join(STATUSES)}")
            total = money(row.get("total"), "total")
            identity = _identity(row, platform)
        except ValueError as exc:
            yield Rejected(line, str(exc), name)
            continue
        if identity.is_empty():
            yield Parsed(line, [], skipped="no email, customer id or phone")
            continue
        if platform == "shopify" and (now is None or updated >= now - REFUND_WINDOW):
            identity = identity.model_copy(update={"order_ref": order_id})
        props = OrderProperties(order_id=order_id, status=status, total=total,
                                currency=text(row.get("currency"), "currency", 3), updated_at=updated,
                                items=[LineItem(category=c) for c in _categories(row.get("categories"))])
        yield Parsed(line, [CustomerEvent(
            event_id=CustomerEvent.make_id(platform, shop, "order", order_id, updated.isoformat(), status),
            source=platform, type=EventType.ORDER, occurred_at=created, shop=shop, identity=identity,
            properties=props)])


def read_customers(lines: Iterable[str], platform: str = "csv", shop: str | None = None,
                   name: str = "customers") -> Iterator[Parsed | Rejected]:
    """Customers CSV: an ``email`` or a ``customer_id``, and a time (``updated_at``, ``created_at`` or
    ``consent_updated_at``); names, phone, ``tags`` (``|``-separated) and ``email_consent``."""
    for item in _rows(lines, (), CUSTOMER_COLUMNS, name):
        if isinstance(item, Rejected):
            yield item
            continue
        line, row = item
        try:
            identity = _identity(row, platform)
            stamp = next((c for c in ("updated_at", "created_at", "consent_updated_at") if row.get(c)), None)
            if stamp is None:
                raise ValueError("one of updated_at, created_at or consent_updated_at is needed (the record's time)")
            at = utc_time(row[stamp], stamp)
            consent = None
            if row.get("email_consent"):
                state = row["email_consent"].lower()
                if state not in CONSENT:
                    raise ValueError(f"email_consent must be one of {', '.join(CONSENT)}")
                since = utc_time(row["consent_updated_at"], "consent_updated_at") if row.get("consent_updated_at") else at
                consent = EmailConsent(state=state, updated_at=since)
            props = CustomerProperties(first_name=text(row.get("first_name"), "first_name"),
                                       last_name=text(row.get("last_name"), "last_name"),
                                       tags=_categories(row.get("tags")), email_consent=consent)
        except ValueError as exc:
            yield Rejected(line, str(exc), name)
            continue
        if identity.is_empty():
            yield Parsed(line, [], skipped="no email, customer id or phone")
            continue
        who = next(iter(identity.customer_ids.values()), None) or identity.email or identity.phone
        yield Parsed(line, [CustomerEvent(
            event_id=CustomerEvent.make_id(platform, shop, "customer", who, at.isoformat()),
            source=platform, type=EventType.CUSTOMER, occurred_at=at, shop=shop, identity=identity,
            properties=props)])
