"""SIGHUP with a bad config keeps the running gate on its old one (issue 14 #6).

A real gate in simulate mode runs in this process; each broken file is written over its config
and ``reload()`` (what SIGHUP calls) must answer with ``config.rejected`` naming FILE:LINE:COL,
keep the old config and keep the door working.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from daemon.app import Gate
from daemon.configfile import load_config
from daemon.notify import Notifier
from yamlconfig import MAX_DEPTH, MAX_NODES

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: reload-gate, site: test}}
hardware: {{gpio_backend: mock}}
doors:
  front:
    lock: {{pin: 17}}
    unlock_seconds: 5
    access: card
control: {{socket: {state}/control.sock}}
"""

BOMB = "".join(
    [f"l0: &l0 [{', '.join(['x'] * 10)}]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)]
)


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Gate]:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    gate = Gate(config, load_config(config), Notifier(None))
    task = asyncio.create_task(gate.run())
    try:
        async with asyncio.timeout(20):
            while "front" not in gate.doors:  # noqa: ASYNC110 (another task builds the door)
                await asyncio.sleep(0.01)
        yield gate
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def rejected(gate: Gate) -> dict[str, Any]:
    event = gate.recent[-1]
    assert event["type"] == "config.rejected", event
    return event


BROKEN = [
    ("unlock_seconds: 5", "unlock_seconds: 5\x00", "8:22: control character U+0000 (NUL)"),
    ("unlock_seconds: 5", "unlock_seconds: " + "5" * 5000, "8:21: a number of 5000 digits"),
    ("version: 1\n", "version: 1\n" + BOMB, f"more than {MAX_NODES} values"),
    ("version: 1\n", "version: 1\nx: " + "[" * 100 + "]" * 100 + "\n",
     f"2:{3 + MAX_DEPTH}: nested more than {MAX_DEPTH} levels deep"),
    ("    lock: {pin: 17}", "    lock: {pin: 17", "7:11: YAML syntax error: the '{' opened here"),
    ("unlock_seconds: 5", "unlock_seconds: 5s", "8:21: doors.front.unlock_seconds: '5s' is not"),
    ("version: 1\n", "version: 1\nversion: 1\n", "2:1: version: key 'version' appears twice"),
]


@pytest.mark.timeout(120)
async def test_every_kind_of_bad_file_is_rejected_and_the_old_config_runs(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as gate:
        good = gate.config_path.read_text()
        old = gate.config
        for before, after, expected in BROKEN:
            gate.config_path.write_text(good.replace(before, after, 1))
            async with asyncio.timeout(30):
                assert await gate.reloader.reload() is False
            problems = rejected(gate)["data"]["problems"]
            assert len(problems) == 1 and problems[0].startswith(f"{gate.config_path}:"), problems
            assert expected in problems[0], problems
            assert gate.config is old
            assert gate.doors["front"].grant("card", "p1") is None  # the door still opens
        gate.config_path.write_text(good.replace("unlock_seconds: 5", "unlock_seconds: 3"))
        assert await gate.reloader.reload() is True
        assert gate.config.doors["front"].unlock_seconds == 3


@pytest.mark.timeout(60)
async def test_a_failure_while_applying_returns_to_the_old_config(tmp_path: Path) -> None:
    async with running(tmp_path) as gate:
        old = gate.config
        gate.config_path.write_text(
            gate.config_path.read_text().replace("unlock_seconds: 5", "unlock_seconds: 3"))
        real_apply = Gate.apply
        calls: list[int] = []

        async def apply_once_failing(self: Gate, config: Any) -> list[str]:
            calls.append(1)
            if len(calls) == 1:
                raise OSError(24, "Too many open files")
            return await real_apply(self, config)

        with mock.patch.object(Gate, "apply", autospec=True, side_effect=apply_once_failing):
            assert await gate.reloader.reload() is False
        assert rejected(gate)["reason"] == "apply_failed"
        assert rejected(gate)["data"]["problems"] == [
            f"{gate.config_path}:1:1: cannot apply: [Errno 24] Too many open files"]
        assert gate.config is old
        assert "door:front" in gate.parts
