"""WooCommerce: verify ``X-WC-Webhook-Signature`` and normalise order and customer topics.

See docs/webhooks.md#woocommerce and its test vector. The signature is base64(HMAC-SHA256(secret, raw body)) where
WooCommerce first HTML-entity-decodes the secret (``wp_specialchars_decode($secret, ENT_QUOTES)``).
The body is PHP ``json_encode`` output (``/`` escaped as ``\\/``), so it is verified as received and
never re-serialised. Only the body is signed: topic, source URL and ids travel in unsigned headers,
so none of them may choose what a body does (docs/webhooks.md):

* the topic must agree with the body: an order topic takes an order-shaped body, a customer topic a
  customer-shaped one (:data:`SHAPES`), else 400;
* the site (``X-WC-Webhook-Source``): with a secret per site (key ``woocommerce:<host>``) the
  signature authenticates the site; and where the body names its site (``_links`` and
  ``payment_url``), it must be the header's.

WooCommerce sends an unsigned ``webhook_id=<N>`` POST when a webhook is created and requires exactly
200 before it delivers anything; that ping is answered as a :class:`Handshake` and writes nothing.
WooCommerce never retries a failed delivery and disables a webhook after more than 5 consecutive
failures, so only genuinely bad deliveries are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from ..domain.events import (
    CustomerEvent,
    CustomerProperties,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
)
from .errors import MalformedPayloadError, MethodNotAllowedError, SecretNotConfiguredError, SignatureMismatchError
from .fields import ident as _id
from .fields import money as _money
from .fields import objects
from .fields import optional_ident as _optional_id
from .fields import quantity as read_quantity
from .fields import require as _require
from .fields import text as _text
from .fields import utc_time as _time
from .request import Handshake, Normalised, SecretLookup, WebhookRequest, hmac_matches, reading, shape_mismatch

SOURCE = "woocommerce"
SIGNATURE_HEADER = "x-wc-webhook-signature"
ORDER_TOPICS = {"order.created", "order.updated", "order.restored"}
CUSTOMER_TOPICS = {"customer.created", "customer.updated", "customer.restored"}
#: Order statuses (REST v3) and what they mean for the domain. ``None``: not a purchase yet.
ORDER_STATUS = {
    "processing": "placed",
    "completed": "placed",
    "cancelled": "cancelled",
    "failed": "cancelled",
    "trash": "cancelled",
    "refunded": "refunded",
    "pending": None,
    "on-hold": None,
    "checkout-draft": None,
}
#: The ping WooCommerce sends (unsigned) when a webhook is saved.
PING = re.compile(rb"webhook_id=[0-9]{1,20}")
#: ``woocommerce_webhook_hash_algorithm`` can change the HMAC; the default is sha256. The decoded MAC
#: length tells which one a site uses.
DIGESTS = {32: hashlib.sha256, 64: hashlib.sha512, 48: hashlib.sha384, 20: hashlib.sha1}
#: Line items kept per order in the canonical event (keeps it far below EventBridge's 256 KB).
MAX_ITEMS = 100
#: Unsigned header values are cut to this length before they reach the delivery key or ``shop``.
MAX_HEADER = 200
#: topic kind -> (keys of which the body needs at least one, keys it never has)
SHAPES = {
    "order": (("line_items", "order_key", "payment_method", "total", "status"),
              ("username", "role", "is_paying_customer", "avatar_url")),
    "customer": (("username", "role", "is_paying_customer", "avatar_url", "email"),
                 ("line_items", "order_key", "status", "total", "customer_id", "payment_url", "payment_method")),
}

# wp_specialchars_decode($text, ENT_QUOTES) (wp-includes/formatting.php): only these entities (numeric
# ones zero-padded or not, hex ones in either case), decoded in a single left-to-right pass.
_WP_ENTITY = re.compile(r"&(?:amp|lt|gt|quot);|&#0*(?:39|34|60|62|38);|&#[xX]0*(?:27|22|26);")
_WP_NAMED = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"'}


def _wp_entity(match: re.Match[str]) -> str:
    text = match.group(0)
    if text in _WP_NAMED:
        return _WP_NAMED[text]
    if text[2] in "xX":
        return chr(int(text[3:-1], 16))
    return chr(int(text[2:-1]))


def wp_specialchars_decode(secret: str) -> str:
    """PHP ``wp_specialchars_decode($secret, ENT_QUOTES)``, which WooCommerce applies to the secret."""
    return _WP_ENTITY.sub(_wp_entity, secret)


def signing_keys(secrets: Sequence[bytes]) -> list[bytes]:
    """The HMAC keys a configured secret may stand for: WooCommerce's own decoding of it and, in
    case an operator pasted a secret with other HTML entities, ``html.unescape`` of it."""
    keys: list[bytes] = []
    for secret in secrets:
        try:
            text = secret.decode("utf-8")
        except UnicodeDecodeError:
            candidates = [secret]
        else:
            candidates = [wp_specialchars_decode(text).encode(), html.unescape(text).encode()]
        for key in candidates:
            if key not in keys:
                keys.append(key)
    return keys


def verify(secrets: Sequence[bytes], body: bytes, signature: str | None) -> None:
    """Raise :class:`SignatureMismatchError` unless ``signature`` is base64(HMAC(secret, body))."""
    if not signature or not signature.strip():
        raise SignatureMismatchError("missing X-WC-Webhook-Signature header")
    try:
        received = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureMismatchError("X-WC-Webhook-Signature is not base64") from None
    digest = DIGESTS.get(len(received))
    if digest is None or not hmac_matches(signing_keys(secrets), body, received, digest):
        raise SignatureMismatchError("X-WC-Webhook-Signature does not match the body")


def _header(request: WebhookRequest, name: str) -> str | None:
    """An unsigned header, cut to a sane length and made storable (it goes into keys and ``shop``)."""
    value = (request.header(name) or "").strip()[:MAX_HEADER]
    return value.encode("utf-8", "replace").decode("utf-8") or None


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised | Handshake:
    """Answer the creation ping, or verify then normalise one delivery."""
    if request.method != "POST":
        raise MethodNotAllowedError("WooCommerce webhooks are POST")
    signature = request.header(SIGNATURE_HEADER)
    if (not signature or not signature.strip()) and PING.fullmatch(request.body.strip()):
        return Handshake(200, "", "text/plain")  # the unsigned ping on webhook creation: exactly 200
    request.require_media_type("WooCommerce webhooks", "application/json")
    # The site is its host, so http/https, a trailing slash or www. do not make two shops of one.
    shop = site_host(_header(request, "x-wc-webhook-source"))
    if shop is None:
        raise SignatureMismatchError("X-WC-Webhook-Source must be the site's URL")
    verify(site_secrets(secrets, shop), request.body, signature)
    topic = _header(request, "x-wc-webhook-topic")
    if not topic:
        resource, event = _header(request, "x-wc-webhook-resource"), _header(request, "x-wc-webhook-event")
        topic = f"{resource}.{event}" if resource and event else None
    if not topic:
        raise MalformedPayloadError("missing X-WC-Webhook-Topic header")
    webhook_id = _header(request, "x-wc-webhook-id") or "-"
    # No header identifies an event (the delivery id changes per attempt), and the payload is built
    # at delivery time: the same bytes from the same webhook are the same delivery.
    delivery_key = f"{SOURCE}#{shop or '-'}#{webhook_id}#{hashlib.sha256(request.body).hexdigest()}"
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayloadError("body is not valid JSON (or nested too deeply)") from None
    return normalise(topic.lower(), shop, payload, delivery_key)


def site_host(url: str | None) -> str | None:
    """The host of a site URL, lower-case and without ``www.`` (None unless an http(s) URL)."""
    try:
        parts = urlsplit(url or "")
        host = (parts.hostname or "").removeprefix("www.")
    except ValueError:
        return None
    return host if parts.scheme in ("http", "https") and host else None


def site_secrets(secrets: SecretLookup, host: str) -> list[bytes]:
    """The site's own secret (key ``woocommerce:<host>``) when configured, so the signature names the
    site; else the secret shared by every site (key ``woocommerce``)."""
    try:
        return secrets(f"{SOURCE}:{host}")
    except SecretNotConfiguredError:
        return secrets(SOURCE)


def check_shape(topic: str, shop: str | None, payload: dict) -> None:
    """400 unless the body has the shape of the topic's resource and names no other site than ``shop``
    (the topic and source headers are not signed)."""
    kind = topic.split(".", 1)[0]
    if kind not in SHAPES or topic.endswith(".deleted"):
        return
    why = shape_mismatch(payload, *SHAPES[kind])
    if why:
        raise MalformedPayloadError(f"the body is not a {kind} ({why}); X-WC-Webhook-Topic does not match it")
    expected = site_host(shop) or shop
    links = payload.get("_links") if isinstance(payload.get("_links"), dict) else {}
    named = [payload.get("payment_url")] + [
        link.get("href") for rel in ("self", "collection") if isinstance(links.get(rel), list)
        for link in links[rel] if isinstance(link, dict)]
    for url in named:
        if isinstance(url, str) and url and site_host(url) != expected:
            raise MalformedPayloadError("the body names another site than X-WC-Webhook-Source")


def normalise(topic: str, shop: str | None, payload: Any, delivery_key: str) -> Normalised:
    """Turn a WooCommerce REST payload into canonical events."""
    if not isinstance(payload, dict):
        raise MalformedPayloadError("body must be a JSON object")
    check_shape(topic, shop, payload)
    with reading():
        if topic in ORDER_TOPICS:
            event, reason = order_event(shop, payload)
            return Normalised(delivery_key, [event] if event else [], ignored_reason=reason)
        if topic in CUSTOMER_TOPICS:
            event = customer_event(shop, payload)
            if event is None:
                return Normalised(delivery_key, [], ignored_reason="no customer email or id in the payload")
            return Normalised(delivery_key, [event])
        if topic.endswith(".deleted"):
            return Normalised(delivery_key, [], ignored_reason=f"topic {topic} carries only an id")
        return Normalised(delivery_key, [], ignored_reason=f"topic {topic[:60]} is not used")


# -- field helpers -------------------------------------------------------------------------


def _created(p: dict) -> datetime:
    """Creation time: ``date_created_gmt`` (REST v2/v3) or ``created_at`` (legacy API, UTC)."""
    if p.get("date_created_gmt"):
        return _time(p["date_created_gmt"], "date_created_gmt")
    if p.get("created_at"):
        return _time(p["created_at"], "created_at")
    raise ValueError("missing field 'date_created_gmt' (use webhook API version v3)")


def _modified(p: dict, created: datetime) -> datetime:
    if p.get("date_modified_gmt"):
        return _time(p["date_modified_gmt"], "date_modified_gmt")
    if p.get("updated_at"):
        return _time(p["updated_at"], "updated_at")
    return created


def _object(value: Any, field: str) -> dict:
    if value is None or value == [] or value == "":
        return {}  # PHP serialises an empty array as []
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object")
    return value


def _items(payload: dict) -> list[LineItem]:
    items = []
    for item in objects(payload, "line_items", MAX_ITEMS):
        quantity = read_quantity(item.get("quantity"), "line_items.quantity")
        if item.get("price") not in (None, ""):
            price = _money(item["price"], "line_items.price")  # unit price (a number in REST v3)
        else:  # the line total after discounts, per unit
            total = _money(item.get("total"), "line_items.total")
            price = (total / quantity).quantize(Decimal("0.01")) if quantity > 0 else total
        items.append(LineItem(
            product_id=_optional_id(item.get("product_id"), "line_items.product_id"),
            sku=_text(item.get("sku"), "line_items.sku", 128),
            title=_text(item.get("name"), "line_items.name"),
            quantity=quantity,
            price=price,
        ))
    return items


def _identity(p: dict, customer_id: Any) -> Identity:
    billing = _object(p.get("billing"), "billing")
    email = p.get("email") or billing.get("email")
    phone = billing.get("phone")
    cid = _optional_id(customer_id, "customer_id")
    return Identity(
        email=_text(email, "billing.email", 320),
        phone=_text(phone, "billing.phone", 40),
        customer_ids={} if cid is None else {SOURCE: cid},
    )


def _attributes(p: dict) -> dict[str, str]:
    billing = _object(p.get("billing"), "billing")
    attributes = {}
    for key in ("country", "city"):
        value = _text(billing.get(key), f"billing.{key}", 100)
        if value:
            attributes[key] = value
    return attributes


def _names(p: dict) -> tuple[str | None, str | None]:
    billing = _object(p.get("billing"), "billing")
    first = _text(p.get("first_name"), "first_name", 100) or _text(billing.get("first_name"), "billing.first_name", 100)
    last = _text(p.get("last_name"), "last_name", 100) or _text(billing.get("last_name"), "billing.last_name", 100)
    return first, last


def _status(p: dict) -> str | None:
    """``placed``, ``cancelled``, ``refunded``, or None when the order is not a purchase yet."""
    raw = _require(p, "status")
    if not isinstance(raw, str):
        raise ValueError("status must be a string")
    status = raw.strip().lower().removeprefix("wc-")
    if status in ORDER_STATUS:
        return ORDER_STATUS[status]
    # A custom status (shipping plugins and the like): a purchase once the order has been paid.
    return "placed" if p.get("date_paid_gmt") or p.get("date_paid") else None


def _refunded(p: dict) -> Decimal:
    refunds = p.get("refunds") or []
    if not isinstance(refunds, list):
        raise ValueError("refunds must be a list")
    total = Decimal("0")
    for refund in refunds:
        if not isinstance(refund, dict):
            raise ValueError("refunds entries must be objects")
        total += abs(_money(refund.get("total"), "refunds.total", signed=True))  # negative strings in REST v3
    return total


# -- topics ----------------------------------------------------------------------------------


def order_event(shop: str | None, p: dict) -> tuple[CustomerEvent | None, str | None]:
    """The canonical event of one WooCommerce REST v3 order object (a webhook's body, or an order the
    REST API lists: the same object), and why it is not a purchase when it is not: a pending or
    on-hold order only tells who the customer is. ``(None, reason)`` when it names nobody. Raises
    ValueError naming the field it cannot read. Used by the webhook and by the history import
    (:mod:`segmentation.history.woocommerce`), so both make the same event with the same id."""
    order_id = _id(_require(p, "id"), "id")
    created = _created(p)
    updated = _modified(p, created)
    status = _status(p)
    identity = _identity(p, p.get("customer_id"))
    if identity.is_empty():
        return None, "no customer email, phone or id in the order"
    first, last = _names(p)
    if status is None:
        # Pending / on hold: not a purchase (yet), but it tells who the customer is.
        event = CustomerEvent(
            event_id=CustomerEvent.make_id(SOURCE, shop, "order-contact", order_id, updated.isoformat()),
            source=SOURCE, type=EventType.CUSTOMER, occurred_at=created, shop=shop, identity=identity,
            properties=CustomerProperties(first_name=first, last_name=last, attributes=_attributes(p)),
        )
        return event, "order is not paid yet: identity only, not a purchase"
    gross = _money(p.get("total"), "total")
    refunded = _refunded(p)
    total = max(gross - refunded, Decimal("0"))
    if status == "placed" and refunded > 0 and total == 0:
        status = "refunded"  # refunded in full without the status changing
    props = OrderProperties(
        order_id=order_id, status=status, total=total, currency=_text(p.get("currency"), "currency", 8),
        updated_at=updated, items=_items(p),
    )
    event = CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "order", order_id, updated.isoformat(), status),
        source=SOURCE, type=EventType.ORDER, occurred_at=created, shop=shop, identity=identity, properties=props,
    )
    return event, None


def customer_event(shop: str | None, p: dict) -> CustomerEvent | None:
    """The canonical event of one WooCommerce REST v3 customer object (a webhook's body, or a customer
    the REST API lists), or None when it names nobody. Raises ValueError naming the field it cannot
    read. Shared by the webhook and the history import, as :func:`order_event` is."""
    customer_id = _id(_require(p, "id"), "id")
    updated = _modified(p, _created(p))
    identity = _identity(p, customer_id)
    if identity.is_empty():
        return None
    first, last = _names(p)
    # WooCommerce core has no marketing-consent field: consent is left to the ESPs.
    props = CustomerProperties(first_name=first, last_name=last, attributes=_attributes(p))
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "customer", customer_id, updated.isoformat()),
        source=SOURCE, type=EventType.CUSTOMER, occurred_at=updated, shop=shop, identity=identity, properties=props,
    )
