"""`segctl dlq list|replay`: what waits in a dead-letter queue of template.yaml, and sending it back
to the queue that redrives to it (on moto, queues from template.yaml)."""

from __future__ import annotations

import json

import boto3
import pytest
from segctl.cli import main


@pytest.fixture
def queues(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://sqs.us-east-1.amazonaws.com")  # moto's, in-process
    sqs = boto3.client("sqs")
    url = {q: sqs.get_queue_url(QueueName=aws.physical_name(q))["QueueUrl"]
           for q in ("EspSyncQueue", "EspSyncDeadLetterQueue")}
    return sqs, url


def change(n: int) -> str:
    return json.dumps({"detail-type": "SegmentEntered", "detail": {
        "profile_id": f"p{n}", "segment_id": "recent-buyers", "version": n, "email": "secret@example.com"}})


def test_list_shows_kinds_and_ids_but_no_payload_and_replay_sends_everything_back(queues, capsys):
    sqs, url = queues
    for n in range(13):
        sqs.send_message(QueueUrl=url["EspSyncDeadLetterQueue"], MessageBody=change(n))
    assert main(["dlq", "list", "--queue", "esp-sync"]) == 0
    out = capsys.readouterr().out
    assert "EspSyncDeadLetterQueue: 13 message(s) waiting" in out
    assert "SegmentEntered profile_id=p12 segment_id=recent-buyers version=12" in out
    assert "secret@example.com" not in out
    assert main(["dlq", "replay", "--queue", "EspSyncDeadLetterQueue"]) == 0
    assert "13 message(s) sent back to EspSyncQueue" in capsys.readouterr().out
    back = []
    while got := sqs.receive_message(QueueUrl=url["EspSyncQueue"], MaxNumberOfMessages=10).get("Messages", []):
        back += [json.loads(m["Body"])["detail"]["profile_id"] for m in got]
        for m in got:
            sqs.delete_message(QueueUrl=url["EspSyncQueue"], ReceiptHandle=m["ReceiptHandle"])
    assert sorted(back) == sorted(f"p{n}" for n in range(13))
    assert sqs.receive_message(QueueUrl=url["EspSyncDeadLetterQueue"]).get("Messages", []) == []


def test_a_queue_that_is_not_a_dead_letter_queue_is_refused(queues):
    with pytest.raises(SystemExit, match="not a dead-letter queue of template.yaml; one of: .*esp-sync"):
        main(["dlq", "list", "--queue", "EspSyncQueue"])
