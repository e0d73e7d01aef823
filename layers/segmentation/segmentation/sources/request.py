"""What every source adapter receives and returns."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import InvalidOperation
from typing import Any

from pydantic import ValidationError

from ..domain.events import CustomerEvent, LineItem
from .errors import MalformedPayloadError, UnsupportedMediaTypeError


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

    def require_media_type(self, who: str, *accepted: str) -> None:
        """415 unless the Content-Type (its parameters aside) is one of ``accepted``; none given passes."""
        media = (self.header("content-type") or "").split(";")[0].strip().lower()
        if media and media not in accepted:
            raise UnsupportedMediaTypeError(f"{who} are {accepted[0]}, got {media[:60]!r}")


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

    ``delivery_key`` identifies the delivery across retries (the webhook function logs it, to trace a
    provider's delivery; nothing is deduplicated on it: see ``service.ingest``, which at most remembers
    its hash for the opt-in "duplicate" answer); ``events`` may be empty
    (a topic we acknowledge but do not use). ``products`` and ``cart`` are facts about the
    shop rather than about a customer.
    """

    delivery_key: str
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


#: What the field readers and the models raise on a value they cannot use.
READ_ERRORS = (ValueError, TypeError, KeyError, InvalidOperation, OverflowError, RecursionError)


def malformed_reason(exc: Exception) -> str:
    """The reason of a 400 for what a reader or a model raised: the field and what is wrong with it."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"invalid {where}: {first['msg']}"
    return str(exc)[:200] or type(exc).__name__


@contextmanager
def reading(prefix: str = "") -> Iterator[None]:
    """Read a payload: whatever its readers raise becomes a 400 naming the field (``prefix`` says
    which item of a batch)."""
    try:
        yield
    except READ_ERRORS as exc:
        raise MalformedPayloadError(prefix + malformed_reason(exc)) from None


def shape_mismatch(payload: dict, needs: Sequence[str], never: Sequence[str]) -> str | None:
    """Why ``payload`` is not of a resource's shape: it has a key the resource never has, or none of
    the keys it needs at least one of. None when it is of that shape."""
    stray = next((k for k in never if k in payload), None)
    if stray is not None:
        return f"it has {stray!r}"
    if not any(k in payload for k in needs):
        return f"it has none of {', '.join(needs[:4])}"
    return None


def collect_batch(items: list, parse_item: Callable[[Any], tuple[str, str, CustomerEvent | None]],
                  label: Callable[[int], str] = lambda i: f"event {i}") -> tuple[list[CustomerEvent], Counter, list[str]]:
    """Normalise a provider's batch: ``parse_item(item) -> (delivery key, kind, event or None)``.

    Returns the events (once per event id, in order), how many of each kind were not used, and
    every item's delivery key. A bad item is a 400 naming its position; the batch is all or nothing,
    so a provider's retry carries everything again.
    """
    events: dict[str, CustomerEvent] = {}
    ignored: Counter = Counter()
    keys: list[str] = []
    for index, item in enumerate(items):
        with reading(f"{label(index)}: "):
            key, kind, event = parse_item(item)
        keys.append(key)
        if event is None:
            ignored[kind] += 1
        else:
            events.setdefault(event.event_id, event)
    for event in events.values():
        try:
            event.model_dump_json()
        except ValueError:
            raise MalformedPayloadError("text fields contain characters that are not valid Unicode") from None
    return list(events.values()), ignored, keys


def batch_reason(size: int, ignored: Counter) -> str | None:
    """Why some (or all) of a batch produced no events: counts per kind only, never personal data."""
    if not size:
        return "empty batch"
    if ignored:
        detail = ", ".join(f"{kind} ({n})" for kind, n in sorted(ignored.items()))
        return f"ignored {sum(ignored.values())} of {size} events: {detail}"
    return None
