"""retry_on_conflict: the one loop every conditional profile write goes through."""

from __future__ import annotations

import pytest
from segmentation.service.ports import ConcurrentUpdateError
from segmentation.service.retry import MAX_ATTEMPTS, TooMuchContentionError, retry_on_conflict


def losing(times: int):
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) <= times:
            raise ConcurrentUpdateError("p1")
        return len(calls)

    return attempt, calls


def test_a_write_that_loses_the_race_is_redone_until_it_wins():
    attempt, calls = losing(MAX_ATTEMPTS - 1)
    assert retry_on_conflict(attempt, "profile p1") == MAX_ATTEMPTS
    assert len(calls) == MAX_ATTEMPTS


def test_after_max_attempts_the_work_is_left_for_a_retry():
    attempt, calls = losing(MAX_ATTEMPTS)
    with pytest.raises(TooMuchContentionError, match="profile p1 changed 8 times"):
        retry_on_conflict(attempt, "profile p1")
    assert len(calls) == MAX_ATTEMPTS


def test_other_errors_are_not_retried():
    calls = []

    def attempt():
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        retry_on_conflict(attempt, "profile p1")
    assert len(calls) == 1
