"""`segctl dlq list|replay`: what waits in a dead-letter queue of template.yaml, and sending it back
to the queue that redrives to it (on moto, queues from template.yaml)."""

from __future__ import annotations

import json

import pytest
from segctl.cli import main
from support import queue_urls


@pytest.fixture
def queues(aws, monkeypatch):
    return queue_urls(aws, monkeypatch, "EspSyncQueue", "EspSyncDeadLetterQueue")


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


@pytest.fixture
def profile_queues(aws, monkeypatch):
    return queue_urls(aws, monkeypatch, "ProfileQueue", "ProfileDeadLetterQueue")


def customer_event(event_id: str, **identity) -> str:
    """A CustomerEvent as the bus delivers it to ProfileQueue (an EventBridge envelope)."""
    return json.dumps({"version": "0", "id": event_id, "detail-type": "CustomerEvent", "source": "segmentation.ingest",
                       "detail": {"event_id": event_id, "source": "shopify", "type": "customer",
                                  "occurred_at": "2026-01-01T00:00:00Z", "shop": "s.myshopify.com",
                                  "identity": {"email": "secret@example.com", **identity},
                                  "properties": {"kind": "customer"}}})


def test_list_says_why_each_message_failed_without_showing_personal_data(profile_queues, capsys):
    sqs, url = profile_queues
    dlq = url["ProfileDeadLetterQueue"]
    sqs.send_message(QueueUrl=dlq, MessageBody=customer_event("stale", shopify_customer_id="7001"))
    sqs.send_message(QueueUrl=dlq, MessageBody=customer_event("fault"))
    sqs.send_message(QueueUrl=dlq, MessageBody=customer_event("rule"), MessageAttributes={
        "ERROR_CODE": {"DataType": "String", "StringValue": "SQSError"},
        "ERROR_MESSAGE": {"DataType": "String", "StringValue": "queue is full"}})
    assert main(["dlq", "list", "--queue", "profile"]) == 0
    out = capsys.readouterr().out
    assert "ProfileDeadLetterQueue: 3 message(s) waiting; they go back to ProfileQueue" in out
    lines = out.splitlines()

    def why(event_id: str) -> str:
        at = next(i for i, line in enumerate(lines) if f"event_id={event_id}" in line)
        return lines[at + 1]

    assert "not a valid CustomerEvent (identity.shopify_customer_id: Extra inputs are not permitted)" in why("stale")
    assert "ProfileFunction failed on it each time it was received" in why("fault")
    assert "SQSError: queue is full" in why("rule")
    assert "secret@example.com" not in out and "7001" not in out


def test_max_limits_what_is_listed_and_replayed_and_replay_keeps_the_attributes(profile_queues, capsys):
    sqs, url = profile_queues
    for n in range(5):
        sqs.send_message(QueueUrl=url["ProfileDeadLetterQueue"], MessageBody=customer_event(f"e{n}"),
                         MessageAttributes={"origin": {"DataType": "String", "StringValue": f"o{n}"}})
    assert main(["dlq", "list", "--queue", "profile", "--max", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 message(s) waiting (the first 2)" in out and out.count("    why: ") == 2
    assert main(["dlq", "replay", "--queue", "profile", "--max", "2"]) == 0
    assert "2 message(s) sent back to ProfileQueue" in capsys.readouterr().out
    back = sqs.receive_message(QueueUrl=url["ProfileQueue"], MaxNumberOfMessages=10,
                               MessageAttributeNames=["All"])["Messages"]
    assert len(back) == 2
    assert {m["MessageAttributes"]["origin"]["StringValue"] for m in back} <= {f"o{n}" for n in range(5)}
    left = sqs.get_queue_attributes(QueueUrl=url["ProfileDeadLetterQueue"], AttributeNames=["All"])["Attributes"]
    assert int(left["ApproximateNumberOfMessages"]) + int(left["ApproximateNumberOfMessagesNotVisible"]) == 3


def test_replay_in_aws_asks_sqs_to_move_the_messages_back(profile_queues, aws, monkeypatch, capsys):
    """With --stack and no --max: one StartMessageMoveTask from the dead-letter queue to the source
    queue (moto has no message move tasks: the two calls are stood in for, on moto's queues)."""
    from segctl import dlq

    sqs, url = profile_queues
    for n in range(3):
        sqs.send_message(QueueUrl=url["ProfileDeadLetterQueue"], MessageBody=customer_event(f"m{n}"))
    arn = {q: sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
           for q, u in url.items()}
    started = []

    def start_message_move_task(SourceArn, DestinationArn):  # noqa: N803 - boto3's names
        started.append((SourceArn, DestinationArn))
        source = url["ProfileDeadLetterQueue"] if SourceArn == arn["ProfileDeadLetterQueue"] else None
        while got := sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10).get("Messages", []):
            for m in got:
                sqs.send_message(QueueUrl=url["ProfileQueue"], MessageBody=m["Body"])
                sqs.delete_message(QueueUrl=source, ReceiptHandle=m["ReceiptHandle"])
        return {"TaskHandle": "task-1"}

    def list_message_move_tasks(SourceArn, MaxResults):  # noqa: N803
        return {"Results": [{"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 3,
                             "ApproximateNumberOfMessagesToMove": 3}]}

    class Stack:
        def describe_stack_resource(self, StackName, LogicalResourceId):  # noqa: N803
            assert StackName == "prod"
            return {"StackResourceDetail": {"PhysicalResourceId": url[LogicalResourceId]}}

    sqs.start_message_move_task = start_message_move_task
    sqs.list_message_move_tasks = list_message_move_tasks
    monkeypatch.setattr(dlq, "_sqs", lambda stack, template: (sqs, Stack()))
    assert main(["dlq", "replay", "--queue", "profile", "--stack", "prod"]) == 0
    assert started == [(arn["ProfileDeadLetterQueue"], arn["ProfileQueue"])]
    out = capsys.readouterr().out
    assert "moving about 3 message(s) back to ProfileQueue" in out
    assert "3 message(s) sent back to ProfileQueue" in out
    assert len(sqs.receive_message(QueueUrl=url["ProfileQueue"], MaxNumberOfMessages=10)["Messages"]) == 3
