"""Card-scanning lockout: the sixth denial in 50 s locks the reader, the fifth does not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.lockout import Lockout


def test_sixth_denial_within_window_starts_lockout() -> None:
    lock = Lockout(max_denied=5, window_seconds=50, cooldown_seconds=300)
    started = [lock.denied("front", t) for t in (0, 10, 20, 30, 40)]
    assert started == [False] * 5
    assert not lock.locked("front", 41)
    assert lock.denied("front", 49.9)
    assert lock.locked("front", 50) and lock.locked("front", 349.8)
    assert not lock.locked("front", 349.9 + 0.1)
    assert not lock.locked("vehicle", 60)  # other readers are unaffected


def test_denials_outside_window_do_not_add_up() -> None:
    lock = Lockout(max_denied=5, window_seconds=50, cooldown_seconds=300)
    assert not any(lock.denied("front", t) for t in (0, 11, 22, 33, 44, 55, 66, 77))


def test_attack_raised_once_per_lockout() -> None:
    lock = Lockout(max_denied=2, window_seconds=10, cooldown_seconds=30)
    results = [lock.denied("r", t) for t in (0, 1, 2, 3, 4, 5)]
    assert results.count(True) == 1
    assert lock.ignore("r") == 1 and lock.ignore("r") == 2


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=60))
def test_never_locks_with_at_most_max_denials_per_window(times: list[float]) -> None:
    lock = Lockout(max_denied=5, window_seconds=50, cooldown_seconds=300)
    times = sorted(times)
    for i, t in enumerate(times):
        in_window = sum(1 for u in times[: i + 1] if u > t - 50)
        if lock.denied("r", t):
            assert in_window > 5
