"""`segctl local start-api --parameter-overrides WebhookDuplicateAnswer=on`: the local runner provisions
DeliveriesTable from template.yaml's Condition, and a signed Shopify order delivered twice over HTTP
answers ``"duplicate": false`` then ``true`` (docs/webhooks.md, "The duplicate answer")."""

from __future__ import annotations

import json

import pytest
from conftest import start_api
from segctl.demo import http
from segctl.provision import dev_secret_values
from segctl.signing import shopify_headers

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def base_url(signing_keys, tmp_path_factory):
    yield from start_api(signing_keys, tmp_path_factory, args=("--parameter-overrides", "WebhookDuplicateAnswer=on"))


def test_a_delivery_twice_answers_not_a_duplicate_then_a_duplicate(base_url):
    order = {"id": 5550001, "email": "dup@example.com", "created_at": "2024-05-14T10:22:31-04:00",
             "currency": "EUR", "total_price": "10.00", "customer": {"id": 77, "email": "dup@example.com"},
             "line_items": []}
    body = json.dumps(order).encode()
    headers = shopify_headers(dev_secret_values({})["shopify"], body, "orders/create", "evt-local-dup")
    answers = [http("POST", f"{base_url}/webhooks/shopify", body, headers) for _ in range(2)]
    assert answers == [(200, {"status": "accepted", "accepted": 1, "duplicate": False}),
                       (200, {"status": "accepted", "accepted": 1, "duplicate": True})]
