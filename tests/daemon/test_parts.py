"""Parts have a criticality: only doors and readers may give up; the rest restart forever."""

from __future__ import annotations

import asyncio

import pytest

from daemon.events import Event
from daemon.parts import Parts
from daemon.supervise import MAX_FAILURES, PartGaveUpError


async def failing() -> None:
    raise RuntimeError("model file is garbage")


@pytest.mark.timeout(60)
async def test_a_non_critical_part_is_restarted_past_the_give_up_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("daemon.supervise.backoff_seconds", lambda *a, **k: 0.0)
    events: list[Event] = []
    parts = Parts(emit=events.append)
    async with asyncio.TaskGroup() as group:
        parts.bind(group)
        parts.start("camera:front", None, failing)
        while parts["camera:front"].state.failures <= MAX_FAILURES * 3:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        assert not parts["camera:front"].task.done()
        await parts.stop("camera:front")
    assert [e.reason for e in events if e.type == "part.fault"] == ["error"]  # said once


@pytest.mark.timeout(60)
async def test_a_critical_part_that_keeps_failing_gives_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("daemon.supervise.backoff_seconds", lambda *a, **k: 0.0)
    parts = Parts(emit=lambda e: None)
    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.TaskGroup() as group:
            parts.bind(group)
            parts.start("door:front", None, failing)
    assert caught.group_contains(PartGaveUpError)
