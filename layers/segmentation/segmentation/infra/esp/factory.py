"""The client of each destination, built once per execution environment, with its key.

Keys live in one Secrets Manager secret (JSON), like the webhook secrets: under the destination's
id (``"klaviyo-main": "pk_..."``), or else under its type (``"klaviyo"``, ``"mailchimp"``,
``"webhook"``), so one key can serve every destination of a type. The local runner seeds the type
keys from ``KLAVIYO_API_KEY``, ``MAILCHIMP_API_KEY`` and ``DESTINATION_WEBHOOK_SECRET``.
Base URLs come from ``KLAVIYO_API_URL`` / ``MAILCHIMP_API_URL`` when set (local fakes).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities import parameters

from ...destinations.config import KlaviyoDestination, MailchimpDestination, WebhookDestination
from ...service.ports import DestinationUnavailableError


class EspClients:
    def __init__(self, secret_id: str | None, max_age: int = 300, *, klaviyo_url: str | None = None,
                 mailchimp_url: str | None = None, **http_options: Any) -> None:
        self.secret_id = secret_id
        self.max_age = max_age
        self.klaviyo_url = klaviyo_url
        self.mailchimp_url = mailchimp_url
        self.http_options = http_options
        self._built: dict[str, tuple[str, Any]] = {}

    def key(self, destination: Any) -> str:
        """The destination's key; DestinationUnavailableError naming what to add if there is none
        (the changes wait in the queue until someone adds it)."""
        if not self.secret_id:
            raise DestinationUnavailableError(
                f"{destination.id}: no destination secret configured (DESTINATION_SECRET_ARN)")
        values = parameters.get_secret(self.secret_id, transform="json", max_age=self.max_age) or {}
        for name in (destination.id, destination.type):
            value = values.get(name)
            if isinstance(value, str) and value:
                return value
        raise DestinationUnavailableError(
            f"{destination.id}: no key in the destination secret: add key {destination.id!r} "
            f"(or {destination.type!r}) to it (docs/destinations.md)")

    def __call__(self, destination: Any) -> Any:
        key = self.key(destination)
        held = self._built.get(destination.id)
        if held is not None and held[0] == key:
            return held[1]
        client = self._build(destination, key)
        self._built[destination.id] = (key, client)  # a rotated key builds a new client
        return client

    def _build(self, destination: Any, key: str) -> Any:
        try:
            if isinstance(destination, KlaviyoDestination):
                from .klaviyo import KlaviyoClient

                options = {"base_url": self.klaviyo_url} if self.klaviyo_url else {}
                return KlaviyoClient(key, **options, **self.http_options)
            if isinstance(destination, MailchimpDestination):
                from .mailchimp import MailchimpClient

                return MailchimpClient(key, destination.list_id, base_url=self.mailchimp_url, **self.http_options)
            if isinstance(destination, WebhookDestination):
                from .webhook import WebhookDestinationClient

                return WebhookDestinationClient(destination.url, key, **self.http_options)
        except ValueError as e:  # a malformed key: say which destination, never the key
            raise DestinationUnavailableError(f"{destination.id}: {e}") from None
        raise TypeError(f"no client for destination type {type(destination).__name__}")
