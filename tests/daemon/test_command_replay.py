"""Replay protection that a clock going back cannot undo: the station's command counter, whose
high-water mark the journal keeps, besides the nonce and an expiry judged against the floor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.commands import CommandProcessor
from daemon.events import Event
from daemon.journal import Journal
from daemon.trusted_time import TrustedTime
from protocol.envelope import COUNTER_WINDOW, new_command

GATE = "g1"
T0 = 1_796_000_000_000
KEY = Ed25519PrivateKey.generate()


class Clocks:
    def __init__(self, wall_ms: int) -> None:
        self.wall_ms = wall_ms
        self.mono = 100.0

    def wall(self) -> int:
        return self.wall_ms


class Gate:
    """A command processor on a real journal file and trusted time with an injected clock; a
    new instance on the same path is the gate after a restart."""

    def __init__(self, path: Path, clocks: Clocks) -> None:
        self.opened: list[dict[str, Any]] = []
        self.events: list[Event] = []
        self.journal = Journal(path, gate=GATE, clock=clocks.wall)
        self.time = TrustedTime(emit=self.events.append, clock=clocks.wall,
                                monotonic=lambda: clocks.mono, synchronised=lambda: False,
                                journal_newest_ms=self.journal.newest_ts_ms(),
                                release_floor_ms=0)
        self.journal.stamp = self.time.stamp

        async def open_door(args: dict[str, Any]) -> dict[str, Any]:
            self.opened.append(args)
            return {"opened": True}

        self.processor = CommandProcessor(
            gate=GATE, station_key=KEY.public_key(), remember_nonce=self.journal.remember_nonce,
            remember_counter=self.journal.remember_counter, emit=self._emit,
            handlers={"open": open_door}, clock=clocks.wall, time=self.time)

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        self.journal.record(event)

    async def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        return (await self.processor.process("open", json.dumps(envelope).encode())).result

    def nonces(self) -> int:
        return int(self.journal._db.execute("SELECT count(*) FROM nonces").fetchone()[0])


def open_command(counter: int, issued_ms: int = T0) -> dict[str, Any]:
    return new_command("open", GATE, {"door": "front"}, KEY, now_ms=issued_ms, counter=counter)


@pytest.mark.parametrize("purge", [True, False], ids=["purged", "kept"])
@pytest.mark.parametrize("restart", [True, False], ids=["restart", "same-process"])
@pytest.mark.parametrize("regression", [True, False], ids=["clock-back", "clock-on"])
async def test_a_captured_command_is_refused_whatever_happens_in_between(
        tmp_path: Path, purge: bool, restart: bool, regression: bool) -> None:
    clocks = Clocks(T0 + 1_000)
    gate = Gate(tmp_path / "journal.db", clocks)
    captured = open_command(counter=1_000)
    assert (await gate.send(captured))["ok"] is True
    if purge:  # a day later retention drops the expired nonce
        clocks.wall_ms = T0 + 86_400_000
        gate.journal.purge()
        assert gate.nonces() == 0
    if restart:
        gate.journal.close()
        gate = Gate(tmp_path / "journal.db", clocks)
    if regression:  # the clock goes back to within the command's validity
        clocks.wall_ms = T0 + 2_000
    result = await gate.send(captured)
    # a day later with the clock on, the expiry alone refuses it; otherwise the counter does
    # (the nonce is gone after the purge)
    expected = "expired" if purge and not regression else "replayed"
    assert (result["ok"], result["reason"]) == (False, expected)
    if purge and regression:
        assert "counter 1000 was already used" in result["result"]["detail"]
    assert gate.opened == ([] if restart else [{"door": "front"}])
    gate.journal.close()


async def test_counters_out_of_order_within_the_window_are_taken_once(tmp_path: Path) -> None:
    clocks = Clocks(T0 + 1_000)
    gate = Gate(tmp_path / "journal.db", clocks)
    assert (await gate.send(open_command(500)))["ok"]
    assert (await gate.send(open_command(498)))["ok"]  # overtaken on another topic
    assert (await gate.send(open_command(498)))["reason"] == "replayed"
    assert (await gate.send(open_command(500 - COUNTER_WINDOW)))["reason"] == "replayed"
    assert (await gate.send(open_command(501)))["ok"]
    gate.journal.close()


async def test_expiry_is_judged_against_the_floor_when_the_clock_is_behind(
        tmp_path: Path) -> None:
    clocks = Clocks(T0 + 3 * 86_400_000)
    gate = Gate(tmp_path / "journal.db", clocks)
    gate.journal.record(Event("door.locked"))  # the journal now knows the date
    gate.journal.close()
    clocks.wall_ms = T0  # reboot three days behind
    gate = Gate(tmp_path / "journal.db", clocks)
    stale = open_command(counter=7, issued_ms=T0)  # valid by the wrong clock, not by the floor
    result = await gate.send(stale)
    assert (result["ok"], result["reason"]) == (False, "expired")
    assert [e.type for e in gate.events][:1] == ["clock.behind"]
    gate.journal.close()


async def test_a_fresh_command_while_untrusted_is_accepted_and_its_time_considered(
        tmp_path: Path) -> None:
    clocks = Clocks(T0)
    gate = Gate(tmp_path / "journal.db", clocks)
    # issued 10 minutes "in the future" of an untrusted clock: not refused as `future`
    ahead = await gate.send(open_command(counter=1, issued_ms=T0 + 600_000))
    assert ahead["ok"] is True and not gate.time.view().trusted
    # a command whose signed time agrees with the clock makes it trusted
    assert (await gate.send(open_command(counter=2, issued_ms=T0 + 1_500)))["ok"]
    assert gate.time.view().source == "station"
    gate.journal.close()
