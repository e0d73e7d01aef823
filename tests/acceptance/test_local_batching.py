"""The local runner's SQS event source mapping gathers records as Lambda's does: batches above SQS's
10 messages per receive, within MaximumBatchingWindowInSeconds (the ESP sync's bulk pushes rely on it)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from segctl.runtime import LocalStack, SqsPoller
from segctl.template import Template
from support import TEMPLATE

pytestmark = pytest.mark.acceptance


@pytest.mark.parametrize(("window", "one_batch"), [(1.5, True), (0.0, False)])
def test_records_are_gathered_over_the_batching_window(monkeypatch, window, one_batch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    stack = LocalStack(Template(TEMPLATE), log_level="ERROR").start()
    batches: list[int] = []
    seen = threading.Event()

    def record(event, context):
        batches.append(len(event["Records"]))
        if sum(batches) >= 25:
            seen.set()
        return {"batchItemFailures": []}

    stack._environments["EspSyncFunction"] = [(record, threading.Lock())]
    url = stack.template.queue_url("EspSyncQueue", stack.endpoint)
    sqs = stack.client("sqs")
    for n in range(25):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    poller = SqsPoller(stack, "EspSyncFunction", url, 1000, stack.template.arn("EspSyncQueue"), window_s=window)
    poller.start()
    try:
        assert seen.wait(30), batches
        time.sleep(0.2)
        assert sum(batches) == 25
        assert (batches == [25]) is one_batch, batches
    finally:
        poller.stop()
        poller.join(5)
        stack.stop()
