"""The base of every error the package raises on purpose, and the three kinds callers act on.

Each package keeps the errors of its own concern in one module (``sources/errors.py`` for webhook
answers, ``service/ports.py`` for store outcomes, ``domain/catalog.py`` for catalog mistakes), and
every one of them derives from a kind below, so a caller can catch by kind (``except
InvalidInputError`` -> 400) without knowing every class, and ``except SegmentationError`` tells our
own errors from bugs.
"""

from __future__ import annotations


class SegmentationError(Exception):
    """Raised on purpose by this package (anything else is a bug or an infrastructure fault)."""


class InvalidInputError(SegmentationError, ValueError):
    """What the caller sent cannot be used (a malformed webhook, catalog, definition or cursor)."""


class NotFoundError(SegmentationError, LookupError):
    """What the caller named does not exist (a segment, a profile)."""


class ConflictError(SegmentationError):
    """Someone else got there first (a concurrent writer, a delivery in progress): retry."""
