"""Shopify bulk query exports (issue 14): tests/fixtures/shopify/bulk-export.jsonl, in the JSONL format
Shopify documents (one node per line, an order's line items as lines of their own with __parentId,
after the order but not next to it), read into exactly the events the webhooks make for the same
records (same ids), with every bad line rejected by its number and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from segmentation.domain.events import (
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
)
from segmentation.history.records import Parsed, Rejected
from segmentation.history.shopify_bulk import CUSTOMERS_QUERY, ORDERS_QUERY, read_bulk
from segmentation.sources import fields, shopify

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "shopify" / "bulk-export.jsonl"
SHOP = "north-wind.myshopify.com"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANA, BEN, CARL = "7301234560001", "7301234560002", "7301234560003"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read(lines=None, now=NOW) -> list[Parsed | Rejected]:
    with FIXTURE.open(encoding="utf-8") as f:
        return list(read_bulk(f if lines is None else lines, SHOP, now, "bulk-export.jsonl"))


def events_by_line(records) -> dict[int, list[CustomerEvent]]:
    return {r.line: r.events for r in records if isinstance(r, Parsed)}


def order_event(order_id: str, status: str, total: str, created: str, updated: str, identity: Identity,
                items: list[LineItem]) -> CustomerEvent:
    return CustomerEvent(
        event_id=CustomerEvent.make_id("shopify", SHOP, "order", order_id, at(updated).isoformat(), status),
        source="shopify", type=EventType.ORDER, occurred_at=at(created), shop=SHOP, identity=identity,
        properties=OrderProperties(order_id=order_id, status=status, total=Decimal(total), currency="EUR",
                                   updated_at=at(updated), items=items))


ANA_ID = {"email": "ana.lopez@example.com", "phone": "+34600111222", "customer_ids": {"shopify": ANA}}


def test_the_fixture_reads_into_exactly_these_records_and_rejections():
    records = read()
    assert [(r.line, r.reason) for r in records if isinstance(r, Rejected)] == [
        (4, "defaultEmailAddress.marketingState must be one of INVALID, NOT_SUBSCRIBED, PENDING, REDACTED, "
            "SUBSCRIBED, UNSUBSCRIBED"),
        (5, "not JSON (Expecting ',' delimiter at column 120)"),
        (7, "updatedAt is not an ISO 8601 time: 'yesterday'"),
        (13, "currentTotalPriceSet.shopMoney.amount must not be negative"),
        (14, "email must be a string"),
        (15, "createdAt is after the accepted range (at most 1 day ahead of now)"),
        (21, "lineItems.quantity must not be negative"),
        (26, "not a JSON object"),
        (27, "a Product: this import reads customers, orders and their line items (CUSTOMERS_QUERY, ORDERS_QUERY)"),
        (28, "id is not a Shopify gid (gid://shopify/<type>/<id>)"),
        (23, "its order gid://shopify/Order/5512345679999 (__parentId) is not in the file"),  # known at the end
    ]
    assert {r.file for r in records if isinstance(r, Rejected)} == {"bulk-export.jsonl"}
    # customers as read; orders once the whole file is read (their line items may come anywhere after)
    assert [r.line for r in records if isinstance(r, Parsed)] == [1, 2, 3, 6, 8, 9, 10, 11, 12, 16]
    skipped = [(r.line, r.skipped) for r in records if isinstance(r, Parsed) and not r.events]
    assert skipped == [(12, "no email, phone or customer")]
    # the line item of the rejected order (line 24) goes with it: neither imported nor an orphan
    assert 24 not in {r.line for r in records}


def test_customers_become_the_customer_events_with_consent_tags_and_identities():
    got = events_by_line(read())
    assert got[1] == [CustomerEvent(
        event_id=CustomerEvent.make_id("shopify", SHOP, "customer", ANA, "2026-10-01T08:00:00+00:00"),
        source="shopify", type=EventType.CUSTOMER, occurred_at=at("2026-10-01T08:00:00Z"), shop=SHOP,
        identity=Identity(**ANA_ID),
        properties=CustomerProperties(first_name="Ana", last_name="López", tags=["vip", "newsletter"],
                                      email_consent=EmailConsent(state="subscribed",
                                                                 updated_at=at("2025-03-02T10:15:00Z"))))]
    ben = got[2][0]  # no email: the customer id and the phone
    assert ben.identity == Identity(phone="+447700900123", customer_ids={"shopify": BEN})
    assert ben.properties.email_consent is None
    carl = got[3][0]  # the fields before 2025-04 (email, emailMarketingConsent) read the same
    assert carl.identity == Identity(email="carl@example.com", customer_ids={"shopify": CARL})
    assert carl.properties.email_consent == EmailConsent(state="unsubscribed", updated_at=at("2026-09-15T12:00:00Z"))
    assert carl.properties.tags == ["wholesale"]
    gina = got[6][0]
    assert gina.identity.email == "gina.rossi@example.com"
    assert gina.properties.email_consent == EmailConsent(state="pending", updated_at=None)


def test_orders_become_the_order_events_with_their_line_items_status_and_current_total():
    got = events_by_line(read())
    assert got[8] == [order_event(  # its two line items are lines 17 and 20, with other orders' between
        "5512345670001", "placed", "120.0", "2026-11-10T09:30:00Z", "2026-11-10T09:31:00Z",
        Identity(**ANA_ID, order_ref="5512345670001"),
        [LineItem(product_id="8800000001", sku="TR-42", title="Trail Runner", category="shoes", quantity=1,
                  price=Decimal("120.0")),
         LineItem(title="Gift Card", quantity=2, price=Decimal("0.0"))])]
    cancelled = got[9][0]
    assert cancelled.properties.status == "cancelled" and cancelled.identity.order_ref == "5512345670002"
    assert cancelled.properties.items == [LineItem(product_id="8800000002", sku="CT-01", title="Canvas Tote",
                                                   category="handbags", price=Decimal("40.0"))]  # no type: its category
    refunded = got[10][0]  # updated 273 days before NOW: past the refund window, no order alias
    assert refunded.properties.status == "refunded" and refunded.properties.total == 0
    assert refunded.identity == Identity(**ANA_ID)
    assert refunded.properties.items[0].category == "shirts"  # the last line of line items, far below
    ben = got[11][0]  # no email on the order, a customer without email: the customer id
    assert ben.identity == Identity(phone="+447700900123", customer_ids={"shopify": BEN}, order_ref="5512345670004")
    assert ben.properties.total == Decimal("45.0")
    carl = got[16][0]  # partially refunded: still placed, at the total after the refund; its bad line item left out
    assert (carl.properties.status, carl.properties.total) == ("placed", Decimal("30.0"))
    assert [i.title for i in carl.properties.items] == ["Wool Hat"]


def webhook(topic: str, payload: dict) -> CustomerEvent:
    [event] = shopify.normalise(topic, SHOP, payload, "delivery").events
    return event


def test_event_ids_and_contents_are_the_webhooks_for_the_same_records():
    """What orders/updated and customers/update deliver for the same records (REST payloads, times in the
    shop's zone): the same events, so the live path and the import count each fact once."""
    got = events_by_line(read())
    customer = webhook("customers/update", {
        "id": int(ANA), "email": "ana.lopez@example.com", "first_name": "Ana", "last_name": "López",
        "phone": "+34600111222", "tags": "vip, newsletter", "created_at": "2025-03-02T11:14:00+01:00",
        "updated_at": "2026-10-01T10:00:00+02:00",
        "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in",
                                    "consent_updated_at": "2025-03-02T11:15:00+01:00"}})
    assert got[1] == [customer]

    def rest_order(oid: int, created: str, updated: str, status: str, total: str, cancelled: str | None = None,
                   items: tuple = ()) -> CustomerEvent:
        return webhook("orders/updated", {
            "id": oid, "email": "ana.lopez@example.com", "created_at": created, "updated_at": updated,
            "cancelled_at": cancelled, "financial_status": status, "total_price": "999.00",
            "current_total_price": total, "currency": "EUR", "order_number": 1001,
            "customer": {"id": int(ANA), "email": "ana.lopez@example.com", "phone": "+34600111222"},
            "line_items": list(items)})

    placed = rest_order(5512345670001, "2026-11-10T10:30:00+01:00", "2026-11-10T10:31:00+01:00", "paid", "120.00",
                        items=({"product_id": 8800000001, "title": "Trail Runner", "sku": "TR-42", "quantity": 1,
                                "price": "120.00"}, {"product_id": None, "title": "Gift Card", "quantity": 2,
                                                     "price": "0.00"}))
    cancelled = rest_order(5512345670002, "2026-08-01T12:00:00+02:00", "2026-08-02T10:00:05+02:00", "voided",
                           "0.00", cancelled="2026-08-02T10:00:00+02:00")
    refunded = rest_order(5512345670003, "2026-02-01T16:00:00+01:00", "2026-02-20T12:00:00+01:00", "refunded", "0.00")
    for line, live in ((8, placed), (9, cancelled), (10, refunded)):
        [imported] = got[line]
        assert imported.event_id == live.event_id
        assert (imported.occurred_at, imported.source, imported.shop, imported.type) == \
            (live.occurred_at, live.source, live.shop, live.type)
        old = line == 10  # past the refund window: the import gives no order alias (as csv_files does)
        assert imported.identity == (live.identity.model_copy(update={"order_ref": None}) if old else live.identity)
        ours, theirs = imported.properties, live.properties
        assert (ours.order_id, ours.status, ours.total, ours.currency, ours.updated_at) == \
            (theirs.order_id, theirs.status, theirs.total, theirs.currency, theirs.updated_at)
    # the webhook learns categories from products/* webhooks; the export names them on the line item
    items = events_by_line(read())[8][0].properties.items
    assert [i.model_copy(update={"category": None}) for i in items] == placed.properties.items


def test_children_before_or_next_to_their_order_or_two_exports_concatenated_read_the_same():
    with FIXTURE.open(encoding="utf-8") as f:
        lines = f.read().splitlines()
    expected = {r.line: r for r in read()}
    grouped_orders = {json.loads(line)["id"]: [] for line in lines[7:16]}
    for line in lines[16:25]:
        parent = json.loads(line)["__parentId"]
        if parent in grouped_orders:
            grouped_orders[parent].append(line)
    # the same orders with their line items right below each (groupObjects: true): same events
    regrouped = lines[:7] + [x for order in lines[7:16] for x in [order, *grouped_orders[json.loads(order)["id"]]]]
    events = [e for r in read(regrouped) if isinstance(r, Parsed) for e in r.events]
    assert events == [e for r in expected.values() if isinstance(r, Parsed) for e in r.events]
    # line items before their order: still found (the whole file is read before any order is made)
    reversed_lines = lines[16:25] + lines[:16]
    again = [e for r in read(reversed_lines) if isinstance(r, Parsed) for e in r.events]
    assert sorted(e.event_id for e in again) == sorted(e.event_id for e in events)
    assert {e.event_id: e for e in again} == {e.event_id: e for e in events}


def test_times_are_checked_against_now_and_no_time_context_leaks_to_the_reader():
    later = datetime(2099, 1, 1, tzinfo=UTC)  # an import run then accepts the 2099 order of line 15
    records = read(now=later)
    assert 15 in events_by_line(records)
    assert all(e.identity.order_ref is None for e in events_by_line(records)[8])  # now far past the refund window
    reader = read_bulk(FIXTURE.open(encoding="utf-8"), SHOP, NOW)
    next(reader)
    assert fields._received_at.get() is None  # a consumer between two records sees the wall clock
    reader.close()


def test_many_line_items_keep_the_first_hundred_as_the_webhook_does():
    order = {"id": "gid://shopify/Order/1", "email": "a@example.com", "createdAt": "2026-11-01T00:00:00Z",
             "updatedAt": "2026-11-01T00:00:00Z", "currentTotalPriceSet": {"shopMoney": {"amount": "1.0"}}}
    items = [json.dumps({"id": f"gid://shopify/LineItem/{n}", "title": f"item {n}", "quantity": 1,
                         "__parentId": "gid://shopify/Order/1"}) for n in range(150)]
    [record] = read([json.dumps(order), *items])
    assert [i.title for i in record.events[0].properties.items] == [f"item {n}" for n in range(shopify.MAX_ITEMS)]


@pytest.mark.parametrize("line, reason", [
    ('{"id": 5}', "id must be a Shopify gid string"),
    ('{"title": "x"}', "missing field 'id'"),
    ('{"id": "gid://shopify/Order/1", "createdAt": "2026-11-01T00:00:00Z", "customer": "someone"}',
     "customer must be an object"),
    ('{"id": "gid://shopify/Order/1", "createdAt": "2026-11-01T00:00:00Z", "currentTotalPriceSet": {"shopMoney": '
     '{"amount": "lots"}}}', "currentTotalPriceSet.shopMoney.amount is not a decimal"),
    ('{"id": "gid://shopify/Order/1", "email": "a@example.com"}', "missing field 'createdAt'"),
    ('{"id": "gid://shopify/Order/1", "createdAt": "1999-12-31T23:59:59Z"}',
     "createdAt is before the accepted range (2000-01-01T00:00:00Z or later)"),
    ('{"id": "gid://shopify/Customer/1", "tags": "a", "updatedAt": 17}', "updatedAt must be an ISO 8601 string"),
    ('{"id": "gid://shopify/Customer/1", "tags": 3, "updatedAt": "2026-01-01T00:00:00Z"}',
     "tags must be a list of strings"),
    ('{"id": "gid://shopify/LineItem/1", "__parentId": "gid://shopify/Customer/1"}',
     "a LineItem of a Customer: this import reads customers, orders and their line items (CUSTOMERS_QUERY, "
     "ORDERS_QUERY)"),
    ('{"id": "gid://shopify/LineItem/1", "__parentId": "gid://shopify/Order/1", "originalUnitPriceSet": '
     '{"shopMoney": {"amount": "-1"}}}', "lineItems.originalUnitPriceSet.shopMoney.amount must not be negative"),
    ("[[[[" * 10000, "not JSON (nested too deeply, or not text)"),
])
def test_a_bad_line_is_rejected_with_its_number_and_field(line, reason):
    records = read(["", line])  # a blank line is no record; the numbers are the file's
    assert [(r.line, r.reason) for r in records if isinstance(r, Rejected)] == [(2, reason)]


def test_the_queries_select_what_the_reader_reads():
    for field in ("defaultEmailAddress { emailAddress marketingState marketingUpdatedAt }", "tags", "updatedAt"):
        assert field in CUSTOMERS_QUERY
    for field in ("cancelledAt", "displayFinancialStatus", "currentTotalPriceSet { shopMoney { amount currencyCode } }",
                  "lineItems {", "product { id productType category { name } }", "customer { id"):
        assert field in ORDERS_QUERY
