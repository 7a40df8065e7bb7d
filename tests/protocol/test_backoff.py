"""The one reconnect backoff: doubling, capped, jittered between half and all, reset on success."""

from __future__ import annotations

import pytest

from protocol.backoff import Backoff, backoff_seconds


def top(low: float, high: float) -> float:
    return high


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (10_000, 30.0)]
)
def test_doubles_and_caps(attempt: int, expected: float) -> None:
    assert backoff_seconds(attempt, initial=0.5, cap=30.0, jitter=top) == expected


def test_jitter_draws_between_half_and_all() -> None:
    delays = {backoff_seconds(3, initial=0.5, cap=30.0) for _ in range(100)}
    assert all(1.0 <= d <= 2.0 for d in delays) and len(delays) > 1


def test_next_and_reset() -> None:
    backoff = Backoff(1.0, 4.0, jitter=top)
    assert [backoff.next() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 1.0 and backoff.attempt == 1
