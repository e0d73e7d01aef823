"""The ESP sync end to end, through template.yaml (issue 12): signed webhooks -> WebhookFunction ->
bus -> ProfileFunction -> bus (SegmentEntered/Exited, ProfileUpdated) -> EspSyncRule -> EspSyncQueue
-> EspSyncFunction -> the fake Klaviyo (every request checked against Klaviyo's OpenAPI document),
the fake Mailchimp and a Standard Webhooks receiver, over HTTP.

Assertions are on what each fake ends up holding, never on the calls made (except to show that a
replay sends nothing and that retries happened)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import boto3
import pytest
from esp.fake_webhook_receiver import FakeWebhookReceiver
from segctl.espfakes.klaviyo import FakeKlaviyo
from segctl.espfakes.mailchimp import FakeMailchimp
from segctl.provision import dev_secret_values
from segmentation import bootstrap
from segmentation.infra.esp.factory import EspClients
from support import deliver_to_esp_sync, deliver_to_profile_function, signed_shopify

SHOP = "esp-shop.myshopify.com"
SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtcmVjZWl2ZXItdGVzdHM="
ATTEMPTS = 2


def iso(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).replace(microsecond=0).isoformat()


@pytest.fixture
def esps(aws, monkeypatch, tmp_path):
    klaviyo = FakeKlaviyo().start()
    mailchimp = FakeMailchimp(lists={"aud1": []}).start()
    hooks = FakeWebhookReceiver(SECRET).start()
    buyers, vips = klaviyo.create_list("Recent buyers"), klaviyo.create_list("VIP")
    path = tmp_path / "destinations.yaml"
    path.write_text(f"""\
version: 1
destinations:
  - id: klaviyo-main
    type: klaviyo
    segments:
      recent-buyers: {{list: "{buyers}"}}
      high-value: {{list: "{vips}"}}
    properties:
      PreferredCategory: preferred_category
      OrderCount: order_count
      LifetimeValue: lifetime_value
      Segments: segments
  - id: mailchimp-main
    type: mailchimp
    list: aud1
    segments:
      recent-buyers: {{tag: "Recent Buyers"}}
    merge_fields:
      PREFCAT: preferred_category
      ORDERS: order_count
  - id: hooks
    type: webhook
    url: "{hooks.url}"
""")
    monkeypatch.setenv("DESTINATIONS_FILE", str(path))
    monkeypatch.setenv("KLAVIYO_API_URL", klaviyo.base_url)
    monkeypatch.setenv("MAILCHIMP_API_URL", mailchimp.root_url)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=aws.physical_name("DestinationSecret"),
        SecretString=json.dumps({"klaviyo": klaviyo.api_key, "mailchimp": mailchimp.api_key, "webhook": SECRET}))
    bootstrap.reset()
    # the clients as deployed, with a short retry budget (the defaults wait up to a minute)
    clients = EspClients(aws.physical_name("DestinationSecret"), 0, klaviyo_url=klaviyo.base_url,
                         mailchimp_url=mailchimp.root_url, attempts=ATTEMPTS, backoff_factor=0.01)
    with bootstrap.override(esp_clients=clients):
        yield {"klaviyo": klaviyo, "mailchimp": mailchimp, "hooks": hooks, "buyers": buyers, "vips": vips}
    for fake in (klaviyo, mailchimp, hooks):
        fake.stop()
    assert klaviyo.invalid == [], klaviyo.invalid
    assert mailchimp.invalid == [] and mailchimp.consent_violations() == []


def order(n: int, email: str, total: str = "40.00", days_ago: float = 1, category: str = "Shirts") -> dict:
    return {"id": 7000 + n, "email": email, "created_at": iso(days_ago), "updated_at": iso(days_ago),
            "total_price": total, "financial_status": "paid", "customer": {"id": 900 + n, "email": email},
            "line_items": [{"product_id": 8801, "title": "Linen Shirt", "quantity": 1, "price": total,
                            "product_type": category}]}


def shopify(api, payload: dict, topic: str = "orders/create") -> None:
    body, headers = signed_shopify(payload, topic=topic, event_id=f"evt-{topic}-{payload.get('id')}", shop=SHOP)
    assert api("POST", "/webhooks/shopify", body, headers).status == 200
    deliver_to_profile_function(api.template)


def sync(aws) -> list[dict]:
    answers = deliver_to_esp_sync(aws)
    assert all(a == {"batchItemFailures": []} for a in answers), answers
    return answers


def test_buyers_reach_the_klaviyo_list_and_the_mailchimp_tag_with_their_traits(aws, api, esps):
    klaviyo, mailchimp = esps["klaviyo"], esps["mailchimp"]
    shopify(api, order(1, "ana@example.com", total="600.00"))
    shopify(api, order(2, "ben@example.com"))
    sync(aws)
    assert klaviyo.members(esps["buyers"]) == {"ana@example.com", "ben@example.com"}
    assert klaviyo.members(esps["vips"]) == {"ana@example.com"}
    ana = klaviyo.profile_by_email("ana@example.com")["properties"]
    assert ana["OrderCount"] == 1 and ana["LifetimeValue"] == 600
    assert {"recent-buyers", "high-value"} <= set(ana["Segments"])
    assert mailchimp.tag_members("aud1", "Recent Buyers") == {"ana@example.com", "ben@example.com"}
    assert str(mailchimp.members("aud1")["ana@example.com"]["merge_fields"]["ORDERS"]) == "1"
    # created for the tags without any marketing consent
    assert set(mailchimp.new_member_statuses("aud1").values()) == {"transactional"}
    hooks = esps["hooks"].messages
    assert {(m["type"], m["data"]["segment_id"], m["data"]["email"]) for m in hooks} >= {
        ("segment.entered", "recent-buyers", "ana@example.com"), ("segment.entered", "high-value", "ana@example.com")}


def test_a_replay_of_the_same_changes_sends_nothing(aws, api, esps):
    shopify(api, order(1, "ana@example.com"))
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=aws.physical_name("EspSyncQueue"))["QueueUrl"]
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                     VisibilityTimeout=0)["Messages"]]
    sync(aws)
    before = esps["klaviyo"].snapshot(), len(esps["klaviyo"].calls), len(esps["mailchimp"].calls)
    for body in bodies:  # EventBridge delivers at least once: the same events again
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sync(aws)
    assert (esps["klaviyo"].snapshot(), len(esps["klaviyo"].calls), len(esps["mailchimp"].calls)) == before


def test_an_unsubscribe_removes_the_address_from_every_list_and_tag(aws, api, esps):
    klaviyo, mailchimp = esps["klaviyo"], esps["mailchimp"]
    shopify(api, order(1, "ana@example.com", total="600.00"))
    sync(aws)
    assert mailchimp.tag_members("aud1", "Recent Buyers") == {"ana@example.com"}
    fired = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    body = urlencode({"type": "unsubscribe", "fired_at": fired, "data[email]": "ana@example.com",
                      "data[list_id]": "aud1", "data[action]": "unsub"}).encode()
    token = dev_secret_values({})["mailchimp"]
    assert api("POST", f"/webhooks/mailchimp?token={token}", body,
               {"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    deliver_to_profile_function(aws)
    sync(aws)
    assert klaviyo.members(esps["buyers"]) == set() and klaviyo.members(esps["vips"]) == set()
    assert mailchimp.tag_members("aud1", "Recent Buyers") == set()
    # a new order while unsubscribed changes her segments, not the ESP
    shopify(api, order(2, "ana@example.com"))
    sync(aws)
    assert klaviyo.members(esps["buyers"]) == set() and mailchimp.tag_members("aud1", "Recent Buyers") == set()


def test_an_erasure_reaches_every_destination(aws, api, esps):
    klaviyo, mailchimp = esps["klaviyo"], esps["mailchimp"]
    shopify(api, order(1, "ana@example.com", total="600.00"))
    shopify(api, order(2, "ben@example.com"))
    sync(aws)
    shopify(api, {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 901, "email": "ana@example.com"},
                  "orders_to_redact": [7001]}, topic="customers/redact")
    sync(aws)
    assert klaviyo.members(esps["buyers"]) == {"ben@example.com"} and klaviyo.members(esps["vips"]) == set()
    assert mailchimp.tag_members("aud1", "Recent Buyers") == {"ben@example.com"}
    memory = boto3.client("dynamodb").scan(TableName=aws.physical_name("EspSyncTable"))["Items"]
    assert "ana@example.com" not in json.dumps(memory)  # nothing of her is kept by the sync either


def test_rate_limits_and_an_outage_delay_the_sync_and_lose_nothing(aws, api, esps):
    klaviyo, mailchimp = esps["klaviyo"], esps["mailchimp"]
    shopify(api, order(1, "ana@example.com"))
    klaviyo.fail_next(1, status=429, retry_after=1)  # honoured within the invocation
    mailchimp.fail_next(ATTEMPTS, status=503)  # more than the client's retries: Mailchimp is down
    answers = deliver_to_esp_sync(aws, visibility=1)
    assert answers[-1]["batchItemFailures"], "the changes concerning Mailchimp go back to the queue"
    assert klaviyo.members(esps["buyers"]) == {"ana@example.com"}
    assert mailchimp.tag_members("aud1", "Recent Buyers") == set()
    time.sleep(1.2)  # the failed records' visibility timeout: SQS gives them back
    sync(aws)
    assert mailchimp.tag_members("aud1", "Recent Buyers") == {"ana@example.com"}
    assert klaviyo.call_count() > 1  # Klaviyo's 429 was retried, not a failure
