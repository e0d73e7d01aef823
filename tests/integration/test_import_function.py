"""The history import in AWS (issue 14), on moto: a file put under imports/ in ImportBucket runs
ImportStateMachine's definition from template.yaml (split, a Distributed Map over the parts, the
report), with ImportFunction's real handler."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from segmentation import bootstrap
from segmentation.service import history_jobs
from support import TEMPLATE, import_file

NOW = datetime.now(UTC)


def day(n: float) -> str:
    return (NOW - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


ORDERS = ("order_id,email,customer_id,created_at,total,categories\n"
          + "".join(f"{900 + n},buyer{n % 5}@example.com,,{day(3 + n)},{20 + n}.00,Shoes\n" for n in range(12))
          + "999,buyer1@example.com,,last week,10.00,\n").encode()


def report_of(template, key: str) -> dict:
    body = boto3.client("s3").get_object(Bucket=template.physical_name("ImportBucket"), Key=key + ".report.json")["Body"]
    return json.loads(body.read())


def test_a_file_put_under_imports_is_imported_in_parts_and_reported_beside_it(aws, outbox, monkeypatch):
    monkeypatch.setattr(history_jobs, "PART_PEOPLE", 2)  # five people: three parts for the Map
    key = "imports/shopify/s.myshopify.com/orders-2025.csv"
    out = import_file(aws, key, ORDERS)
    report = report_of(aws, key)
    assert out["parts"] == 3 == report["parts"]
    assert (report["records"], report["imported"], report["rejected"], report["customers"], report["written"]) == \
           (13, 12, 1, 5, 5)
    assert report["reasons"] == ["orders-2025.csv line 14: created_at is not an ISO 8601 time: 'last week'"]
    buyer = bootstrap.repository().find("email#buyer1@example.com")
    assert buyer.traits["order_count"] == 3 and "repeat-buyers" in buyer.segments
    entered = [m["detail"] for m in outbox.drain() if m["detail-type"] == "SegmentEntered"]
    assert entered and {d["cause"] for d in entered} == {"import"}
    assert report["segments"]["repeat-buyers"] == 5  # buyer0..4 have 3, 3, 2, 2 and 2 orders
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=aws.physical_name("ImportBucket"))["Contents"]]
    assert key + ".report.json" in keys and any(k.startswith("import-work/") for k in keys)


def test_the_report_object_starts_no_import_and_a_badly_named_file_is_reported(aws):
    assert import_file(aws, "imports/x.csv.report.json", b"{}") == {"bucket": {"name": aws.physical_name("ImportBucket")},
                                                                   "object": {"key": "imports/x.csv.report.json", "size": 1},
                                                                   "version": "0", "reason": "PutObject"}
    import_file(aws, "imports/sales.csv", ORDERS)
    report = report_of(aws, "imports/sales.csv")
    assert report["written"] == 0 and "the file name says what it holds" in report["error"]


def test_quiet_metadata_imports_without_membership_events(aws, outbox):
    import_file(aws, "imports/orders.csv", ORDERS, metadata={"quiet": "true"})
    assert report_of(aws, "imports/orders.csv")["written"] == 5
    assert [m for m in outbox.drain() if m["detail-type"].startswith("Segment")] == []


def test_a_part_that_fails_is_retried_and_resumes_without_writing_anyone_twice(aws, monkeypatch):
    from segctl.runtime import context_for, load_handler

    monkeypatch.setattr(history_jobs, "PART_PEOPLE", 5)
    saves = []
    store = bootstrap.repository()
    real_save = store.save

    def counting(profile, *args, **kwargs):
        if len(saves) == 2 and not getattr(counting, "failed", False):
            counting.failed = True
            raise ConnectionError("the function's connection dropped mid-part")
        real_save(profile, *args, **kwargs)
        saves.append(profile.profile_id)

    monkeypatch.setattr(store, "save", counting)
    monkeypatch.setattr(history_jobs.HistoryImport, "__init__", _small_checkpoints(history_jobs.HistoryImport.__init__))

    def invoke(function, payload):
        return load_handler(aws.functions()[function])(payload, context_for(aws, function))

    import_file(aws, "imports/orders.csv", ORDERS, invoke=invoke)
    report = report_of(aws, "imports/orders.csv")
    assert report["written"] == 5 and len(saves) == 5 and len(set(saves)) == 5


def _small_checkpoints(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.checkpoint_every = 1
    return wrapped


def test_the_template_wires_the_bucket_events_to_the_state_machine():
    from segctl.template import Template

    t = Template(TEMPLATE)
    bucket = t.resources["ImportBucket"]["Properties"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    pattern = t.resources["ImportStateMachine"]["Properties"]["Events"]["FilePut"]["Properties"]["Pattern"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "imports/"}]
    mapping = t.resources["ImportStateMachine"]["Properties"]["Definition"]["States"]["ImportParts"]
    assert mapping["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert t.functions()["ImportFunction"].timeout == 900


def test_a_shopify_bulk_export_put_under_its_shop_is_imported_and_elsewhere_refused(aws):
    from support import ROOT

    export = (ROOT / "tests/fixtures/shopify/bulk-export.jsonl").read_bytes()
    key = "imports/shopify/north-wind.myshopify.com/bulk-export.jsonl"
    import_file(aws, key, export)
    report = report_of(aws, key)
    assert report["written"] >= 2 and report["rejected"] >= 9 and "error" not in report
    assert bootstrap.repository().find("cust#shopify#north-wind.myshopify.com#7301234560001") is not None
    import_file(aws, "imports/export.jsonl", export)
    refused = report_of(aws, "imports/export.jsonl")
    assert refused["written"] == 0 and "for csv, one of orders*.csv, customers*.csv" in refused["error"]


def test_woocommerce_pages_and_mailchimp_exports_put_under_their_shop_and_audience_are_imported(aws):
    from support import ROOT

    fixtures = ROOT / "tests/fixtures"
    for key, path in (("imports/woocommerce/shop.example.com/orders-page-1.json", "woocommerce/orders-page-1.json"),
                      ("imports/mailchimp/a1b2c3d4e5/unsubscribed.csv", "esp-exports/mailchimp-unsubscribed.csv")):
        import_file(aws, key, (fixtures / path).read_bytes())
        report = report_of(aws, key)
        assert report["written"] >= 1 and "error" not in report, report
    import_file(aws, "imports/klaviyo/AbC123/orders.json", b"[]")
    assert "for klaviyo, one of *.csv" in report_of(aws, "imports/klaviyo/AbC123/orders.json")["error"]


def test_a_part_stopped_for_time_records_where_it_stopped_and_its_retry_finishes_it(aws, monkeypatch):
    monkeypatch.setattr(history_jobs, "PART_PEOPLE", 5)
    monkeypatch.setattr(history_jobs.HistoryImport, "__init__", _small_checkpoints(history_jobs.HistoryImport.__init__))
    boto3.client("s3").put_object(Bucket=aws.physical_name("ImportBucket"), Key="imports/orders.csv", Body=ORDERS)
    jobs = bootstrap.import_jobs()
    split = jobs.split("imports/orders.csv")
    [part] = boto3.client("s3").list_objects_v2(Bucket=aws.physical_name("ImportBucket"),
                                                Prefix=split["parts_prefix"])["Contents"]
    calls = iter([1.0, 1.0, 0.0])
    with pytest.raises(TimeoutError, match="stopped for time after 2 people"):
        jobs.apply(split["job"], part["Key"], False, time_left=lambda: next(calls, 0.0))
    done = jobs.apply(split["job"], part["Key"], False)
    assert done["written"] == 3  # the rest only
    assert jobs.report(split["job"])["written"] == 5
