"""Cohorts (issue 15, docs/measure.md): customers grouped by the month of their first order, with the
share who ordered again and their average lifetime value; and the same for the members and the
non-members of a segment, so "did this segment's campaigns lift lifetime value" has a number.

It reads every profile (a scan), so one request reads until its time runs short and hands back a
cursor that carries the sums so far; the call that answers ``complete: true`` covers every profile.
Orders counted are the profile's orders (kept for life); cancelled and fully refunded ones do not
count, as everywhere else.
"""

from __future__ import annotations

import base64
import binascii
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..domain.profile import Profile
from ..errors import InvalidInputError
from .ports import ProfileStore

SCAN_PAGE = 200


class InvalidCohortCursorError(InvalidInputError):
    pass


class _Group(BaseModel):
    """Sums over a group of customers (a month, a segment's members, the others)."""

    model_config = ConfigDict(extra="forbid")

    customers: int = Field(default=0, ge=0)
    repeat: int = Field(default=0, ge=0)
    value: Decimal = Field(default=Decimal(0), allow_inf_nan=False)

    def add(self, orders: int, value: Decimal) -> None:
        self.customers += 1
        self.repeat += orders >= 2
        self.value += value

    def out(self) -> dict:
        n = self.customers
        return {"customers": n, "repeat_rate": self.repeat / n if n else None,
                "avg_ltv": str((self.value / n).quantize(Decimal("0.01"))) if n else "0.00"}


class _Key(BaseModel):
    S: str = Field(min_length=1)


class _State(BaseModel):
    """What a cursor carries: where the scan stopped, and the sums so far."""

    model_config = ConfigDict(extra="forbid")

    of: str | None
    key: dict[Literal["profile_id"], _Key] | None = None
    months: dict[Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")], _Group] = Field(default_factory=dict)
    members: _Group = Field(default_factory=_Group)
    others: _Group = Field(default_factory=_Group)
    scanned: int = Field(default=0, ge=0)


def customer(profile: Profile) -> tuple[str, int, Decimal] | None:
    """(first-order month, orders, lifetime revenue), or None for a profile that never ordered."""
    orders = [o for o in profile.orders.values() if o.counts]
    if not orders:
        return None
    first = min(o.at for o in orders)
    return datetime.fromtimestamp(first, UTC).strftime("%Y-%m"), len(orders), sum((o.total for o in orders), Decimal(0))


def cohorts(store: ProfileStore, segment_id: str | None = None, cursor: str | None = None,
            budget_s: float = 20.0, clock: Callable[[], float] = time.monotonic) -> dict:
    state = _decode(cursor, segment_id) if cursor else _State(of=segment_id)
    deadline = clock() + budget_s
    done = False
    while True:
        start = {k: v.model_dump() for k, v in state.key.items()} if state.key else None
        profiles, last = store.scan_page(0, 1, SCAN_PAGE, start)
        state.scanned += len(profiles)
        for p in profiles:
            found = customer(p)
            if found is None:
                continue
            month, orders, value = found
            state.months.setdefault(month, _Group()).add(orders, value)
            if segment_id:
                (state.members if segment_id in p.segments else state.others).add(orders, value)
        state.key = {k: _Key(**v) for k, v in last.items()} if last else None
        if last is None:
            done = True
            break
        if clock() >= deadline:
            break
    return {"months": [{"month": m, **g.out()} for m, g in sorted(state.months.items())],
            "segment": None if not segment_id else {"segment_id": segment_id, "members": state.members.out(),
                                                    "non_members": state.others.out()},
            "scanned": state.scanned, "complete": done, "cursor": None if done else _encode(state)}


def _encode(state: _State) -> str:
    return base64.urlsafe_b64encode(zlib.compress(state.model_dump_json().encode())).decode().rstrip("=")


def _decode(cursor: str, segment_id: str | None) -> _State:
    try:
        state = _State.model_validate_json(zlib.decompress(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))))
    except (binascii.Error, zlib.error, ValueError, TypeError):
        raise InvalidCohortCursorError("cursor is not one a cohorts request issued") from None
    if state.of != segment_id:
        raise InvalidCohortCursorError("cursor belongs to another request: send the same segment")
    return state
