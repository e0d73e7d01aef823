"""Segment (Webhooks Actions destination): verify ``X-Signature``, normalise Segment-spec messages.

See docs/webhooks.md#segment and its test vector. With a Shared Secret set, Segment sends
``X-Signature`` = lowercase hex HMAC-SHA1(secret, body), the body being
``JSON.stringify`` of the mapped ``data`` (by default the whole message). It is verified
over the raw body bytes before anything is parsed. No timestamp is signed, so there is no
replay window: a retry carries the same event id, derived from the message's ``messageId``,
and the profile path counts it once.

A body is one message (a JSON object) or a batch (a JSON array of messages). A batch is
verified over its whole raw body. Segment's batching is documented to sign only the first
event (Twilio's support notes; not in Segment's own docs), so such deliveries are refused with 401: use one
message per request when a shared secret is set.

Mapping (Segment spec, e-commerce v2 names; matched case-insensitively, ``_`` as a space):

* ``page`` -> PAGE_VIEWED (url from ``properties.url`` or ``context.page.url``; category from
  the message's ``category`` or ``properties.category``)
* ``track`` "Product Viewed" -> PRODUCT_VIEWED, "Product List Viewed" -> CATEGORY_VIEWED,
  "Product Added" -> PRODUCT_ADDED, "Cart Viewed" -> PAGE_VIEWED with category ``cart``
  (page-view categories feed no category segment, so this only records the visit),
  "Checkout Started" -> CHECKOUT, "Order Completed" -> ORDER placed, "Order Refunded" /
  "Order Cancelled" -> ORDER refunded / cancelled, and our conventions "Page Scrolled"
  ``{depth_percent}`` -> PAGE_SCROLLED and "Page Engaged" ``{seconds}`` (or
  ``seconds_on_page``) -> PAGE_ENGAGED. Other track events are acknowledged without events.
* ``identify`` -> CUSTOMER: names from traits, other scalar and list traits as attributes
  (email, phone, address and other contact details never become attributes).
* ``screen``, ``group``, ``alias`` -> acknowledged without events.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from ..domain.events import (
    BrowseProperties,
    CheckoutProperties,
    CustomerEvent,
    CustomerProperties,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
)
from .errors import MalformedPayloadError, MethodNotAllowedError, SignatureMismatchError
from .fields import money as _amount
from .fields import utc_time as _time
from .request import Normalised, SecretLookup, WebhookRequest, hmac_matches, malformed_reason

SOURCE = "segment"
METHODS = {"POST", "PUT", "PATCH"}  # the Send action's method is configurable
#: Segment's Webhooks (Actions) batch size is at most 4000.
MAX_BATCH = 4000
MAX_ITEMS = 100
MAX_ATTRIBUTES = 50
MAX_TEXT = 256
MAX_URL = 2048
MAX_SECONDS = 86_400
_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")

BROWSE_EVENTS = {
    "product viewed": EventType.PRODUCT_VIEWED,
    "product list viewed": EventType.CATEGORY_VIEWED,
    "product added": EventType.PRODUCT_ADDED,
    "cart viewed": EventType.PAGE_VIEWED,
    "page scrolled": EventType.PAGE_SCROLLED,
    "page engaged": EventType.PAGE_ENGAGED,
}
ORDER_EVENTS = {"order completed": "placed", "order refunded": "refunded", "order cancelled": "cancelled"}
CHECKOUT_EVENTS = {"checkout started"}
#: Trait keys (lower-cased, without ``_``/``-``/spaces) that are identity or names, never attributes.
IDENTITY_TRAITS = {"email", "phone", "firstname", "lastname", "name", "address", "id", "userid", "anonymousid"}
#: Trait keys containing any of these are contact details and never become attributes.
CONTACT_WORDS = ("email", "phone", "mobile", "address", "street", "postal", "zip", "password")
#: Parts of ``traits.address`` coarse enough for targeting.
ADDRESS_PARTS = ("city", "state", "country")


def verify(secrets: list[bytes], body: bytes, signature: str | None) -> None:
    """Raise :class:`SignatureMismatchError` unless ``signature`` is hex HMAC-SHA1(secret, body)."""
    if not signature:
        raise SignatureMismatchError("missing X-Signature header")
    signature = signature.strip()
    if not _SIGNATURE.fullmatch(signature):
        raise SignatureMismatchError("X-Signature is not a hex HMAC-SHA1")
    if not hmac_matches(secrets, body, bytes.fromhex(signature), hashlib.sha1):
        raise SignatureMismatchError("X-Signature does not match the body")


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised:
    """Verify then normalise one delivery (a message or a batch of messages)."""
    if request.method not in METHODS:
        raise MethodNotAllowedError("Segment webhooks are POST, PUT or PATCH")
    verify(secrets(SOURCE), request.body, request.header("x-signature"))
    request.require_media_type("Segment webhooks", "application/json")
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayloadError("body is not valid JSON (or nested too deeply)") from None
    body_hash = "sha256:" + hashlib.sha256(request.body).hexdigest()
    if isinstance(payload, dict):
        key = _message_key(payload) or body_hash
        try:
            event, reason = _message(payload, key)
        except ValidationError as exc:
            raise MalformedPayloadError(malformed_reason(exc)) from None
        except (ValueError, TypeError, KeyError, InvalidOperation, OverflowError, RecursionError) as exc:
            raise MalformedPayloadError(str(exc) or type(exc).__name__) from None
        return Normalised(f"{SOURCE}#{key}", [event] if event else [], ignored_reason=reason)
    if isinstance(payload, list):
        return _batch(payload, body_hash)
    raise MalformedPayloadError("body must be a Segment message (JSON object) or a batch of them (JSON array)")


def _batch(messages: list, body_hash: str) -> Normalised:
    """Normalise a batch: each message on its own; a message that cannot be used is skipped and counted
    (rejecting the whole batch would lose the valid ones, since Segment does not retry a 400)."""
    if len(messages) > MAX_BATCH:
        raise MalformedPayloadError(f"a batch holds at most {MAX_BATCH} messages")
    if not all(isinstance(m, dict) for m in messages):
        raise MalformedPayloadError("batch entries must be Segment messages (JSON objects)")
    if not messages:
        return Normalised(f"{SOURCE}#batch:{body_hash}", [], ignored_reason="empty batch")
    ids = [_message_key(m) for m in messages]
    if all(ids):
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        delivery_key = f"{SOURCE}#batch:sha256:{digest}"
    else:  # without every messageId the verified body itself identifies the delivery
        delivery_key = f"{SOURCE}#batch:{body_hash}"
    events: list[CustomerEvent] = []
    reasons: dict[str, int] = {}
    for i, (message, key) in enumerate(zip(messages, ids, strict=True)):
        try:
            event, reason = _message(message, key or f"{body_hash}:{i}")
        except ValidationError as exc:
            event, reason = None, "invalid: " + malformed_reason(exc)
        except (ValueError, TypeError, KeyError, InvalidOperation, OverflowError, RecursionError) as exc:
            event, reason = None, "invalid: " + (str(exc) or type(exc).__name__)
        if event is not None:
            events.append(event)
        else:
            reasons[reason or "not used"] = reasons.get(reason or "not used", 0) + 1
    ignored = None
    if reasons:
        skipped = sum(reasons.values())
        detail = "; ".join(f"{r} (x{n})" for r, n in list(reasons.items())[:3])
        ignored = f"{skipped} of {len(messages)} messages not used: {detail}"
    return Normalised(delivery_key, events, ignored_reason=ignored)


def _message_key(message: dict) -> str | None:
    """The message's ``messageId`` (hashed when long or not plain UTF-8), or None when absent."""
    mid = message.get("messageId")
    if isinstance(mid, bool) or not isinstance(mid, str | int):
        return None
    text = str(mid).strip()
    if not text:
        return None
    raw = text.encode("utf-8", "surrogatepass")
    if len(text) > 200 or "#" in text or not text.isprintable() or not text.isascii():
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    return text


# -- one message ---------------------------------------------------------------------------


def _message(msg: dict, key: str) -> tuple[CustomerEvent | None, str | None]:
    """One message -> (event, None), or (None, why it is not used). Raises ValueError when invalid."""
    kind = msg.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError("missing field 'type'")
    kind = kind.strip().lower()
    if kind == "page":
        etype, name = EventType.PAGE_VIEWED, None
    elif kind == "identify":
        etype, name = EventType.CUSTOMER, None
    elif kind == "track":
        raw_name = msg.get("event")
        if not isinstance(raw_name, str) or not raw_name.strip():
            raise ValueError("a track message needs an 'event' name")
        name = " ".join(raw_name.replace("_", " ").lower().split())
        if name in BROWSE_EVENTS:
            etype = BROWSE_EVENTS[name]
        elif name in ORDER_EVENTS:
            etype = EventType.ORDER
        elif name in CHECKOUT_EVENTS:
            etype = EventType.CHECKOUT
        else:
            return None, f"track event {raw_name.strip()[:40]!r} is not used"
    else:
        return None, f"{kind[:20]!r} messages are not used"
    occurred = _occurred_at(msg)
    identity = _identity(msg)
    if identity.is_empty():
        return None, "no userId, anonymousId, email or phone in the message"
    props = _obj(msg.get("properties"), "properties")
    if etype == EventType.CUSTOMER:
        properties: Any = _customer(msg)
    elif etype == EventType.ORDER:
        properties = _order(props, ORDER_EVENTS[name], occurred)
    elif etype == EventType.CHECKOUT:
        properties = _checkout(props, key, occurred)
    else:
        properties = _browse(msg, props, etype, name)
    event = CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, key, kind, name),
        source=SOURCE, type=etype, occurred_at=occurred, shop=None, identity=identity, properties=properties,
    )
    try:
        event.model_dump_json()  # the bus takes JSON: refuse text that cannot be encoded (lone surrogates)
    except ValueError:
        raise ValueError("text that is not valid Unicode (lone surrogates)") from None
    return event, None


def _obj(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object")
    return value


def _str(value: Any, limit: int = MAX_TEXT) -> str | None:
    """An optional free-form text field: kept when it is a non-empty string, cut to ``limit``."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def _opt_id(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{field} must be a string")
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"{field} must be at most {MAX_TEXT} characters")
    return text or None


def _occurred_at(msg: dict) -> datetime:
    """``timestamp`` (Segment's corrected event time), else the client's ``originalTimestamp``, its
    ``sentAt``, and last Segment's ``receivedAt``; never the arrival of this request."""
    for field in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        value = msg.get(field)
        if value is not None and value != "":
            return _time(value, field)
    raise ValueError("missing field 'timestamp'")


def _money(value: Any, field: str) -> Decimal | None:
    """An amount or measure, not negative (fields.money); None when absent."""
    if value is None or value == "":
        return None
    return _amount(value, field)


def _number(value: Any, field: str, upper: int) -> int:
    """A non-negative measure (percent, seconds), rounded and capped at ``upper``."""
    amount = _money(value, field)
    if amount is None:
        raise ValueError(f"missing field {field!r}")
    return min(int(amount.to_integral_value()), upper)


def _identity(msg: dict) -> Identity:
    traits = _obj(msg.get("traits"), "traits")
    context = _obj(msg.get("context"), "context")
    context_traits = _obj(context.get("traits"), "context.traits")
    props = _obj(msg.get("properties"), "properties")
    email = next((e for e in (traits.get("email"), context_traits.get("email"), props.get("email"))
                  if isinstance(e, str) and e.strip()), None)
    phone = next((p for p in (traits.get("phone"), context_traits.get("phone"))
                  if isinstance(p, str) and p.strip()), None)
    return Identity(
        email=email, phone=phone,
        user_id=_opt_id(msg.get("userId"), "userId"),
        anonymous_id=_opt_id(msg.get("anonymousId"), "anonymousId"),
    )


def _page_url(msg: dict, props: dict) -> str | None:
    page = _obj(_obj(msg.get("context"), "context").get("page"), "context.page")
    return _str(props.get("url"), MAX_URL) or _str(page.get("url"), MAX_URL)


def _browse(msg: dict, props: dict, etype: EventType, name: str | None) -> BrowseProperties:
    if name == "cart viewed":
        category = "cart"
    elif etype == EventType.PAGE_VIEWED:
        category = _str(msg.get("category")) or _str(props.get("category"))
    else:
        category = _str(props.get("category"))
    fields: dict[str, Any] = {"url": _page_url(msg, props), "category": category}
    if etype in (EventType.PRODUCT_VIEWED, EventType.PRODUCT_ADDED):
        fields["product_id"] = _opt_id(props.get("product_id"), "properties.product_id")
        fields["price"] = _money(props.get("price"), "properties.price")
    elif etype == EventType.PAGE_SCROLLED:
        fields["depth_percent"] = _number(props.get("depth_percent"), "properties.depth_percent", 100)
    elif etype == EventType.PAGE_ENGAGED:
        seconds = props.get("seconds")
        field = "properties.seconds"
        if seconds is None or seconds == "":
            seconds, field = props.get("seconds_on_page"), "properties.seconds_on_page"
        fields["seconds"] = _number(seconds, field, MAX_SECONDS)
    return BrowseProperties(**fields)


def _first_money(props: dict, *fields: str) -> Decimal | None:
    for field in fields:
        amount = _money(props.get(field), f"properties.{field}")
        if amount is not None:
            return amount
    return None


def _items(props: dict) -> list[LineItem]:
    raw = props.get("products")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("properties.products must be a list")
    items = []
    for product in raw[:MAX_ITEMS]:
        if not isinstance(product, dict):
            raise ValueError("properties.products entries must be objects")
        quantity = product.get("quantity")
        if quantity is None or quantity == "":
            quantity = 1
        elif isinstance(quantity, bool) or not isinstance(quantity, int | float) or not 0 <= quantity <= 1_000_000:
            raise ValueError("properties.products.quantity must be a number from 0 to 1000000")
        items.append(LineItem(
            product_id=_opt_id(product.get("product_id"), "properties.products.product_id"),
            sku=_str(product.get("sku")),
            title=_str(product.get("name")),
            category=_str(product.get("category")),
            quantity=int(quantity),
            price=_money(product.get("price"), "properties.products.price") or Decimal("0"),
        ))
    return items


def _order(props: dict, status: str, occurred: datetime) -> OrderProperties:
    """Order Completed / Refunded / Cancelled. Segment carries no order creation time, so a refund or
    cancellation is applied at its own event time (its ``updated_at`` makes it win over the order)."""
    order_id = _opt_id(props.get("order_id"), "properties.order_id")
    if not order_id:
        raise ValueError("an order event needs properties.order_id")
    items = _items(props)
    total = _first_money(props, "total", "revenue", "value")
    if total is None:
        total = sum((i.price * i.quantity for i in items), Decimal("0")) if status == "placed" else Decimal("0")
    return OrderProperties(
        order_id=order_id, status=status, total=total, currency=_str(props.get("currency"), 8),
        updated_at=occurred, items=items,
    )


def _checkout(props: dict, key: str, occurred: datetime) -> CheckoutProperties:
    checkout_id = next(
        (i for i in (_opt_id(props.get(f), f"properties.{f}") for f in ("checkout_id", "order_id", "cart_id")) if i),
        key,
    )
    return CheckoutProperties(
        checkout_id=checkout_id, cart_token=_opt_id(props.get("cart_id"), "properties.cart_id"),
        updated_at=occurred, total=_first_money(props, "total", "revenue", "value") or Decimal("0"),
        currency=_str(props.get("currency"), 8),
    )


def _attribute(value: Any) -> str | int | float | bool | list[str] | None:
    """A trait value usable for targeting, or raise LookupError when it is not one (objects)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= 10**15:
            raise LookupError
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise LookupError
        return value
    if isinstance(value, str):
        return value.strip()[:MAX_TEXT] or None  # an emptied trait clears the attribute
    if isinstance(value, list):
        out = []
        for v in value[:MAX_ATTRIBUTES]:
            if isinstance(v, str) and v.strip():
                out.append(v.strip()[:MAX_TEXT])
            elif isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 10**15:
                out.append(str(v))
        return out
    raise LookupError


def _customer(msg: dict) -> CustomerProperties:
    traits = _obj(msg.get("traits"), "traits")
    if not traits:
        traits = _obj(_obj(msg.get("context"), "context").get("traits"), "context.traits")
    first = _str(traits.get("first_name")) or _str(traits.get("firstName"))
    last = _str(traits.get("last_name")) or _str(traits.get("lastName"))
    name = _str(traits.get("name"))
    if name and not first and not last:
        first, _, rest = name.partition(" ")
        last = rest.strip() or None
    attributes: dict[str, Any] = {}
    address = traits.get("address")
    if isinstance(address, dict):
        for part in ADDRESS_PARTS:
            value = _str(address.get(part))
            if value:
                attributes[part] = value
    for key, value in traits.items():
        if len(attributes) >= MAX_ATTRIBUTES:
            break
        folded = re.sub(r"[\s_\-]", "", key.lower())
        if not 0 < len(key) <= 64 or folded in IDENTITY_TRAITS or any(w in folded for w in CONTACT_WORDS):
            continue
        try:
            attributes[key] = _attribute(value)
        except LookupError:
            continue  # objects (company{}, ...) and out-of-range numbers are not attributes
    return CustomerProperties(first_name=first, last_name=last, attributes=attributes)
