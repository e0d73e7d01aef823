"""The opt-in "duplicate" answer (template parameter WebhookDuplicateAnswer, docs/webhooks.md).

Off (the default): no DeliveriesTable, an empty DELIVERIES_TABLE, no request on the webhook path and
no ``duplicate`` field. On: one conditional PutItem after the events are published; the answer says
whether the delivery was accepted before. On moto from template.yaml (tables, environment, bus), and
on the fakes where a fault of the put is needed.
"""

from __future__ import annotations

import hashlib
import sys
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from fakes import InMemoryDeliveryLog
from segctl.template import Template
from segmentation import bootstrap
from support import TEMPLATE, signed_shopify
from test_webhook_function import ORDER, queued

ON = {"WebhookDuplicateAnswer": "on"}
SHOP = "demo-shop.myshopify.com"


class DynamoDBCalls:
    """(operation, table name) of every DynamoDB request the functions' clients make."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, model, params, **_):
        tables = list(params["RequestItems"]) if "RequestItems" in params else [params["TableName"]]
        self.calls += [(model.name, table) for table in tables]


@pytest.fixture
def dynamodb_calls(aws):
    calls = DynamoDBCalls()
    events = boto3._get_default_session().events
    events.register("before-parameter-build.dynamodb", calls)
    bootstrap.reset()  # the functions' clients are built again, with the hook
    yield calls
    events.unregister("before-parameter-build.dynamodb", calls)


@pytest.fixture
def webhook_log(caplog, template):
    """A context manager giving the webhook handler's "webhook" log records of the calls inside it."""
    from contextlib import contextmanager

    from segctl.runtime import load_handler

    @contextmanager
    def capture():
        load_handler(template.functions()["WebhookFunction"])
        logger = sys.modules["webhook_handler"].logger
        records: list = []
        logger.setLevel("INFO")
        caplog.clear()
        try:
            yield records
        finally:
            logger.setLevel("WARNING")
            records += [r for r in caplog.records if r.getMessage() == "webhook"]

    return capture


def _deliveries(aws) -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=aws.physical_name("DeliveriesTable"))["Items"]


# -- the template -----------------------------------------------------------------------------------


def test_off_by_default_no_table_no_variable_no_grant():
    off = Template(TEMPLATE)
    assert off.doc["Parameters"]["WebhookDuplicateAnswer"]["Default"] == "off"
    assert "DeliveriesTable" not in off.of_type("AWS::DynamoDB::Table")
    assert off.environment("WebhookFunction")["DELIVERIES_TABLE"] == ""
    statements = off.resolve(off.resources["WebhookFunction"]["Properties"]["Policies"])
    assert "DeliveriesTable" not in repr(statements) and off.arn("DeliveriesTable") not in repr(statements)

    on = Template(TEMPLATE, parameters=ON)
    table = on.resolve(on.of_type("AWS::DynamoDB::Table")["DeliveriesTable"]["Properties"])
    assert table["BillingMode"] == "PAY_PER_REQUEST" and table["SSESpecification"] == {"SSEEnabled": True}
    assert table["KeySchema"] == [{"AttributeName": "delivery", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert on.environment("WebhookFunction")["DELIVERIES_TABLE"] == on.physical_name("DeliveriesTable")
    # no other function learns of it
    assert all("DELIVERIES_TABLE" not in on.functions()[f].environment for f in on.functions() if f != "WebhookFunction")


# -- off: exactly as without the feature -------------------------------------------------------------


def test_off_the_webhook_path_makes_no_request_and_the_answer_has_no_field(aws, api, dynamodb_calls):
    body, headers = signed_shopify(ORDER, event_id="evt-off")
    answers = [api("POST", "/webhooks/shopify", body, headers) for _ in range(2)]
    assert [a.status for a in answers] == [200, 200]
    assert all(a.json() == {"status": "accepted", "accepted": 1} for a in answers)
    assert dynamodb_calls.calls and all(t == aws.physical_name("CatalogTable") for _, t in dynamodb_calls.calls)
    assert "PutItem" not in {op for op, _ in dynamodb_calls.calls}
    assert len(queued(aws)) == 2


# -- on ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template_parameters", [ON], ids=["on"])
def test_on_a_delivery_twice_answers_false_then_true_and_both_are_published(aws, api, dynamodb_calls, webhook_log):
    body, headers = signed_shopify(ORDER, event_id="evt-twice")
    with webhook_log() as lines:
        first, second = (api("POST", "/webhooks/shopify", body, headers) for _ in range(2))
    assert (first.status, first.json()) == (200, {"status": "accepted", "accepted": 1, "duplicate": False})
    assert (second.status, second.json()) == (200, {"status": "accepted", "accepted": 1, "duplicate": True})
    assert [r.duplicate for r in lines] == [False, True]
    # one conditional put each, on the deliveries table, and nothing else beyond the shop's catalog
    table = aws.physical_name("DeliveriesTable")
    assert [c for c in dynamodb_calls.calls if c[1] != aws.physical_name("CatalogTable")] == [("PutItem", table)] * 2
    # both are published, with the same event id (the profile path counts it once)
    messages = queued(aws)
    assert len(messages) == 2 and len({m["detail"]["event_id"] for m in messages}) == 1
    # one item: the SHA-256 of the delivery key, never the key (it holds the shop's domain)
    [item] = _deliveries(aws)
    assert item["delivery"]["S"] == hashlib.sha256(lines[0].delivery.encode()).hexdigest()
    assert SHOP not in repr(item) and "evt-twice" not in repr(item)
    assert abs(int(item["expires"]["N"]) - (time.time() + 72 * 3600)) < 60
    # another delivery of the same order (a new delivery id) is not a duplicate
    body, headers = signed_shopify(ORDER, event_id="evt-other")
    assert api("POST", "/webhooks/shopify", body, headers).json()["duplicate"] is False


@pytest.mark.parametrize("template_parameters", [ON], ids=["on"])
def test_on_a_failed_publish_leaves_no_delivery_so_the_retry_is_not_a_duplicate(aws, api, monkeypatch):
    body, headers = signed_shopify(ORDER, event_id="evt-bus-down")
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    bootstrap.reset()
    assert api("POST", "/webhooks/shopify", body, headers).status == 503
    assert _deliveries(aws) == []
    monkeypatch.setenv("EVENT_BUS_NAME", aws.physical_name("EventBus"))
    bootstrap.reset()
    retry = api("POST", "/webhooks/shopify", body, headers)
    assert (retry.status, retry.json()["duplicate"]) == (200, False)
    assert len(queued(aws)) == 1 and len(_deliveries(aws)) == 1


@pytest.mark.parametrize("template_parameters", [ON], ids=["on"])
def test_on_a_delivery_that_publishes_nothing_is_not_remembered(aws, api, dynamodb_calls):
    body, headers = signed_shopify({"id": 1, "title": "Linen Shirt"}, topic="app/uninstalled", event_id="evt-ign")
    for _ in range(2):
        answer = api("POST", "/webhooks/shopify", body, headers)
        assert answer.status == 200 and "ignored" in answer.json() and "duplicate" not in answer.json()
    assert aws.physical_name("DeliveriesTable") not in {t for _, t in dynamodb_calls.calls}
    assert _deliveries(aws) == []


# -- on, with a put that fails (the fakes) ---------------------------------------------------------


def test_on_a_throttled_put_still_answers_200_without_the_field_and_warns(fake_api, fakes, caplog):
    log = InMemoryDeliveryLog()
    log.fault = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                            "PutItem")
    body, headers = signed_shopify(ORDER, event_id="evt-throttled")
    with bootstrap.override(delivery_log=log):
        fake_api("POST", "/webhooks/shopify", body, headers)  # the handler module is loaded
        caplog.clear()
        answer = fake_api("POST", "/webhooks/shopify", body, headers)
        assert (answer.status, answer.json()) == (200, {"status": "accepted", "accepted": 1})
        assert log.requests == 2
        warnings = [r for r in caplog.records if r.levelname == "WARNING" and "deliveries table" in r.getMessage()]
        assert warnings and warnings[0].error == "ClientError"
        assert len(fakes.queued()) == 2  # published all the same
        log.fault = None  # the table is back: the delivery is remembered from now on
        assert fake_api("POST", "/webhooks/shopify", body, headers).json()["duplicate"] is False
        assert fake_api("POST", "/webhooks/shopify", body, headers).json()["duplicate"] is True
