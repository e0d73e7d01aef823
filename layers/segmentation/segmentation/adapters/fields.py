"""Reading payload fields the same way in every adapter: strict types, bounded sizes, valid Unicode.

Each raises ValueError with the field's name; adapters turn that into a 400 (MalformedPayloadError).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_MONEY = Decimal("1e15")


def unicode_text(text: str, field: str) -> str:
    """``text`` if it is valid Unicode (JSON can smuggle in lone surrogates, which cannot be stored)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} is not valid Unicode") from None
    return text


def money(value: Any, field: str) -> Decimal:
    """A decimal amount (string or number); absent or empty is 0."""
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
    platforms' ``*_gmt`` and database times are)."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def quantity(value: Any, field: str) -> int:
    """A line item's quantity (number or numeric string); absent or empty is 1."""
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
    return int(amount)
