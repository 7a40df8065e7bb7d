"""Scheduled unlocked hours: a door with a hold-open schedule follows it, lockdown excepted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.app import Gate
from daemon.configfile import ConfigError, load_config
from daemon.notify import Notifier

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: hold-gate, site: test}}
hardware: {{gpio_backend: mock}}
doors:
  market: {{lock: {{pin: 17}}, access: card, hold_open_schedule: "{schedule}"}}
control: {{socket: {state}/control.sock}}
"""


def gate(tmp_path: Path, schedule: str) -> Gate:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", schedule=schedule))
    return Gate(config, load_config(config), Notifier(None))


@pytest.mark.timeout(30)
async def test_door_is_held_open_inside_the_schedule_and_lockdown_wins(tmp_path: Path) -> None:
    g = gate(tmp_path, "always")
    cfg = g.config.doors["market"]
    task = asyncio.create_task(g._run_door("market", cfg))
    try:
        async with asyncio.timeout(10):
            while g.doors.get("market") is None or g.doors["market"].mode != "hold_open":  # noqa: ASYNC110 (polls another task's door)
                await asyncio.sleep(0.01)
        door = g.doors["market"]
        assert door.status()["lock"] == "unlocked"
        door.set_mode("lockdown")
        await asyncio.sleep(0.05)
        assert door.mode == "lockdown"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert g.board is not None


def test_a_bad_schedule_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"doors\.market\.hold_open_schedule"):
        gate(tmp_path, "mon-fri 25:00-26:00")
