"""Webhook ingestion: verify, normalise, publish. Returns what to answer the sender.

There is no delivery dedupe here: a provider's retry (or a replay of a signed body) is published
again with the same event ids, which the adapters derive from the signed content, and the profile
path recognises it (docs/architecture.md, "Delivery guarantees"). Consumers of ``CustomerEvent``
dedupe on ``event_id``, as EventBridge's at-least-once delivery requires of them anyway.

Opt-in (WebhookDuplicateAnswer=on, a :class:`~.ports.DeliveryLog`): once a delivery's events are
published, one conditional write remembers the SHA-256 of its delivery key for 72 hours, and the
answer says ``"duplicate": false`` (new) or ``true`` (accepted before). Informative only: a
duplicate is still published, and a fault of that write costs the field, never the delivery.
Never before publishing: a remembered delivery whose publish then failed would make the provider's
retry look like a duplicate.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aws_lambda_powertools import Logger

from ..domain.events import BrowseProperties, CheckoutProperties, CustomerEvent, EventType, OrderProperties
from ..sources import MODULES, shopify
from ..sources.errors import PayloadTooLargeError, WebhookError
from ..sources.fields import receiving_at
from ..sources.request import Handshake, Normalised, SecretLookup, WebhookRequest
from .ports import CustomerEventPublisher, DeliveryLog, ShopStore, WebhookSecretStore

logger = Logger(child=True)

#: how long an accepted delivery is remembered for the "duplicate" answer (providers retry for a day
#: at most: Shopify 4 hours, SendGrid and Adobe 24; docs/webhooks.md)
DELIVERY_MEMORY_S = 72 * 3600

#: source name -> parse(request, secrets, now) -> Normalised | Handshake
#: the sources with an adapter module ``segmentation.sources.<module>`` exposing ``parse``; a module is
#: imported on its first delivery, so a cold start pays only for the source it serves
ADAPTERS = tuple(MODULES)


def adapter_for(source: str) -> Callable[[WebhookRequest, SecretLookup, int], Normalised | Handshake] | None:
    if source not in ADAPTERS:
        return None
    return importlib.import_module(f"segmentation.sources.{MODULES[source]}").parse


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict | str = field(default_factory=dict)  # a str is sent as is (handshakes)
    content_type: str = "application/json"
    delivery: str | None = None  # the accepted delivery's key (for the log line)


class WebhookIngest:
    def __init__(self, secrets: WebhookSecretStore, publisher: CustomerEventPublisher, max_body_bytes: int, clock: Callable[[], int] = lambda: int(time.time()),
                 shops: ShopStore | None = None, deliveries: DeliveryLog | None = None):
        """``shops``: where product categories and carts are learnt; without it events go out as sent.
        ``deliveries``: where accepted deliveries are remembered, for the "duplicate" answer; without
        it (the default) the answer has no such field and nothing is written."""
        self.shops = shops
        self.deliveries = deliveries
        self.secrets = secrets
        self.publisher = publisher
        self.max_body_bytes = max_body_bytes
        self.clock = clock

    def handle(self, request: WebhookRequest) -> Reply:
        """Answer one delivery. Raises only on faults (storage, bus), never on bad input."""
        adapter = adapter_for(request.source)
        if adapter is None:
            known = ", ".join(ADAPTERS)
            return Reply(404, {"error": "not_found", "reason": f"unknown source {request.source!r}; accepted: {known}"})
        try:
            if len(request.body) > self.max_body_bytes:
                raise PayloadTooLargeError(f"body is {len(request.body)} bytes; the limit is {self.max_body_bytes}")
            now = self.clock()
            with receiving_at(now):  # event times may be at most a day ahead of the arrival
                normalised = adapter(request, self.secrets.for_source, now)
        except WebhookError as exc:
            return Reply(exc.status, {"error": type(exc).__name__, "reason": exc.reason})
        if isinstance(normalised, Handshake):
            return Reply(normalised.status, normalised.body, normalised.content_type)
        try:
            for event in normalised.events:  # e.g. a lone surrogate in a string cannot go on the bus
                event.model_dump_json()
        except ValueError:
            return Reply(400, {"error": "MalformedPayloadError", "reason": "the body holds text that is not valid Unicode"})

        body = self._accept(normalised)
        if self.deliveries is not None and body["accepted"] and normalised.delivery_key:
            duplicate = self._seen_before(normalised.delivery_key)
            if duplicate is not None:
                body["duplicate"] = duplicate
        return Reply(200, body, delivery=normalised.delivery_key)

    def _seen_before(self, delivery_key: str) -> bool | None:
        """Remember a published delivery; whether it was accepted before (None: unknown, a fault)."""
        digest = hashlib.sha256(delivery_key.encode()).hexdigest()  # the key may hold a shop's domain
        now = self.clock()
        try:
            return not self.deliveries.remember(digest, now, now + DELIVERY_MEMORY_S)
        except Exception as exc:  # noqa: BLE001 - the events are published: the answer stays 200
            logger.warning("the deliveries table did not take the delivery: no duplicate field in the answer",
                           extra={"error": type(exc).__name__})
            return None

    def _accept(self, normalised: Normalised) -> dict:
        events = list(normalised.events)
        if self.shops is not None:
            for product in normalised.products:
                self.shops.put_product(product.shop, product.product_id, product.category)
            events = self._with_categories(events + self._cart_additions(normalised))
        if events:
            self.publisher.publish_events(events)
        body: dict = {"status": "accepted", "accepted": len(events)}
        if normalised.ignored_reason:
            body["ignored"] = normalised.ignored_reason
        return body

    def _cart_additions(self, normalised: Normalised) -> list[CustomerEvent]:
        """Carts carry no identity: once a checkout names a cart's owner, its items become that
        customer's "added to cart" events (one per cart and product, so updates count once)."""
        now = self.clock()
        out: list[CustomerEvent] = []
        cart = normalised.cart
        if cart is not None:
            self.shops.put_cart(cart.shop, cart.token, cart.items, now)
            owner = self.shops.cart_owner(cart.shop, cart.token)
            if owner is not None:
                out += _added(cart.shop, cart.token, cart.items, owner, cart.updated_at)
        for event in normalised.events:
            props = event.properties
            if isinstance(props, CheckoutProperties) and props.cart_token and event.shop:
                self.shops.put_cart_owner(event.shop, props.cart_token, event.identity, now)
                items = self.shops.cart(event.shop, props.cart_token)
                if items:
                    out += _added(event.shop, props.cart_token, items, event.identity, int(event.occurred_at.timestamp()))
        return out

    def _with_categories(self, events: list[CustomerEvent]) -> list[CustomerEvent]:
        """Fill in categories the shop taught us (products/*) where a line item or view lacks one."""
        wanted: dict[str, set[str]] = {}
        for e in events:
            if e.shop is None:
                continue
            props = e.properties
            if isinstance(props, OrderProperties):
                wanted.setdefault(e.shop, set()).update(i.product_id for i in props.items if i.product_id and not i.category)
            elif isinstance(props, BrowseProperties) and props.product_id and not props.category:
                wanted.setdefault(e.shop, set()).add(props.product_id)
        known = {shop: self.shops.categories(shop, sorted(ids)) for shop, ids in wanted.items() if ids}
        if not any(known.values()):
            return events
        out = []
        for e in events:
            cats = known.get(e.shop or "", {})
            props = e.properties
            if isinstance(props, OrderProperties) and cats:
                items = [i.model_copy(update={"category": i.category or cats.get(i.product_id or "")}) for i in props.items]
                e = e.model_copy(update={"properties": props.model_copy(update={"items": items})})
            elif isinstance(props, BrowseProperties) and cats and not props.category and props.product_id in cats:
                e = e.model_copy(update={"properties": props.model_copy(update={"category": cats[props.product_id]})})
            out.append(e)
        return out

    def handle_shopify_eventbridge(self, event: dict) -> dict:
        """Shopify through its EventBridge partner source: the same normalising and publish.
        Bad input is reported and dropped (a retry cannot fix it); faults raise, so EventBridge retries."""
        try:
            now = self.clock()
            with receiving_at(now):
                normalised = shopify.from_eventbridge(event, now)
        except WebhookError as exc:
            return {"status": "rejected", "reason": exc.reason}
        return self._accept(normalised)


def _added(shop: str, token: str, items, identity, at: int) -> list[CustomerEvent]:
    when = datetime.fromtimestamp(at, UTC)
    return [
        CustomerEvent(
            event_id=CustomerEvent.make_id("shopify", shop, "cart", token, i.product_id or i.sku or i.title),
            source="shopify", type=EventType.PRODUCT_ADDED, occurred_at=when, shop=shop, identity=identity,
            properties=BrowseProperties(product_id=i.product_id, category=i.category, price=i.price),
        )
        for i in items if (i.product_id or i.sku or i.title)
    ]
