"""Importing a shop from Shopify's Admin API (issue 14), against the fake Admin GraphQL server
(tools/segctl/espfakes/shopify_admin.py): bulk queries started, polled and downloaded, the records
imported into profiles with the right orders and segments; a refused token names the scopes; and
orders imported then delivered live (or live then imported) count once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import InMemoryProfileStore, RecordingPublisher
from segctl.espfakes.shopify_admin import FakeShopifyAdmin, customer, jsonl, line_item, order
from segctl.import_shopify import run_shopify_import, shop_domain
from segmentation.domain.evaluation import default_evaluator
from segmentation.history.shopify_bulk import CUSTOMERS_QUERY, ORDERS_QUERY, read_bulk
from segmentation.infra import shopify_admin
from segmentation.infra.shopify_admin import ShopifyAdmin, ShopifyAdminError
from segmentation.service.history_import import HistoryImport
from segmentation.service.profiles import ProfileService
from segmentation.sources import shopify

NOW = datetime.now(UTC).replace(microsecond=0)
SHOP = "north-wind.myshopify.com"
TOKEN = "shpat_0123456789abcdef0123456789abcdef"
SCOPES = "read_customers and read_orders, and read_all_orders for orders older than 60 days"


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


CUSTOMERS = [
    customer(1001, email="ana@example.com", first_name="Ana", consent="SUBSCRIBED", consent_at=ago(400),
             created_at=ago(500), updated_at=ago(10)),
    customer(1002, phone="+34600111222", first_name="Ben", created_at=ago(100)),  # no email
    customer(1003, email="carl@example.com", consent="UNSUBSCRIBED", consent_at=ago(5), created_at=ago(200),
             updated_at=ago(5)),
]
ORDERS = [
    order(2001, email="ana@example.com", customer_id=1001, created_at=ago(300), total="120.00",
          line_items=[line_item(3001, title="Trail Runner", price="120.00", product_id=4001, product_type="Shoes")]),
    order(2002, email="ana@example.com", customer_id=1001, created_at=ago(3), total="80.00",
          line_items=[line_item(3002, title="Canvas Tote", price="40.00", quantity=2, product_id=4002,
                                category="Handbags")]),
    order(2003, email="ana@example.com", customer_id=1001, created_at=ago(20), cancelled_at=ago(19), total="0.00",
          financial_status="VOIDED"),
    order(2004, customer_id=1002, created_at=ago(5), total="45.00"),  # no email: the customer's id
    order(2005, email="carl@example.com", customer_id=1003, created_at=ago(40), total="600.00",
          line_items=[line_item(3003, title="Wool Coat", price="600.00", product_id=4003, product_type="Coats")]),
    order(2006, created_at=ago(4), total="9.00"),  # nobody: skipped
]


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(shopify_admin, "POLL_START", 0.01)


@pytest.fixture
def shop():
    with FakeShopifyAdmin(shop=SHOP, token=TOKEN, customers=CUSTOMERS, orders=ORDERS, polls=1) as fake:
        yield fake


def service(store: InMemoryProfileStore, publisher: RecordingPublisher | None = None) -> ProfileService:
    return ProfileService(store, default_evaluator(), publisher or RecordingPublisher(),
                          clock=lambda: int(NOW.timestamp()))


def import_from(fake: FakeShopifyAdmin, store: InMemoryProfileStore, publisher: RecordingPublisher | None = None):
    """Start, poll and download both bulk queries, and import them as HistoryImport does (the
    components of tests/unit/test_history_import.py)."""
    client = ShopifyAdmin(fake.shop, fake.token, base_url=fake.base_url)
    operations = [client.export(q) for q in (CUSTOMERS_QUERY, ORDERS_QUERY)]

    def records():
        for operation in operations:
            yield from read_bulk(client.lines(operation.url), fake.shop, NOW)

    job = "import#" + "-".join(op.id.rsplit("/", 1)[1] for op in operations)
    return HistoryImport(service(store, publisher), store).run(records(), job)


def live(topic: str, payload: dict):
    [event] = shopify.normalise(topic, SHOP, payload, "delivery").events
    return event


def rest_order(oid: int, created: str, total: str, updated: str | None = None, cancelled: str | None = None):
    """orders/updated as the webhook delivers the order the fake holds (REST fields)."""
    return live("orders/updated", {
        "id": oid, "email": "ana@example.com", "created_at": created, "updated_at": updated or cancelled or created,
        "cancelled_at": cancelled, "financial_status": "voided" if cancelled else "paid",
        "current_total_price": total, "currency": "EUR", "customer": {"id": 1001, "email": "ana@example.com"},
        "line_items": []})


def test_the_command_exports_polls_downloads_and_imports_then_a_second_run_changes_nothing(fakes, shop, capsys, tmp_path):
    assert run_shopify_import("north-wind", TOKEN, None, False, base_url=shop.base_url, save_dir=tmp_path) == 0
    out = capsys.readouterr().out
    assert "exporting from north-wind.myshopify.com" in out
    assert "customers: running" in out and "customers: completed, 3 objects" in out
    assert "orders: completed, 9 objects" in out  # 6 orders and 3 line items
    assert "3/3 customers" in out  # the progress bar (the order without anybody makes no customer)
    assert "records: 9 read, 8 imported, 1 skipped (nothing to import), 0 rejected" in out
    assert "customers: 3 in the history, 3 written" in out
    assert shop.calls == ["scopes", "run", "poll", "poll", "run", "poll", "poll"]
    assert shop.downloads == ["1", "2"] and shop.download_tokens == [None, None]  # the token stays with the API
    [saved] = tmp_path.glob("shopify-export-north-wind.myshopify.com-*.jsonl")  # kept: --file resumes from it
    assert f"run the command again with --file {saved}" in out and not list(tmp_path.glob("*.part"))

    ana = fakes.store.find("email#ana@example.com")
    assert ana.traits["order_count"] == 2 and ana.traits["lifetime_value"] == "200.00"  # the cancelled one not
    assert {"recent-buyers", "repeat-buyers"} <= set(ana.segments)
    assert ana.profile_id == fakes.store.find(f"cust#shopify#{SHOP}#1001").profile_id
    assert ana.first_name == "Ana"
    ben = fakes.store.find(f"cust#shopify#{SHOP}#1002")  # no email anywhere: his customer id joins them
    assert ben.traits["order_count"] == 1 and "recent-buyers" in ben.segments
    carl = fakes.store.find("email#carl@example.com")  # unsubscribed: suppressed, and so in no synced segment
    assert carl.traits["lifetime_value"] == "600.00" and set(carl.segments) == {"suppressed"}
    entered = [m["detail"] for m in fakes.publisher.drain() if m["detail-type"] == "SegmentEntered"]
    assert {d["cause"] for d in entered} == {"import"}
    assert sorted(d["segment_id"] for d in entered) == ["recent-buyers", "recent-buyers", "repeat-buyers",
                                                          "suppressed"]

    # a second export is a second import (new bulk operations): nothing counts twice, nothing changes
    assert run_shopify_import(SHOP, TOKEN, None, False, base_url=shop.base_url, save_dir=tmp_path) == 0
    assert "(0 membership changes)" in capsys.readouterr().out
    assert [m for m in fakes.publisher.drain() if m["detail-type"].startswith("Segment")] == []
    assert fakes.store.find("email#ana@example.com").traits["order_count"] == 2


def test_a_token_shopify_refuses_gets_the_scopes_it_needs_and_imports_nothing(fakes, shop, tmp_path):
    with pytest.raises(SystemExit) as refused:
        run_shopify_import(SHOP, "shpat_wrong", None, False, base_url=shop.base_url, save_dir=tmp_path)
    message = str(refused.value)
    assert "401" in message and "Invalid API key or access token" in message and SCOPES in message
    assert "shpat_wrong" not in message and TOKEN not in message
    assert shop.calls == [] and fakes.store.count_profiles() == 0
    with pytest.raises(SystemExit, match="set SHOPIFY_ACCESS_TOKEN .* read_customers and read_orders"):
        run_shopify_import(SHOP, None, None, False, base_url=shop.base_url, save_dir=tmp_path)


def test_missing_scopes_are_named_before_anything_runs_and_without_read_all_orders_only_60_days_come(fakes, capsys, tmp_path):
    with FakeShopifyAdmin(shop=SHOP, token=TOKEN, customers=CUSTOMERS, orders=ORDERS,
                          scopes=["read_customers"]) as fake, pytest.raises(SystemExit, match="lacks read_orders"):
        run_shopify_import(SHOP, TOKEN, None, False, base_url=fake.base_url, save_dir=tmp_path)
    assert fake.calls == ["scopes"]  # no bulk query started
    with FakeShopifyAdmin(shop=SHOP, token=TOKEN, customers=CUSTOMERS, orders=ORDERS,
                          scopes=["read_customers", "write_orders"]) as fake:
        assert run_shopify_import(SHOP, TOKEN, None, False, base_url=fake.base_url, save_dir=tmp_path) == 0
    assert "lacks read_all_orders: Shopify exports only the orders of the last 60 days" in capsys.readouterr().out
    assert fakes.store.find("email#ana@example.com").traits["order_count"] == 1  # the 300-day-old order is not there


def test_a_bulk_query_already_running_is_said_so(fakes, capsys, tmp_path):
    with FakeShopifyAdmin(shop=SHOP, token=TOKEN, customers=CUSTOMERS, orders=ORDERS, polls=1000,
                          max_running=1) as fake:
        ShopifyAdmin(SHOP, TOKEN, base_url=fake.base_url).start(ORDERS_QUERY)  # someone else's export
        with pytest.raises(SystemExit, match="a bulk query is already running for this app on north-wind"):
            run_shopify_import(SHOP, TOKEN, None, False, base_url=fake.base_url, save_dir=tmp_path)
    assert fakes.store.count_profiles() == 0


def test_the_client_raises_shopify_user_errors_failures_timeouts_and_retries_when_throttled(shop):
    client = ShopifyAdmin(SHOP, TOKEN, base_url=shop.base_url)
    with pytest.raises(ShopifyAdminError, match="Shopify refused the bulk query: Bulk queries must contain one"):
        client.start("{ products { edges { node { id } } } }")
    waits: list[float] = []
    client.sleep = waits.append
    shop.throttle_next(2)
    assert client.access_scopes() == {"read_customers", "read_orders", "read_all_orders"}
    assert shop.calls[-3:] == ["throttled", "throttled", "scopes"] and waits == [2.0, 4.0]
    shop.throttle_next(10)
    with pytest.raises(ShopifyAdminError, match="kept throttling"):
        client.access_scopes()
    shop.throttle_next(0)
    shop.scopes = {"read_customers"}  # revoked while it runs: Shopify fails the operation
    with pytest.raises(ShopifyAdminError, match=f"failed: access denied; the token needs the Admin API scopes {SCOPES}"):
        client.export(ORDERS_QUERY)
    shop.scopes, shop.polls = {"read_customers", "read_orders"}, 1000
    ticks = iter(range(0, 10**6, 600))  # ten minutes per look at the clock
    client.clock = lambda: next(ticks)
    with pytest.raises(ShopifyAdminError, match=r"still runs after \d+ min \(it goes on at Shopify\)"):
        client.export(CUSTOMERS_QUERY, timeout=3600)
    with pytest.raises(ShopifyAdminError, match="answered 403"):
        list(client.lines(f"{shop.base_url}/bulk/99.jsonl"))


def test_import_then_the_same_orders_live_count_once_and_later_changes_still_apply(shop):
    store = InMemoryProfileStore()
    report = import_from(shop, store)
    assert (report.rejected, report.customers, report.written) == (0, 3, 3)
    ana = store.find("email#ana@example.com")
    assert ana.traits["order_count"] == 2 and ana.traits["lifetime_value"] == "200.00"
    profiles = service(store)
    # the webhooks of the same orders, as Shopify delivers them (and redelivers them)
    same = [rest_order(2001, ago(300), "120.00"), rest_order(2002, ago(3), "80.00"),
            rest_order(2003, ago(20), "0.00", cancelled=ago(19))]
    for event in same + same:
        assert profiles.apply(event) == []
    ana = store.find("email#ana@example.com")
    assert ana.traits["order_count"] == 2 and ana.traits["lifetime_value"] == "200.00"
    # a refund of the recent order after the import: found through the order alias, applied once
    refund = live("refunds/create", {"id": 9001, "order_id": 2002, "created_at": ago(0.5),
                                     "transactions": [{"amount": "30.00", "kind": "refund", "status": "success"}]})
    profiles.apply(refund)
    profiles.apply(refund)
    assert store.find("email#ana@example.com").traits["lifetime_value"] == "170.00"
    # and a later cancellation of it: the order stops counting
    profiles.apply(rest_order(2002, ago(3), "0.00", cancelled=ago(0.2)))
    assert store.find("email#ana@example.com").traits["order_count"] == 1


def test_live_orders_then_the_import_count_once(shop):
    store = InMemoryProfileStore()
    profiles = service(store)
    for event in (rest_order(2001, ago(300), "120.00"), rest_order(2002, ago(3), "80.00")):
        profiles.apply(event)
    import_from(shop, store)
    ana = store.find("email#ana@example.com")
    assert ana.traits["order_count"] == 2 and ana.traits["lifetime_value"] == "200.00"
    assert ana.profile_id == store.find(f"cust#shopify#{SHOP}#1001").profile_id


def test_a_saved_export_imports_with_file_and_resumes_or_changes_nothing_the_second_time(fakes, tmp_path, capsys):
    export = tmp_path / "north-wind.jsonl"
    export.write_text("\n".join(jsonl(CUSTOMERS) + jsonl(ORDERS, grouped=True) + ['{"id": "gid://shopify/Order/1"'])
                      + "\n")
    assert run_shopify_import(SHOP, None, export, False) == 0
    out = capsys.readouterr().out
    assert "records: 10 read, 8 imported, 1 skipped (nothing to import), 1 rejected" in out
    assert "north-wind.jsonl line 13: not JSON (" in out
    assert fakes.store.find("email#ana@example.com").traits["order_count"] == 2
    assert run_shopify_import(SHOP, None, export, False) == 0
    assert "(0 membership changes)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no such file"):
        run_shopify_import(SHOP, None, tmp_path / "missing.jsonl", False)


@pytest.mark.parametrize("given, domain", [("north-wind", SHOP), ("https://North-Wind.myshopify.com/", SHOP)])
def test_the_shop_is_its_myshopify_domain(given, domain):
    assert shop_domain(given) == domain
    with pytest.raises(SystemExit, match="<name>.myshopify.com"):
        shop_domain("shop.example.com")


def test_the_local_command_needs_the_local_stack_endpoint(template, monkeypatch):
    from segctl.import_shopify import import_shopify

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(SystemExit, match="set AWS_ENDPOINT_URL"):
        import_shopify(template, SHOP, None, False)
