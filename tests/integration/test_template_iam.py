"""Least privilege (issue 10): each function's IAM policy in template.yaml grants exactly the DynamoDB
actions, per table, that its code performs.

The needs are measured, not hand-copied: every function runs its typical work through its real
handler against moto while a botocore hook records each DynamoDB request as the IAM actions it needs
on each table or index (a TransactWriteItems needs PutItem/UpdateItem/DeleteItem/ConditionCheckItem
on the table of each of its items). Every recorded pair must be granted by template.yaml, and the
template may grant nothing else beyond the short list of rare paths documented in ``RARE`` below.
So the test breaks when the code starts doing something the template does not allow (AccessDenied
in AWS, invisible under moto) and when the template keeps a grant the code no longer needs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections import defaultdict
from datetime import timedelta

import boto3
import pytest
from segctl.runtime import context_for, load_handler, scheduled_event
from segctl.template import Template
from segmentation import bootstrap
from segmentation.domain.catalog import load_catalog
from segmentation.domain.events import BrowseProperties, CustomerEvent, EventType, Identity
from segmentation.infra.esp.mailchimp import MailchimpClient
from segmentation.service.ports import Push
from support import (
    TEMPLATE,
    deliver_to_esp_sync,
    deliver_to_profile_function,
    deliver_to_queue_function,
    import_file,
    signed_shopify,
)
from test_profile_function import NOW

TABLES = ("ProfilesTable", "AliasesTable", "MembershipsTable", "HistoryTable", "CatalogTable", "EspSyncTable",
          "MetricsTable", "DeliveriesTable")
#: the template's optional features that change what a function does with DynamoDB: the scenario runs
#: with each off (the defaults) and on
FEATURES = {"defaults": {}, "duplicate-answer": {"WebhookDuplicateAnswer": "on"}}
#: the DynamoDB actions SAM's policy templates grant (on the table and its indexes), so that a
#: template going back to one of them is measured as what it really grants
SAM_DYNAMODB = {
    "DynamoDBCrudPolicy": ["GetItem", "DeleteItem", "PutItem", "Scan", "Query", "UpdateItem", "BatchWriteItem",
                           "BatchGetItem", "DescribeTable", "ConditionCheckItem"],
    "DynamoDBReadPolicy": ["GetItem", "Scan", "Query", "BatchGetItem", "DescribeTable"],
    "DynamoDBWritePolicy": ["PutItem", "UpdateItem", "BatchWriteItem"],
    "DynamoDBReconfigurePolicy": ["UpdateTable"],
}
#: Granted but not reached by the scenario below (each a rare path; keep this list short and explained).
#: (function, action, table[/index]) -> why
RARE = {
    ("ApiFunction", "BatchWriteItem", "AliasesTable"):
        "erasure of a profile that another request erased meanwhile: tombstones only",
    ("InactivitySweepFunction", "GetItem", "ProfilesTable"):
        "re-reads a profile another writer changed meanwhile (conditional write failed)",
    ("InactivitySweepFunction", "BatchWriteItem", "HistoryTable"):
        "history of an evaluation with more changes than one transaction holds",
    ("EspSyncFunction", "GetItem", "ProfilesTable"):
        "the memory of a profile merged into another: the survivor is read by the address both had",
    ("BackfillFunction", "GetItem", "ProfilesTable"):
        "re-reads a profile another writer changed meanwhile (conditional write failed)",
    ("BackfillFunction", "BatchWriteItem", "HistoryTable"):
        "history of an evaluation with more changes than one transaction holds",
    ("ImportFunction", "BatchWriteItem", "HistoryTable"):
        "history of a person whose import has more changes than one transaction holds",
}
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem"}


# -- what template.yaml grants ------------------------------------------------------------------


def granted(template: Template) -> dict[str, set[tuple[str, str]]]:
    """function -> {(action, table logical id [+ "/index/<name>"])} for every DynamoDB grant."""
    arns = {template.arn(t): t for t in TABLES}
    out: dict[str, set[tuple[str, str]]] = {}
    for name, res in template.of_type("AWS::Serverless::Function").items():
        statements = []
        for policy in res["Properties"].get("Policies", []):
            if isinstance(policy, dict) and "Statement" in policy:  # an inline policy document
                statements += template.resolve(policy["Statement"])  # !If: the statements of the condition
                continue
            assert isinstance(policy, dict), f"{name}: managed policy {policy} is not measured by this test"
            (kind, body), = policy.items()
            if kind in SAM_DYNAMODB:
                table = template.arn(body["TableName"]["Ref"])
                statements.append({"Effect": "Allow", "Action": [f"dynamodb:{a}" for a in SAM_DYNAMODB[kind]],
                                   "Resource": [table, f"{table}/index/*"]})
            else:
                assert not kind.startswith("DynamoDB"), f"{name}: {kind} is not known to this test"
        pairs = set()
        for s in statements:
            assert s["Effect"] == "Allow"
            actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
            resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
            for action in actions:
                if not action.startswith("dynamodb:"):
                    continue
                assert "*" not in action, f"{name}: wildcard action {action}"
                for resource in resources:
                    assert resource != "*", f"{name}: {action} on every resource"
                    table_arn, _, index = resource.partition("/index/")
                    table = arns[table_arn]  # a DynamoDB grant names one of the template's tables
                    pairs.add((action.removeprefix("dynamodb:"), f"{table}/index/{index}" if index else table))
        out[name] = pairs
    return out


def allows(grants: set[tuple[str, str]], action: str, resource: str) -> bool:
    return any(a == action and fnmatch.fnmatchcase(resource, r) for a, r in grants)


# -- what the code does --------------------------------------------------------------------------


class Recorder:
    """Records the IAM actions each DynamoDB request needs, per function running at the time."""

    def __init__(self, template: Template) -> None:
        self.tables = {template.physical_name(t): t for t in TABLES}
        self.needed: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.ran: set[str] = set()  # every function the scenario ran, DynamoDB or not
        self.current: str | None = None

    def __call__(self, params, model, **_):
        if self.current is None:
            return
        for action, table, index in _iam_requests(model.name, params):
            logical = self.tables[table]
            self.needed[self.current].add((action, f"{logical}/index/{index}" if index else logical))

    @contextlib.contextmanager
    def running(self, function: str):
        self.current = function
        self.ran.add(function)
        try:
            yield
        finally:
            self.current = None


def _iam_requests(operation: str, params: dict):
    if operation == "TransactWriteItems":
        for item in params["TransactItems"]:
            (kind, body), = item.items()
            yield TRANSACT_ACTIONS[kind], body["TableName"], None
    elif operation == "TransactGetItems":
        for item in params["TransactItems"]:
            yield "GetItem", item["Get"]["TableName"], None
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for table in params["RequestItems"]:
            yield operation, table, None
    else:
        yield operation, params["TableName"], params.get("IndexName")


@pytest.fixture
def recorder(aws):
    rec = Recorder(aws)
    boto3._get_default_session().events.register("before-parameter-build.dynamodb", rec)
    bootstrap.reset()  # the functions' clients are built again, with the hook
    yield rec
    boto3._get_default_session().events.unregister("before-parameter-build.dynamodb", rec)


SHOP = "demo-shop.myshopify.com"
T = (NOW - timedelta(hours=3)).isoformat()


def _shopify(api, payload: dict, topic: str, event_id: str, expect: int = 200) -> None:
    body, headers = signed_shopify(payload, topic=topic, event_id=event_id)
    resp = api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == expect, resp.text


def _order(n: int, email: str, customer: int, product: int = 8801) -> dict:
    return {"id": 5550000 + n, "email": email, "created_at": T, "currency": "EUR", "total_price": "59.90",
            "customer": {"id": customer, "email": email},
            "line_items": [{"product_id": product, "title": "Linen Shirt", "quantity": 1, "price": "59.90"}]}


def webhooks_and_profiles(aws, api, recorder, monkeypatch) -> None:
    """Shopify deliveries of every kind the webhook handles, each applied by ProfileFunction."""
    steps = [
        ({"id": 8801, "title": "Linen Shirt", "product_type": "Shirts", "tags": ""}, "products/create"),
        ({"id": 8802, "title": "Plain Tee", "product_type": "", "tags": ""}, "products/update"),  # forgets it
        ({"id": "c1", "token": "cart-iam", "created_at": T, "updated_at": T,
          "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "49.90"}]},
         "carts/create"),
        ({"id": 1, "token": "co-iam", "cart_token": "cart-iam", "email": "ana@example.com", "created_at": T,
          "updated_at": T, "total_price": "49.90", "abandoned_checkout_url": f"https://{SHOP}/r/co-iam"},
         "checkouts/create"),
        (_order(1, "ana@example.com", 9000), "orders/create"),
        (_order(1, "ana@example.com", 9000), "orders/create"),  # a duplicate delivery: the same event id
        ({"id": 9001, "email": "ben@example.com", "created_at": T, "updated_at": T}, "customers/create"),
        (_order(2, "carl@example.com", 9002), "orders/create"),
        (_order(3, "ben@example.com", 9002), "orders/create"),  # ben and carl are one person: a merge
        ({"id": 9001, "email": "ben.new@example.com", "created_at": T, "updated_at": T}, "customers/update"),
    ]
    for n, (payload, topic) in enumerate(steps):
        with recorder.running("WebhookFunction"):
            _shopify(api, payload, topic, "evt-dup" if n in (4, 5) else f"evt-{n}")
        with recorder.running("ProfileFunction"):
            deliver_to_profile_function(aws)
    # A bus failure: the webhook answers 503 (the provider retries) and has written nothing.
    monkeypatch.setenv("EVENT_BUS_NAME", "no-such-bus")
    bootstrap.reset()
    with recorder.running("WebhookFunction"):
        _shopify(api, _order(4, "dana@example.com", 9004), "orders/create", "evt-bus-down", expect=503)
    monkeypatch.setenv("EVENT_BUS_NAME", aws.physical_name("EventBus"))
    bootstrap.reset()


def sweep(aws, recorder) -> None:
    handler = load_handler(aws.functions()["InactivitySweepFunction"])
    # A due instant pushed later by a second page view: the sweep finds the entry early and moves it.
    service = bootstrap.profile_service()
    for n, ago in enumerate((2, 0)):
        service.apply(CustomerEvent(event_id=f"view-{n}", source="test", type=EventType.PAGE_VIEWED,
                                    occurred_at=NOW - timedelta(days=ago), identity=Identity(email="lag@example.com"),
                                    properties=BrowseProperties(url="/")))
    with recorder.running("InactivitySweepFunction"):
        report = handler(scheduled_event(NOW + timedelta(days=5, minutes=1), "arn:aws:events:us-east-1:123456789012:rule/s"),
                         context_for(aws, "InactivitySweepFunction"))
    assert report["moved"] == 1
    for days in (31, 61):  # at-risk entered, then left for inactive: memberships and history written
        with recorder.running("InactivitySweepFunction"):
            report = handler(scheduled_event(NOW + timedelta(days=days), "arn:aws:events:us-east-1:123456789012:rule/s"),
                             context_for(aws, "InactivitySweepFunction"))
        assert report["changes"] > 0


def backfill(aws, recorder, monkeypatch, tmp_path) -> None:
    changed = tmp_path / "catalog.yaml"
    changed.write_text(open(load_catalog().source).read().replace(
        "event: {signal: order_placed, within: 14d}\n", "event: {signal: order_placed, within: 1h}\n", 1))
    monkeypatch.setenv("CATALOG_FILE", str(changed))
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=aws.physical_name("BackfillQueue"))["QueueUrl"]
    monkeypatch.setenv("BACKFILL_QUEUE_URL", url)
    bootstrap.reset()
    handler = load_handler(aws.functions()["BackfillFunction"])
    context = context_for(aws, "BackfillFunction")
    updated = 0
    with recorder.running("BackfillFunction"):
        assert handler({"segments": 2}, context)["started"] == 2
        while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                        "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                        "eventSourceARN": "arn", "awsRegion": "us-east-1", "md5OfBody": ""} for m in msgs]
            assert handler({"Records": records}, context) == {"batchItemFailures": []}
            for m in msgs:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    for item in boto3.client("dynamodb").scan(TableName=aws.physical_name("MembershipsTable"))["Items"]:
        if item["segment_id"]["S"].startswith("#job#"):
            updated += int(item["updated"]["N"])
    assert updated > 0  # profiles were re-evaluated and written (recent-buyers narrowed to 1h: they left it)


def esp_sync(aws, recorder, monkeypatch, tmp_path):
    """The membership changes queued so far reach a Mailchimp audience (a local fake); then a
    reconcile of it. Later scenarios (erasure) sync too, through the profile function's changes."""
    from segctl.espfakes.mailchimp import FakeMailchimp

    fake = FakeMailchimp(lists={"aud1": []}).start()
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text("version: 1\ndestinations:\n  - id: mc\n    type: mailchimp\n    list: aud1\n"
                            "    segments: {recent-buyers: {tag: Buyers}, inactive: {tag: Lapsed}}\n"
                            "    merge_fields: {PREFCAT: preferred_category}\n")
    monkeypatch.setenv("DESTINATIONS_FILE", str(destinations))
    monkeypatch.setenv("MAILCHIMP_API_URL", fake.root_url)
    boto3.client("secretsmanager").put_secret_value(SecretId=aws.physical_name("DestinationSecret"),
                                                    SecretString=json.dumps({"mailchimp": fake.api_key}))
    bootstrap.reset()
    with recorder.running("EspSyncFunction"):
        answers = deliver_to_esp_sync(aws)
    assert answers and all(a == {"batchItemFailures": []} for a in answers)
    # the sweep ran 61 days ahead: the buyers are inactive now, and tagged so, not as buyers
    lapsed = fake.tag_members("aud1", "Lapsed")
    assert lapsed and not fake.tag_members("aud1", "Buyers")
    # someone edits the tag by hand: the reconcile puts it back (and remembers it)
    MailchimpClient(fake.api_key, "aud1", base_url=fake.root_url).push(
        [Push(email=sorted(lapsed)[0], remove=frozenset({"Lapsed"}))])
    handler = load_handler(aws.functions()["EspReconcileFunction"])
    with recorder.running("EspReconcileFunction"):
        reports = handler({"destination": "*"}, context_for(aws, "EspReconcileFunction"))["reports"]
    assert [r["destination"] for r in reports] == ["mc"]
    assert reports[0]["targets"] == {"Lapsed": {"added": 1, "removed": 0}}
    assert fake.tag_members("aud1", "Lapsed") == lapsed
    return fake


def management_api(aws, api, recorder) -> None:
    pid = bootstrap.repository().find("email#ana@example.com").profile_id
    definition = {"name": "Buyers", "description": "Bought lately.",
                  "when": {"event": {"signal": "order_placed", "within": "30d"}}}
    with recorder.running("ApiFunction"):
        for path in ["/health", "/openapi.json", "/profiles?email=ana@example.com", f"/profiles/{pid}",
                     f"/profiles/{pid}/explain", f"/profiles/{pid}/export", f"/profiles/{pid}/history",
                     "/segments", "/segments/overlap", "/segments/recent-buyers",
                     "/segments/recent-buyers/members", "/segments/category-browsers:shirts/members",
                     "/segments/recent-buyers/metrics", "/segments/metrics"]:
            assert api("GET", path).status in (200, 404), path
        assert api("POST", "/segments/preview", {"segment_id": "buyers", "definition": definition}).status == 200
        assert api("DELETE", f"/profiles/{pid}").status == 200


def privacy_webhooks(aws, api, recorder) -> None:
    """Shopify's mandatory privacy webhooks, applied by ProfileFunction (a cart for the redacted customer)."""
    steps = [
        ({"id": "c2", "token": "cart-ben", "created_at": T, "updated_at": T,
          "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": "49.90"}]},
         "carts/create"),
        ({"id": 2, "token": "co-ben", "cart_token": "cart-ben", "email": "ben.new@example.com",
          "customer": {"id": 9002, "email": "ben.new@example.com"}, "created_at": T, "updated_at": T,
          "total_price": "49.90", "abandoned_checkout_url": f"https://{SHOP}/r/co-ben"}, "checkouts/create"),
        ({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 9002, "email": "ben.new@example.com"},
          "orders_requested": []}, "customers/data_request"),
        ({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 9002, "email": "ben.new@example.com"},
          "orders_to_redact": []}, "customers/redact"),
        ({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 4242, "email": "never@example.com"},
          "orders_to_redact": []}, "customers/redact"),  # someone never seen: tombstones only
        ({"shop_id": 1, "shop_domain": SHOP}, "shop/redact"),  # the shop uninstalled 48 h ago: its data goes
    ]
    for n, (payload, topic) in enumerate(steps):
        with recorder.running("WebhookFunction"):
            _shopify(api, payload, topic, f"evt-privacy-{n}")
        with recorder.running("ProfileFunction"):
            deliver_to_profile_function(aws)


def history_import(aws, recorder, monkeypatch) -> None:
    """History files put in ImportBucket, imported by ImportStateMachine's steps: a subscriber and a
    buyer; then a record naming the buyer's email and the subscriber's customer id (one person: a
    merge); then the same customer under a new address (an email change)."""
    from segmentation.service import history_jobs

    monkeypatch.setattr(history_jobs, "PART_PEOPLE", 1)
    at = [(NOW - timedelta(hours=3) + timedelta(minutes=n)).isoformat() for n in range(4)]
    shop = "imports/shopify/example-shop.myshopify.com/"
    files = [
        (shop + "customers-1.csv", f"email,customer_id,email_consent,created_at\nx@example.com,55,subscribed,{at[0]}\n"),
        (shop + "orders.csv", f"order_id,email,created_at,total\n7002,y@example.com,{at[1]},60.00\n"),
        (shop + "customers-2.csv", f"email,customer_id,updated_at\ny@example.com,55,{at[2]}\n"),
        (shop + "customers-3.csv", f"email,customer_id,updated_at\nz@example.com,55,{at[3]}\n"),
    ]
    with recorder.running("ImportFunction"):
        for key, body in files:
            import_file(aws, key, body.encode())
    person = bootstrap.repository().find("cust#shopify#example-shop.myshopify.com#55")
    assert person.email == "z@example.com" and person.traits["order_count"] == 1  # one person, merged


@pytest.mark.parametrize("template_parameters", FEATURES.values(), ids=FEATURES.keys())
def test_every_function_is_granted_exactly_the_dynamodb_actions_its_code_performs(
        aws, api, recorder, monkeypatch, tmp_path):
    webhooks_and_profiles(aws, api, recorder, monkeypatch)
    history_import(aws, recorder, monkeypatch)
    backfill(aws, recorder, monkeypatch, tmp_path)
    sweep(aws, recorder)
    fake = esp_sync(aws, recorder, monkeypatch, tmp_path)
    try:
        management_api(aws, api, recorder)
        privacy_webhooks(aws, api, recorder)
        with recorder.running("EspSyncFunction"):  # the erasures reach the ESP: their address is looked up
            assert all(a == {"batchItemFailures": []} for a in deliver_to_esp_sync(aws))
    finally:
        fake.stop()

    with recorder.running("MetricsFunction"):  # every figure the scenario's events gave, summed
        assert all(a == {"batchItemFailures": []}
                   for a in deliver_to_queue_function(aws, "MetricsQueue", "MetricsFunction"))
    grants = granted(aws)
    # a function the scenario never runs would have its needs unmeasured: whatever its code does
    # with DynamoDB, nothing here would notice a missing grant
    assert set(grants) <= recorder.ran, f"template functions the scenario never runs: {set(grants) - recorder.ran}"
    needed = recorder.needed
    missing = {f: sorted(p for p in needed[f] if not allows(grants.get(f, set()), *p)) for f in needed}
    assert not any(missing.values()), f"the code does what template.yaml does not allow: {missing}"
    rare = defaultdict(set)
    for function, action, resource in RARE:
        rare[function].add((action, resource))
    extra = {f: sorted(grants[f] - needed[f] - rare[f]) for f in grants}
    assert not any(extra.values()), f"template.yaml grants what no code path needs: {extra}"
    unused_rare = {k for k in RARE if (k[1], k[2]) in needed[k[0]]}
    assert not unused_rare, f"RARE lists paths the scenario does reach (remove them from RARE): {unused_rare}"


# -- the boundaries that matter, stated plainly -----------------------------------------------------

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}


def _on(grants: set[tuple[str, str]], table: str) -> set[str]:
    return {a for a, r in grants if r.split("/index/")[0] == table}


@pytest.mark.parametrize("parameters", FEATURES.values(), ids=FEATURES.keys())
def test_least_privilege_boundaries(parameters):
    grants = granted(Template(TEMPLATE, parameters=parameters))
    # The management API writes no profile, only deletes it (erasure).
    assert _on(grants["ApiFunction"], "ProfilesTable") & WRITES == {"DeleteItem"}
    assert _on(grants["ApiFunction"], "HistoryTable") & WRITES == {"BatchWriteItem"}  # erasure's deletes
    # Webhooks see no profile data at all.
    for table in ("ProfilesTable", "AliasesTable", "MembershipsTable", "HistoryTable"):
        assert _on(grants["WebhookFunction"], table) == set(), table
    # The sweep and the backfill neither read identities nor carts.
    for function in ("InactivitySweepFunction", "BackfillFunction"):
        assert _on(grants[function], "AliasesTable") == set(), function
        assert _on(grants[function], "CatalogTable") == set(), function
    # Nobody may scan a table wholesale except where the code must (preview/backfill over profiles,
    # erasure over cart owners, shop erasure over aliases).
    scans = {(f, r) for f, pairs in grants.items() for a, r in pairs if a == "Scan"}
    assert scans == {("ApiFunction", "ProfilesTable"), ("ApiFunction", "CatalogTable"),
                     ("BackfillFunction", "ProfilesTable"), ("ProfileFunction", "AliasesTable"),
                     ("ProfileFunction", "CatalogTable")}
    # The ESP sync and its reconcile read profiles and write only their own memory.
    for function in ("EspSyncFunction", "EspReconcileFunction"):
        written = {r for a, r in grants[function] if a in WRITES}
        assert written == {"EspSyncTable"}, function
        assert _on(grants[function], "HistoryTable") == set()
    # The deliveries accepted (WebhookDuplicateAnswer=on) are put by the webhook only, and never read.
    deliveries = {(f, a) for f, pairs in grants.items() for a, r in pairs if r == "DeliveriesTable"}
    assert deliveries == ({("WebhookFunction", "PutItem")} if parameters else set())
    # The due index is queried by the sweep only.
    assert {f for f, pairs in grants.items() for a, r in pairs if "/index/" in r} == {"InactivitySweepFunction"}


def test_the_recorder_sees_transaction_items_as_their_own_actions():
    assert sorted(_iam_requests("TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "a"}}, {"Update": {"TableName": "b"}}, {"Delete": {"TableName": "a"}},
        {"ConditionCheck": {"TableName": "c"}}]})) == [
        ("ConditionCheckItem", "c", None), ("DeleteItem", "a", None), ("PutItem", "a", None), ("UpdateItem", "b", None)]
    assert list(_iam_requests("Query", {"TableName": "p", "IndexName": "DueIndex"})) == [("Query", "p", "DueIndex")]
    assert json.dumps(sorted(_iam_requests("BatchWriteItem", {"RequestItems": {"h": [], "a": []}}))) == json.dumps(
        [["BatchWriteItem", "a", None], ["BatchWriteItem", "h", None]])
