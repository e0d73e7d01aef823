"""Segment figures on moto (issue 15, the write side): a webhook's order makes its customer enter
Recent Buyers; the bus's rule queues the change for MetricsFunction (template.yaml), which adds it to
the segment's day once, however often the batch is retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest
from segctl.runtime import context_for, load_handler
from segmentation import bootstrap
from support import deliver_to_profile_function, deliver_to_queue_function, signed_shopify


def test_an_order_webhook_adds_an_entry_to_recent_buyers_today_once(aws, api):
    now = datetime.now(UTC)
    created = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body, headers = signed_shopify({"id": 4401, "email": "fig@example.com", "created_at": created,
                                    "total_price": "30.00"}, event_id="evt-fig")
    assert api("POST", "/webhooks/shopify", body, headers).status == 200
    deliver_to_profile_function(aws)
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=aws.physical_name("MetricsQueue"))["QueueUrl"]
    queued = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert {m["Body"].count("SegmentEntered") > 0 for m in queued} == {True}
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"]} for m in queued]
    handler = load_handler(aws.functions()["MetricsFunction"])
    handler({"Records": records}, context_for(aws, "MetricsFunction"))  # a first attempt, not acknowledged
    assert deliver_to_queue_function(aws, "MetricsQueue", "MetricsFunction") == [{"batchItemFailures": []}]
    day = created[:10]
    figures = bootstrap.metrics_store().days("recent-buyers", day, day)
    assert figures[day].counts == {"entered": 1}


def test_the_api_reports_a_segments_days_totals_and_rates_and_a_table_of_all(aws, api):
    from segmentation.service.segment_metrics import DayFigures

    store = bootstrap.metrics_store()
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    figures = DayFigures(counts={"delivered": 263, "opened": 81, "clicked": 12, "conversions": 3, "entered": 4})
    figures.revenue = Decimal("120.50")
    store.add({("at-risk", yesterday.isoformat()): figures}, "t1")
    out = api("GET", f"/segments/at-risk/metrics?from={yesterday}&to={today}")
    assert out.status == 200, out.text
    body = out.json()
    assert [d["day"] for d in body["days"]] == [yesterday.isoformat(), today.isoformat()]
    assert body["days"][0]["opened"] == 81 and body["days"][1]["opened"] == 0
    assert body["totals"]["revenue"] == "120.50" and body["totals"]["delivered"] == 263
    assert body["rates"]["open_rate"]["value"] == pytest.approx(81 / 263)
    assert body["rates"]["open_rate"]["ci95"] == pytest.approx([0.2552885, 0.3662096], abs=1e-6)
    table = api("GET", f"/segments/metrics?from={yesterday}").json()
    row = next(r for r in table["segments"] if r["segment_id"] == "at-risk")
    assert row["totals"]["clicked"] == 12 and table["since"] == yesterday.isoformat()
    # nobody is in at-risk now (its figures were added by hand): the days end with 0 members
    assert row["size"] == 0 and row["members"] == [0, 0]
    assert body["days"][0]["members"] == 0 and body["days"][0]["entered"] == 4
    assert api("GET", "/segments/at-risk/metrics?from=2026-12-05&to=2026-12-01").status == 400
    assert api("GET", "/segments/at-risk/metrics?from=yesterday").status == 400
    assert api("GET", "/segments/no-such-segment/metrics").status == 404


def test_get_segments_lists_health_warnings_unless_asked_not_to(aws, api, monkeypatch):
    from segmentation.settings import load_settings

    monkeypatch.setenv("MIN_SEGMENT_SIZE", "1")
    load_settings.cache_clear()
    try:
        body = api("GET", "/segments").json()
        small = {w["segments"][0] for w in body["warnings"] if w["kind"] == "too_small"}
        # nobody is stored: every segment (not a family) is under 1 member
        assert small == {s["id"] for s in body["segments"] if not s["family"]} and small
        assert api("GET", "/segments?health=false").json()["warnings"] == []
    finally:
        load_settings.cache_clear()


def test_a_batch_publishes_each_touched_segments_size_entries_and_exits_as_emf(aws, api, monkeypatch, capsys):
    """CloudWatch metrics (SegmentCloudWatchMetrics): one EMF document per base segment the batch touched,
    in the namespace and with the metric names the template's dashboard searches for."""
    import json

    from segctl.template import load_template

    environment = aws.environment("MetricsFunction")
    for name in ("SEGMENT_CLOUDWATCH_METRICS", "STACK_NAME"):
        monkeypatch.setenv(name, environment[name])
    created = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for n, email in enumerate(["emf1@example.com", "emf2@example.com"]):
        body, headers = signed_shopify({"id": 4500 + n, "email": email, "created_at": created, "total_price": "30.00"},
                                       event_id=f"evt-emf-{n}")
        assert api("POST", "/webhooks/shopify", body, headers).status == 200
    deliver_to_profile_function(aws)
    capsys.readouterr()
    deliver_to_queue_function(aws, "MetricsQueue", "MetricsFunction")
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("{") and '"CloudWatchMetrics"' in line]
    by_segment = {d["segment"]: d for d in docs}
    assert by_segment["recent-buyers"]["SegmentSize"] == [2.0]
    assert by_segment["recent-buyers"]["SegmentEntries"] == [2.0] and by_segment["recent-buyers"]["SegmentExits"] == [0.0]
    assert all(":" not in s and not s.startswith("#") for s in by_segment)
    (directive,) = by_segment["recent-buyers"]["_aws"]["CloudWatchMetrics"]
    dashboard = load_template("template.yaml")["Resources"]["SegmentationDashboard"]["Properties"]["DashboardBody"]
    text = aws.resolve(dashboard)
    assert json.loads(text)["widgets"]  # JSON once CloudFormation has substituted it
    for name in ("SegmentSize", "SegmentEntries", "SegmentExits"):
        assert name in {m["Name"] for m in directive["Metrics"]} and name in text
    searched = ",".join([directive["Namespace"], *sorted(directive["Dimensions"][0])])
    assert "{" + searched + "}" in text
    # this stack's figures only: another stack in the account publishes under its own name
    assert by_segment["recent-buyers"]["stack"] == environment["STACK_NAME"]
    assert f'stack=\\"{environment["STACK_NAME"]}\\"' in text


def test_an_unreadable_message_fails_alone_and_the_rest_of_its_batch_is_added(aws):
    """ReportBatchItemFailures (template.yaml): a message the sums cannot read is reported failed
    (it goes to the dead-letter queue after its retries); the good ones are added at once."""
    import json

    from segctl.runtime import context_for, load_handler

    event = aws.functions()["MetricsFunction"]
    assert "ReportBatchItemFailures" in str(event.events)
    good = {"detail-type": "SegmentEntered", "detail": {"profile_id": "p1", "segment_id": "vip",
                                                        "at": "2026-11-30T10:00:00Z", "cause": "e1", "version": 2}}
    records = [{"messageId": "m-good", "receiptHandle": "r1", "body": json.dumps(good)},
               {"messageId": "m-garbage", "receiptHandle": "r2", "body": "not json"},
               {"messageId": "m-no-at", "receiptHandle": "r3",
                "body": json.dumps({"detail-type": "SegmentExited", "detail": {"segment_id": "vip"}})}]
    answer = load_handler(event)({"Records": records}, context_for(aws, "MetricsFunction"))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-garbage"}, {"itemIdentifier": "m-no-at"}]}
    assert bootstrap.metrics_store().days("vip", "2026-11-30", "2026-11-30")["2026-11-30"].counts == {"entered": 1}
