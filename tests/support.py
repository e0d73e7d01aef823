"""Test helpers: signing, capturing what the bus publishes, calling routes in-process."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import boto3
from segctl.provision import dev_secret_values
from segctl.signing import demo_keys, shopify_headers
from segctl.template import Template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SHOPIFY_SECRET = dev_secret_values({})["shopify"]


class Outbox:
    """Everything published on the template's bus, captured by an extra rule into a queue."""

    def __init__(self, template: Template):
        self.sqs = boto3.client("sqs")
        events = boto3.client("events")
        bus = template.physical_name("EventBus")
        self.url = self.sqs.create_queue(QueueName="test-outbox")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="test-outbox", EventBusName=bus, EventPattern=json.dumps({"source": [{"prefix": "segmentation"}]}))
        events.put_targets(Rule="test-outbox", EventBusName=bus, Targets=[{"Id": "outbox", "Arn": arn}])

    def drain(self) -> list[dict]:
        out = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def signed_shopify(body: dict | bytes, topic: str = "orders/create", event_id: str = "evt-1",
                   secret: str = SHOPIFY_SECRET, shop: str = "demo-shop.myshopify.com") -> tuple[bytes, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return raw, shopify_headers(secret, raw, topic, event_id, shop=shop)


class Api:
    """Calls the template's HTTP routes in-process, through the real handlers, as API Gateway would."""

    def __init__(self, template: Template):
        from segctl.runtime import context_for, load_handler
        from segctl.server import Router

        self.template = template
        self.router = Router(template.routes())
        self._load = load_handler
        self._context = context_for

    def __call__(self, method: str, path: str, body: bytes | dict = b"", headers: dict | None = None):
        from segctl.server import request_event

        if isinstance(body, dict):
            body = json.dumps(body).encode()
        function, event = request_event(self.router, method, path, body, headers)
        assert function is not None, f"no route in template.yaml for {method} {path}"
        handler = self._load(self.template.functions()[function])
        result = handler(event, self._context(self.template, function))
        return Response(result)


class Response:
    def __init__(self, result: dict):
        import base64

        self.status = result["statusCode"]
        raw = result.get("body") or ""
        self.text = base64.b64decode(raw).decode() if result.get("isBase64Encoded") else raw
        self.headers = result.get("headers") or {}

    def json(self):
        return json.loads(self.text)


def api(aws) -> Api:
    return Api(aws)


def deliver_to_profile_function(template: Template) -> None:
    """Run ProfileFunction over everything the bus queued for it, as the SQS event source mapping
    would (batches of up to 10), deleting what it processed; every record must succeed."""
    from segctl.runtime import context_for, load_handler

    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=template.physical_name("ProfileQueue"))["QueueUrl"]
    handler = load_handler(template.functions()["ProfileFunction"])
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn",
                    "awsRegion": "us-east-1", "md5OfBody": ""} for m in msgs]
        assert handler({"Records": records}, context_for(template, "ProfileFunction")) == {"batchItemFailures": []}
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def sqs_batch(*events, bad: int = 0) -> dict:
    """The ProfileQueue's batch for ``events`` (CustomerEvents), as the SQS event source mapping hands it
    to Lambda; ``bad`` appends records that are not events at all."""
    records = [
        {"messageId": f"m{i}", "receiptHandle": f"r{i}", "eventSource": "aws:sqs", "attributes": {},
         "messageAttributes": {}, "md5OfBody": "", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
         "awsRegion": "us-east-1",
         "body": json.dumps({"version": "0", "id": f"e{i}", "detail-type": "CustomerEvent",
                             "source": "segmentation.ingest", "time": e.occurred_at.isoformat(),
                             "region": "us-east-1", "resources": [], "detail": json.loads(e.model_dump_json())})}
        for i, e in enumerate(events)
    ]
    for j in range(bad):
        records.append({**records[0], "messageId": f"bad{j}", "body": json.dumps({"detail": {"nope": 1}})})
    return {"Records": records}


def deliver_to_queue_function(template: Template, queue: str, function: str, batch: int = 1000,
                              visibility: int = 30, stop_on_failure: bool = False) -> list[dict]:
    """Run ``function`` over everything the bus queued in ``queue``, in batches of up to ``batch``
    records (its event source mapping's BatchSize), deleting the records it did not report as
    failures; returns each invocation's answer. With ``stop_on_failure``, a batch with failures is
    the last: the rest come back after the visibility timeout, as in AWS."""
    from segctl.runtime import context_for, load_handler

    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=template.physical_name(queue))["QueueUrl"]
    handler = load_handler(template.functions()[function])
    answers = []
    while True:
        msgs: list[dict] = []
        while len(msgs) < batch and (got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                                 VisibilityTimeout=visibility)
                                     .get("Messages", [])):
            msgs += got
        if not msgs:
            return answers
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn",
                    "awsRegion": "us-east-1", "md5OfBody": ""} for m in msgs]
        answer = handler({"Records": records}, context_for(template, function))
        answers.append(answer)
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for m in msgs:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if failed and stop_on_failure:
            return answers


def deliver_to_esp_sync(template: Template, batch: int = 1000, visibility: int = 30) -> list[dict]:
    """Run EspSyncFunction over everything the bus queued for it, in batches of up to ``batch``
    records (its event source mapping's BatchSize), deleting the records it did not report as
    failures; returns each invocation's answer."""
    return deliver_to_queue_function(template, "EspSyncQueue", "EspSyncFunction", batch, visibility,
                                     stop_on_failure=True)


def s3_event(template: Template, key: str) -> dict:
    """The EventBridge event S3 sends when ``key`` is put in ImportBucket (detail as documented)."""
    return {"version": "0", "id": "s3-put", "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1",
            "resources": [template.arn("ImportBucket")],
            "detail": {"version": "0", "bucket": {"name": template.physical_name("ImportBucket")},
                       "object": {"key": key, "size": 1}, "reason": "PutObject"}}


def import_file(template: Template, key: str, body: bytes | None = None, metadata: dict | None = None,
                invoke=None) -> dict:
    """Put ``body`` at ``key`` in ImportBucket (moto) and run ImportStateMachine's definition from
    template.yaml on the S3 event, through its rule's InputPath, as EventBridge and Step Functions
    would (tools/segctl/stepfunctions.py); returns the state machine's output. ``invoke(function,
    payload)`` replaces running the function (to inject faults)."""
    from segctl.runtime import context_for, load_handler
    from segctl.stepfunctions import StateMachine

    s3 = boto3.client("s3")
    bucket = template.physical_name("ImportBucket")
    if body is not None:
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})

    def run(function: str, payload: dict):
        return load_handler(template.functions()[function])(payload, context_for(template, function))

    machine = StateMachine(template, "ImportStateMachine", invoke=invoke or run,
                           list_objects=lambda b, p: s3.list_objects_v2(Bucket=b, Prefix=p).get("Contents", []))
    rule = template.resources["ImportStateMachine"]["Properties"]["Events"]["FilePut"]["Properties"]
    assert rule["InputPath"] == "$.detail"
    return machine.run(s3_event(template, key)["detail"])


def catalog_with_an_experiment() -> str:
    """The shipped catalog plus one experiment (``engaged-test``: opened in 7 days vs ever), as a
    CATALOG_FILE's text: for the routes and pages that need an experiment to report."""
    from segmentation.domain.catalog import load_catalog

    return open(load_catalog().source).read() + """
experiments:
  engaged-test:
    name: Engaged, two ways
    description: opened in the last 7 days, or ever
    metric: open_rate
    variants:
      recent: {event: {signal: email_opened, within: 7d}}
      ever: {event: {signal: email_opened}}
"""


@cache
def webhook_keys() -> tuple[object, str, object, str]:
    """One set of demo key pairs per test process (generating RSA keys is slow): SendGrid's EC
    private key, its public key, Adobe's RSA private key, its public key."""
    return demo_keys()


def answer_json(handler, status: int, body) -> None:
    """A test HTTP server's JSON answer (``handler``: a BaseHTTPRequestHandler in its do_* method)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def queue_urls(aws, monkeypatch, *queues: str):
    """An SQS client on the test's moto and the URLs of ``queues`` (logical ids of template.yaml)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://sqs.us-east-1.amazonaws.com")  # moto's, in-process
    sqs = boto3.client("sqs")
    return sqs, {q: sqs.get_queue_url(QueueName=aws.physical_name(q))["QueueUrl"] for q in queues}
