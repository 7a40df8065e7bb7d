"""Readers through the running gate (in process, MockFactory pins with real Wiegand timing):
a lost pulse never grants another resident, keypad keys are never cards, card + PIN with a duress
PIN (issue 16, findings 3, 4 and 6)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.access import hash_pin
from daemon.app import Gate
from daemon.configfile import load_config
from daemon.keyring import open_gate_store
from daemon.notify import Notifier
from daemon.store import parse_group, parse_person
from drivers.feedback import Feedback
from drivers.sim.wiegand_emitter import WiegandEmitter
from drivers.wiegand import encode, encode_key

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: readers-gate, site: test, timezone: Asia/Shanghai}}
hardware: {{gpio_backend: mock}}
doors:
  front: {{lock: {{pin: 17}}, access: card, pin_required: true}}
  vehicle: {{lock: {{pin: 18}}, access: card}}
readers:
  front-keypad: {{type: wiegand, door: front, d0_pin: 5, d1_pin: 6, frame_gap_ms: 150}}
  vehicle-card:
    type: wiegand
    door: vehicle
    d0_pin: 20
    d1_pin: 21
    formats: [h10301, 34bit]
    frame_gap_ms: 150
control: {{socket: {state}/control.sock}}
"""
#: Frames are cut after 150 ms of silence; this pause between frames is safely longer.
BETWEEN_FRAMES_SECONDS = 0.4
A_CARD, B_CARD, P_CARD = "036,02193", "036,02339", "1001"


def seed(config: Path) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    with open_gate_store(config) as store:
        group = parse_group({"id": "all", "doors": ["front", "vehicle"], "schedule": "always"})
        people = [
            {"id": "a", "name": "A", "groups": ["all"], "cards": [A_CARD], "enabled": False},
            {"id": "b", "name": "B", "groups": ["all"], "cards": [B_CARD]},
            {"id": "p", "name": "P", "groups": ["all"], "cards": [P_CARD],
             "pin_hash": hash_pin("1234"), "duress_pin_hash": hash_pin("4321")},
        ]
        store.upsert([parse_person(p, zone=zone) for p in people], groups=[group])


class Rig:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def emitter(self, d0: int, d1: int) -> WiegandEmitter:
        assert self.gate.board is not None
        return WiegandEmitter(self.gate.board.pin(d0), self.gate.board.pin(d1))

    async def send(self, emitter: WiegandEmitter, bits: str) -> None:
        await asyncio.to_thread(emitter.send, bits)
        await asyncio.sleep(BETWEEN_FRAMES_SECONDS)

    def events(self, prefix: str = "") -> list[dict[str, Any]]:
        return [e for e in self.gate.recent if e["type"].startswith(prefix)]

    async def wait_for(self, condition: Callable[[], bool], within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while not condition():  # noqa: ASYNC110 - the gate's callbacks append events
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Rig]:
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.format(state=state))
    seed(config)
    gate = Gate(config, load_config(config), Notifier(None))
    gate.open_store()
    tasks = [asyncio.create_task(gate.doors.run(d, s)) for d, s in gate.config.doors.items()]
    tasks += [asyncio.create_task(gate.readers.run(r, s))
              for r, s in gate.config.readers.items()]
    try:
        rig = Rig(gate)
        await rig.wait_for(lambda: len(gate.doors) == 2 and all(
            v.status == "ok" for v in gate.readers.views.values()) and len(gate.readers.views) == 2)
        await asyncio.sleep(0.05)  # the readers claim their pins
        yield rig
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        gate.doors.relays_idle()
        if gate.store is not None:
            gate.store.close()


@pytest.mark.timeout(60)
async def test_a_lost_pulse_never_opens_for_resident_b(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        vehicle = rig.emitter(20, 21)
        a_frame = encode("h10301", 2193, 36)
        await rig.send(vehicle, a_frame[:14] + a_frame[15:])  # pulse 14 lost: B's number raw
        await rig.send(vehicle, a_frame)
        await rig.wait_for(lambda: len(rig.events("access.")) == 1)
        await rig.send(vehicle, encode("h10301", 2339, 36))
        await rig.wait_for(lambda: len(rig.events("access.")) == 2)
        stats = rig.gate.readers.views["vehicle-card"].stats
    decided = [(e["type"], e.get("person"), e.get("reason")) for e in rig.events("access.")]
    assert decided == [("access.denied", "a", "disabled"), ("access.granted", "b", "granted")]
    assert stats["bad_length"] == 1


@pytest.mark.timeout(60)
async def test_keypad_keys_are_never_cards(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        vehicle = rig.emitter(20, 21)
        for key in "123456#":  # a PIN typed on a reader of a door without PIN
            await rig.send(vehicle, encode_key(key, bits=8))
        await rig.send(vehicle, encode("h10301", 2339, 36))
        await rig.wait_for(lambda: len(rig.events("access.")) == 1)
        stats = rig.gate.readers.views["vehicle-card"].stats
    assert [(e["type"], e.get("person")) for e in rig.events("access.")] == [
        ("access.granted", "b")]
    assert rig.events("reader.attack") == []
    assert stats["keys"] == 7
    assert not rig.gate.lockout.locked("vehicle-card", 0.0)


@pytest.mark.timeout(90)
async def test_card_then_pin_and_the_duress_pin(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        front = rig.emitter(5, 6)
        # a reader-side sink on the door's feedback, as an OSDP reader registers its LED/buzzer
        reader_leds = Feedback(green=12, red=13, pin_factory=rig.gate.pins)
        rig.gate.doors.feedback("front").add(reader_leds)
        card = encode("h10301", 1001)
        await rig.send(front, card)
        for key in "1234#":
            await rig.send(front, encode_key(key))
        await rig.wait_for(lambda: len(rig.events("access.")) == 2)
        assert rig.gate.board is not None
        denied_then_green = [s.state for s in rig.gate.board.pin(13).states], [
            s.state for s in rig.gate.board.pin(12).states]
        first = [(e["type"], e.get("person"), e.get("reason")) for e in rig.events("access.")]
        await asyncio.sleep(1.6)  # past the repeat window: the next swipe is a new presentation
        await rig.send(front, card)
        for key in "4321#":
            await rig.send(front, encode_key(key))
        await rig.wait_for(lambda: len(rig.events("access.")) == 5)
    assert first == [("access.denied", "p", "second_factor_required"),
                     ("access.granted", "p", "granted")]
    assert [(e["type"], e.get("reason")) for e in rig.events("access.")[2:]] == [
        ("access.denied", "second_factor_required"), ("access.granted", "granted"),
        ("access.duress", "granted")]
    assert rig.events("access.")[0]["data"] == {"awaiting": "pin", "card": "****1001"}
    red, green = denied_then_green
    assert True not in red  # the card alone: no "denied" flash while the PIN is awaited
    assert True in green  # card + PIN: the door unlocked and showed green
    reader_leds.close()
