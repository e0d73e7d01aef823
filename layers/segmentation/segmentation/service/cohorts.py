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
import json
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from ..domain.profile import Profile
from ..errors import InvalidInputError
from .ports import ProfileStore

SCAN_PAGE = 200


class InvalidCohortCursorError(InvalidInputError):
    pass


def _empty() -> dict:
    return {"customers": 0, "repeat": 0, "value": "0"}


def _add(group: dict, orders: int, value: Decimal) -> None:
    group["customers"] += 1
    group["repeat"] += orders >= 2
    group["value"] = str(Decimal(group["value"]) + value)


def _out(group: dict) -> dict:
    n = group["customers"]
    return {"customers": n, "repeat_rate": group["repeat"] / n if n else None,
            "avg_ltv": str((Decimal(group["value"]) / n).quantize(Decimal("0.01"))) if n else "0.00"}


def customer(profile: Profile) -> tuple[str, int, Decimal] | None:
    """(first-order month, orders, lifetime revenue), or None for a profile that never ordered."""
    orders = [o for o in profile.orders.values() if o.counts]
    if not orders:
        return None
    first = min(o.at for o in orders)
    return datetime.fromtimestamp(first, UTC).strftime("%Y-%m"), len(orders), sum((o.total for o in orders), Decimal(0))


def cohorts(store: ProfileStore, segment_id: str | None = None, cursor: str | None = None,
            budget_s: float = 20.0, clock: Callable[[], float] = time.monotonic) -> dict:
    state = _decode(cursor, segment_id) if cursor else {"of": segment_id, "key": None, "months": {},
                                                         "members": _empty(), "others": _empty(), "scanned": 0}
    deadline = clock() + budget_s
    done = False
    while True:
        profiles, last = store.scan_page(0, 1, SCAN_PAGE, state["key"])
        state["scanned"] += len(profiles)
        for p in profiles:
            found = customer(p)
            if found is None:
                continue
            month, orders, value = found
            _add(state["months"].setdefault(month, _empty()), orders, value)
            if segment_id:
                _add(state["members"] if segment_id in p.segments else state["others"], orders, value)
        state["key"] = last
        if last is None:
            done = True
            break
        if clock() >= deadline:
            break
    return {"months": [{"month": m, **_out(g)} for m, g in sorted(state["months"].items())],
            "segment": None if not segment_id else {"segment_id": segment_id, "members": _out(state["members"]),
                                                    "non_members": _out(state["others"])},
            "scanned": state["scanned"], "complete": done, "cursor": None if done else _encode(state)}


def _encode(state: dict) -> str:
    return base64.urlsafe_b64encode(zlib.compress(json.dumps(state).encode())).decode().rstrip("=")


def _decode(cursor: str, segment_id: str | None) -> dict:
    try:
        state = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))))
        ok = isinstance(state, dict) and {"of", "key", "months", "members", "others", "scanned"} <= set(state)
    except (binascii.Error, zlib.error, ValueError, TypeError):
        ok = False
    key = state.get("key") if ok else None
    if not ok or not (key is None or (isinstance(key, dict) and set(key) == {"profile_id"})):
        raise InvalidCohortCursorError("cursor is not one a cohorts request issued")
    if state["of"] != segment_id:
        raise InvalidCohortCursorError("cursor belongs to another request: send the same segment")
    return state
