"""Durable door modes with a documented precedence (issue 14, finding 4).

lockdown > a mode set by the station or a local admin (until cancelled or its end time) > the
hold-open schedule > normal; modes survive a restart of the door part, of the daemon and a reload;
a reload keeps the relay pin claimed unless the lock's wiring changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.app import Gate
from daemon.configfile import load_config
from daemon.door_modes import ModeBook, ModeError
from daemon.notify import Notifier

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: mode-gate, site: test}}
hardware: {{gpio_backend: mock}}
doors:
  market: {{lock: {{pin: {pin}}}, access: card, unlock_seconds: {unlock}{schedule}}}
control: {{socket: {state}/control.sock}}
"""
ALWAYS = ', hold_open_schedule: "always"'
NOW = 1_800_000_000_000


def write(tmp_path: Path, *, schedule: str = ALWAYS, pin: int = 17, unlock: int = 5) -> Path:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", schedule=schedule, pin=pin,
                                    unlock=unlock))
    return config


def new_gate(config: Path) -> Gate:
    return Gate(config, load_config(config), Notifier(None))


@pytest.mark.parametrize(("entries", "scheduled", "want"), [
    ([], None, ("normal", "default")),
    ([], True, ("hold_open", "schedule")),
    ([], False, ("normal", "schedule")),
    ([("normal", "station", None)], True, ("normal", "station")),
    ([("hold_open", "admin", None)], False, ("hold_open", "admin")),
    ([("lockdown", "station", None)], True, ("lockdown", "station")),
    ([("lockdown", "admin", NOW + 1)], True, ("hold_open", "schedule")),  # its end time passed
    ([("hold_open", "station", None), ("schedule", "station", None)], False,
     ("normal", "schedule")),  # cancelled
])
def test_precedence(tmp_path: Path, entries: list[tuple[str, str, int | None]],
                    scheduled: bool | None, want: tuple[str, str]) -> None:
    book = ModeBook(tmp_path / "modes.json")
    for mode, source, until in entries:
        book.set("front", mode, source=source, actor="t", now_ms=NOW - 10, until_ms=until)
    effective = book.effective("front", scheduled_open=scheduled, now_ms=NOW + 2)
    assert (effective.mode, effective.source) == want


def test_hold_open_is_refused_during_a_lockdown_and_modes_survive_a_new_book(
        tmp_path: Path) -> None:
    book = ModeBook(tmp_path / "modes.json")
    book.set("front", "lockdown", source="station", actor="station", now_ms=NOW)
    with pytest.raises(ModeError, match="door front is in lockdown; lift it first"):
        book.set("front", "hold_open", source="admin", actor="uid:0", now_ms=NOW)
    book.write(book.snapshot(NOW))
    again = ModeBook(tmp_path / "modes.json")
    assert again.effective("front", scheduled_open=True, now_ms=NOW).mode == "lockdown"
    (tmp_path / "modes.json").write_text("{not json")  # damaged: never stops a door
    assert ModeBook(tmp_path / "modes.json").effective(
        "front", scheduled_open=None, now_ms=NOW).mode == "normal"


async def start_door(g: Gate) -> asyncio.Task[None]:
    task = asyncio.create_task(g.doors.run("market", g.config.doors["market"]))
    async with asyncio.timeout(10):
        while "market" not in g.doors:  # noqa: ASYNC110 (the door part's task)
            await asyncio.sleep(0.01)
    return task


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.mark.timeout(60)
async def test_station_normal_on_a_scheduled_door_holds_past_the_schedule_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("daemon.doors.HOLD_OPEN_CHECK_SECONDS", 1)  # re-check every second
    g = new_gate(write(tmp_path))
    task = await start_door(g)
    try:
        assert g.doors["market"].mode == "hold_open"
        result = await g.station_commands.mode({"door": "market", "mode": "normal"})
        assert result["mode"] == "normal" and result["mode_source"] == "station"
        await asyncio.sleep(2.5)  # two schedule checks later
        assert g.doors["market"].mode == "normal"
        assert g.doors.status("market")["lock"] == "locked"
        result = await g.station_commands.mode({"door": "market", "mode": "schedule"})
        assert (result["mode"], result["mode_source"]) == ("hold_open", "schedule")
    finally:
        await stop(task)


@pytest.mark.timeout(60)
async def test_a_set_mode_ends_at_its_end_time(tmp_path: Path) -> None:
    g = new_gate(write(tmp_path, schedule=""))
    task = await start_door(g)
    try:
        until = int(time.time() * 1000) + 500
        await g.station_commands.mode({"door": "market", "mode": "hold_open", "until_ms": until})
        assert g.doors["market"].mode == "hold_open"
        async with asyncio.timeout(10):
            while g.doors["market"].mode != "normal":  # noqa: ASYNC110 (the keeper's task)
                await asyncio.sleep(0.05)
        assert g.doors.status("market")["mode_source"] == "default"
    finally:
        await stop(task)


@pytest.mark.timeout(60)
async def test_lockdown_survives_a_restart_of_the_door_part_and_of_the_daemon(
        tmp_path: Path) -> None:
    config = write(tmp_path)
    g = new_gate(config)
    task = await start_door(g)
    await g.station_commands.mode({"door": "market", "mode": "lockdown"})
    await stop(task)
    task = await start_door(g)  # the door part restarted (a failure, a reload)
    assert g.doors["market"].mode == "lockdown"
    assert g.doors["market"].grant("card", "p1") == "lockdown"
    await stop(task)
    g.doors.release_pins()
    assert g.board is not None
    g.board.close()
    again = new_gate(config)  # a new daemon on the same state directory
    task = await start_door(again)
    try:
        assert again.doors["market"].mode == "lockdown"
        assert again.doors.status("market")["mode_source"] == "station"
        assert again.doors["market"].grant("card", "p1") == "lockdown"
    finally:
        await stop(task)


@pytest.mark.timeout(60)
async def test_a_reload_reconfigures_the_door_without_releasing_its_relay_pin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import daemon.doors

    claimed: list[int] = []
    real = daemon.doors.build_lock

    def counting(s: Any, **kw: Any) -> Any:
        claimed.append(s.lock.pin)
        return real(s, **kw)

    monkeypatch.setattr(daemon.doors, "build_lock", counting)
    g = new_gate(write(tmp_path, schedule=""))
    async with asyncio.TaskGroup() as group:
        g.parts.bind(group)
        await g.apply(g.config)
        await g.doors.ready("market").wait()
        await g.doors.change_mode("market", "hold_open", source="admin", actor="uid:0")
        changed = await g.adopt(load_config(write(tmp_path, schedule="", unlock=7)))
        assert changed == ["door:market"]
        async with asyncio.timeout(10):
            while "market" not in g.doors:  # noqa: ASYNC110 (the new door part)
                await asyncio.sleep(0.01)
        assert claimed == [17]  # the pin was never released and claimed again
        assert g.doors["market"].mode == "hold_open"  # and the mode survived the reload
        assert g.doors.status("market")["lock"] == "unlocked"
        await g.adopt(load_config(write(tmp_path, schedule="", pin=18, unlock=7)))
        async with asyncio.timeout(10):
            while "market" not in g.doors:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert claimed == [17, 18]  # the wiring changed: the new pin is claimed
        assert g.pins.pin(17).function == "input"  # and the old one released, idle
        await g.parts.stop("door:market")
        g.parts.bind(None)
    g.doors.release_pins()
