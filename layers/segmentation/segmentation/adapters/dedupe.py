"""Delivery dedupe on Powertools idempotency (DynamoDB, conditional write, TTL).

A key is claimed as IN_PROGRESS before the action runs and marked COMPLETED after;
if the action raises, the claim is removed so the provider's retry is processed
rather than dropped as a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)

__all__ = ["DeliveryInProgressError", "Deduplicator"]


class DeliveryInProgressError(Exception):
    """The same delivery is being processed right now by another invocation."""


class Deduplicator:
    def __init__(self, table_name: str, ttl_seconds: int, client: Any | None = None) -> None:
        persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        self._config = config = IdempotencyConfig(
            event_key_jmespath="key",
            expires_after_seconds=ttl_seconds,
            raise_on_no_idempotency_key=True,
        )

        @idempotent_function(data_keyword_argument="delivery", persistence_store=persistence, config=config)
        def guarded(delivery: dict, action: Callable[[], dict]) -> dict:
            return action()

        self._guarded = guarded

    def register_lambda_context(self, context: Any) -> None:
        """Lets an IN_PROGRESS claim expire with the invocation if the function times out."""
        self._config.register_lambda_context(context)

    def once(self, key: str, action: Callable[[], dict]) -> dict:
        """Run ``action`` unless ``key`` was already completed; return its (stored) result."""
        try:
            return self._guarded(delivery={"key": key}, action=action)
        except IdempotencyAlreadyInProgressError:
            raise DeliveryInProgressError(key) from None
