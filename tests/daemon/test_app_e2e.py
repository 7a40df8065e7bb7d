"""End to end: `menjin run` as a child process in simulate mode, a real mosquitto, a pty reader.

The gate is driven only from outside its process, as an installer or the station would: cards go
into the pty of the simulated reader (``menjin sim swipe``), events are read off the broker, the
config is edited and SIGHUP sent, SIGTERM stops it; systemd is a datagram socket in NOTIFY_SOCKET.
One daemon serves the whole module (start-up costs seconds); the tests run in file order.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from daemon import control
from daemon.configfile import load_config
from daemon.journal import read_events
from daemon.keyring import Keyring, open_gate_store
from daemon.store import parse_group, parse_person
from tests.broker import Broker, start_broker

REPO = Path(__file__).resolve().parents[2]
GATE = "e2e-gate"
RESIDENT = "p-0101"
RESIDENT_CARD = "12345678"
UNKNOWN_CARD = "87654321"
LATE_CARD = "11112222"
EVENT_TIMEOUT_SECONDS = 20.0
START_TIMEOUT_SECONDS = 60.0

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: {gate}, site: E2E test compound}}
hardware: {{gpio_backend: mock}}
doors:
  front:
    lock: {{pin: 17, active_high: true}}
    unlock_seconds: {unlock}
    contact: {{pin: 27, wiring: normally_closed}}
    exit_button: {{pin: 22}}
    tamper: {{pin: 23}}
    access: card
readers:
  front-card: {{type: em4100, door: front, port: /dev/menjin-reader-front}}
uplink: {{host: 127.0.0.1, port: {port}, health_seconds: 30}}
control: {{socket: {socket}}}
"""


@dataclass
class Gate:
    proc: subprocess.Popen[bytes]
    config: Path
    socket: Path
    state: Path
    notify: socket.socket
    log: Path
    notifications: list[str] = field(default_factory=list)

    def drain_notifications(self) -> list[str]:
        self.notify.setblocking(False)
        try:
            while True:
                self.notifications.append(self.notify.recv(4096).decode())
        except BlockingIOError:
            pass
        return self.notifications

    def call(self, cmd: str, **args: Any) -> Any:
        return asyncio.run(control.call(self.socket, cmd, args))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def write_config(path: Path, state: Path, port: int, sock: Path, *, unlock: float = 5) -> None:
    path.write_text(CONFIG.format(state=state, gate=GATE, port=port, socket=sock, unlock=unlock))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[Gate]:
    base = tmp_path_factory.mktemp("gate")
    state, sock, config = base / "state", base / "control.sock", base / "gate.yaml"
    write_config(config, state, broker.port, sock)
    seed_resident(config)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(base / "notify.sock"))
    env = dict(os.environ, NOTIFY_SOCKET=str(base / "notify.sock"), WATCHDOG_USEC="2000000")
    log = base / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from menjin.cli import main; main()", "run", "-c", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )
    g = Gate(proc, config, sock, state, notify, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not any(n.startswith("READY=1") for n in g.drain_notifications()):
            assert proc.poll() is None, g.log_text()
            assert time.monotonic() < deadline, "no READY=1: " + g.log_text()
            time.sleep(0.1)
        yield g
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def seed_resident(config: Path) -> None:
    """Enrol the resident's card in the gate's resident store (as a station sync would)."""
    zone = ZoneInfo("Asia/Shanghai")
    with open_gate_store(config) as store:
        store.upsert(
            [parse_person({"id": RESIDENT, "name": "Wang Fang", "groups": ["residents"],
                           "cards": [RESIDENT_CARD]}, zone=zone)],
            groups=[parse_group({"id": "residents", "doors": ["front"], "schedule": "always"})],
        )


async def events_after(broker: Broker, action: Any, want: set[str], *,
                       any_of: bool = False) -> list[dict[str, Any]]:
    """Subscribe to the gate's events, run ``action``, and collect until the ``want`` types
    arrived (all of them, or with ``any_of`` one of them)."""
    got: list[dict[str, Any]] = []
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(f"menjin/{GATE}/events", qos=1)
        await asyncio.to_thread(action)
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            async for message in client.messages:
                event = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                got.append(event)
                seen = {e["type"] for e in got}
                if (want & seen) if any_of else want <= seen:
                    return got
    return got


def swipe(gate: Gate, card: str) -> None:
    """`menjin sim swipe` as the installer types it (the card goes through the reader's pty)."""
    result = subprocess.run(
        [sys.executable, "-c", "from menjin.cli import main; main()", "sim", "swipe",
         "front-card", card, "--socket", str(gate.socket)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_ready_then_watchdog_keep_alives(gate: Gate) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_SECONDS
    while "WATCHDOG=1" not in gate.drain_notifications():
        assert time.monotonic() < deadline, gate.notifications
        time.sleep(0.1)
    ready = next(n for n in gate.notifications if n.startswith("READY=1"))
    assert "1 door(s), 1 reader(s)" in ready
    assert gate.notifications.index(ready) < gate.notifications.index("WATCHDOG=1")


@pytest.mark.timeout(120)
def test_enrolled_card_is_granted_and_unlocks(gate: Gate, broker: Broker) -> None:
    got = asyncio.run(events_after(broker, lambda: swipe(gate, RESIDENT_CARD),
                                   {"access.granted", "door.unlocked"}))
    granted = next(e for e in got if e["type"] == "access.granted")
    assert granted["door"] == "front"
    assert granted["reader"] == "front-card"
    assert granted["person"] == RESIDENT
    assert granted["credential_kind"] == "card"
    assert granted["gate"] == GATE
    unlocked = next(e for e in got if e["type"] == "door.unlocked")
    assert unlocked["seq"] > granted["seq"]
    assert gate.call("status")["doors"]["front"]["state"] in ("unlocked", "locked")


@pytest.mark.timeout(120)
def test_unknown_card_is_denied_with_its_reason(gate: Gate, broker: Broker) -> None:
    got = asyncio.run(events_after(broker, lambda: swipe(gate, UNKNOWN_CARD), {"access.denied"}))
    denied = next(e for e in got if e["type"] == "access.denied")
    assert denied["reason"] == "unknown_credential"
    assert denied["door"] == "front"
    assert "person" not in denied


@pytest.mark.timeout(120)
def test_a_resident_added_while_running_is_let_in(gate: Gate, broker: Broker) -> None:
    """`menjin residents add` (another process) changes the store; the daemon picks it up."""
    zone = ZoneInfo("Asia/Shanghai")
    with open_gate_store(gate.config) as store:
        store.upsert([parse_person({"id": "p-0102", "name": "Chen Jie", "groups": ["residents"],
                                    "cards": [LATE_CARD]}, zone=zone)])
    deadline = time.monotonic() + EVENT_TIMEOUT_SECONDS
    while True:  # the store is polled every few seconds; a swipe before that is refused
        got = asyncio.run(events_after(broker, lambda: swipe(gate, LATE_CARD),
                                       {"access.granted", "access.denied"}, any_of=True))
        decision = next(e for e in got if e["type"].startswith("access."))
        if decision["type"] == "access.granted":
            break
        assert decision["reason"] == "unknown_credential"
        assert time.monotonic() < deadline, "the new resident was never let in"
        time.sleep(2)  # beyond the card repeat window
    assert decision["person"] == "p-0102"


@pytest.mark.timeout(120)
def test_sighup_with_a_broken_config_keeps_the_old_one(gate: Gate, broker: Broker) -> None:
    good = gate.config.read_text()
    gate.config.write_text(good.replace("unlock_seconds: 5", "unlock_seconds: -1"))
    try:
        got = asyncio.run(events_after(broker, lambda: gate.proc.send_signal(signal.SIGHUP),
                                       {"config.rejected"}))
    finally:
        gate.config.write_text(good)
    rejected = next(e for e in got if e["type"] == "config.rejected")
    assert any("unlock_seconds" in p for p in rejected["data"]["problems"]), rejected["data"]
    assert gate.proc.poll() is None
    got = asyncio.run(events_after(broker, lambda: swipe(gate, RESIDENT_CARD), {"access.granted"}))
    assert any(e["type"] == "access.granted" for e in got)  # still serving on the old config


@pytest.mark.timeout(120)
def test_sighup_with_a_valid_change_restarts_only_that_part(gate: Gate, broker: Broker) -> None:
    text = gate.config.read_text()
    gate.config.write_text(text.replace("unlock_seconds: 5", "unlock_seconds: 3"))
    got = asyncio.run(events_after(broker, lambda: gate.proc.send_signal(signal.SIGHUP),
                                   {"config.reloaded"}))
    reloaded = next(e for e in got if e["type"] == "config.reloaded")
    assert reloaded["data"]["changed"] == ["door:front"]


@pytest.mark.timeout(120)
def test_sighup_that_changes_the_gate_id_asks_for_a_restart(gate: Gate, broker: Broker) -> None:
    good = gate.config.read_text()
    gate.config.write_text(good.replace(f"id: {GATE}", "id: another-gate"))
    try:
        got = asyncio.run(events_after(broker, lambda: gate.proc.send_signal(signal.SIGHUP),
                                       {"config.rejected"}))
    finally:
        gate.config.write_text(good)
    rejected = next(e for e in got if e["type"] == "config.rejected")
    assert rejected["reason"] == "needs_restart"
    assert rejected["data"]["sections"] == ["gate"]
    assert gate.call("status")["gate"] == GATE


@pytest.mark.timeout(120)
def test_sigterm_while_unlocked_exits_cleanly_with_the_relay_idle(
    gate: Gate, broker: Broker
) -> None:
    got = asyncio.run(events_after(broker, lambda: gate.call("door.test", door="front", seconds=10),
                                   {"door.unlocked"}))
    assert any(e["type"] == "door.unlocked" for e in got)
    front = gate.call("status")["doors"]["front"]
    assert (front["lock"], front["relay"]) == ("unlocked", "energised")  # strike: active = open
    gate.drain_notifications()  # room in the fake systemd's queue for STOPPING=1
    gate.notifications.clear()
    gate.proc.send_signal(signal.SIGTERM)
    assert gate.proc.wait(timeout=30) == 0, gate.log_text()
    assert "STOPPING=1" in gate.drain_notifications()
    cfg = load_config(gate.config)
    doors = [e for e in read_events(gate.state / "journal.db", Keyring(cfg).local().journal)
             if e["type"].startswith("door.")]
    assert doors[-1]["type"] == "door.locked"
    assert doors[-1]["reason"] == "stopped"  # relay idle on the way out, not by timer
    status = asyncio.run(retained_status(broker))
    assert status["state"] == "offline"


async def retained_status(broker: Broker) -> dict[str, Any]:
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(f"menjin/{GATE}/status", qos=1)
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            async for message in client.messages:
                return dict(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
    raise AssertionError("no retained status")
