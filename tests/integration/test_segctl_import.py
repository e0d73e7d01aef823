"""`segctl import csv` on moto (tables from template.yaml): progress, the report, the profiles and
the membership events an import leaves, and a second run that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from segctl.cli import main
from segctl.imports import run_import
from segmentation import bootstrap

NOW = datetime.now(UTC)


def day(n: float) -> str:
    return (NOW - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def files(aws, tmp_path):
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,email,customer_id,created_at,total,categories\n"
                      f"5001,ana@example.com,,{day(300)},120.00,Shoes\n"
                      f"5002,,c-1,{day(40)},80.00,Bags\n"
                      f"5003,ana@example.com,,{day(2)},60.00,Shoes\n"
                      f"5004,ben@example.com,,soon,60.00,\n")
    customers = tmp_path / "customers.csv"
    customers.write_text("email,customer_id,first_name,email_consent,created_at\n"
                         f"ana@example.com,c-1,Ana,subscribed,{day(400)}\n")
    return orders, customers


def test_import_prints_progress_and_a_report_and_builds_the_profiles(files, outbox, capsys):
    orders, customers = files
    # what `segctl import csv --orders ... --customers ... --platform shopify --shop ...` runs on the
    # local stack (here bootstrap's components are on moto, in-process)
    args = ([(orders, "orders"), (customers, "customers")], "shopify", "s.myshopify.com", False)
    assert run_import(*args) == 0
    out = capsys.readouterr().out
    assert "1/1 customers" in out
    assert "records: 5 read, 4 imported, 0 skipped (nothing to import), 1 rejected" in out
    assert "orders.csv line 5: created_at is not an ISO 8601 time: 'soon'" in out
    ana = bootstrap.repository().find("cust#shopify#s.myshopify.com#c-1")
    assert ana.email == "ana@example.com" and ana.traits["order_count"] == 3
    assert {"recent-buyers", "repeat-buyers"} <= set(ana.segments)
    entered = [m for m in outbox.drain() if m["detail-type"] == "SegmentEntered"]
    assert {m["detail"]["cause"] for m in entered} == {"import"}
    assert {m["detail"]["segment_id"] for m in entered} >= {"recent-buyers", "repeat-buyers"}
    assert run_import(*args) == 0  # the same files again: nothing changes, nothing published
    assert "(0 membership changes)" in capsys.readouterr().out
    assert [m for m in outbox.drain() if m["detail-type"].startswith("Segment")] == []
    assert bootstrap.repository().find("email#ana@example.com").traits["order_count"] == 3


def test_import_refuses_missing_files_and_says_what_to_give(files, tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        main(["import", "csv", "--orders", str(tmp_path / "nope.csv")])
    with pytest.raises(SystemExit, match="give --orders FILE and/or --customers FILE"):
        main(["import", "csv"])


def test_the_demo_history_imports_with_its_dates_moved_to_today(aws, tmp_path, capsys):
    """`make demo` imports events/demo/history/ first: its dates move with today, so the same people
    are recent, lapsed and repeat buyers whenever it runs; its one bad line is reported."""
    from segctl.demo import DEMO_HISTORY, import_history
    from support import ROOT

    assert import_history(ROOT / DEMO_HISTORY, NOW, tmp_path) == 0
    out = capsys.readouterr().out
    assert "records: 27 read, 26 imported, 0 skipped (nothing to import), 1 rejected" in out
    assert "customers: 8 in the history, 8 written" in out
    store = bootstrap.repository()
    olga = store.find("email#olga.ivanova@example.com")
    assert {"high-value", "recent-buyers", "repeat-buyers"} <= set(olga.segments)
    assert "inactive" in store.find("email#umar.farouk@example.com").segments
    assert "suppressed" in store.find("email#quinn.baker@example.com").segments


@pytest.mark.parametrize("argv", [
    ["import", "shopify", "--shop", "x.myshopify.com", "--file", "export.jsonl"],
    ["import", "woocommerce", "--site", "https://shop.example.com", "orders.json"],
    ["import", "klaviyo", "profiles.csv", "--account", "AbC123"],
    ["import", "mailchimp", "subscribed.csv", "--account", "a1b2c3", "--status", "subscribed"],
])
def test_every_import_command_reaches_its_import_and_says_where_the_data_must_live(argv, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(SystemExit, match="set AWS_ENDPOINT_URL"):
        main(argv)
