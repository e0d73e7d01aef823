"""Erasure removes the person's open cart (issue 10, defect 10): after DELETE /profiles/{id} or Shopify
customers/redact, no item in any table holds the cart's product lines or the person's identifiers,
while another customer's cart stays."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from segmentation import bootstrap
from support import deliver_to_profile_function, signed_shopify
from test_profile_function import NOW

SHOP = "demo-shop.myshopify.com"
EMAIL, CUSTOMER, TOKEN = "quirina.vell@example.com", 7309988776, "cart-tok-qv-5521"
LINES = [{"product_id": 88031, "title": "Waxed Moorland Jacket", "quantity": 1, "price": "289.00"},
         {"product_id": 88032, "title": "Heather Wool Scarf", "quantity": 2, "price": "39.00"}]
OTHER_EMAIL, OTHER_TOKEN = "bystander.b@example.com", "cart-tok-bb-1107"
OTHER_LINES = [{"product_id": 77001, "title": "Canvas Tote", "quantity": 1, "price": "25.00"}]


def post(api, payload: dict, topic: str, event_id: str) -> None:
    body, headers = signed_shopify(payload, topic=topic, event_id=event_id)
    resp = api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 200, resp.text
    deliver_to_profile_function(api.template)


def shopper_with_a_cart(api, email: str, token: str, lines: list[dict], n: int, customer: int | None = None) -> str:
    """A Shopify cart, then the checkout that names its owner (so the cart becomes "added to cart")."""
    started = (NOW - timedelta(hours=2)).isoformat()
    post(api, {"id": f"c{n}", "token": token, "created_at": started, "updated_at": started, "line_items": lines},
         "carts/create", f"evt-cart-{n}")
    checkout = {"id": 660000 + n, "token": f"co-{n}", "cart_token": token, "email": email,
                "created_at": started, "updated_at": started, "total_price": "100.00", "line_items": lines,
                "abandoned_checkout_url": f"https://{SHOP}/checkouts/co-{n}/recover"}
    if customer is not None:
        checkout["customer"] = {"id": customer, "email": email}
    post(api, checkout, "checkouts/create", f"evt-checkout-{n}")
    return bootstrap.repository().find(f"email#{email}").profile_id


def catalog_texts(aws) -> list[str]:
    items = boto3.client("dynamodb").scan(TableName=aws.physical_name("CatalogTable"), ConsistentRead=True)["Items"]
    return [json.dumps(i) for i in items]


def all_texts(aws) -> list[str]:
    ddb = boto3.client("dynamodb")
    return [json.dumps(i, default=repr) for logical in aws.of_type("AWS::DynamoDB::Table")  # those deployed
            for i in ddb.scan(TableName=aws.physical_name(logical), ConsistentRead=True)["Items"]]


def traces(texts: list[str], needles) -> set[str]:
    return {n for n in needles if any(n in t for t in texts)}


PERSON = [EMAIL, TOKEN, str(CUSTOMER), "Waxed Moorland Jacket", "Heather Wool Scarf", "88031", "88032"]
BYSTANDER = [OTHER_EMAIL, OTHER_TOKEN, "Canvas Tote"]


@pytest.mark.parametrize("how", ["DELETE /profiles/{id}", "customers/redact"])
def test_erasure_removes_the_persons_open_cart_and_keeps_other_carts(aws, api, how):
    pid = shopper_with_a_cart(api, EMAIL, TOKEN, LINES, 1, customer=CUSTOMER)
    shopper_with_a_cart(api, OTHER_EMAIL, OTHER_TOKEN, OTHER_LINES, 2)
    # Before: the catalog table holds the cart (its product lines) and its owner (the person's identity).
    before = catalog_texts(aws)
    assert traces(before, ["Waxed Moorland Jacket", "Heather Wool Scarf", TOKEN, EMAIL]) == {
        "Waxed Moorland Jacket", "Heather Wool Scarf", TOKEN, EMAIL}

    if how == "customers/redact":
        post(api, {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": CUSTOMER, "email": EMAIL},
                   "orders_to_redact": []}, "customers/redact", "evt-redact-qv")
    else:
        assert api("DELETE", f"/profiles/{pid}").status == 200

    assert traces(all_texts(aws), PERSON) == set()  # no cart line, token or identifier left anywhere
    assert traces(catalog_texts(aws), BYSTANDER) == set(BYSTANDER)  # someone else's cart is untouched
    assert bootstrap.repository().find(f"email#{EMAIL}") is None
