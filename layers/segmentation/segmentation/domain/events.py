"""The canonical customer event: what every source is normalised into.

Pure pydantic: no boto3, no clock, no environment.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EventType(StrEnum):
    """What happened, in the domain's words (not the provider's topic names)."""

    ORDER = "order"  # an order was placed or its state changed (cancelled, refunded)
    CHECKOUT = "checkout"  # a checkout was started or updated
    CUSTOMER = "customer"  # identity, descriptive traits or email consent changed
    ERASURE = "erasure"  # the person asked to be forgotten (e.g. Shopify customers/redact)
    SHOP_ERASURE = "shop_erasure"  # a shop's data must go (Shopify shop/redact)
    DATA_REQUEST = "data_request"  # the person asked for their data (Shopify customers/data_request)
    REFUND = "refund"  # money went back on an order (Shopify refunds/create)
    PAGE_VIEWED = "page_viewed"
    PRODUCT_VIEWED = "product_viewed"
    CATEGORY_VIEWED = "category_viewed"  # a product list / category page
    PRODUCT_ADDED = "product_added"  # added to cart
    PAGE_ENGAGED = "page_engaged"  # time on page (seconds)
    PAGE_SCROLLED = "page_scrolled"  # scroll depth (percent)
    EMAIL_DELIVERED = "email_delivered"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    EMAIL_BOUNCED = "email_bounced"  # hard bounce: the address is dead
    EMAIL_SPAM = "email_spam"  # spam complaint
    EMAIL_UNSUBSCRIBED = "email_unsubscribed"


BROWSE_TYPES = frozenset({
    EventType.PAGE_VIEWED, EventType.PRODUCT_VIEWED, EventType.CATEGORY_VIEWED, EventType.PRODUCT_ADDED,
    EventType.PAGE_ENGAGED, EventType.PAGE_SCROLLED,
})
EMAIL_TYPES = frozenset({
    EventType.EMAIL_DELIVERED, EventType.EMAIL_OPENED, EventType.EMAIL_CLICKED, EventType.EMAIL_BOUNCED,
    EventType.EMAIL_SPAM, EventType.EMAIL_UNSUBSCRIBED,
})


def to_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC, truncated to whole seconds (the engine's resolution)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


UtcDatetime = Annotated[datetime, Field(description="timezone-aware, UTC, whole seconds")]
#: No event is older: a time before it is a placeholder (0001-01-01, the epoch), not a fact. The adapters
#: also refuse times more than a day ahead of a delivery's arrival (sources/fields.py).
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def normalise_email(value: str | None) -> str | None:
    """The address as profiles and aliases hold it (lower-cased, NFC), or None when it cannot be one.

    The syntax is email-validator's (no DNS): internationalised addresses (``müller@example.de``)
    are kept; control and format characters (NUL, zero-width, bidi overrides) are refused by it,
    and symbols outside ASCII (emoji, pictographs, their variation selectors) by us. Text that is not
    Unicode at all (a lone surrogate) raises ValueError, like every other field that cannot be stored."""
    if value is None:
        return None
    text = value.strip().lower()
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("email is not valid Unicode") from None
    if not text or len(text) > 320:
        return None
    from email_validator import EmailNotValidError, validate_email  # ~20 ms to import: on first use

    try:
        address = validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None
    return None if any(_pictographic(c) for c in address) else address


def _pictographic(char: str) -> bool:
    """A character no mailbox name needs: a non-ASCII symbol, enclosing mark or variation selector."""
    if char.isascii():
        return False
    category = unicodedata.category(char)
    return category[0] == "S" or category == "Me" or "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef"


class Identity(BaseModel):
    """Who the event is about. Every field is optional; at least one must be set.

    ``customer_ids`` maps a platform (``shopify``, ``woocommerce``, ``magento``, ``klaviyo``) to
    its customer id; the id is scoped to the event's ``shop`` when it becomes an alias.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str | None = None
    phone: str | None = None
    customer_ids: dict[str, str] = Field(default_factory=dict)
    order_ref: str | None = None  # a platform order id: reaches the profile that placed the order
    user_id: str | None = None  # Segment userId
    anonymous_id: str | None = None  # Segment anonymousId

    @field_validator("email")
    @classmethod
    def _normalise_email(cls, value: str | None) -> str | None:
        return normalise_email(value)  # not an address: dropped, the event keeps its other identities

    @field_validator("phone")
    @classmethod
    def _normalise_phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = re.sub(r"[^0-9]", "", value)
        return ("+" + digits) if 6 <= len(digits) <= 15 else None

    def alias_keys(self, shop: str | None = None, source: str | None = None) -> list[str]:
        """Keys under which a profile is found, strongest first: email, platform ids, order, user id
        (strong: they may merge profiles), then phone and anonymous id (weak: see :func:`is_strong`).

        Platform ids and orders are scoped by ``shop`` (and an order by its ``source`` platform too):
        order 1001 of one shop is not order 1001 of another."""
        keys = []
        if self.email:
            keys.append(f"email#{self.email}")
        for platform, cid in sorted(self.customer_ids.items()):
            keys.append(f"cust#{platform}#{shop or '-'}#{cid}")
        if self.order_ref:
            keys.append(f"order#{source or '-'}#{shop or '-'}#{self.order_ref}")
        if self.user_id:
            keys.append(f"user#{self.user_id}")
        if self.phone:
            keys.append(f"phone#{self.phone}")
        if self.anonymous_id:
            keys.append(f"anon#{self.anonymous_id}")
        return keys

    def is_empty(self) -> bool:
        return not (self.email or self.phone or self.customer_ids or self.user_id or self.anonymous_id or self.order_ref)


#: Alias kinds that identify one person: two profiles holding them for one event are one person
#: (merged). Phone numbers and anonymous ids are shared (a shop's own number, a family computer):
#: they find a profile only when nothing stronger does, and never merge two people.
STRONG_ALIASES = ("email#", "cust#", "order#", "user#")


def is_strong(alias: str) -> bool:
    return alias.startswith(STRONG_ALIASES)


def scope_key(source: str, shop: str | None, key: str) -> str:
    """A platform's id (order, checkout, refund, message) made unique across platforms and shops."""
    return f"{source}#{shop or '-'}#{key}"


class LineItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    product_id: str | None = None
    sku: str | None = None
    title: str | None = None
    category: str | None = None

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return normalise_category(value)
    quantity: int = 1
    price: Decimal = Decimal("0")


class BrowseProperties(BaseModel):
    """Site behaviour: page, product and category views, add to cart, engagement."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["browse"] = "browse"
    url: str | None = None
    category: str | None = None
    product_id: str | None = None
    price: Decimal | None = None
    seconds: int | None = None  # page_engaged
    depth_percent: int | None = None  # page_scrolled

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return normalise_category(value)


class EmailProperties(BaseModel):
    """An email event about one message; ``message_id`` makes it count once per message."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["email"] = "email"
    message_id: str
    campaign: str | None = None
    url: str | None = None


def normalise_category(value: str | None) -> str | None:
    """Categories compare case-insensitively and name segments: lower-case, trimmed, spaces as '-'."""
    if value is None:
        return None
    value = "-".join(value.strip().lower().split())
    return value[:64] or None


class OrderProperties(BaseModel):
    """State of one order as of ``updated_at``; the latest state of an order wins."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["order"] = "order"
    order_id: str
    status: Literal["placed", "cancelled", "refunded"] = "placed"
    total: Decimal = Decimal("0")
    currency: str | None = None
    updated_at: datetime
    items: list[LineItem] = Field(default_factory=list)


class CheckoutProperties(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["checkout"] = "checkout"
    checkout_id: str
    cart_token: str | None = None
    completed_at: datetime | None = None
    updated_at: datetime
    total: Decimal = Decimal("0")
    currency: str | None = None


class EmailConsent(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: Literal["subscribed", "not_subscribed", "pending", "unsubscribed", "cleaned", "spam", "bounced", "redacted", "invalid"]
    updated_at: datetime | None = None


class CustomerProperties(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["customer"] = "customer"
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = Field(default_factory=list)
    email_consent: EmailConsent | None = None
    #: descriptive attributes for targeting: country, city, interests, survey answers, merge fields
    attributes: dict[str, str | int | float | bool | list[str] | None] = Field(default_factory=dict)


class RefundProperties(BaseModel):
    """Money returned on an order; applied once per refund id."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["refund"] = "refund"
    order_id: str
    refund_id: str
    amount: Decimal
    refunded_at: datetime


class ErasureProperties(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["erasure"] = "erasure"
    reason: str = "customer request"


Properties = Annotated[
    OrderProperties | CheckoutProperties | CustomerProperties | BrowseProperties | EmailProperties | ErasureProperties | RefundProperties,
    Field(discriminator="kind"),
]


class CustomerEvent(BaseModel):
    """One thing a customer did or had done to them, from any source.

    ``event_id`` is deterministic: the same fact delivered twice (a retry, a second
    subscription, the HTTPS and EventBridge paths) has the same id.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    source: str
    type: EventType
    occurred_at: datetime
    shop: str | None = None
    identity: Identity
    properties: Properties

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        value = to_utc(value)
        if value < EARLIEST_EVENT_TIME:
            raise ValueError(f"occurred_at is before {EARLIEST_EVENT_TIME:%Y-%m-%d}")
        return value

    @staticmethod
    def make_id(*parts: object) -> str:
        """A stable id from the parts that identify one fact (source, resource, version)."""
        joined = "\x1f".join("" if p is None else str(p) for p in parts)
        return hashlib.sha256(joined.encode()).hexdigest()[:32]
