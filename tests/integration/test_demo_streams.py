"""The demo's sample streams stay valid: every delivery, signed as its source signs, is accepted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import pytest
from segctl.demo import signed_request
from segctl.provision import dev_secret_values
from segctl.signing import demo_keys
from segmentation import bootstrap
from support import ROOT


@pytest.mark.parametrize("stream", ["shopify-stream.json", "mixed-stream.json"])
def test_every_demo_delivery_is_accepted(api, aws, stream, monkeypatch):
    monkeypatch.chdir(ROOT)
    ec_key, ec_public, rsa_key, rsa_public = demo_keys()
    secrets = {**dev_secret_values({}), "sendgrid": ec_public, "magento": rsa_public}
    boto3.client("secretsmanager").put_secret_value(SecretId=aws.physical_name("WebhookSecret"),
                                                    SecretString=json.dumps(secrets))
    bootstrap.reset()
    doc = json.loads((ROOT / "events" / "demo" / stream).read_text())
    signing = {**secrets, "_sendgrid_private": ec_key, "_magento_private": rsa_key}
    sources = set()
    for d in doc["deliveries"]:
        path, body, headers = signed_request(d, doc, signing, datetime.now(UTC))
        resp = api("POST", path, body, headers)
        assert resp.status == 200, (d.get("source"), resp.text)
        assert resp.json()["accepted"] >= 1, (d, resp.text)  # every delivery tells the demo something
        sources.add(urlsplit(path).path.rsplit("/", 1)[1])
    if stream == "mixed-stream.json":
        assert sources == {"shopify", "segment", "mandrill", "mailchimp", "woocommerce", "klaviyo", "sendgrid", "magento"}
