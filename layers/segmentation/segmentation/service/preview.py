"""Dry-run of a new or edited segment definition against the stored profiles (writes nothing).

Each profile is evaluated twice at the same instant, under the current catalog and under the
catalog with the one segment replaced, so the enter/leave lists are exactly what the edit would
change (not drift from time passing since the last evaluation). Profiles are read page by page
within a time budget; a cursor carries the running totals, so the last call's figures cover
every profile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
import zlib
from collections.abc import Callable

from pydantic import BaseModel, Field, ValidationError

from ..domain.catalog import Catalog, CatalogError, CatalogFile, SegmentSpec
from ..domain.evaluation import CatalogEvaluator
from ..domain.profile import Retention, iso
from ..errors import InvalidInputError
from .ports import ProfileStore

SCAN_PAGE = 200


class InvalidPreviewError(InvalidInputError):
    """The definition does not validate in the catalog (the message says where and why)."""


class _Key(BaseModel):
    S: str = Field(min_length=1)


class _State(BaseModel):
    """What a preview cursor carries: where the scan is, the running totals and samples."""

    of: str  # the segment id and a digest of the definition: a cursor only continues its own preview
    at: int
    key: dict[str, _Key] | None = None
    scanned: int = 0
    size: int = 0
    current: int = 0
    entering: int = 0
    leaving: int = 0
    sample: list[dict[str, str]] = Field(default_factory=list)
    enter: list[dict[str, str]] = Field(default_factory=list)
    leave: list[dict[str, str]] = Field(default_factory=list)


def _digest(segment_id: str, spec: SegmentSpec) -> str:
    return segment_id + ":" + hashlib.sha256(spec.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


def candidate_catalog(current: Catalog, segment_id: str, spec: SegmentSpec) -> Catalog:
    """The current catalog with ``segment_id`` replaced by (or extended with) ``spec``, validated
    as a whole: references, cycles, lifetime reads. Raises :class:`InvalidPreviewError`."""
    data = current.spec.model_dump(by_alias=True, exclude_none=True)
    data["segments"][segment_id] = spec.model_dump(by_alias=True, exclude_none=True)
    try:
        return Catalog(CatalogFile.model_validate(data), source="preview")
    except ValidationError as exc:
        raise InvalidPreviewError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    except CatalogError as exc:
        raise InvalidPreviewError(str(exc).removeprefix("preview: ")) from None


def retention_warnings(current: Retention, needed: Retention) -> list[str]:
    """What the new definition reads further back than profiles keep (the preview cannot see it)."""
    out = []
    for signal, window in sorted(needed.browse.items()):
        kept = current.browse.get(signal, 0)
        if window > kept:
            out.append(f"{signal} is kept {kept // 86400} days but the definition reads {window // 86400}: "
                       "older events are not in the preview (nor, until they accumulate, in the segment)")
    if needed.email > current.email:
        out.append(f"email events are kept {current.email // 86400} days but the definition reads "
                   f"{needed.email // 86400}: older messages are not in the preview")
    if needed.checkouts > current.checkouts:
        out.append(f"checkouts are kept {current.checkouts // 86400} days but the definition reads "
                   f"{needed.checkouts // 86400}: older checkouts are not in the preview")
    return out


class SegmentPreview:
    def __init__(self, repository: ProfileStore, evaluator: CatalogEvaluator, clock: Callable[[], float] = time.time) -> None:
        self.repository = repository
        self.evaluator = evaluator
        self.clock = clock

    def run(self, segment_id: str, spec: SegmentSpec, sample: int, page_size: int, cursor: str | None,
            budget_s: float) -> dict:
        new = CatalogEvaluator(candidate_catalog(self.evaluator.catalog, segment_id, spec))
        exists = segment_id in self.evaluator.catalog.segments
        of = _digest(segment_id, spec)
        state = _decode(cursor, of) if cursor else _State(of=of, at=int(self.clock()))
        deadline = self.clock() + budget_s
        read = 0
        done = False
        while read < page_size and self.clock() < deadline:
            start = {k: v.model_dump() for k, v in state.key.items()} if state.key else None
            profiles, last = self.repository.scan_page(0, 1, min(SCAN_PAGE, page_size - read), start)
            state.key = {k: _Key(**v) for k, v in last.items()} if last else None
            read += len(profiles)
            for p in profiles:
                at = max(state.at, p.evaluated_at or 0)
                after = new.segment_members(p, at, segment_id)
                before = self.evaluator.segment_members(p, at, segment_id) if exists else set()
                state.size += len(after)
                state.current += len(before)
                for key, into, counter in ((after, state.sample, None), (after - before, state.enter, "entering"),
                                           (before - after, state.leave, "leaving")):
                    for sid in sorted(key):
                        if counter:
                            setattr(state, counter, getattr(state, counter) + 1)
                        if len(into) < sample:
                            into.append({"profile_id": p.profile_id, "segment_id": sid})
            state.scanned += len(profiles)
            if state.key is None:
                done = True
                break
        return {
            "segment_id": segment_id, "exists": exists, "at": iso(state.at),
            "size": state.size, "current_size": state.current, "entering": state.entering, "leaving": state.leaving,
            "sample": state.sample[:sample], "enter_sample": state.enter[:sample], "leave_sample": state.leave[:sample],
            "scanned": state.scanned, "complete": done, "cursor": None if done else _encode(state),
            "warnings": retention_warnings(self.evaluator.retention, new.retention),
        }


def _encode(state: _State) -> str:
    raw = state.model_dump_json().encode()
    return base64.urlsafe_b64encode(zlib.compress(raw)).decode().rstrip("=")


def _decode(cursor: str, of: str) -> _State:
    try:
        state = _State.model_validate_json(zlib.decompress(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))))
    except (binascii.Error, zlib.error, ValueError, TypeError):
        raise InvalidPreviewError("cursor is not one a preview issued") from None
    if state.of != of or (state.key is not None and set(state.key) != {"profile_id"}):
        raise InvalidPreviewError("cursor belongs to another preview: send the same segment_id and definition")
    return state
