"""Optimistic concurrency: every profile write is conditional on the version read; a writer that
loses the race reads again and redoes its work. The loop is written once, here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import ConflictError
from .ports import ConcurrentUpdateError

#: how many times one piece of work is redone on fresh data before it is left for a retry
MAX_ATTEMPTS = 8

T = TypeVar("T")


class TooMuchContentionError(ConflictError):
    """The profile kept changing under us; the work is left for a retry (the queue redelivers)."""


def retry_on_conflict(attempt: Callable[[], T], what: str) -> T:
    """Call ``attempt`` until it returns without :class:`ConcurrentUpdateError`, at most
    :data:`MAX_ATTEMPTS` times, and return what it returned.

    ``attempt`` reads what it needs afresh each time (a conflict means its data is stale).
    ``what`` names the work for the error.
    Raises :class:`TooMuchContentionError` when every attempt lost the race.
    """
    for _ in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except ConcurrentUpdateError:
            continue
    raise TooMuchContentionError(f"{what} changed {MAX_ATTEMPTS} times under concurrent writers")
