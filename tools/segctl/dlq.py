"""`segctl dlq list|replay --queue NAME`: what waits in a dead-letter queue, and sending it back.

NAME is a dead-letter queue of template.yaml (``EspSyncDeadLetterQueue``, ``ProfileDeadLetterQueue``,
``BackfillDeadLetterQueue``) or its short name (``esp-sync``, ``profile``, ``backfill``). The queue it
goes back to is the one whose redrive policy names it. Against ``AWS_ENDPOINT_URL`` (the local
runner), or a deployed stack with ``--stack NAME``.

``list`` shows each message's kind and ids, never its body (it may hold personal data). ``replay``
moves every message back to its source queue (send, then delete), with progress; the consumers are
idempotent, so a message replayed twice does no harm.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

from .template import Template, TemplateError

SHORT = {"esp-sync": "EspSyncDeadLetterQueue", "profile": "ProfileDeadLetterQueue",
         "backfill": "BackfillDeadLetterQueue"}


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


def _urls(template: Template, logical: str, source: str, stack: str | None) -> tuple[str, str]:
    if stack:
        cfn = boto3.client("cloudformation")

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
    return " ".join([str(kind), *ids])


def _drain(sqs: Any, url: str, visibility: int) -> list[dict]:
    """Every message of the queue, received once (each hidden for ``visibility`` seconds)."""
    out, seen = [], set()
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility,
                                  AttributeNames=["All"]).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            return out
        seen.update(m["MessageId"] for m in fresh)
        out += fresh


def run(template: Template, action: str, name: str, stack: str | None) -> int:
    try:
        logical, source = _resolve(template, name)
    except TemplateError as exc:
        raise SystemExit(f"segctl: template.yaml: {exc}") from None
    dlq_url, source_url = _urls(template, logical, source, stack)
    sqs = boto3.client("sqs")
    if action == "list":
        messages = _drain(sqs, dlq_url, visibility=30)
        for m in messages:  # looked at, not taken: visible again at once
            sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        print(f"{logical}: {len(messages)} message(s) waiting (they go back to {source} with `segctl dlq replay`)")
        for m in messages:
            received = m.get("Attributes", {}).get("ApproximateReceiveCount", "?")
            print(f"  {m['MessageId']}  received {received}x  {describe(m['Body'])}")
        return 0
    messages = _drain(sqs, dlq_url, visibility=300)
    total = len(messages)
    for n, m in enumerate(messages, 1):
        sqs.send_message(QueueUrl=source_url, MessageBody=m["Body"])
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
        print(f"\r  replayed {n}/{total} to {source}", end="", flush=True)
    print(("\n" if total else "") + f"{logical}: {total} message(s) sent back to {source}")
    return 0
