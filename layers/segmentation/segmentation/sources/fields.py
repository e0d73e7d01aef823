"""Reading payload fields the same way in every adapter: strict types, bounded sizes, valid Unicode.

Each raises ValueError with the field's name; adapters turn that into a 400 (MalformedPayloadError).

Event times are accepted from 2000-01-01 to one day ahead of the time the webhook arrives
(:func:`utc_time`, :func:`epoch_time`; docs/webhooks.md "Accepted values"). Amounts and quantities
are not negative unless a field is read with ``signed=True``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ..domain.events import EARLIEST_EVENT_TIME

MAX_MONEY = Decimal("1e15")
#: How far past the receiving clock an event time may be: senders' clocks drift and time zones get
#: mislabelled by hours, but a time further ahead is not early, it is wrong (a year-9999 order would keep
#: its customer a recent buyer for ever).
MAX_AHEAD = timedelta(days=1)
#: the arrival time of the delivery being read (epoch seconds); unset: the wall clock
_received_at: ContextVar[int | None] = ContextVar("received_at", default=None)


@contextmanager
def receiving_at(now: int) -> Iterator[None]:
    """Check event times read inside this block against ``now``, the delivery's arrival."""
    token = _received_at.set(now)
    try:
        yield
    finally:
        _received_at.reset(token)


def _latest() -> datetime:
    now = _received_at.get()
    return datetime.fromtimestamp(time.time() if now is None else now, UTC) + MAX_AHEAD


def _ahead_text() -> str:
    days = MAX_AHEAD / timedelta(days=1)
    return f"{days:g} day{'' if days == 1 else 's'}"


def _before_range(field: str) -> ValueError:
    return ValueError(f"{field} is before the accepted range ({EARLIEST_EVENT_TIME:%Y-%m-%dT%H:%M:%SZ} or later)")


def _after_range(field: str) -> ValueError:
    return ValueError(f"{field} is after the accepted range (at most {_ahead_text()} ahead of now)")


def in_range(value: datetime, field: str) -> datetime:
    """``value`` (timezone-aware) when it is an accepted event time, else ValueError naming ``field``."""
    if value < EARLIEST_EVENT_TIME:
        raise _before_range(field)
    if value > _latest():
        raise _after_range(field)
    return value


def unicode_text(text: str, field: str) -> str:
    """``text`` if it is valid Unicode (JSON can smuggle in lone surrogates, which cannot be stored)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} is not valid Unicode") from None
    return text


def money(value: Any, field: str, signed: bool = False) -> Decimal:
    """A decimal amount (string or number); absent or empty is 0. Negative only with ``signed``: the
    amounts platforms send (totals, prices, refunds) are not negative, except where documented."""
    if value is None or value == "":
        return Decimal("0")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{field} must be a decimal")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{field} is not a decimal") from None
    if not amount.is_finite() or abs(amount) >= MAX_MONEY:
        raise ValueError(f"{field} is out of range")
    if amount < 0 and not signed:
        raise ValueError(f"{field} must not be negative")
    return amount


def ident(value: Any, field: str) -> str:
    """An id: a string or an integer, 1 to 128 characters."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{field} must be a string or integer")
    text = unicode_text(str(value).strip(), field)
    if not text or len(text) > 128:
        raise ValueError(f"{field} must be 1 to 128 characters")
    return text


def optional_ident(value: Any, field: str) -> str | None:
    """An id, or None for absent, empty and 0 (platforms' "guest")."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    return ident(value, field)


def text(value: Any, field: str, limit: int = 200) -> str | None:
    """A string trimmed to ``limit`` characters; None when absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    return unicode_text(value.strip()[:limit], field) or None


def require(payload: dict, key: str) -> Any:
    """``payload[key]``, which must be present and not empty."""
    value = payload.get(key)
    if value is None or value == "":
        raise ValueError(f"missing field {key!r}")
    return value


def utc_time(value: Any, field: str) -> datetime:
    """ISO 8601 / RFC 3339, or ``YYYY-MM-DD HH:MM:SS``; without an offset it is UTC (as the
    platforms' ``*_gmt`` and database times are). It must be in the accepted range (:func:`in_range`)."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
    return aware_time(parsed, field)


def aware_time(parsed: datetime, field: str) -> datetime:
    """A parsed time in UTC (UTC when it has no offset), checked by :func:`in_range`."""
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31 west of UTC, 0001-01-01 east of it: not a datetime in UTC
        raise (_after_range(field) if parsed.year > 1 else _before_range(field)) from None
    return in_range(parsed, field)


def epoch_time(value: Any, field: str) -> datetime:
    """Epoch seconds (an integer or a number) as a UTC time in the accepted range (:func:`in_range`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{field} must be epoch seconds")
    if value < EARLIEST_EVENT_TIME.timestamp():
        raise _before_range(field)
    if value > _latest().timestamp():
        raise _after_range(field)
    return datetime.fromtimestamp(int(value), UTC)


def quantity(value: Any, field: str) -> int:
    """A line item's quantity (number or numeric string), 0 or more; absent or empty is 1."""
    if value is None or value == "":
        return 1
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{field} must be a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{field} is not a number") from None
    if not amount.is_finite() or abs(amount) > 10**9:
        raise ValueError(f"{field} is out of range")
    if amount < 0:
        raise ValueError(f"{field} must not be negative")
    return int(amount)


def objects(payload: dict, key: str, limit: int) -> list[dict]:
    """``payload[key]``: a list of objects (absent or empty is ``[]``), the first ``limit`` of them."""
    raw = payload.get(key) or []
    if not isinstance(raw, list):
        raise ValueError(f"{key} must be a list")
    items = raw[:limit]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{key} entries must be objects")
    return items
