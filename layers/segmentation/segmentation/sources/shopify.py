"""Shopify: verify ``X-Shopify-Hmac-Sha256`` and normalise order, checkout and customer topics.

Only the body is signed; topic, shop domain and ids travel in unsigned headers
(docs/webhooks.md). So none of them may choose what a body does:

* the topic must agree with the body: each topic family has a shape (:data:`SHAPES`), and a body
  that is not of its topic's shape is a 400 (an order re-sent as ``customers/redact`` erases nobody);
  within a family the topic changes nothing (an order is cancelled by its ``cancelled_at``, not
  by the ``orders/cancelled`` header);
* the shop: with a secret per shop (key ``shopify:<shop>.myshopify.com``) the secret that verifies
  the body names the shop, so a body re-sent with another shop's header is a 401; where the body
  names its shop (the privacy topics' ``shop_domain``), it must match the header;
* the delivery ids only name the delivery in the log (with a hash of the body); event ids come
  from the body, so a forged id changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..domain.events import (
    CheckoutProperties,
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    ErasureProperties,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
    RefundProperties,
    normalise_category,
)
from .errors import MalformedPayloadError, MethodNotAllowedError, SecretNotConfiguredError, SignatureMismatchError
from .fields import ident as _id
from .fields import money as _money
from .fields import objects
from .fields import quantity as _quantity
from .fields import require as _require
from .fields import utc_time as _time
from .request import (
    CartInfo,
    Normalised,
    ProductInfo,
    SecretLookup,
    WebhookRequest,
    hmac_matches,
    reading,
    shape_mismatch,
)

SOURCE = "shopify"
ORDER_TOPICS = {"orders/create", "orders/updated", "orders/cancelled", "orders/paid", "orders/fulfilled"}
CHECKOUT_TOPICS = {"checkouts/create", "checkouts/update"}
CUSTOMER_TOPICS = {"customers/create", "customers/update"}
CONSENT_TOPIC = "customers_email_marketing_consent/update"
PRODUCT_TOPICS = {"products/create", "products/update"}
CART_TOPICS = {"carts/create", "carts/update"}
REDACT_TOPIC = "customers/redact"
IGNORED = {
    "customers/delete": "the shop deleted its customer record; the profile stays until customers/redact or DELETE /profiles/{id}",
}
#: Line items kept per order in the canonical event (keeps it far below EventBridge's 256 KB).
MAX_ITEMS = 100
CONSENT_STATES = {"subscribed", "not_subscribed", "pending", "unsubscribed", "redacted", "invalid"}
SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\.myshopify\.com")

# -- shapes: what a body of each topic family has (any of ``needs``) and never has (``never``) ----------
PRIVACY_KEYS = ("shop_id", "shop_domain", "orders_to_redact", "orders_requested", "data_request")
ORDER_KEYS = ("financial_status", "order_number", "processed_at", "cancelled_at", "order_status_url",
              "current_total_price", "fulfillment_status")
CHECKOUT_KEYS = ("abandoned_checkout_url", "completed_at")
PRODUCT_KEYS = ("product_type", "variants", "handle", "vendor")
#: family -> (keys of which it needs at least one, keys it never has)
SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "order": (("line_items", "total_price", "subtotal_price", *ORDER_KEYS),
              (*PRIVACY_KEYS, *CHECKOUT_KEYS, *PRODUCT_KEYS, "order_id", "customer_id")),
    "checkout": (CHECKOUT_KEYS, (*PRIVACY_KEYS, *ORDER_KEYS, *PRODUCT_KEYS, "order_id", "customer_id")),
    "cart": (("line_items",), (*PRIVACY_KEYS, *ORDER_KEYS, *CHECKOUT_KEYS, *PRODUCT_KEYS, "email", "customer",
                               "total_price", "order_id")),
    "customer": (("id",), (*PRIVACY_KEYS, *ORDER_KEYS, *CHECKOUT_KEYS, *PRODUCT_KEYS, "customer", "line_items",
                           "order_id", "customer_id", "total_price")),
    "consent": (("email_marketing_consent",), (*PRIVACY_KEYS, "id", "customer", "line_items", "order_id")),
    "product": (PRODUCT_KEYS, (*PRIVACY_KEYS, *ORDER_KEYS, *CHECKOUT_KEYS, "email", "customer", "line_items",
                               "order_id")),
    "refund": (("transactions", "refund_line_items"), (*PRIVACY_KEYS, *ORDER_KEYS, *CHECKOUT_KEYS, "customer",
                                                        "email", "line_items")),
    "customer_redact": (("orders_to_redact",), ("orders_requested", "data_request", "line_items")),
    "data_request": (("orders_requested", "data_request"), ("orders_to_redact", "line_items")),
    "shop_redact": (("shop_id", "shop_domain"), ("customer", "orders_to_redact", "orders_requested",
                                                 "data_request", "line_items")),
}


def family(topic: str) -> str | None:
    """The shape family of a topic (None: a topic this adapter does not use)."""
    if topic in ORDER_TOPICS:
        return "order"
    return {**dict.fromkeys(CHECKOUT_TOPICS, "checkout"), **dict.fromkeys(CART_TOPICS, "cart"),
            **dict.fromkeys(CUSTOMER_TOPICS, "customer"), **dict.fromkeys(PRODUCT_TOPICS, "product"),
            CONSENT_TOPIC: "consent", "refunds/create": "refund", REDACT_TOPIC: "customer_redact",
            "customers/data_request": "data_request", "shop/redact": "shop_redact"}.get(topic)


def check_shape(topic: str, shop: str, payload: dict) -> None:
    """400 unless ``payload`` has the shape of ``topic``'s family and names no other shop than ``shop``.

    The topic header is not signed: without this, a validly signed order re-sent with
    ``X-Shopify-Topic: customers/redact`` would erase its customer."""
    kind = family(topic)
    if kind is None:
        return
    why = shape_mismatch(payload, *SHAPES[kind])
    if why:
        raise MalformedPayloadError(f"the body is not a {topic} payload ({why}); X-Shopify-Topic does not match it")
    named = payload.get("shop_domain")
    if named is not None and named != shop:
        raise MalformedPayloadError("shop_domain in the body does not match X-Shopify-Shop-Domain")


def verify(secrets: Sequence[bytes], body: bytes, signature: str | None) -> None:
    """Raise :class:`SignatureMismatchError` unless ``signature`` is base64(HMAC-SHA256(secret, body))."""
    if not signature:
        raise SignatureMismatchError("missing X-Shopify-Hmac-Sha256 header")
    try:
        received = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureMismatchError("X-Shopify-Hmac-Sha256 is not base64") from None
    if not hmac_matches(secrets, body, received):
        raise SignatureMismatchError("X-Shopify-Hmac-Sha256 does not match the body")


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised:
    """Verify then normalise one HTTPS delivery."""
    if request.method != "POST":
        raise MethodNotAllowedError("Shopify webhooks are POST")
    request.require_media_type("Shopify webhooks", "application/json")
    shop = (request.header("x-shopify-shop-domain") or "").strip().lower()
    if not SHOP_DOMAIN.fullmatch(shop):
        raise SignatureMismatchError("X-Shopify-Shop-Domain must be the shop's <name>.myshopify.com domain")
    verify(shop_secrets(secrets, shop), request.body, request.header("x-shopify-hmac-sha256"))
    topic = request.header("x-shopify-topic")
    if not topic:
        raise MalformedPayloadError("missing X-Shopify-Topic header")
    delivery_id = request.header("x-shopify-event-id") or request.header("x-shopify-webhook-id") or "-"
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayloadError("body is not valid JSON (or nested too deeply)") from None
    # The ids are unsigned: the body's hash in the key keeps a forged id from claiming a real delivery.
    delivery_key = f"{SOURCE}#{shop}#{topic}#{delivery_id[:128]}#{hashlib.sha256(request.body).hexdigest()[:32]}"
    return normalise(topic, shop, payload, delivery_key, now)


def shop_secrets(secrets: SecretLookup, shop: str) -> list[bytes]:
    """The shop's own secret (key ``shopify:<shop>``: a custom app per shop) when configured, so the
    signature authenticates the shop too; else the secret shared by every shop (key ``shopify``)."""
    try:
        return secrets(f"{SOURCE}:{shop}")
    except SecretNotConfiguredError:
        return secrets(SOURCE)


def normalise(topic: str, shop: str, payload: Any, delivery_key: str, now: int = 0) -> Normalised:
    """Turn a Shopify payload (from HTTPS or EventBridge) into canonical events."""
    if not isinstance(payload, dict):
        raise MalformedPayloadError("body must be a JSON object")
    check_shape(topic, shop, payload)
    with reading():
        if topic in ORDER_TOPICS:
            event = _order(shop, payload)
        elif topic in CHECKOUT_TOPICS:
            event = _checkout(shop, payload)
        elif topic in CUSTOMER_TOPICS:
            event = _customer(shop, payload)
        elif topic in PRODUCT_TOPICS:
            return Normalised(delivery_key, [], products=[_product(shop, payload)])
        elif topic in CART_TOPICS:
            return Normalised(delivery_key, [], cart=_cart(shop, payload, now))
        elif topic == CONSENT_TOPIC:
            event = _consent_update(shop, payload, now)
        elif topic == REDACT_TOPIC:
            event = _redact(shop, payload, now)
        elif topic == "refunds/create":
            event = _refund(shop, payload)
        elif topic == "customers/data_request":
            event = _redact(shop, payload, now, EventType.DATA_REQUEST)
        elif topic == "shop/redact":
            event = CustomerEvent(
                event_id=CustomerEvent.make_id(SOURCE, shop, "shop-redact"), source=SOURCE,
                type=EventType.SHOP_ERASURE, occurred_at=datetime.fromtimestamp(now, UTC), shop=shop,
                identity=Identity(), properties=ErasureProperties(reason="shopify shop/redact"))
        elif topic in IGNORED:
            return Normalised(delivery_key, [], ignored_reason=IGNORED[topic])
        else:
            return Normalised(delivery_key, [], ignored_reason=f"topic {topic} is not used")
    if event is None:
        return Normalised(delivery_key, [], ignored_reason="no customer email or id in the payload")
    return Normalised(delivery_key, [event])


# -- field helpers -------------------------------------------------------------------------


def _identity(payload: dict) -> Identity:
    customer = payload.get("customer")
    if customer is not None and not isinstance(customer, dict):
        raise ValueError("customer must be an object")
    customer = customer or {}
    email = payload.get("email") or customer.get("email")
    phone = payload.get("phone") or customer.get("phone")
    cid = customer.get("id")
    if email is not None and not isinstance(email, str):
        raise ValueError("email must be a string")
    if phone is not None and not isinstance(phone, str):
        raise ValueError("phone must be a string")
    return Identity(
        email=email, phone=phone, customer_ids={} if cid is None else {SOURCE: _id(cid, "customer.id")}
    )


def _items(payload: dict) -> list[LineItem]:
    items = []
    for item in objects(payload, "line_items", MAX_ITEMS):
        pid = item.get("product_id")
        items.append(
            LineItem(
                product_id=None if pid is None else _id(pid, "line_items.product_id"),
                sku=item.get("sku") or None,
                title=item.get("title") or None,
                quantity=_quantity(item.get("quantity") or 1, "line_items.quantity"),
                price=_money(item.get("price"), "line_items.price"),
            )
        )
    return items


# -- topics ----------------------------------------------------------------------------------


def _order(shop: str, p: dict) -> CustomerEvent | None:
    order_id = _id(_require(p, "id"), "id")
    created = _time(_require(p, "created_at"), "created_at")
    updated = _time(p.get("updated_at") or p.get("cancelled_at") or p["created_at"], "updated_at")
    if p.get("cancelled_at"):  # from the body: the unsigned topic header never cancels an order
        status = "cancelled"
    elif p.get("financial_status") == "refunded":
        status = "refunded"
    else:
        status = "placed"
    identity = _identity(p)
    if identity.is_empty():
        return None
    identity = identity.model_copy(update={"order_ref": order_id})  # refunds/create finds the order by it
    # current_total_price reflects refunds and edits; total_price is the amount at checkout.
    total_key = "current_total_price" if "current_total_price" in p else "total_price"
    total = _money(p.get(total_key), total_key)
    props = OrderProperties(
        order_id=order_id, status=status, total=total, currency=p.get("currency"),
        updated_at=updated, items=_items(p),
    )
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "order", order_id, updated.isoformat(), status),
        source=SOURCE, type=EventType.ORDER, occurred_at=created, shop=shop,
        identity=identity, properties=props,
    )


def _checkout(shop: str, p: dict) -> CustomerEvent | None:
    checkout_id = _id(p.get("token") or _require(p, "id"), "token")
    created = _time(_require(p, "created_at"), "created_at")
    updated = _time(p.get("updated_at") or p["created_at"], "updated_at")
    completed = p.get("completed_at")
    identity = _identity(p)
    if identity.is_empty():
        return None
    props = CheckoutProperties(
        checkout_id=checkout_id,
        cart_token=p.get("cart_token") if isinstance(p.get("cart_token"), str) else None,
        completed_at=_time(completed, "completed_at") if completed else None,
        updated_at=updated, total=_money(p.get("total_price"), "total_price"),
        currency=p.get("currency"),
    )
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "checkout", checkout_id, updated.isoformat()),
        source=SOURCE, type=EventType.CHECKOUT, occurred_at=created, shop=shop,
        identity=identity, properties=props,
    )


def _consent(p: dict) -> EmailConsent | None:
    consent = p.get("email_marketing_consent")
    if isinstance(consent, dict) and consent.get("state"):
        state = str(consent["state"]).lower()
        if state not in CONSENT_STATES:
            raise ValueError(f"unknown email_marketing_consent.state {state[:30]!r}")
        at = consent.get("consent_updated_at")
        return EmailConsent(state=state, updated_at=_time(at, "consent_updated_at") if at else None)
    if "accepts_marketing" in p:  # API versions before 2022-04
        at = p.get("accepts_marketing_updated_at")
        return EmailConsent(
            state="subscribed" if p["accepts_marketing"] is True else "not_subscribed",
            updated_at=_time(at, "accepts_marketing_updated_at") if at else None,
        )
    return None


def _customer(shop: str, p: dict) -> CustomerEvent | None:
    customer_id = _id(_require(p, "id"), "id")
    updated = _time(p.get("updated_at") or _require(p, "created_at"), "updated_at")
    email = p.get("email")
    if email is not None and not isinstance(email, str):
        raise ValueError("email must be a string")
    tags = p.get("tags") or ""
    if not isinstance(tags, str):
        raise ValueError("tags must be a comma-separated string")
    props = CustomerProperties(
        first_name=p.get("first_name") or None,
        last_name=p.get("last_name") or None,
        tags=[t.strip() for t in tags.split(",") if t.strip()],
        email_consent=_consent(p),
    )
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "customer", customer_id, updated.isoformat()),
        source=SOURCE, type=EventType.CUSTOMER, occurred_at=updated, shop=shop,
        identity=Identity(email=email, phone=p.get("phone") or None, customer_ids={SOURCE: customer_id}),
        properties=props,
    )


def _consent_update(shop: str, p: dict, now: int) -> CustomerEvent | None:
    """``customers_email_marketing_consent/update``: {customer_id, email_address, email_marketing_consent}."""
    cid = p.get("customer_id")
    email = p.get("email_address")
    if email is not None and not isinstance(email, str):
        raise ValueError("email_address must be a string")
    consent = _consent(p)
    if consent is None:
        raise ValueError("missing email_marketing_consent.state")
    identity = Identity(email=email, customer_ids={} if cid is None else {SOURCE: _id(cid, "customer_id")})
    if identity.is_empty():
        return None
    at = consent.updated_at or datetime.fromtimestamp(now, UTC)
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "consent", cid, email, consent.state, at.isoformat()),
        source=SOURCE, type=EventType.CUSTOMER, occurred_at=at, shop=shop, identity=identity,
        properties=CustomerProperties(email_consent=consent),
    )


def _redact(shop: str, p: dict, now: int, type_: EventType = EventType.ERASURE) -> CustomerEvent | None:
    """``customers/redact`` / ``customers/data_request`` (mandatory privacy topics): about one person."""
    customer = p.get("customer")
    if not isinstance(customer, dict):
        raise ValueError("customer must be an object")
    cid = customer.get("id")
    identity = Identity(email=customer.get("email") if isinstance(customer.get("email"), str) else None,
                        customer_ids={} if cid is None else {SOURCE: _id(cid, "customer.id")})
    if identity.is_empty():
        return None
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, type_.value, cid, identity.email, p.get("data_request", {}).get("id")
                                       if isinstance(p.get("data_request"), dict) else None),
        source=SOURCE, type=type_, occurred_at=datetime.fromtimestamp(now, UTC), shop=shop,
        identity=identity, properties=ErasureProperties(reason="shopify customers/redact"),
    )


def from_eventbridge(event: dict, now: int) -> Normalised:
    """A delivery through Shopify's EventBridge partner event source: no HMAC (EventBridge is the
    authenticated channel); ``detail.metadata`` carries the headers, ``detail.payload`` the body."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MalformedPayloadError("EventBridge event without a detail object")
    metadata = {str(k).lower(): v for k, v in (detail.get("metadata") or {}).items()}
    topic = metadata.get("x-shopify-topic") or event.get("detail-type")
    if not isinstance(topic, str) or not topic:
        raise MalformedPayloadError("no X-Shopify-Topic in detail.metadata")
    shop = str(metadata.get("x-shopify-shop-domain") or "-")
    delivery = metadata.get("x-shopify-event-id") or metadata.get("x-shopify-webhook-id") or event.get("id")
    return normalise(topic, shop, detail.get("payload"), f"{SOURCE}#{shop}#{topic}#{delivery}", now)


def _product(shop: str, p: dict) -> ProductInfo:
    """``products/*``: the category is the product type, else the first tag."""
    product_type = p.get("product_type")
    tags = p.get("tags") or ""
    if product_type is not None and not isinstance(product_type, str):
        raise ValueError("product_type must be a string")
    if not isinstance(tags, str):
        raise ValueError("tags must be a comma-separated string")
    first_tag = next((t.strip() for t in tags.split(",") if t.strip()), None)
    return ProductInfo(shop=shop, product_id=_id(_require(p, "id"), "id"),
                       category=normalise_category(product_type or first_tag))


def _cart(shop: str, p: dict, now: int) -> CartInfo:
    """``carts/*``: no customer identity; joined to a checkout through ``cart_token``."""
    token = _id(p.get("token") or _require(p, "id"), "token")
    updated = p.get("updated_at") or p.get("created_at")
    at = int(_time(updated, "updated_at").timestamp()) if updated else now
    return CartInfo(shop=shop, token=token, items=_items(p), updated_at=at)


def _refund(shop: str, p: dict) -> CustomerEvent:
    """``refunds/create``: {id, order_id, created_at, transactions[{amount, kind, status}]}. It carries no
    customer identity: the order id leads to the profile that placed the order."""
    order_id = _id(_require(p, "order_id"), "order_id")
    refund_id = _id(_require(p, "id"), "id")
    created = _time(_require(p, "created_at"), "created_at")
    transactions = p.get("transactions") or []
    if not isinstance(transactions, list):
        raise ValueError("transactions must be a list")
    amount = sum(
        (_money(t.get("amount"), "transactions.amount") for t in transactions
         if isinstance(t, dict) and t.get("kind") == "refund" and t.get("status", "success") == "success"),
        Decimal(0),
    )
    return CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, shop, "refund", order_id, refund_id),
        source=SOURCE, type=EventType.REFUND, occurred_at=created, shop=shop,
        identity=Identity(order_ref=order_id),
        properties=RefundProperties(order_id=order_id, refund_id=refund_id, amount=amount, refunded_at=created),
    )
