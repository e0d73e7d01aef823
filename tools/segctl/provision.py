"""Create what template.yaml declares on an AWS endpoint (embedded moto, or any other),
skipping what already exists. CloudFormation itself is not used: moto's stacks break
on ``!Ref`` to an event bus (a moto limitation: docs/contracts.md#the-local-runner), so each resource type is created with its
own API, from the template's own Properties.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .template import Template

#: Development defaults for the webhook secrets (README, "Local runner"). Never used in AWS.
DEV_SECRETS = {
    "shopify": ("SHOPIFY_WEBHOOK_SECRET", "shpss_dev_shopify_secret"),
    "woocommerce": ("WOOCOMMERCE_WEBHOOK_SECRET", "wc_dev_secret"),
    "klaviyo": ("KLAVIYO_WEBHOOK_SECRET", "klaviyo_dev_secret"),
    "mailchimp": ("MAILCHIMP_WEBHOOK_TOKEN", "mailchimp_dev_token"),
    "mandrill": ("MANDRILL_WEBHOOK_KEY", "mandrill_dev_key"),
    "mandrill_url": ("MANDRILL_WEBHOOK_URL", "http://127.0.0.1:3000/webhooks/mandrill"),
    "sendgrid": ("SENDGRID_PUBLIC_KEY", ""),
    "segment": ("SEGMENT_SHARED_SECRET", "segment_dev_secret"),
    "magento": ("MAGENTO_PUBLIC_KEY", ""),
    "magento_client_id": ("MAGENTO_CLIENT_ID", ""),
}


#: The ESP destinations' keys (DestinationSecret), by destination type, from the environment. The
#: defaults are the keys of the local runner's built-in fake Klaviyo and Mailchimp; never used in AWS.
DEV_DESTINATION_KEYS = {
    "klaviyo": ("KLAVIYO_API_KEY", "pk_fake_klaviyo_test_key"),
    "mailchimp": ("MAILCHIMP_API_KEY", "0123456789abcdef0123456789abcdef-us21"),
    "webhook": ("DESTINATION_WEBHOOK_SECRET", "whsec_ZGV2LWRlc3RpbmF0aW9uLXdlYmhvb2stc2VjcmV0"),
}
#: which secret of template.yaml holds what
DESTINATION_SECRET = "DestinationSecret"


def dev_secret_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {key: env.get(var, default) for key, (var, default) in DEV_SECRETS.items()}


def dev_destination_keys(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {key: env.get(var) or default for key, (var, default) in DEV_DESTINATION_KEYS.items()}


def table_request(props: dict, name: str) -> dict:
    """``create_table`` arguments from an ``AWS::DynamoDB::Table``'s resolved Properties."""
    req: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if req["BillingMode"] == "PROVISIONED":
        req["ProvisionedThroughput"] = props.get("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in props:
            req[key] = [
                {k: v for k, v in index.items() if k not in ("ContributorInsightsSpecification",)}
                for index in props[key]
            ]
    if "StreamSpecification" in props:
        req["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        req["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled"))}
    return req


def create_tables(template: Template, dynamodb: Any) -> dict[str, str]:
    """Create every ``AWS::DynamoDB::Table`` of the template that is missing; return logical id -> name."""
    names = {}
    existing = set(dynamodb.list_tables().get("TableNames", []))
    for lid, res in template.of_type("AWS::DynamoDB::Table").items():
        props = template.resolve(res["Properties"])
        name = template.physical_name(lid)
        names[lid] = name
        if name in existing:
            continue
        dynamodb.create_table(**table_request(props, name))
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return names


def create_queues(template: Template, sqs: Any) -> dict[str, str]:
    urls = {}
    queues = template.of_type("AWS::SQS::Queue")
    # Dead-letter queues first: others refer to them.
    order = sorted(queues, key=lambda lid: "RedrivePolicy" in queues[lid].get("Properties", {}))
    for lid in order:
        props = template.resolve(queues[lid].get("Properties", {}))
        attrs = {}
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"):
            if key in props:
                attrs[key] = str(props[key])
        if "RedrivePolicy" in props:
            attrs["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        urls[lid] = sqs.create_queue(QueueName=template.physical_name(lid), Attributes=attrs)["QueueUrl"]
    return urls


def create_event_buses(template: Template, events: Any) -> None:
    existing = {b["Name"] for b in events.list_event_buses().get("EventBuses", [])}
    for lid in template.of_type("AWS::Events::EventBus"):
        name = template.physical_name(lid)
        if name not in existing:
            events.create_event_bus(Name=name)
    for lid, res in template.of_type("AWS::Events::Rule").items():
        props = template.resolve(res["Properties"])
        if "ScheduleExpression" in props:
            continue  # schedules are driven by the local runner's clock, not by the bus
        bus = props.get("EventBusName", "default")
        name = template.physical_name(lid)
        events.put_rule(
            Name=name, EventBusName=bus, EventPattern=json.dumps(props["EventPattern"]),
            State=props.get("State", "ENABLED"),
        )
        events.put_targets(
            Rule=name, EventBusName=bus,
            Targets=[{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets", [])],
        )


def create_buckets(template: Template, s3: Any) -> None:
    """Create every ``AWS::S3::Bucket`` of the template that is missing (the history import's)."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for lid in template.of_type("AWS::S3::Bucket"):
        name = template.physical_name(lid)
        if name not in existing:
            s3.create_bucket(Bucket=name)


def create_secrets(template: Template, secretsmanager: Any, values: dict[str, str],
                   destination_keys: dict[str, str] | None = None) -> dict[str, str]:
    """Create (or update) the webhook secret with ``values`` and the destination secret with
    ``destination_keys`` (JSON strings); return logical id -> ARN."""
    arns = {}
    for lid in template.of_type("AWS::SecretsManager::Secret"):
        name = template.physical_name(lid)
        if lid == DESTINATION_SECRET:
            body = json.dumps(dev_destination_keys() if destination_keys is None else destination_keys)
        else:
            body = json.dumps(values)
        try:
            arn = secretsmanager.describe_secret(SecretId=name)["ARN"]
            secretsmanager.put_secret_value(SecretId=name, SecretString=body)
        except secretsmanager.exceptions.ResourceNotFoundException:
            arn = secretsmanager.create_secret(Name=name, SecretString=body)["ARN"]
        arns[lid] = arn
        template.overrides[lid] = arn
    return arns


def provision(template: Template, session: Any, secret_values: dict[str, str] | None = None) -> None:
    """Create everything the local runner needs, idempotently, on ``session``'s endpoint."""
    create_tables(template, session.client("dynamodb"))
    create_queues(template, session.client("sqs"))
    create_event_buses(template, session.client("events"))
    create_buckets(template, session.client("s3"))
    create_secrets(template, session.client("secretsmanager"), secret_values or dev_secret_values())
