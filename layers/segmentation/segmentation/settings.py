"""Configuration, parsed once from the environment into a typed object.

Handlers call :func:`load_settings` at start-up so that a missing or malformed
variable fails the cold start with a message that names it.
"""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, Field, ValidationError, field_validator

from .errors import SegmentationError


class ConfigurationError(SegmentationError, RuntimeError):
    """The function's environment is missing a variable or holds a bad value."""


class Settings(BaseModel):
    profiles_table: str = Field(alias="PROFILES_TABLE")
    aliases_table: str = Field(alias="ALIASES_TABLE")
    memberships_table: str = Field(alias="MEMBERSHIPS_TABLE")
    catalog_table: str = Field(alias="CATALOG_TABLE")
    history_table: str = Field(alias="HISTORY_TABLE")
    #: membership history older than this is not shown, and DynamoDB's TTL deletes it
    history_retention_days: int = Field(alias="HISTORY_RETENTION_DAYS", default=400, ge=1)
    event_bus_name: str = Field(alias="EVENT_BUS_NAME")
    webhook_secret_id: str = Field(alias="WEBHOOK_SECRET_ARN")
    max_body_bytes: int = Field(alias="MAX_BODY_BYTES", default=1_048_576, gt=0)
    secrets_max_age_s: int = Field(alias="SECRETS_MAX_AGE_SECONDS", default=300, ge=0)
    due_shards: int = Field(alias="DUE_SHARDS", default=32, ge=1, le=1000)
    backfill_queue_url: str | None = Field(alias="BACKFILL_QUEUE_URL", default=None)
    #: the deliveries accepted, for the "duplicate" answer (WebhookFunction; WebhookDuplicateAnswer=on)
    deliveries_table: str | None = Field(alias="DELIVERIES_TABLE", default=None)
    #: the segments' daily figures (MetricsFunction, ApiFunction)
    metrics_table: str | None = Field(alias="METRICS_TABLE", default=None)
    #: segments under this size get a "too small" warning (ApiFunction)
    min_segment_size: int = Field(alias="MIN_SEGMENT_SIZE", default=100, ge=0)
    #: the history import's bucket (ImportFunction only)
    import_bucket: str | None = Field(alias="IMPORT_BUCKET", default=None)
    #: a catalog YAML file to use instead of the shipped default (path inside the function package)
    catalog_file: str | None = Field(alias="CATALOG_FILE", default=None)
    #: the destinations file (docs/destinations.md): where segments and traits are synced; none: no sync
    destinations_file: str | None = Field(alias="DESTINATIONS_FILE", default=None)
    #: the ESP sync's memory (what each destination holds, per profile)
    esp_sync_table: str | None = Field(alias="ESP_SYNC_TABLE", default=None)
    #: the secret holding the destinations' API keys (a key per destination id, or per type)
    destination_secret_id: str | None = Field(alias="DESTINATION_SECRET_ARN", default=None)
    #: base URLs of the ESP APIs (tests and the local runner point them at local fakes)
    klaviyo_api_url: str | None = Field(alias="KLAVIYO_API_URL", default=None)
    mailchimp_api_url: str | None = Field(alias="MAILCHIMP_API_URL", default=None)

    @field_validator("catalog_file", "destinations_file", "esp_sync_table", "deliveries_table", "destination_secret_id",
                     "klaviyo_api_url", "mailchimp_api_url")
    @classmethod
    def _empty_is_default(cls, value: str | None) -> str | None:
        return value or None


@cache
def load_settings() -> Settings:
    """Read :class:`Settings` from ``os.environ``; raise :class:`ConfigurationError` naming what is wrong."""
    try:
        return Settings.model_validate(dict(os.environ))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(
            f"bad function environment ({problems}); template.yaml sets these in Globals"
        ) from None
