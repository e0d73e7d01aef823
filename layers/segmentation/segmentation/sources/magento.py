"""Magento 2 / Adobe Commerce through Adobe I/O Events: the challenge, RSA signatures, and order,
customer and newsletter events.

See docs/webhooks.md#adobe-commerce. Adobe I/O Events registers a webhook with ``GET ?challenge=X`` (answered
with ``{"challenge": X}``), then POSTs each event as JSON signed twice, ``x-adobe-digital-signature-1``
and ``-2``: base64 RSA-SHA256 (PKCS#1 v1.5) signatures over the raw body by Adobe's two key pairs.
The public keys are configured (secret key ``magento``: one PEM per value, or both PEMs in one
value), never fetched: the ``x-adobe-public-key{1,2}-path`` headers are unsigned and an adapter does
no I/O. A delivery is accepted when either signature verifies under any configured key.

Adobe signs every customer's events with the same keys, so the signed ``recipient_client_id`` is
checked against the configured client id(s) when the secret key ``magento_client_id`` is set.

Payload shapes are read defensively (Adobe does not document them to the field): a CloudEvents object
(``type`` ``com.adobe.commerce.observer.<event>``, ``data.value`` holding the subscribed fields),
the same wrapped as ``{"event": {...}}``, or a JSON array of them (batched delivery). Magento stores
times in UTC as ``YYYY-MM-DD HH:MM:SS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..domain.events import (
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
)
from .errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SecretNotConfiguredError,
    SignatureMismatchError,
)
from .fields import ident as _id
from .fields import money as _money
from .fields import optional_ident as _optional_id
from .fields import quantity as read_quantity
from .fields import text as _text
from .fields import utc_time as _time
from .request import Handshake, Normalised, SecretLookup, WebhookRequest, reading

SOURCE = "magento"
CLIENT_ID_SECRET = "magento_client_id"
SIGNATURE_HEADERS = ("x-adobe-digital-signature-1", "x-adobe-digital-signature-2")
EVENT_ID_HEADER = "x-adobe-event-id"
JSON_TYPES = {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
#: Observer events (the part of the event type after ``observer.``).
ORDER_EVENTS = {"sales_order_save_after", "sales_order_save_commit_after", "sales_order_place_after"}
CUSTOMER_EVENTS = {
    "customer_save_after", "customer_save_commit_after", "customer_register_success",
    "customer_save_after_data_object", "customer_account_edited",
}
NEWSLETTER_EVENTS = {"newsletter_subscriber_save_after", "newsletter_subscriber_save_commit_after"}
#: Magento\Newsletter\Model\Subscriber::STATUS_* -> consent state.
SUBSCRIBER_STATUS = {1: "subscribed", 2: "pending", 3: "unsubscribed", 4: "pending"}
#: Order states / statuses in which the shopper has not paid yet: identity only, not a purchase.
UNPAID = {"pending_payment", "payment_review", "fraud"}
MAX_ITEMS = 100
MAX_BATCH = 1000
MAX_CHALLENGE = 512
_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z ]*PUBLIC KEY-----.+?-----END [A-Z ]*PUBLIC KEY-----", re.S)


# -- signatures ------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _load_keys(values: tuple[bytes, ...]) -> tuple[rsa.RSAPublicKey, ...]:
    """The RSA public keys in the configured values: PEM (SPKI or PKCS#1), several PEMs in one value,
    ``\\n`` written as two characters (as env files often hold it), or bare base64 DER."""
    keys: list[rsa.RSAPublicKey] = []
    for value in values:
        text = value.replace(b"\\n", b"\n").strip()
        blocks = _PEM_BLOCK.findall(text)
        if not blocks and text:
            blocks = [b"-----BEGIN PUBLIC KEY-----\n" + b"".join(text.split()) + b"\n-----END PUBLIC KEY-----"]
        for block in blocks:
            try:
                key = serialization.load_pem_public_key(block)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                continue
            if isinstance(key, rsa.RSAPublicKey):
                keys.append(key)
    return tuple(keys)


def public_keys(values: Sequence[bytes]) -> tuple[rsa.RSAPublicKey, ...]:
    keys = _load_keys(tuple(values))
    if not keys:
        raise SecretNotConfiguredError("the magento secret holds no RSA public key (PEM) to verify Adobe I/O Events")
    return keys


def verify(keys: Sequence[rsa.RSAPublicKey], body: bytes, signatures: Sequence[str | None]) -> None:
    """Raise :class:`SignatureMismatchError` unless one of ``signatures`` (base64) is an RSA-SHA256
    PKCS#1 v1.5 signature of ``body`` under one of ``keys``."""
    present = [s.strip() for s in signatures if s and s.strip()]
    if not present:
        raise SignatureMismatchError("missing x-adobe-digital-signature-1/-2 headers")
    for signature in present:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            continue
        for key in keys:
            try:
                key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
            except (InvalidSignature, ValueError, TypeError):
                continue
            return
    raise SignatureMismatchError("no x-adobe-digital-signature verifies the body with the configured keys")


def _client_ids(secrets: SecretLookup) -> list[str] | None:
    try:
        values = secrets(CLIENT_ID_SECRET)
    except SecretNotConfiguredError:
        return None
    ids = [v.decode("utf-8", "replace").strip() for v in values]
    return [i for i in ids if i] or None


# -- entry point -------------------------------------------------------------------------------------


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised | Handshake:
    """Answer the registration challenge, or verify then normalise one delivery."""
    if request.method == "GET":
        challenge = request.query.get("challenge")
        if not challenge:
            raise MalformedPayloadError("GET is only the Adobe I/O Events challenge: missing ?challenge=")
        if len(challenge) > MAX_CHALLENGE:
            raise MalformedPayloadError("challenge is too long")
        return Handshake(200, json.dumps({"challenge": challenge}), "application/json")
    if request.method != "POST":
        raise MethodNotAllowedError("Adobe I/O Events webhooks are POST (and GET for the challenge)")
    request.require_media_type("Adobe I/O Events webhooks", "application/json", *JSON_TYPES)
    verify(public_keys(secrets(SOURCE)), request.body, [request.header(h) for h in SIGNATURE_HEADERS])
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayloadError("body is not valid JSON (or nested too deeply)") from None
    return normalise(payload, request.body, request.header(EVENT_ID_HEADER), _client_ids(secrets))


def normalise(payload: Any, body: bytes, header_event_id: str | None = None,
              client_ids: list[str] | None = None) -> Normalised:
    """Turn one verified delivery (an event, a wrapped event, or a batch) into canonical events."""
    if isinstance(payload, dict) and "validationUrl" in payload and "type" not in payload:
        key = f"{SOURCE}#validation#{hashlib.sha256(body).hexdigest()}"
        return Normalised(key, [], ignored_reason="asynchronous validation request: open its validationUrl")
    if isinstance(payload, list):
        if not payload:
            raise MalformedPayloadError("empty batch")
        if len(payload) > MAX_BATCH:
            raise MalformedPayloadError(f"batch of more than {MAX_BATCH} events")
        envelopes = [_envelope(item) for item in payload]
    elif isinstance(payload, dict):
        envelopes = [_envelope(payload)]
    else:
        raise MalformedPayloadError("body must be a JSON object or array")
    if client_ids is not None:
        for envelope in envelopes:
            recipient = envelope.get("recipient_client_id", envelope.get("recipientclientid"))
            if recipient not in client_ids:
                raise SignatureMismatchError("recipient_client_id is not this integration's client id")
    ids = [_event_id(e) for e in envelopes]
    if len(envelopes) == 1:
        delivery = ids[0] or _key_part(header_event_id) or "sha256:" + hashlib.sha256(body).hexdigest()
    elif all(ids):
        delivery = "batch:" + hashlib.sha256("\x1f".join(sorted(ids)).encode()).hexdigest()
    else:
        delivery = "sha256:" + hashlib.sha256(body).hexdigest()
    delivery_key = f"{SOURCE}#{delivery}"
    events: list[CustomerEvent] = []
    reasons: list[str] = []
    for envelope in envelopes:
        with reading():
            event, reason = _normalise_event(envelope)
        if event is not None:
            events.append(event)
        if reason:
            reasons.append(reason)
    reason = "; ".join(dict.fromkeys(reasons))[:300] or None
    if not events:
        return Normalised(delivery_key, [], ignored_reason=reason or "nothing to use")
    return Normalised(delivery_key, events, ignored_reason=reason)


def _envelope(item: Any) -> dict:
    if not isinstance(item, dict):
        raise MalformedPayloadError("each event must be a JSON object")
    inner = item.get("event")
    if "type" not in item and isinstance(inner, dict):
        merged = dict(inner)  # {"event": {...}} as Runtime actions see it
        for key in ("recipient_client_id", "event_id"):
            if key in item and key not in merged:
                merged[key] = item[key]
        return merged
    return item


def _event_id(envelope: dict) -> str | None:
    """The event's UUID (signed, unlike the ``x-adobe-event-id`` header), if it is a usable key."""
    return _key_part(envelope.get("event_id", envelope.get("id")))


def _key_part(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text if 0 < len(text) <= 128 else None


def event_name(event_type: str) -> str:
    """``com.adobe.commerce.observer.sales_order_save_after`` -> ``sales_order_save_after``."""
    name = event_type.strip().lower()
    if "observer." in name:
        return name.rsplit("observer.", 1)[1]
    return name


# -- field helpers -------------------------------------------------------------------------------------


def _first_time(fields: Sequence[tuple[str, Any]]) -> datetime | None:
    for name, value in fields:
        if value not in (None, ""):
            return _time(value, name)
    return None


def _flag(value: Any) -> bool:
    """Magento booleans arrive as true/false, 0/1 or "0"/"1"."""
    return value is True or value == 1 or value == "1" or (isinstance(value, str) and value.lower() == "true")


# -- events ----------------------------------------------------------------------------------------------


def _normalise_event(envelope: dict) -> tuple[CustomerEvent | None, str | None]:
    raw_type = envelope.get("type", envelope.get("event_code"))
    if not isinstance(raw_type, str) or not raw_type.strip():
        raise ValueError("event has no type")
    name = event_name(raw_type)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise ValueError("event data must be an object")
    value = data.get("value", data)
    if not isinstance(value, dict):
        raise ValueError("data.value must be an object")
    source = data.get("source") if isinstance(data.get("source"), str) else envelope.get("source")
    shop = _text(source, "source", 200) if isinstance(source, str) else None
    event_time = _first_time([("time", envelope.get("time"))])
    if name in ORDER_EVENTS:
        order = value.get("order") if isinstance(value.get("order"), dict) else value
        return _order(shop, order, event_time)
    if name in CUSTOMER_EVENTS:
        return _customer(shop, _customer_data(value), event_time)
    if name in NEWSLETTER_EVENTS:
        subscriber = value.get("subscriber") if isinstance(value.get("subscriber"), dict) else value
        return _newsletter(shop, subscriber, event_time)
    return None, "event " + name[:80].encode("utf-8", "replace").decode("utf-8") + " is not used"


def _order_id(p: dict) -> str:
    for key in ("increment_id", "real_order_id", "entity_id", "id"):
        if p.get(key) not in (None, ""):
            return _id(p[key], key)
    raise ValueError("missing field 'increment_id'")


def _order_status(p: dict) -> str | None:
    state = p.get("state")
    status = p.get("status")
    words = {str(v).strip().lower() for v in (state, status) if isinstance(v, str | int) and not isinstance(v, bool)}
    if words & {"canceled", "cancelled"}:
        return "cancelled"
    if "closed" in words:
        return "refunded"  # closed: refunded in full by credit memos
    if words & UNPAID:
        return None
    return "placed"


def _order_identity(p: dict) -> Identity:
    billing = p.get("billing_address")
    phone = billing.get("telephone") if isinstance(billing, dict) else None
    guest = _flag(p.get("customer_is_guest"))
    cid = None if guest else _optional_id(p.get("customer_id"), "customer_id")
    return Identity(
        email=_text(p.get("customer_email"), "customer_email", 320),
        phone=_text(phone, "billing_address.telephone", 40),
        customer_ids={} if cid is None else {SOURCE: cid},
    )


def _items(p: dict) -> list[LineItem]:
    raw = p.get("items") or []
    if isinstance(raw, dict):
        raw = list(raw.values())  # keyed by item id
    if not isinstance(raw, list):
        raise ValueError("items must be a list")
    items = []
    for item in raw:
        if len(items) >= MAX_ITEMS:
            break
        if not isinstance(item, dict):
            raise ValueError("items entries must be objects")
        if item.get("parent_item_id") not in (None, "", 0, "0"):
            continue  # the child of a configurable/bundle product: its parent carries the line
        items.append(LineItem(
            product_id=_optional_id(item.get("product_id"), "items.product_id"),
            sku=_text(item.get("sku"), "items.sku", 128),
            title=_text(item.get("name"), "items.name"),
            quantity=read_quantity(item.get("qty_ordered", item.get("qty")), "items.qty_ordered"),
            price=_money(item.get("price"), "items.price"),
        ))
    return items


def _order(shop: str | None, p: dict, event_time: datetime | None) -> tuple[CustomerEvent | None, str | None]:
    order_id = _order_id(p)
    created = _first_time([("created_at", p.get("created_at"))]) or event_time
    if created is None:
        raise ValueError("missing field 'created_at' (subscribe it, or send the event time)")
    updated = _first_time([("updated_at", p.get("updated_at"))]) or event_time or created
    identity = _order_identity(p)
    if identity.is_empty():
        return None, "no customer email or id in the order"
    status = _order_status(p)
    first = _text(p.get("customer_firstname"), "customer_firstname", 100)
    last = _text(p.get("customer_lastname"), "customer_lastname", 100)
    if status is None:
        event = CustomerEvent(
            event_id=CustomerEvent.make_id(SOURCE, shop, "order-contact", order_id, updated.isoformat()),
            source=SOURCE, type=EventType.CUSTOMER, occurred_at=created, shop=shop, identity=identity,
            properties=CustomerProperties(first_name=first, last_name=last),
        )
        return event, "order is not paid yet: identity only, not a purchase"
    if p.get("grand_total") not in (None, ""):
        gross, currency = _money(p["grand_total"], "grand_total"), p.get("order_currency_code")
        refunded = _money(p.get("total_refunded"), "total_refunded")
    else:
        gross, currency = _money(p.get("base_grand_total"), "base_grand_total"), p.get("base_currency_code")
        refunded = _money(p.get("base_total_refunded"), "base_total_refunded")
    total = max(gross - abs(refunded), Decimal("0"))
    if status == "placed" and refunded and total == 0:
        status = "refunded"
    props = OrderProperties(
        order_id=order_id, status=status, total=total, currency=_text(currency, "order_currency_code", 8),
        updated_at=updated, items=_items(p),
    )
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "order", order_id, updated.isoformat(), status),
        source=SOURCE, type=EventType.ORDER, occurred_at=created, shop=shop, identity=identity, properties=props,
    ), None


def _customer_data(value: dict) -> dict:
    """The customer's fields: the value itself, or nested under a key some events use."""
    for key in ("customer", "customer_data_object", "data_object"):
        nested = value.get(key)
        if isinstance(nested, dict) and "email" not in value:
            return nested
    return value


def _customer(shop: str | None, p: dict, event_time: datetime | None) -> tuple[CustomerEvent | None, str | None]:
    cid = _optional_id(p.get("entity_id", p.get("id")), "entity_id")
    updated = _first_time([("updated_at", p.get("updated_at"))]) or event_time or _first_time(
        [("created_at", p.get("created_at"))])
    if updated is None:
        raise ValueError("missing field 'updated_at' (subscribe it, or send the event time)")
    identity = Identity(email=_text(p.get("email"), "email", 320), customer_ids={} if cid is None else {SOURCE: cid})
    if identity.is_empty():
        return None, "no customer email or id in the customer"
    consent = None
    extension = p.get("extension_attributes")
    if isinstance(extension, dict) and _flag(extension.get("is_subscribed")):
        # Only a yes is a fact: "not subscribed" here cannot tell an unsubscribe from never having opted in.
        consent = EmailConsent(state="subscribed", updated_at=None)
    attributes: dict[str, str | int] = {}
    group = p.get("group_id")
    if isinstance(group, int) and not isinstance(group, bool):
        group = str(group)
    group = _text(group, "group_id", 40)
    if group:
        attributes["customer_group_id"] = group
    props = CustomerProperties(
        first_name=_text(p.get("firstname", p.get("first_name")), "firstname", 100),
        last_name=_text(p.get("lastname", p.get("last_name")), "lastname", 100),
        email_consent=consent, attributes=attributes,
    )
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "customer", cid or identity.email, updated.isoformat()),
        source=SOURCE, type=EventType.CUSTOMER, occurred_at=updated, shop=shop, identity=identity, properties=props,
    ), None


def _newsletter(shop: str | None, p: dict, event_time: datetime | None) -> tuple[CustomerEvent | None, str | None]:
    raw = p.get("subscriber_status")
    try:
        status = int(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else None
    except ValueError:
        status = None
    if status not in SUBSCRIBER_STATUS:
        raise ValueError("subscriber_status must be 1, 2, 3 or 4")
    state = SUBSCRIBER_STATUS[status]
    changed = _first_time([("change_status_at", p.get("change_status_at"))]) or event_time
    if changed is None:
        raise ValueError("missing field 'change_status_at' (subscribe it, or send the event time)")
    cid = _optional_id(p.get("customer_id"), "customer_id")
    identity = Identity(
        email=_text(p.get("subscriber_email"), "subscriber_email", 320),
        customer_ids={} if cid is None else {SOURCE: cid},
    )
    if identity.is_empty():
        return None, "no subscriber email or customer id"
    subscriber = _optional_id(p.get("subscriber_id"), "subscriber_id") or identity.email or cid
    props = CustomerProperties(email_consent=EmailConsent(state=state, updated_at=changed))
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "newsletter", subscriber, state, changed.isoformat()),
        source=SOURCE, type=EventType.CUSTOMER, occurred_at=changed, shop=shop, identity=identity, properties=props,
    ), None
