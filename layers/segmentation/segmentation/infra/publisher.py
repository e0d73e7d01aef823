"""EventBridge publisher for canonical events and membership changes (docs/contracts.md#events-on-the-bus)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..domain.events import CustomerEvent
from ..domain.profile import MembershipChange, MetricFact
from ..errors import SegmentationError

INGEST_SOURCE = "segmentation.ingest"
PROFILES_SOURCE = "segmentation.profiles"
CUSTOMER_EVENT = "CustomerEvent"
#: PutEvents takes at most 10 entries per call.
BATCH = 10
#: PutEvents refuses an entry over 256 KB; an export larger than this is sent as a pointer instead.
MAX_DETAIL_BYTES = 240_000


class PublishError(SegmentationError):
    """EventBridge refused some entries; nothing is acknowledged, so the sender retries."""


class EventPublisher:
    def __init__(self, client: Any, bus_name: str) -> None:
        self.client = client
        self.bus_name = bus_name

    def _put(self, entries: list[dict]) -> None:
        for i in range(0, len(entries), BATCH):
            out = self.client.put_events(Entries=entries[i:i + BATCH])
            if out.get("FailedEntryCount"):
                codes = {e.get("ErrorCode") for e in out["Entries"] if e.get("ErrorCode")}
                raise PublishError(f"{out['FailedEntryCount']} entries refused: {sorted(codes)}")

    def publish_events(self, events: Iterable[CustomerEvent]) -> None:
        self._put([
            {
                "EventBusName": self.bus_name,
                "Source": INGEST_SOURCE,
                "DetailType": CUSTOMER_EVENT,
                "Time": e.occurred_at,
                "Detail": e.model_dump_json(),
            }
            for e in events
        ])

    def publish_merged(self, survivor: str, absorbed: list[str], at: str, cause: str) -> None:
        """``ProfilesMerged``: the absorbed profile ids now live on as ``survivor``."""
        self._put([{
            "EventBusName": self.bus_name, "Source": PROFILES_SOURCE, "DetailType": "ProfilesMerged",
            "Detail": json.dumps({"profile_id": survivor, "merged": absorbed, "at": at, "cause": cause}),
        }])

    def publish_export(self, profile_id: str, request: str, export: dict) -> None:
        """``ProfileDataExported``: everything stored about one person, for a data request.

        An export too large for one EventBridge entry says so (``export: null``, ``too_large``) and
        names the API route that returns it whole, instead of failing the request forever."""
        detail = json.dumps({"profile_id": profile_id, "request": request, "export": export}, default=str)
        if len(detail.encode()) > MAX_DETAIL_BYTES:
            detail = json.dumps({"profile_id": profile_id, "request": request, "export": None, "too_large": True,
                                 "export_path": f"/profiles/{profile_id}/export"})
        self._put([{
            "EventBusName": self.bus_name, "Source": PROFILES_SOURCE, "DetailType": "ProfileDataExported",
            "Detail": detail,
        }])

    def publish_metrics(self, profile_id: str, cause: str, facts: list[MetricFact]) -> None:
        """``SegmentMetrics``: what one event gave the segments' figures, one entry for all its facts."""
        self._put([{
            "EventBusName": self.bus_name, "Source": PROFILES_SOURCE, "DetailType": "SegmentMetrics",
            "Detail": json.dumps({"profile_id": profile_id, "cause": cause, "facts": [f.detail() for f in facts]}),
        }])

    def publish_changes(self, changes: Iterable[MembershipChange]) -> None:
        self._put([
            {
                "EventBusName": self.bus_name,
                "Source": PROFILES_SOURCE,
                "DetailType": c.detail_type,
                "Detail": json.dumps(c.detail()),
            }
            for c in changes
        ])
