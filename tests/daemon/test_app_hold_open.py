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
    task = asyncio.create_task(g.doors.run("market", cfg))
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


@pytest.mark.timeout(30)
async def test_signed_mode_command_locks_the_door_down(tmp_path: Path) -> None:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", schedule="mon 00:00-00:01")
                      .replace(', hold_open_schedule: "mon 00:00-00:01"', ""))
    g = Gate(config, load_config(config), Notifier(None))
    task = asyncio.create_task(g.doors.run("market", g.config.doors["market"]))
    try:
        async with asyncio.timeout(10):
            while "market" not in g.doors:  # noqa: ASYNC110 (waits for another task's door)
                await asyncio.sleep(0.01)
        result = await g.station_commands.mode({"door": "market", "mode": "lockdown"})
        assert result == {"door": "market", "mode": "lockdown", "previous": "normal",
                          "mode_source": "station", "mode_until_ms": None}
        assert g.doors["market"].grant("card", "p1") == "lockdown"
        assert g.doors["market"].grant("remote") is None  # a signed remote open still works
        with pytest.raises(ValueError, match="door mode must be one of"):
            await g.station_commands.mode({"door": "market", "mode": "party"})
        assert [e["action"] for e in g.audit_log.entries()] == ["door.mode"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
