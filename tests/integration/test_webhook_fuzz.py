"""Every source, through WebhookFunction: random input never gets a 5xx and never stores anything."""

from __future__ import annotations

import json

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.service.ingest import ADAPTERS, adapter_for

SIGNATURE_HEADERS = [
    "X-Shopify-Hmac-Sha256", "X-Shopify-Topic", "X-WC-Webhook-Signature", "X-WC-Webhook-Topic", "Klaviyo-Signature",
    "Klaviyo-Timestamp", "Klaviyo-Webhook-Id", "X-Mandrill-Signature", "X-Twilio-Email-Event-Webhook-Signature",
    "X-Twilio-Email-Event-Webhook-Timestamp", "X-Signature", "x-adobe-digital-signature-1", "Content-Type",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.just(b"webhook_id=12x"), st.just(b"mandrill_events=%5B%5D"), st.just(b"type=subscribe&data[email]=a@b.co"),
)
headers = st.dictionaries(st.sampled_from(SIGNATURE_HEADERS),
                          st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60), max_size=6)


def stored(template) -> bool:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=template.physical_name("ProfileQueue"))["QueueUrl"]
    queued = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    learnt = boto3.client("dynamodb").scan(TableName=template.physical_name("CatalogTable"))["Items"]
    return int(queued["Attributes"]["ApproximateNumberOfMessages"]) > 0 or bool(learnt)


def test_every_documented_source_has_a_parser():
    documented = {"shopify", "woocommerce", "magento", "klaviyo", "mailchimp", "mandrill", "sendgrid", "segment"}
    assert set(ADAPTERS) == documented
    assert all(callable(adapter_for(source)) for source in documented)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(ADAPTERS) + ["nosuch"]), method=st.sampled_from(["POST", "GET", "HEAD", "PUT", "PATCH"]),
       body=bodies, hdrs=headers, query=st.sampled_from(["", "?token=x", "?challenge=c", "?token=%FF"]))
def test_random_deliveries_never_fault_and_store_nothing(api, aws, source, method, body, hdrs, query):
    resp = api(method, f"/webhooks/{source}{query}", body, hdrs)
    assert resp.status < 500, resp.text
    assert not stored(aws)
