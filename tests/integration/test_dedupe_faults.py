"""Webhook dedupe under DynamoDB faults (issue 10, defect 8): a claim whose write was applied but
whose answer was lost, a claim write that fails outright, a genuinely concurrent duplicate.

Faults are injected with a botocore ``before-send`` hook on the functions' DynamoDB client: the hook
applies the request to moto itself and then answers 500, exactly what DynamoDB does when a write
succeeds and the response is lost. botocore then retries the request as it would against AWS.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from segmentation import bootstrap
from segmentation.infra import idempotency as dedupe
from segmentation.infra.idempotency import Deduplicator, DeliveryInProgressError
from support import signed_shopify
from test_webhook_function import ORDER, queued


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def internal_error(request) -> AWSResponse:
    body = json.dumps({"__type": "com.amazon.coral.service#InternalFailure", "message": "injected"}).encode()
    return AWSResponse(request.url, 500, {"content-type": "application/x-amz-json-1.0"}, _Raw(body))


class LostAnswers:
    """For the next ``times`` requests of ``operation`` on ``table``: apply it, then answer 500."""

    def __init__(self, table: str, operation: str = "PutItem", times: int = 1, apply: bool = True) -> None:
        self.table, self.operation, self.times, self.apply = table, operation, times, apply
        self.plain = boto3.client("dynamodb")  # no hook: reaches moto directly
        self.faults = 0
        self.calls = 0

    def install(self) -> LostAnswers:
        bootstrap._client("dynamodb").meta.events.register_first(f"before-send.dynamodb.{self.operation}", self)
        return self

    def __call__(self, request, **_):
        params = json.loads(request.body)
        if params.get("TableName") != self.table:
            return None
        self.calls += 1
        if self.faults >= self.times:
            return None
        self.faults += 1
        if self.apply:
            method = {"PutItem": "put_item", "UpdateItem": "update_item", "DeleteItem": "delete_item"}[self.operation]
            try:
                getattr(self.plain, method)(**params)
            except self.plain.exceptions.ConditionalCheckFailedException:
                pass  # a retry of a write that was applied: its answer is lost again
        return internal_error(request)


def deliver(api, event_id: str):
    body, headers = signed_shopify(ORDER, event_id=event_id)
    return api("POST", "/webhooks/shopify", body, headers)


def dedupe_records(aws) -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=aws.physical_name("IdempotencyTable"), ConsistentRead=True)["Items"]


def test_a_claim_whose_answer_was_lost_is_recognised_and_the_delivery_processed_at_once(api, aws):
    fault = LostAnswers(aws.physical_name("IdempotencyTable")).install()
    resp = deliver(api, "evt-lost-claim")
    assert fault.faults == 1 and fault.calls == 2  # applied + 500, then botocore's retry hit our own claim
    assert resp.status == 200, resp.text  # not 409 "in progress" for the request that holds the claim
    assert resp.json()["accepted"] == 1
    assert len(queued(aws)) == 1
    [record] = dedupe_records(aws)
    assert record["status"]["S"] == "COMPLETED"
    # The provider's own retry is a duplicate: answered, not published again.
    assert deliver(api, "evt-lost-claim").status == 200
    assert len(queued(aws)) == 1


def test_a_claim_write_that_fails_outright_is_released_so_the_retry_is_processed(api, aws, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")  # botocore gives up after three 500s (fast)
    # The first attempt is stored, every answer is lost: the function gives up with a 503 ...
    fault = LostAnswers(aws.physical_name("IdempotencyTable"), times=3).install()
    assert deliver(api, "evt-failed-claim").status == 503
    assert fault.faults == 3
    assert queued(aws) == []
    # ... and the claim it stored does not make the provider's retry wait ("in progress", 409).
    assert dedupe_records(aws) == []
    resp = deliver(api, "evt-failed-claim")
    assert resp.status == 200, resp.text
    assert len(queued(aws)) == 1


def test_a_concurrent_duplicate_is_409_and_not_published(api, aws):
    """The provider sends the same delivery again while the first is still being published."""
    answers = []

    def during_publish(**_):
        if not answers:
            answers.append(deliver(api, "evt-concurrent"))

    bootstrap._client("events").meta.events.register("before-call.eventbridge.PutEvents", during_publish)
    first = deliver(api, "evt-concurrent")
    [second] = answers
    assert second.status == 409 and second.json()["error"] == "DeliveryInProgress"
    assert first.status == 200 and first.json()["accepted"] == 1
    assert len(queued(aws)) == 1  # the duplicate published nothing
    assert deliver(api, "evt-concurrent").status == 200  # its retry, after the first finished
    assert len(queued(aws)) == 1


def test_a_lost_completion_still_answers_200_since_the_events_are_on_the_bus(api, aws, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    LostAnswers(aws.physical_name("IdempotencyTable"), "UpdateItem", times=2, apply=False).install()
    resp = deliver(api, "evt-lost-completion")
    assert resp.status == 200, resp.text
    assert len(queued(aws)) == 1


# -- the Deduplicator itself ----------------------------------------------------------------------


@pytest.fixture
def table(aws) -> str:
    return aws.physical_name("IdempotencyTable")


def test_an_abandoned_claim_is_taken_over_once_its_invocation_is_over(table):
    now = [1_700_000_000.0]
    crashed = Deduplicator(table, 3600, client=boto3.client("dynamodb"), clock=lambda: now[0])

    class Dies(Exception):
        pass

    def killed():  # the Lambda dies mid-action: no release runs
        crashed._release = lambda *a: None
        raise Dies

    with pytest.raises(Dies):
        crashed.once("k", killed)
    other = Deduplicator(table, 3600, client=boto3.client("dynamodb"), clock=lambda: now[0])
    with pytest.raises(DeliveryInProgressError):
        other.once("k", lambda: {"ran": 1})
    now[0] += dedupe.DEFAULT_IN_PROGRESS_MS / 1000 + 1
    assert other.once("k", lambda: {"ran": 2}) == {"ran": 2}
    assert other.once("k", lambda: {"ran": 3}) == {"ran": 2}  # completed: the stored result


def test_a_delivery_remembered_by_the_previous_powertools_dedupe_is_still_a_duplicate(table):
    """Records keep Powertools' key and layout: an upgrade does not forget the last 14 days."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    def guarded(delivery: dict, action):
        return action()

    # What the previous module decorated: a function local to Deduplicator.__init__.
    guarded.__module__ = "segmentation.infra.idempotency"
    guarded.__qualname__ = "Deduplicator.__init__.<locals>.guarded"
    old = idempotent_function(
        data_keyword_argument="delivery", config=IdempotencyConfig(event_key_jmespath="key", expires_after_seconds=3600),
        persistence_store=DynamoDBPersistenceLayer(table_name=table, boto3_client=boto3.client("dynamodb")))(guarded)
    assert old(delivery={"key": "shopify#s#orders/create#e1"}, action=lambda: {"accepted": 1}) == {"accepted": 1}

    new = Deduplicator(table, 3600, client=boto3.client("dynamodb"))
    assert new.once("shopify#s#orders/create#e1", lambda: pytest.fail("published again")) == {"accepted": 1}
    assert new.once("shopify#s#orders/create#e2", lambda: {"accepted": 2}) == {"accepted": 2}
    assert old(delivery={"key": "shopify#s#orders/create#e2"}, action=lambda: pytest.fail("again")) == {"accepted": 2}


def test_the_ttl_attribute_is_the_one_template_yaml_expires(aws):
    spec = aws.resources["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]
    assert spec["AttributeName"] == dedupe.TTL_ATTRIBUTE and spec["Enabled"] is True
