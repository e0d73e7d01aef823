"""Webhook ingestion: verify, normalise, dedupe, publish. Returns what to answer the sender."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..adapters import klaviyo, magento, mailchimp, mandrill, segment, sendgrid, shopify, woocommerce
from ..adapters.errors import PayloadTooLargeError, WebhookError
from ..adapters.webhook import Handshake, Normalised, SecretLookup, WebhookRequest
from ..domain.events import CustomerEvent

#: source name -> parse(request, secrets, now) -> Normalised | Handshake
ADAPTERS: dict[str, Callable[[WebhookRequest, SecretLookup, int], Normalised | Handshake]] = {
    "shopify": shopify.parse,
    "mailchimp": mailchimp.parse,
    "segment": segment.parse,
    "klaviyo": klaviyo.parse,
    "mandrill": mandrill.parse,
    "sendgrid": sendgrid.parse,
    "woocommerce": woocommerce.parse,
    "magento": magento.parse,
}
KNOWN_SOURCES = ("shopify", "woocommerce", "magento", "klaviyo", "mailchimp", "mandrill", "sendgrid", "segment")


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict | str = field(default_factory=dict)  # a str is sent as is (handshakes)
    content_type: str = "application/json"


class Secrets(Protocol):
    def for_source(self, source: str) -> list[bytes]: ...


class Deduplicator(Protocol):
    def once(self, key: str, action: Callable[[], dict]) -> dict: ...


class Publisher(Protocol):
    def publish_events(self, events: list[CustomerEvent]) -> None: ...


class WebhookIngest:
    def __init__(self, secrets: Secrets, dedupe: Deduplicator, publisher: Publisher, max_body_bytes: int,
                 clock: Callable[[], int] = lambda: int(time.time())):
        self.secrets = secrets
        self.dedupe = dedupe
        self.publisher = publisher
        self.max_body_bytes = max_body_bytes
        self.clock = clock

    def handle(self, request: WebhookRequest) -> Reply:
        """Answer one delivery. Raises only on faults (storage, bus), never on bad input."""
        adapter = ADAPTERS.get(request.source)
        if adapter is None:
            known = ", ".join(ADAPTERS)
            reason = (
                f"source {request.source!r} is not enabled yet" if request.source in KNOWN_SOURCES
                else f"unknown source {request.source!r}"
            )
            return Reply(404, {"error": "not_found", "reason": f"{reason}; accepted: {known}"})
        try:
            if len(request.body) > self.max_body_bytes:
                raise PayloadTooLargeError(f"body is {len(request.body)} bytes; the limit is {self.max_body_bytes}")
            normalised = adapter(request, self.secrets.for_source, self.clock())
        except WebhookError as exc:
            return Reply(exc.status, {"error": type(exc).__name__, "reason": exc.reason})
        if isinstance(normalised, Handshake):
            return Reply(normalised.status, normalised.body, normalised.content_type)
        try:
            for event in normalised.events:  # e.g. a lone surrogate in a string cannot go on the bus
                event.model_dump_json()
        except ValueError:
            return Reply(400, {"error": "MalformedPayloadError", "reason": "the body holds text that is not valid Unicode"})

        return Reply(200, self._accept(normalised))

    def _accept(self, normalised: Normalised) -> dict:
        def publish() -> dict:
            if normalised.events:
                self.publisher.publish_events(normalised.events)
            return {"accepted": len(normalised.events)}

        body = {"status": "accepted", **self.dedupe.once(normalised.dedupe_key, publish)}
        if normalised.ignored_reason:
            body["ignored"] = normalised.ignored_reason
        return body

    def handle_shopify_eventbridge(self, event: dict) -> dict:
        """Shopify through its EventBridge partner source: the same normalising, dedupe and publish.
        Bad input is reported and dropped (a retry cannot fix it); faults raise, so EventBridge retries."""
        try:
            normalised = shopify.from_eventbridge(event, self.clock())
        except WebhookError as exc:
            return {"status": "rejected", "reason": exc.reason}
        return self._accept(normalised)
