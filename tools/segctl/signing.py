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


def woocommerce_headers(secret: str, body: bytes, topic: str, source: str = "https://shop.example.com/") -> dict[str, str]:
    """WooCommerce: ``X-WC-Webhook-Signature`` = base64(HMAC-SHA256(secret, raw body))."""
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    resource, event = topic.split(".", 1)
    return {"Content-Type": "application/json", "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event, "X-WC-Webhook-ID": "17", "X-WC-Webhook-Source": source,
            "X-WC-Webhook-Signature": signature}


def klaviyo_headers(secret: str, body: bytes, timestamp: str, webhook_id: str) -> dict[str, str]:
    """Klaviyo: ``Klaviyo-Signature`` = hex(HMAC-SHA256(secret, raw body + Klaviyo-Timestamp))."""
    signature = hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Klaviyo-Timestamp": timestamp, "Klaviyo-Webhook-Id": webhook_id,
            "Klaviyo-Signature": signature}


def sendgrid_headers(private_key, body: bytes, timestamp: str) -> dict[str, str]:
    """SendGrid: base64 DER ECDSA P-256/SHA-256 over timestamp + raw body."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode()}


def adobe_headers(private_key, body: bytes) -> dict[str, str]:
    """Adobe I/O Events: ``x-adobe-digital-signature-1`` = base64 RSA-SHA256 (PKCS#1 v1.5) of the body."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return {"Content-Type": "application/json", "x-adobe-digital-signature-1": base64.b64encode(signature).decode()}


def demo_keys() -> tuple[object, str, object, str]:
    """Fresh key pairs for the demo: (SendGrid EC private key, its public key as base64 DER,
    Adobe RSA private key, its public key as PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_public = base64.b64encode(ec_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_public = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return ec_key, ec_public, rsa_key, rsa_public
