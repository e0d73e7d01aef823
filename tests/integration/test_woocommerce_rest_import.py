"""Importing a WooCommerce store through its REST API (issue 14), against a local fake of the API
(tools/segctl/espfakes/woocommerce_rest.py: WooCommerce's pagination headers and key checks): every
page read, the profiles built with the right orders, a refused key explained, and a Mailchimp
unsubscribe imported afterwards leaving the buyer suppressed, never subscribed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes import InMemoryProfileStore, RecordingPublisher
from segctl.espfakes.woocommerce_rest import FakeWooCommerce
from segctl.import_esp import run_esp_import
from segctl.import_woocommerce import run_woocommerce_import
from segmentation.domain.evaluation import default_evaluator
from segmentation.history.esp_exports import read_klaviyo_profiles_csv, read_mailchimp_audience_csv
from segmentation.history.woocommerce import read_objects
from segmentation.infra.woocommerce_rest import WooCommerceRest, WooCommerceRestError
from segmentation.service.history_import import HistoryImport
from segmentation.service.profiles import ProfileService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SITE = "https://shop.example.com"
SHOP = "shop.example.com"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ORDERS = [o for page in ("orders-page-1.json", "orders-page-2.json")
          for o in json.loads((FIXTURES / "woocommerce" / page).read_text())]
CUSTOMERS = json.loads((FIXTURES / "woocommerce" / "customers.json").read_text())


@pytest.fixture
def shop():
    with FakeWooCommerce(orders=ORDERS, customers=CUSTOMERS) as fake:
        yield fake


class Import:
    """ProfileService + HistoryImport on the in-memory fakes, at NOW."""

    def __init__(self) -> None:
        self.store, self.publisher = InMemoryProfileStore(), RecordingPublisher()
        profiles = ProfileService(self.store, default_evaluator(), self.publisher, clock=lambda: int(NOW.timestamp()))
        self.history = HistoryImport(profiles, self.store)

    def rest(self, fake: FakeWooCommerce, job: str = "import#wc", per_page: int = 3):
        client = WooCommerceRest(SITE, fake.key, fake.secret, base_url=fake.base_url, per_page=per_page)

        def records():
            for resource in ("customers", "orders"):
                yield from read_objects(client.records(resource), SHOP, NOW, resource, f"REST API {resource}")

        return self.history.run(records(), job)

    def find(self, alias: str):
        return self.store.find(alias)


def entered(publisher: RecordingPublisher) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in publisher.drain():
        if m["detail-type"] in ("SegmentEntered", "SegmentExited"):
            out.setdefault(m["detail-type"], set()).add(m["detail"]["segment_id"])
    return out


def test_every_page_is_read_and_each_customer_gets_their_orders(shop):
    run = Import()
    report = run.rest(shop)
    assert shop.pages_served("orders") == [1, 2, 3, 4] and shop.pages_served("customers") == [1, 2]
    assert all(r.authenticated for r in shop.requests)
    assert (report.records, report.imported, report.skipped, report.rejected) == (14, 9, 1, 4)
    assert report.reasons == [
        "REST API customers line 3: customer 320: date_created_gmt is not an ISO 8601 time: '24/03/2024 08:15'",
        "REST API customers line 4: customer 321: not a WooCommerce customer (it has 'line_items'): is this a file "
        "of orders?",
        "REST API orders line 6: order 4306: total is not a decimal",
        "REST API orders line 7: order 4307: missing field 'date_created_gmt' (use webhook API version v3)",
    ]
    ana = run.find(f"cust#woocommerce#{SHOP}#318")
    assert ana.email == "ana.lopez@example.com" and ana.first_name == "Ana"
    # 4301, 4305 (130.00 after a 20.00 refund) and 4310 count; 4303 was refunded in full
    assert ana.traits["order_count"] == 3 and ana.traits["lifetime_value"] == "460.50"
    assert {"recent-buyers", "repeat-buyers"} <= set(ana.segments)
    ben = run.find("email#ben.okafor@example.com")  # a guest: known by the billing email
    assert ben.traits["order_count"] == 1 and ben.traits["lifetime_value"] == "59.90"
    carl = run.find("email#carl@example.com")  # his order is pending, his paid one unreadable: no purchase
    assert carl.profile_id == run.find(f"cust#woocommerce#{SHOP}#319").profile_id
    assert carl.traits.get("order_count", 0) == 0 and "recent-buyers" not in carl.segments
    assert run.find("email#dee@example.com").traits.get("order_count", 0) == 0  # on hold: a contact
    assert report.customers == report.written == 4
    assert run.rest(shop, per_page=100).changes == 0  # read again: the same events, nothing changes


def test_a_key_without_read_permission_or_a_wrong_key_is_explained():
    for fake in (FakeWooCommerce(orders=ORDERS, permissions="write"), FakeWooCommerce(orders=ORDERS)):
        with fake:
            key = fake.key if fake.permissions == "write" else "ck_0000000000000000000000000000000000000000"
            with pytest.raises(WooCommerceRestError, match="Use a key with Read permission") as err:
                list(WooCommerceRest(SITE, key, fake.secret, base_url=fake.base_url).records("orders"))
            assert ("does not have read permissions" if fake.permissions == "write" else "Consumer key is invalid") \
                in str(err.value)
            assert fake.secret not in str(err.value) and key not in str(err.value)


def test_a_site_without_the_rest_api_is_explained_and_an_http_site_refused_before_any_request():
    with FakeWooCommerce(html_instead=True) as fake:
        with pytest.raises(WooCommerceRestError, match="text/html, not JSON: .* permalinks are not 'Plain'"):
            list(WooCommerceRest(SITE, fake.key, fake.secret, base_url=fake.base_url).records("orders"))
    with pytest.raises(WooCommerceRestError, match="over HTTPS only"):
        WooCommerceRest("http://shop.example.com", "ck_a", "cs_b")


def test_a_busy_site_is_retried_and_an_empty_store_is_one_page(shop):
    shop.fail_next(2, 503)
    client = WooCommerceRest(SITE, shop.key, shop.secret, base_url=shop.base_url, backoff_factor=0.01)
    assert len(list(client.records("orders"))) == 10 and client.requests == 3
    with FakeWooCommerce() as empty:
        client = WooCommerceRest(SITE, empty.key, empty.secret, base_url=empty.base_url)
        assert list(client.records("orders")) == [] and empty.pages_served("orders") == [1]


def test_a_mailchimp_unsubscribe_imported_after_the_orders_leaves_the_buyer_suppressed_never_subscribed(shop):
    run = Import()
    run.rest(shop)
    ana = run.find("email#ana.lopez@example.com")
    assert {"recent-buyers", "repeat-buyers"} <= set(ana.segments) and ana.email_consent is None
    run.publisher.drain()
    with (FIXTURES / "esp-exports" / "mailchimp-unsubscribed.csv").open(newline="") as f:
        report = run.history.run(read_mailchimp_audience_csv(f, "a1b2c3d4e5", now=NOW), "import#mc")
    assert report.rejected == 1 and report.written == 2
    ana = run.find("email#ana.lopez@example.com")
    assert ana.email_consent.state == "unsubscribed" and ana.segments == ["suppressed"]
    assert ana.traits["order_count"] == 3  # her orders stay; every other segment excludes her
    changes = entered(run.publisher)
    assert changes["SegmentEntered"] == {"suppressed"} and {"recent-buyers", "repeat-buyers"} <= changes["SegmentExited"]
    # an older subscription elsewhere (Klaviyo, May 2024) imported afterwards does not bring her back
    with (FIXTURES / "esp-exports" / "klaviyo-profiles.csv").open(newline="") as f:
        run.history.run(read_klaviyo_profiles_csv(f, "AbC123", now=NOW), "import#k")
    ana = run.find("email#ana.lopez@example.com")
    assert ana.email_consent.state == "unsubscribed" and ana.segments == ["suppressed"]
    assert [m for m in run.publisher.drain() if m["detail-type"].startswith("Segment")
            and m["detail"]["profile_id"] == ana.profile_id] == []  # her memberships did not move
    # nothing the import did made her subscribed at any moment after the unsubscribe
    unsubscribed_at = int(datetime(2025, 2, 28, 9, 15, tzinfo=UTC).timestamp())
    assert [s for at, s in ana.email_consent.log if at >= unsubscribed_at] == ["unsubscribed"]


def test_segctl_pages_through_the_api_with_progress_and_prints_the_report(shop, fakes, capsys):
    assert run_woocommerce_import(SITE, shop.key, shop.secret, [], False, base_url=shop.base_url, per_page=3) == 0
    out = capsys.readouterr().out
    assert "orders: page 4/4, 10 records" in out and "customers: page 2/2, 4 records" in out
    assert "records: 14 read, 9 imported, 1 skipped (nothing to import), 4 rejected" in out
    assert "REST API orders line 6: order 4306: total is not a decimal" in out
    assert "customers: 4 in the history, 4 written" in out
    ana = fakes.store.find(f"cust#woocommerce#{SHOP}#318")
    assert ana.traits["order_count"] == 3
    with pytest.raises(SystemExit, match="Read permission"):
        run_woocommerce_import(SITE, shop.key, "cs_wrong", [], False, base_url=shop.base_url)
    with pytest.raises(SystemExit, match="give --key and --secret"):
        run_woocommerce_import(SITE, None, None, [], False)


def test_segctl_reads_saved_pages_and_json_lines_the_same_way(fakes, capsys):
    files = [FIXTURES / "woocommerce" / n for n in ("orders-page-1.json", "orders-page-2.json", "customers.json")]
    assert run_woocommerce_import(SITE, None, None, files, False) == 0
    out = capsys.readouterr().out
    # the kind of each file is read from its objects; customers go first
    assert "importing customers.json (customers), orders-page-1.json (orders), orders-page-2.json (orders)" in out
    assert "records: 14 read, 9 imported, 1 skipped (nothing to import), 4 rejected" in out
    assert "orders-page-2.json line 2: order 4306: total is not a decimal" in out
    assert fakes.store.find(f"cust#woocommerce#{SHOP}#318").traits["order_count"] == 3
    with pytest.raises(SystemExit, match="not a file of WooCommerce REST orders or customers"):
        run_woocommerce_import(SITE, None, None, [FIXTURES / "esp-exports" / "mailchimp-cleaned.csv"], False)


def test_segctl_imports_mailchimp_files_by_their_status_and_wants_the_audience_id(fakes, capsys, tmp_path):
    subscribed = tmp_path / "subscribed_members_export_0a1b2c.csv"  # Mailchimp's name for the file
    subscribed.write_bytes((FIXTURES / "esp-exports" / "mailchimp-subscribed.csv").read_bytes())
    files = [subscribed, FIXTURES / "esp-exports" / "mailchimp-unsubscribed.csv"]
    assert run_esp_import("mailchimp", files, "a1b2c3d4e5", None, False) == 0
    out = capsys.readouterr().out
    assert "records: 8 read, 4 imported, 0 skipped (nothing to import), 4 rejected" in out
    assert fakes.store.find("email#gina.rossi@example.com").email_consent.state == "subscribed"
    assert "suppressed" in fakes.store.find("email#ana.lopez@example.com").segments
    with pytest.raises(SystemExit, match="give --account, the audience id"):
        run_esp_import("mailchimp", files, None, None, False)
    with pytest.raises(SystemExit, match="--status is for Mailchimp files"):
        run_esp_import("klaviyo", [FIXTURES / "esp-exports" / "klaviyo-profiles.csv"], "AbC123", "subscribed", False)
    assert run_esp_import("klaviyo", [FIXTURES / "esp-exports" / "klaviyo-profiles.csv"], "AbC123", None, True) == 0
    assert "records: 12 read, 6 imported, 1 skipped (nothing to import), 5 rejected" in capsys.readouterr().out
