"""What the webhook path learns about a shop, in CatalogTable (the only code that knows its layout).

* ``product#<shop>#<id>`` -> ``category``: from Shopify ``products/create|update`` (product type,
  else the first tag), so order line items get a category for ``preferred_category`` and the
  category segments.
* ``cart#<shop>#<token>`` -> the cart's line items; ``cartowner#<shop>#<token>`` -> the identity of
  the checkout that carries that ``cart_token``. Carts carry no customer identity, so a cart
  becomes "added to cart" behaviour once a checkout names its owner. Both expire after 30 days;
  erasing the owner deletes both at once (``forget``).
"""

from __future__ import annotations

import json
from typing import Any

from ..domain.events import Identity, LineItem

CART_TTL_S = 30 * 86400
CART_PREFIX, OWNER_PREFIX = "cart#", "cartowner#"


class DynamoDBShopStore:
    """Implements :class:`~segmentation.service.ports.ShopStore` on CatalogTable."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def put_product(self, shop: str, product_id: str, category: str | None) -> None:
        key = {"key": {"S": f"product#{shop}#{product_id}"}}
        if category:
            self.client.put_item(TableName=self.table, Item={**key, "category": {"S": category}})
        else:
            self.client.delete_item(TableName=self.table, Key=key)

    def categories(self, shop: str, product_ids: list[str]) -> dict[str, str]:
        """product id -> category, for the ids known (one BatchGetItem per 100 ids)."""
        out: dict[str, str] = {}
        ids = list(dict.fromkeys(product_ids))
        for i in range(0, len(ids), 100):
            request = {self.table: {"Keys": [{"key": {"S": f"product#{shop}#{pid}"}} for pid in ids[i:i + 100]]}}
            while request:
                resp = self.client.batch_get_item(RequestItems=request)
                for item in resp["Responses"].get(self.table, []):
                    out[item["key"]["S"].rsplit("#", 1)[1]] = item["category"]["S"]
                request = resp.get("UnprocessedKeys") or None
        return out

    def put_cart(self, shop: str, token: str, items: list[LineItem], now: int) -> None:
        body = json.dumps([i.model_dump(mode="json", exclude_none=True) for i in items])
        self.client.put_item(TableName=self.table, Item={
            "key": {"S": f"{CART_PREFIX}{shop}#{token}"}, "items": {"S": body}, "expires": {"N": str(now + CART_TTL_S)}})

    def cart(self, shop: str, token: str) -> list[LineItem] | None:
        item = self.client.get_item(TableName=self.table, Key={"key": {"S": f"{CART_PREFIX}{shop}#{token}"}}).get("Item")
        return None if item is None else [LineItem.model_validate(i) for i in json.loads(item["items"]["S"])]

    def put_cart_owner(self, shop: str, token: str, identity: Identity, now: int) -> None:
        self.client.put_item(TableName=self.table, Item={
            "key": {"S": f"{OWNER_PREFIX}{shop}#{token}"}, "identity": {"S": identity.model_dump_json(exclude_none=True)},
            "expires": {"N": str(now + CART_TTL_S)}})

    def cart_owner(self, shop: str, token: str) -> Identity | None:
        item = self.client.get_item(TableName=self.table, Key={"key": {"S": f"{OWNER_PREFIX}{shop}#{token}"}}).get("Item")
        return None if item is None else Identity.model_validate_json(item["identity"]["S"])

    def forget(self, aliases: list[str]) -> int:
        """Erasure: delete the cart-owner records that name any of ``aliases``, and the carts they own
        (the person's product lines); returns how many owner records.

        A scan of the cart-owner records (they expire after 30 days, so there are few): erasure is
        rare and must not leave the person's identity or cart behind. Each cart is deleted before its
        owner record, so a failure part-way leaves the owner record to find again on a retry."""
        wanted = set(aliases)
        kwargs: dict[str, Any] = {"TableName": self.table, "FilterExpression": "begins_with(#k, :p)",
                                  "ExpressionAttributeNames": {"#k": "key"},
                                  "ExpressionAttributeValues": {":p": {"S": OWNER_PREFIX}}}
        deleted = 0
        while True:
            out = self.client.scan(**kwargs)
            for item in out["Items"]:
                key = item["key"]["S"]
                shop = key.split("#", 2)[1]
                identity = Identity.model_validate_json(item["identity"]["S"])
                if wanted & set(identity.alias_keys(shop or None)):
                    cart_key = CART_PREFIX + key.removeprefix(OWNER_PREFIX)  # the same <shop>#<token>
                    self.client.delete_item(TableName=self.table, Key={"key": {"S": cart_key}})
                    self.client.delete_item(TableName=self.table, Key={"key": item["key"]})
                    deleted += 1
            if "LastEvaluatedKey" not in out:
                return deleted
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def forget_shop(self, shop: str) -> int:
        """Delete everything learnt about one shop: its products, carts and cart owners (Shopify
        ``shop/redact``); returns how many items. A scan: it happens once per uninstalled shop."""
        deleted = 0
        for prefix in ("product#", CART_PREFIX, OWNER_PREFIX):
            kwargs: dict[str, Any] = {"TableName": self.table, "FilterExpression": "begins_with(#k, :p)",
                                      "ExpressionAttributeNames": {"#k": "key"}, "ProjectionExpression": "#k",
                                      "ExpressionAttributeValues": {":p": {"S": f"{prefix}{shop}#"}}}
            while True:
                out = self.client.scan(**kwargs)
                for item in out["Items"]:
                    self.client.delete_item(TableName=self.table, Key={"key": item["key"]})
                    deleted += 1
                if "LastEvaluatedKey" not in out:
                    break
                kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        return deleted
