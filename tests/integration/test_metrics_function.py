"""Segment figures on moto (issue 15, the write side): a webhook's order makes its customer enter
Recent Buyers; the bus's rule queues the change for MetricsFunction (template.yaml), which adds it to
the segment's day once, however often the batch is retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
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
