"""WooCommerce history (issue 14): REST v3 order and customer objects, as the API's pages and as JSON
Lines, become exactly the events the webhook adapter makes of the same objects (same ids), with the
bad records rejected by line, record and field and the rest read."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from segmentation.domain.events import EventType
from segmentation.history.records import Parsed, Rejected
from segmentation.history.woocommerce import file_kind, read_file, read_objects
from segmentation.sources import woocommerce
from test_woocommerce import parse, request

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce"
SHOP = "shop.example.com"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def read(name: str, kind: str = "orders", now: datetime = NOW, shop: str = SHOP) -> list[Parsed | Rejected]:
    with (FIXTURES / name).open(encoding="utf-8-sig") as f:
        return list(read_file(f, shop, now, kind, name))


def summary(records: list[Parsed | Rejected]) -> list[tuple]:
    """Each record as (line, what it became): the events' type, order, status, total, email, order
    alias and first name; a rejection's reason; a skip's reason."""
    out = []
    for r in records:
        if isinstance(r, Rejected):
            out.append((r.line, "rejected", r.reason))
        elif not r.events:
            out.append((r.line, "skipped", r.skipped))
        else:
            for e in r.events:
                p = e.properties
                out.append((r.line, e.type.value, getattr(p, "order_id", None), getattr(p, "status", None),
                            str(p.total) if hasattr(p, "total") else None, e.identity.email,
                            e.identity.order_ref, getattr(p, "first_name", None)))
    return out


def test_orders_pages_become_the_webhooks_order_events_and_bad_records_are_named_by_line_order_and_field():
    assert summary(read("orders-page-1.json")) == [
        (2, "order", "4301", "placed", "120.00", "ana.lopez@example.com", None, None),
        (138, "order", "4302", "placed", "59.90", "ben.okafor@example.com", None, None),  # a guest order
        (248, "order", "4303", "refunded", "0.00", "ana.lopez@example.com", None, None),
        (369, "customer", None, None, None, "carl@example.com", None, "Carl"),  # pending: who, not a purchase
        (479, "order", "4305", "placed", "130.00", "ana.lopez@example.com", None, None),  # 20.00 refunded
    ]
    assert summary(read("orders-page-2.json")) == [
        (2, "rejected", "order 4306: total is not a decimal"),
        (117, "rejected", "order 4307: missing field 'date_created_gmt' (use webhook API version v3)"),
        (225, "skipped", "no customer email, phone or id in the order"),
        (335, "customer", None, None, None, "dee@example.com", None, "Dee"),  # on hold
        (445, "order", "4310", "placed", "210.50", "ana.lopez@example.com", None, None),
    ]
    assert {r.file for r in read("orders-page-2.json") if isinstance(r, Rejected)} == {"orders-page-2.json"}


def test_each_event_is_the_one_the_webhook_makes_of_the_same_object_with_the_same_id():
    """The webhook adapter normalises a signed delivery of each object; the import's events are equal
    to its events, field for field, except the order alias of recent orders."""
    compared = 0
    for name, kind, topic in (("orders-page-1.json", "orders", "order.updated"),
                              ("orders-page-2.json", "orders", "order.updated"),
                              ("customers.json", "customers", "customer.updated")):
        objects = json.loads((FIXTURES / name).read_text())
        records = [r for r in read(name, kind) if not isinstance(r, Rejected)]
        readable = [o for o in objects if o["id"] not in (4306, 4307, 320, 321)]
        assert len(records) == len(readable)
        for obj, record in zip(readable, records, strict=True):
            hook = parse(request(json.dumps(obj, separators=(",", ":")).encode(), topic))
            assert [e.event_id for e in record.events] == [e.event_id for e in hook.events]
            for ours, theirs in zip(record.events, hook.events, strict=True):
                assert ours == theirs
                compared += 1
    assert compared == 9  # the readable objects that name somebody


def test_no_order_alias_as_the_webhook_gives_none():
    """WooCommerce's webhooks give no order alias (no live event looks one up), so neither does the
    import: an alias per order would be a write that is never read."""
    refs = [e.identity.order_ref for r in read("orders-page-1.json") for e in r.events]
    assert refs and refs == [None] * len(refs)


def test_times_after_the_import_instant_are_refused_as_the_webhook_refuses_them_after_arrival():
    early = datetime(2025, 2, 1, tzinfo=UTC)  # before 4310 was placed
    rejected = [r for r in read("orders-page-2.json", now=early) if isinstance(r, Rejected)]
    assert (445, "order 4310: date_created_gmt is after the accepted range (at most 1 day ahead of now)") in [
        (r.line, r.reason) for r in rejected]


def test_customers_become_the_webhooks_customer_events_and_a_wrong_kind_is_named():
    assert summary(read("customers.json", "customers")) == [
        (2, "customer", None, None, None, "ana.lopez@example.com", None, "Ana"),
        (59, "customer", None, None, None, "carl@example.com", None, "Carl"),
        (116, "rejected", "customer 320: date_created_gmt is not an ISO 8601 time: '24/03/2024 08:15'"),
        (173, "rejected", "customer 321: not a WooCommerce customer (it has 'line_items'): is this a file of orders?"),
    ]
    ana = read("customers.json", "customers")[0].events[0]
    assert ana.identity.customer_ids == {"woocommerce": "318"} and ana.shop == SHOP
    assert ana.occurred_at == datetime(2025, 2, 5, 9, 0, tzinfo=UTC)  # date_modified_gmt
    # customers given as orders: every record refused, saying what the file is
    wrong = read("customers.json", "orders")
    assert all(isinstance(r, Rejected) and "is this a file of customers?" in r.reason for r in wrong)


def test_json_lines_reject_a_truncated_line_and_a_line_that_is_no_object_and_read_on():
    assert summary(read("orders.jsonl")) == [
        (1, "order", "4301", "placed", "120.00", "ana.lopez@example.com", None, None),
        (2, "order", "4302", "placed", "59.90", "ben.okafor@example.com", None, None),
        (3, "rejected", "not JSON: Unterminated string starting at column 1037"),
        (4, "order", "4303", "refunded", "0.00", "ana.lopez@example.com", None, None),
        (5, "rejected", "not a JSON object (a str)"),
        (6, "customer", None, None, None, "carl@example.com", None, "Carl"),
    ]


def test_a_syntax_error_inside_an_array_keeps_what_came_before_and_names_its_line():
    assert summary(read("orders-broken.json")) == [
        (2, "order", "4301", "placed", "120.00", "ana.lopez@example.com", None, None),
        (138, "order", "4302", "placed", "59.90", "ben.okafor@example.com", None, None),
        (263, "rejected", "not JSON: Expecting ',' delimiter at column 5; the rest of the file is not read"),
    ]


def test_several_pages_in_one_file_and_blank_lines_before_keep_their_line_numbers():
    one = (FIXTURES / "orders-page-1.json").read_text()
    two = (FIXTURES / "orders-page-2.json").read_text()
    text = "\n\n" + one + two  # two REST pages saved one after the other, after two blank lines
    records = list(read_file(io.StringIO(text), SHOP, NOW, "orders", "pages.json"))
    assert [r.line for r in records][:2] == [4, 140]
    assert len(records) == 10 and records[5].line == 2 + 600 + 2  # page 2's first object: 2 blank lines, page 1
    assert sum(1 for r in records if isinstance(r, Rejected)) == 2


def test_objects_from_another_site_are_refused_as_the_webhook_refuses_them():
    records = read("customers.json", "customers", shop="other.example.org")
    assert records[0] == Rejected(2, "customer 318: it belongs to shop.example.com, not other.example.org (its "
                                     "_links or payment_url): is the site right?", "customers.json")


def test_read_objects_takes_decoded_objects_numbered_by_the_caller():
    orders = json.loads((FIXTURES / "orders-page-2.json").read_text())
    records = list(read_objects(enumerate(orders, start=101), SHOP, NOW, "orders", "REST API orders"))
    assert [(r.line, type(r).__name__) for r in records] == [
        (101, "Rejected"), (102, "Rejected"), (103, "Parsed"), (104, "Parsed"), (105, "Parsed")]
    assert list(read_objects([(7, [1, 2])], SHOP, NOW, "orders")) == [
        Rejected(7, "not a JSON object (a list)", "orders")]
    with pytest.raises(ValueError, match="kind must be"):
        list(read_objects([], SHOP, NOW, "products"))


def test_the_kind_of_a_file_is_told_by_its_first_object():
    assert file_kind((FIXTURES / "orders-page-1.json").read_text()) == "orders"
    assert file_kind((FIXTURES / "orders.jsonl").read_text()) == "orders"
    assert file_kind((FIXTURES / "customers.json").read_text()) == "customers"
    assert file_kind("[]") is None and file_kind("not json") is None and file_kind('[{"id": 1}]') is None


def test_the_webhook_path_is_unchanged_by_the_shared_functions():
    """order_event/customer_event are what the webhook normalises with: a pending order is still an
    acknowledged contact, a guest order without any identity still ignored."""
    objects = json.loads((FIXTURES / "orders-page-1.json").read_text())
    pending = parse(request(json.dumps(objects[3]).encode(), "order.updated"))
    assert pending.ignored_reason == "order is not paid yet: identity only, not a purchase"
    assert [e.type for e in pending.events] == [EventType.CUSTOMER]
    nobody = json.loads((FIXTURES / "orders-page-2.json").read_text())[2]
    assert woocommerce.order_event(SHOP, nobody) == (None, "no customer email, phone or id in the order")
