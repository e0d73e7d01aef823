"""What every source adapter receives and returns."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..domain.events import CustomerEvent, LineItem


@dataclass(frozen=True)
class WebhookRequest:
    """One HTTP delivery as the provider sent it: raw body bytes, lower-cased headers."""

    method: str
    source: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class ProductInfo:
    """A product's category, learned from the shop (Shopify ``products/*``)."""

    shop: str
    product_id: str
    category: str | None


@dataclass(frozen=True)
class CartInfo:
    """A cart's contents (Shopify ``carts/*``): no customer identity of its own."""

    shop: str
    token: str
    items: list[LineItem]
    updated_at: int


@dataclass(frozen=True)
class Normalised:
    """The result of an accepted delivery.

    ``dedupe_key`` identifies the delivery across retries; ``events`` may be empty
    (a topic we acknowledge but do not use). ``products`` and ``cart`` are facts about the
    shop rather than about a customer.
    """

    dedupe_key: str
    events: list[CustomerEvent]
    ignored_reason: str | None = None
    products: list[ProductInfo] = field(default_factory=list)
    cart: CartInfo | None = None


@dataclass(frozen=True)
class Handshake:
    """A provider's verification request (Mailchimp GET, Mandrill HEAD, WooCommerce ping, Adobe
    challenge): answered as given, and never writes anything."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


#: secrets(name) -> the configured values (one, or two while rotating) of the secret's key ``name``;
#: raises SecretNotConfiguredError when there are none.
SecretLookup = Callable[[str], list[bytes]]


def hmac_matches(secrets: Sequence[bytes], message: bytes, received: bytes, digest=hashlib.sha256) -> bool:
    """Constant-time check of ``received`` against the MAC of ``message`` under each secret.

    Every secret is tried (no early exit) so timing does not reveal which one matched;
    two secrets are configured while one rotates.
    """
    ok = False
    for secret in secrets:
        expected = hmac.new(secret, message, digest).digest()
        ok |= hmac.compare_digest(expected, received)
    return ok
