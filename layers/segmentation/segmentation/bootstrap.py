"""The one place where real adapters are wired to the use cases.

Everything is built on first use and cached for the life of the execution
environment, so importing a handler stays cheap (cold start) and warm
invocations reuse clients.
"""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING

from .settings import load_settings

# Each handler imports only the adapters it uses (cold start): imports live in the builders.
if TYPE_CHECKING:
    from .domain.segments import SegmentEvaluator
    from .infra.profile_store import DynamoDBProfileRepository
    from .infra.publisher import EventPublisher
    from .service.backfill import Backfill
    from .service.ingest import WebhookIngest
    from .service.profiles import ProfileService
    from .service.sweep import Sweep


@cache
def _client(service: str):
    import boto3

    return boto3.client(service)


@cache
def evaluator() -> SegmentEvaluator:
    from .domain.catalog import load_catalog
    from .domain.evaluation import CatalogEvaluator

    return CatalogEvaluator(load_catalog(load_settings().catalog_file))


@cache
def repository() -> DynamoDBProfileRepository:
    from .infra.profile_store import DynamoDBProfileRepository

    s = load_settings()
    return DynamoDBProfileRepository(_client("dynamodb"), s.profiles_table, s.aliases_table, s.memberships_table,
                                     s.due_shards, s.history_table, s.history_retention_days * 86400)


@cache
def publisher() -> EventPublisher:
    from .infra.publisher import EventPublisher

    return EventPublisher(_client("events"), load_settings().event_bus_name)


@cache
def webhook_ingest() -> WebhookIngest:
    from .infra.idempotency import Deduplicator
    from .infra.secrets import WebhookSecrets
    from .infra.shop_store import ShopCatalog
    from .service.ingest import WebhookIngest

    s = load_settings()
    return WebhookIngest(
        secrets=WebhookSecrets(s.webhook_secret_id, s.secrets_max_age_s),
        dedupe=Deduplicator(s.idempotency_table, s.dedupe_ttl_days * 86400, client=_client("dynamodb")),
        publisher=publisher(),
        max_body_bytes=s.max_body_bytes,
        catalog=ShopCatalog(_client("dynamodb"), s.catalog_table),
    )


@cache
def sweep() -> Sweep:
    from .service.sweep import Sweep

    return Sweep(repository(), evaluator(), publisher(), load_settings().due_shards)


@cache
def backfill() -> Backfill:
    from .service.backfill import Backfill

    return Backfill(repository(), evaluator(), publisher(), clock=lambda: int(time.time()))


@cache
def profile_service() -> ProfileService:
    from .infra.shop_store import ShopCatalog
    from .service.profiles import ProfileService

    return ProfileService(repository(), evaluator(), publisher(), clock=lambda: int(time.time()),
                          catalog=ShopCatalog(_client("dynamodb"), load_settings().catalog_table))
