"""Sign deliveries the way each provider does, for the demo, `segctl` users and tests."""

from __future__ import annotations

import base64
import hashlib
import hmac


def shopify_signature(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256``: base64(HMAC-SHA256(secret, raw body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(secret: str, body: bytes, topic: str, event_id: str,
                    shop: str = "demo-shop.myshopify.com") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2024-04",
        "X-Shopify-Webhook-Id": event_id,
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Hmac-Sha256": shopify_signature(secret, body),
    }
