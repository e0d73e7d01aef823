"""The one place where real adapters are wired to the use cases.

Every component is built on first use and kept for the life of the execution environment, so
importing a handler stays cheap (cold start) and warm invocations reuse clients.

Tests replace components with :func:`override` (the in-memory fakes of ``tests/fakes.py``, a
publisher that fails...) and forget everything built for one environment with :func:`reset`::

    with bootstrap.override(repository=InMemoryProfileStore(), publisher=RecordingPublisher()):
        bootstrap.sweep().run(now)  # the sweep is built on the fakes
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import SegmentationError
from .settings import Settings, load_settings

# Each handler imports only the adapters it uses (cold start): imports live in the builders.
if TYPE_CHECKING:
    from .destinations.config import Destinations
    from .domain.catalog import Catalog
    from .domain.segments import SegmentEvaluator
    from .service.backfill import Backfill
    from .service.esp_reconcile import Reconcile
    from .service.esp_sync import EspSync
    from .service.history_import import HistoryImport
    from .service.history_jobs import ImportJobs
    from .service.ingest import WebhookIngest
    from .service.ports import (
        DeliveryLog,
        ProfilePublisher,
        ProfileStore,
        ShopStore,
        SyncStateStore,
        WebhookSecretStore,
        WorkQueue,
    )
    from .service.profiles import ProfileService
    from .service.sweep import Sweep

T = TypeVar("T")

#: components built so far, by name (clients as ``client:<service>``)
_built: dict[str, Any] = {}
#: components replaced by :func:`override`, by name
_overrides: dict[str, Any] = {}
#: the names of the components :func:`override` accepts
COMPONENTS: set[str] = set()


def _component(build: Callable[[], T]) -> Callable[[], T]:
    """Make ``build`` a component: built once, or replaced under :func:`override`."""
    name = build.__name__
    COMPONENTS.add(name)

    @wraps(build)
    def get() -> T:
        if name in _overrides:
            return _overrides[name]
        if name not in _built:
            _built[name] = build()
        return _built[name]

    return get


@contextmanager
def override(**components: Any) -> Iterator[None]:
    """Use ``components`` (by builder name: ``repository=``, ``publisher=``, ``shop_store=``...) instead
    of the real ones while the block runs. Everything built from them is built again inside the
    block (a sweep over the replaced repository), and the previous state comes back after it.

    Raises ``TypeError`` for a name that is not a component.
    """
    unknown = set(components) - COMPONENTS
    if unknown:
        raise TypeError(f"not components: {sorted(unknown)}; the components are {sorted(COMPONENTS)}")
    saved_overrides, saved_built = dict(_overrides), dict(_built)
    _overrides.update(components)
    _built.clear()
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved_overrides)
        _built.clear()
        _built.update(saved_built)


def reset() -> None:
    """Forget every component built and the settings read, and the secrets Powertools cached: the next
    call builds them again from the environment (a test's new AWS, changed variables)."""
    from aws_lambda_powertools.utilities import parameters

    _built.clear()
    load_settings.cache_clear()
    parameters.clear_caches()


def _client(service: str):
    key = f"client:{service}"
    if key not in _built:
        import boto3

        _built[key] = boto3.client(service)
    return _built[key]


@_component
def settings() -> Settings:
    return load_settings()


@_component
def catalog() -> Catalog:
    """The segment catalog (``CATALOG_FILE``, else the shipped one)."""
    from .domain.catalog import load_catalog

    return load_catalog(settings().catalog_file)


@_component
def evaluator() -> SegmentEvaluator:
    from .domain.evaluation import CatalogEvaluator

    built = CatalogEvaluator(catalog())
    if settings().destinations_file:
        # announce changes of what the ESP sync copies (ProfileUpdated)
        try:
            built.watch = destinations().watched()
        except (OSError, SegmentationError) as e:
            # a bad destinations file stops the sync (its records fail, then alarm), never the profiles
            from aws_lambda_powertools import Logger

            Logger(child=True).error("the destinations file cannot be used: no ProfileUpdated is published",
                                     extra={"reason": str(e)})
    return built


@_component
def repository() -> ProfileStore:
    from .infra.profile_store import DynamoDBProfileStore

    s = settings()
    return DynamoDBProfileStore(_client("dynamodb"), s.profiles_table, s.aliases_table, s.memberships_table,
                                s.due_shards, s.history_table, s.history_retention_days * 86400)


@_component
def shop_store() -> ShopStore:
    from .infra.shop_store import DynamoDBShopStore

    return DynamoDBShopStore(_client("dynamodb"), settings().catalog_table)


@_component
def publisher() -> ProfilePublisher:
    from .infra.publisher import EventPublisher

    return EventPublisher(_client("events"), settings().event_bus_name)


@_component
def secrets() -> WebhookSecretStore:
    from .infra.secrets import WebhookSecrets

    s = settings()
    return WebhookSecrets(s.webhook_secret_id, s.secrets_max_age_s)


@_component
def backfill_queue() -> WorkQueue | None:
    """The backfill's queue; None where BACKFILL_QUEUE_URL is not set (``segctl backfill`` works locally)."""
    from .infra.queue import SqsWorkQueue

    url = settings().backfill_queue_url
    return SqsWorkQueue(_client("sqs"), url) if url else None


@_component
def delivery_log() -> DeliveryLog | None:
    """The deliveries accepted (``DELIVERIES_TABLE``, WebhookDuplicateAnswer=on); None when it is off."""
    from .infra.delivery_log import DynamoDBDeliveryLog

    table = settings().deliveries_table
    return DynamoDBDeliveryLog(_client("dynamodb"), table) if table else None


@_component
def webhook_ingest() -> WebhookIngest:
    from .service.ingest import WebhookIngest

    return WebhookIngest(secrets=secrets(), publisher=publisher(), max_body_bytes=settings().max_body_bytes,
                         shops=shop_store(), deliveries=delivery_log())


@_component
def sweep() -> Sweep:
    from .service.sweep import Sweep

    return Sweep(repository(), evaluator(), publisher(), settings().due_shards)


@_component
def backfill() -> Backfill:
    from .service.backfill import Backfill

    return Backfill(repository(), evaluator(), publisher(), clock=lambda: int(time.time()), queue=backfill_queue())


@_component
def profile_service() -> ProfileService:
    from .service.profiles import ProfileService

    return ProfileService(repository(), evaluator(), publisher(), clock=lambda: int(time.time()), shops=shop_store())


# -- the ESP sync (issue 12) ---------------------------------------------------------------------


@_component
def destinations() -> Destinations:
    """The destinations file (``DESTINATIONS_FILE``), checked against the catalog; none: no sync."""
    from .destinations.config import Destinations, load_destinations

    path = settings().destinations_file
    if not path:
        return Destinations(version=1)
    with open(path, encoding="utf-8") as f:
        return load_destinations(f.read(), catalog(), source_name=path)


@_component
def sync_states() -> SyncStateStore:
    from .infra.sync_state_store import DynamoDBSyncStateStore

    table = settings().esp_sync_table
    if not table:
        from .settings import ConfigurationError

        raise ConfigurationError("ESP_SYNC_TABLE is not set: template.yaml sets it in Globals")
    return DynamoDBSyncStateStore(_client("dynamodb"), table)


@_component
def esp_clients() -> Callable[[Any], Any]:
    """Builds (once) the client of each destination, with its key from the destination secret."""
    from .infra.esp.factory import EspClients

    s = settings()
    return EspClients(s.destination_secret_id, s.secrets_max_age_s, klaviyo_url=s.klaviyo_api_url,
                      mailchimp_url=s.mailchimp_api_url)


@_component
def esp_sync() -> EspSync:
    from .service.esp_sync import EspSync

    return EspSync(destinations(), repository(), sync_states(), esp_clients(), catalog=catalog())


def esp_reconcile(progress: Callable[[str], None] = lambda line: None) -> Reconcile:
    """A reconcile of the destinations on the components in use (``progress`` gets a line per step)."""
    from .service.esp_reconcile import Reconcile

    return Reconcile(destinations(), repository(), sync_states(), esp_clients(), catalog=catalog(),
                     progress=progress)


# -- history import (issue 14) ---------------------------------------------------------------------


def history_import(progress: Callable[[int, int], None] | None = None) -> HistoryImport:
    """An import of history on the components in use (``progress(done, total)`` per person)."""
    from .service.history_import import HistoryImport

    return HistoryImport(profile_service(), repository(), progress=progress)


@_component
def import_jobs() -> ImportJobs:
    """The history import's steps in AWS, on the import bucket (``IMPORT_BUCKET``)."""
    from .infra.object_store import S3ObjectStore
    from .service.history_jobs import ImportJobs

    bucket = settings().import_bucket
    if not bucket:
        raise SegmentationError("IMPORT_BUCKET is not set: only ImportFunction runs the import's steps")
    return ImportJobs(S3ObjectStore(_client("s3"), bucket), history=history_import, clock=lambda: int(time.time()))


@_component
def metrics_store():
    """The segments' daily figures (``METRICS_TABLE``; docs/measure.md)."""
    from .infra.metrics_store import DynamoDBMetricsStore

    table = settings().metrics_table
    if not table:
        raise SegmentationError("METRICS_TABLE is not set: only MetricsFunction and ApiFunction read the figures")
    return DynamoDBMetricsStore(_client("dynamodb"), table)
