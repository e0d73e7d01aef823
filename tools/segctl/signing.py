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


def segment_headers(secret: str, body: bytes) -> dict[str, str]:
    """Segment Webhooks: ``X-Signature`` = hex(HMAC-SHA1(shared secret, raw body))."""
    return {"Content-Type": "application/json",
            "X-Signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


def mandrill_delivery(key: str, url: str, events_json: str) -> tuple[bytes, dict[str, str]]:
    """Mandrill: a form body with ``mandrill_events``; ``X-Mandrill-Signature`` =
    base64(HMAC-SHA1(key, configured URL + "mandrill_events" + the JSON))."""
    from urllib.parse import urlencode

    signed = (url + "mandrill_events" + events_json).encode()
    signature = base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha1).digest()).decode()
    return urlencode({"mandrill_events": events_json}).encode(), {
        "Content-Type": "application/x-www-form-urlencoded", "X-Mandrill-Signature": signature}


def mailchimp_delivery(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """Mailchimp audience webhooks: unsigned form posts; the secret is the ``?token=`` of the URL."""
    from urllib.parse import urlencode

    return urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
