"""supervise(): restart with backoff, one failed/restored pair per episode, then give up."""

from __future__ import annotations

import asyncio

import pytest

from daemon.events import Event
from daemon.supervise import PartGaveUpError, PartState, supervise
from protocol.backoff import backoff_seconds

FAST = {"initial_backoff_seconds": 0.001, "max_backoff_seconds": 0.002, "stable_seconds": 0.05}


@pytest.mark.parametrize(
    ("attempt", "initial", "cap", "low", "high"),
    [
        (1, 0.5, 30, 0.25, 0.5),
        (2, 0.5, 30, 0.5, 1.0),
        (4, 0.5, 30, 2.0, 4.0),
        (20, 0.5, 30, 15.0, 30.0),  # capped
    ],
)
def test_backoff_doubles_with_jitter_and_is_capped(
    attempt: int, initial: float, cap: float, low: float, high: float
) -> None:
    delays = {backoff_seconds(attempt, initial=initial, cap=cap) for _ in range(50)}
    assert all(low <= d <= high for d in delays)
    assert len(delays) > 1  # jittered, not lock-step


@pytest.mark.timeout(10)
async def test_part_that_returns_is_not_restarted() -> None:
    events: list[Event] = []
    runs = 0

    async def part() -> None:
        nonlocal runs
        runs += 1

    await supervise("reader:x", part, emit=events.append, **FAST)
    assert runs == 1
    assert events == []


@pytest.mark.timeout(10)
async def test_failure_then_recovery_gives_one_failed_and_one_restored() -> None:
    events: list[Event] = []
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise OSError("port vanished")
        await asyncio.sleep(0.2)  # stays up longer than stable_seconds
        done.set()

    state = PartState("camera")
    await supervise("camera", flaky, emit=events.append, state=state, **FAST)
    assert done.is_set()
    assert [e.type for e in events] == ["part.fault", "part.restored"]
    assert events[0].data["part"] == "camera"
    assert "port vanished" in events[0].data["error"]
    assert state.restarts == 3
    assert not state.failed


@pytest.mark.timeout(10)
async def test_gives_up_after_five_failures_within_the_window() -> None:
    events: list[Event] = []
    runs = 0

    async def broken() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("boom")

    with pytest.raises(PartGaveUpError, match="uplink failed 5 times"):
        await supervise("uplink", broken, emit=events.append, **FAST)
    assert runs == 5
    assert [e.type for e in events] == ["part.fault", "part.fault"]
    assert events[-1].reason == "gave_up"


@pytest.mark.timeout(10)
async def test_failures_spread_beyond_the_window_do_not_give_up() -> None:
    """Five failures, but the clock says each is a minute after the previous one."""
    events: list[Event] = []
    runs = 0
    fake_now = 0.0

    def clock() -> float:
        return fake_now

    async def slow_failure() -> None:
        nonlocal runs, fake_now
        runs += 1
        fake_now += 61.0
        if runs <= 7:
            raise RuntimeError("transient")

    await supervise("reader:y", slow_failure, emit=events.append, clock=clock, **FAST)
    assert runs == 8


@pytest.mark.timeout(10)
async def test_cancellation_passes_through_without_events() -> None:
    events: list[Event] = []
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("door:front", forever, emit=events.append, **FAST))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == []
