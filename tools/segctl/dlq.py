"""`segctl dlq list|replay --queue NAME [--max N]`: what waits in a dead-letter queue and why, and
sending it back once the cause is fixed.

NAME is a dead-letter queue of template.yaml (``EspSyncDeadLetterQueue``, ``ProfileDeadLetterQueue``,
``BackfillDeadLetterQueue``) or its short name (``esp-sync``, ``profile``, ``backfill``). The queue it
goes back to is the one whose redrive policy names it. Against ``AWS_ENDPOINT_URL`` (the local
runner), or a deployed stack with ``--stack NAME``.

``list`` shows, per message, its kind and ids (never its body: it may hold personal data), how often
it was received before it was set aside, how long it has waited, and why it failed as far as the
message tells: the error attributes AWS adds (EventBridge's ``ERROR_CODE``/``ERROR_MESSAGE``, Lambda's
``ErrorCode``/``ErrorMessage``), or, for a customer event, the fields the domain model rejects (a
message that can never succeed until the code changes). Otherwise the consumer failed on it each
time it was received: its log lines carry the message's ``event_id``.

``replay`` sends the messages back to the source queue, where the consumer takes them again; the
consumers are idempotent, so a message replayed twice does no harm. Locally (and with ``--max``) it
moves them one by one (send, then delete), with progress. In AWS without ``--max`` it asks SQS to
move them all (``StartMessageMoveTask``, the console's "Start DLQ redrive"), and follows the task.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import boto3

from .progress import Progress
from .template import Template, TemplateError

SHORT = {"esp-sync": "EspSyncDeadLetterQueue", "profile": "ProfileDeadLetterQueue",
         "backfill": "BackfillDeadLetterQueue"}
#: message attributes in which AWS says why a delivery failed (EventBridge target DLQ, Lambda async DLQ)
ERROR_ATTRIBUTES = (("ERROR_CODE", "ERROR_MESSAGE"), ("ErrorCode", "ErrorMessage"))
#: how long `replay` in AWS follows the move task before leaving it to run
FOLLOW_S = 120


def dead_letter_queues(template: Template) -> dict[str, str]:
    """dead-letter queue logical id -> the logical id of the queue that redrives to it."""
    out = {}
    for lid, res in template.of_type("AWS::SQS::Queue").items():
        target = (res.get("Properties", {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if isinstance(target, dict) and "Fn::GetAtt" in target:
            out[target["Fn::GetAtt"][0]] = lid
    return out


def _resolve(template: Template, name: str) -> tuple[str, str]:
    queues = dead_letter_queues(template)
    logical = SHORT.get(name, name)
    if logical not in queues:
        known = ", ".join(sorted([*SHORT, *queues]))
        raise SystemExit(f"segctl: {name!r} is not a dead-letter queue of template.yaml; one of: {known}")
    return logical, queues[logical]


def _sqs(stack: str | None, template: Template):
    if stack:
        session = boto3.session.Session()
        if not session.region_name:
            raise SystemExit("segctl: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region) to the "
                             f"region of stack {stack}")
        return session.client("sqs"), session.client("cloudformation")
    return boto3.client("sqs", region_name=template.region), None


def _urls(template: Template, logical: str, source: str, stack: str | None, cfn: Any) -> tuple[str, str]:
    if stack:
        def url(lid: str) -> str:
            try:
                return cfn.describe_stack_resource(StackName=stack, LogicalResourceId=lid)[
                    "StackResourceDetail"]["PhysicalResourceId"]
            except Exception as exc:  # noqa: BLE001 - any failure means the same to the user
                raise SystemExit(f"segctl: cannot find {lid} in stack {stack}: {exc}") from None

        return url(logical), url(source)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise SystemExit("segctl: set AWS_ENDPOINT_URL to the endpoint `segctl local start-api` prints, or pass "
                         "--stack NAME for a deployed stack")
    return template.queue_url(logical, endpoint), template.queue_url(source, endpoint)


def describe(body: str) -> str:
    """One line about a message: its kind and ids, never the payload."""
    try:
        event = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(event, dict):
        return "not an object"
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    kind = event.get("detail-type") or ("backfill work" if "segment" in event else "unknown")
    ids = [f"{k}={detail[k]}" for k in ("event_id", "profile_id", "segment_id", "version") if k in detail]
    if "segment" in event and "detail-type" not in event:
        ids.append(f"segment={event['segment']}")
    return " ".join([str(kind), *ids])


def why(message: dict, consumer: str | None) -> str:
    """Why the message failed, from what it carries (never its personal data)."""
    attributes = message.get("MessageAttributes") or {}
    for code_name, text_name in ERROR_ATTRIBUTES:
        code = (attributes.get(code_name) or {}).get("StringValue")
        text = (attributes.get(text_name) or {}).get("StringValue")
        if code or text:
            return f"{code or 'error'}: {text or '(no message)'}"
    body = message.get("Body", "")
    try:
        event = json.loads(body)
    except ValueError:
        return "the body is not JSON: it can never be processed"
    if isinstance(event, dict) and event.get("detail-type") == "CustomerEvent":
        from pydantic import ValidationError
        from segmentation.domain.events import CustomerEvent

        try:
            CustomerEvent.model_validate(event.get("detail"))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'detail'}: {e['msg']}"
                                 for e in exc.errors(include_input=False, include_url=False)[:3])
            return f"not a valid CustomerEvent ({problems}): it fails again until the code that reads it is fixed"
    received = (message.get("Attributes") or {}).get("ApproximateReceiveCount", "?")
    who = consumer or "its consumer"
    return f"{who} failed on it each time it was received ({received}x): see {who}'s error log lines for its ids"


def _waited(message: dict) -> str:
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    if not sent:
        return "?"
    seconds = max(0, int(time.time() - int(sent) / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _take(sqs: Any, url: str, visibility: int, limit: int | None) -> list[dict]:
    """Messages of the queue, each received once (hidden for ``visibility`` seconds), up to ``limit``."""
    out: list[dict] = []
    seen: set[str] = set()
    while limit is None or len(out) < limit:
        want = 10 if limit is None else min(10, limit - len(out))
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=want, VisibilityTimeout=visibility,
                                  AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            break
        seen.update(m["MessageId"] for m in fresh)
        out += fresh
    return out


def _consumer(template: Template, source: str) -> str | None:
    return next((function for function, queue, _ in template.sqs_sources() if queue == source), None)


def run(template: Template, action: str, name: str, stack: str | None, limit: int | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        logical, source = _resolve(template, name)
        consumer = _consumer(template, source)
    except TemplateError as exc:
        raise SystemExit(f"segctl: template.yaml: {exc}") from None
    sqs, cfn = _sqs(stack, template)
    dlq_url, source_url = _urls(template, logical, source, stack, cfn)
    try:
        if action == "list":
            return _list(sqs, logical, source, consumer, dlq_url, limit)
        if stack and limit is None:
            return _move_task(sqs, logical, source, dlq_url, source_url)
        return _replay(sqs, logical, source, dlq_url, source_url, limit)
    except ClientError as exc:
        raise SystemExit(f"segctl: {exc.response.get('Error', {}).get('Message') or exc}") from None
    except BotoCoreError as exc:
        where = f"stack {stack}" if stack else f"AWS_ENDPOINT_URL={os.environ.get('AWS_ENDPOINT_URL')}"
        raise SystemExit(f"segctl: cannot reach the queues of {where}: {exc}") from None


def _list(sqs: Any, logical: str, source: str, consumer: str | None, dlq_url: str, limit: int | None) -> int:
    messages = _take(sqs, dlq_url, 30, limit)
    for m in messages:  # looked at, not taken: visible again at once
        sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    shown = f" (the first {limit})" if limit is not None and len(messages) == limit else ""
    print(f"{logical}: {len(messages)} message(s) waiting{shown}; they go back to {source} with `segctl dlq replay`")
    for m in messages:
        received = m.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        print(f"  {m['MessageId']}  {describe(m['Body'])}  (received {received}x, waiting {_waited(m)})")
        print(f"    why: {why(m, consumer)}")
    return 0


def _replay(sqs: Any, logical: str, source: str, dlq_url: str, source_url: str, limit: int | None) -> int:
    messages = _take(sqs, dlq_url, 300, limit)
    total = len(messages)
    bar = Progress("messages")
    for n, m in enumerate(messages, 1):
        attributes = {k: {kk: vv for kk, vv in v.items() if kk in ("DataType", "StringValue", "BinaryValue")}
                      for k, v in (m.get("MessageAttributes") or {}).items()}
        sqs.send_message(QueueUrl=source_url, MessageBody=m["Body"], **({"MessageAttributes": attributes}
                                                                        if attributes else {}))
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
        bar.update(n, total, f"sent back to {source}")
    bar.finish()
    print(f"{logical}: {total} message(s) sent back to {source}")
    return 0


def _move_task(sqs: Any, logical: str, source: str, dlq_url: str, source_url: str) -> int:
    """Every message back to the source queue by SQS itself (StartMessageMoveTask), followed a while."""
    def arn(url: str) -> str:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    dlq_arn, source_arn = arn(dlq_url), arn(source_url)
    waiting = int(sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"])
    if not waiting:
        print(f"{logical}: no message waiting; nothing to move")
        return 0
    task = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=source_arn)["TaskHandle"]
    print(f"{logical}: moving about {waiting} message(s) back to {source} (SQS message move task)")
    bar = Progress("messages")
    deadline = time.monotonic() + FOLLOW_S
    status: dict = {}
    while time.monotonic() < deadline:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
        status = tasks[0] if tasks else {}
        moved = int(status.get("ApproximateNumberOfMessagesMoved", 0))
        bar.update(moved, int(status.get("ApproximateNumberOfMessagesToMove") or waiting) or None,
                   str(status.get("Status", "?")).lower())
        if status.get("Status") in ("COMPLETED", "CANCELLED", "FAILED"):
            break
        time.sleep(2)
    bar.finish()
    state = status.get("Status", "RUNNING")
    if state == "FAILED":
        print(f"segctl: the move task failed: {status.get('FailureReason', '?')}")
        return 1
    if state != "COMPLETED":
        started = datetime.now(UTC).strftime("%H:%M:%S UTC")
        print(f"still moving (started {started}); follow it with `aws sqs list-message-move-tasks --source-arn "
              f"{dlq_arn}` (task {task})")
        return 0
    print(f"{logical}: {status.get('ApproximateNumberOfMessagesMoved', '?')} message(s) sent back to {source}")
    return 0
