"""Webhook secrets: one Secrets Manager secret, JSON, a key per source.

A key's value is a string, or a list of up to two strings while a secret rotates.
Values are cached for ``max_age`` seconds (Powertools parameters), so a rotation is
picked up without a redeploy.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

from ..sources.errors import SecretNotConfiguredError


class WebhookSecrets:
    def __init__(self, secret_id: str, max_age: int = 300) -> None:
        self.secret_id = secret_id
        self.max_age = max_age

    def for_source(self, source: str) -> list[bytes]:
        """The secrets configured for ``source``, as bytes; raise if there are none."""
        values = parameters.get_secret(self.secret_id, transform="json", max_age=self.max_age) or {}
        raw = values.get(source)
        if isinstance(raw, str):
            raw = [raw]
        secrets = [v.encode() for v in raw or [] if isinstance(v, str) and v]
        if not secrets:
            raise SecretNotConfiguredError(
                f"no secret configured for {source}: add key {source!r} to the webhook secret"
            )
        return secrets[:2]
