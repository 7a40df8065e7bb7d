"""Two gate daemons (`menjin run`, simulate mode) → one real mosquitto → two station receivers.

The receivers share one subscription group and one SQLite database, as two station processes
would.  Each gate reaches the broker through its own small TCP relay, so one gate can be cut off
(the broker then publishes its Last Will) while the other keeps running.  Events are produced from
outside the daemons, through their control sockets, as an installer would.  One set of processes
serves the whole module (start-up costs seconds); the tests run in file order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from daemon import control
from protocol.envelope import new_command
from protocol.topics import GateTopics
from station.commands import keygen, send_command, signing_key
from station.config import DatabaseConfig, MqttConfig, StationConfig
from station.gatehealth import gate_health
from station.receiver import Receiver
from station.store import Store
from tests.broker import Broker, start_broker

REPO = Path(__file__).resolve().parents[2]
GATES = ("north", "south")
PREFIX = "menjin"
WAIT_SECONDS = 60.0

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: {gate}, site: E2E compound}}
hardware: {{gpio_backend: mock}}
doors:
  front:
    lock: {{pin: 17, active_high: true}}
    unlock_seconds: 1
    contact: {{pin: 27, wiring: normally_closed}}
    exit_button: {{pin: 22}}
    access: card
uplink: {{host: 127.0.0.1, port: {port}, health_seconds: 5, station_public_key_file: {key}}}
control: {{socket: {socket}}}
"""


class Relay:
    """A TCP relay from a gate to the broker that can be unplugged and plugged back in."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connected = True
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.connected:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def unplug(self) -> None:
        self.connected = False
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()

    def plug(self) -> None:
        self.connected = True

    def close(self) -> None:
        self.unplug()
        self.listener.close()


@dataclass
class GateProcess:
    gate: str
    proc: subprocess.Popen[bytes]
    socket: Path
    journal: Path
    relay: Relay
    log: Path

    def journal_ids(self) -> set[str]:
        with contextlib.closing(sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT id FROM events")}

    def journal_types(self) -> list[str]:
        with contextlib.closing(sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)) as db:
            return [row[0] for row in db.execute("SELECT type FROM events ORDER BY seq")]

    def call(self, cmd: str, **args: Any) -> Any:
        return asyncio.run(control.call(self.socket, cmd, args))

    def door_cycle(self) -> None:
        """Unlock the door for a moment (door.test) and wait until it locked again."""
        locked = self.journal_types().count("door.locked")
        self.call("door.test", door="front", seconds=0.3)
        wait_for(lambda: self.journal_types().count("door.locked") > locked,
                 f"{self.gate}: door locked again", [self])


@dataclass
class Station:
    """Two receivers in one shared-subscription group, on a loop in a background thread."""

    store: Store
    config: StationConfig
    receivers: list[Receiver] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def start(self) -> None:
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        for index in range(2):
            receiver = Receiver(self.config, self.store, index=index, gap_check_seconds=0.5,
                                settle_ms=500)
            self.receivers.append(receiver)
            asyncio.run_coroutine_threadsafe(self._run(receiver), self.loop)

    @staticmethod
    async def _run(receiver: Receiver) -> None:
        await receiver.run()

    def stop(self) -> None:
        async def cancel_all() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def wait_for(predicate: Callable[[], bool], what: str, logs: Sequence[GateProcess] = ()) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(g.log.read_text(errors="replace")[-3000:] for g in logs)
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def station_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("station")
    keygen(base / "station_key.pem")
    return base


@pytest.fixture(scope="module")
def station(station_dir: Path, broker: Broker) -> Iterator[Station]:
    config = StationConfig(
        version=1,
        mqtt=MqttConfig(port=broker.port, prefix=PREFIX),
        database=DatabaseConfig(url=f"sqlite:///{station_dir / 'station.db'}", batch_size=100),
        portraits_dir=station_dir / "portraits",
        signing_key=station_dir / "station_key.pem",
        command_timeout_seconds=30,
    )
    s = Station(Store(config.database.url, portraits_dir=config.portraits_dir), config)
    s.start()
    try:
        wait_for(lambda: all(r.subscribed.is_set() for r in s.receivers), "receivers")
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def gates(
    tmp_path_factory: pytest.TempPathFactory, broker: Broker, station_dir: Path, station: Station
) -> Iterator[dict[str, GateProcess]]:
    running: dict[str, GateProcess] = {}
    try:
        for gate in GATES:
            base = tmp_path_factory.mktemp(gate)
            relay = Relay(broker.port)
            config = base / "gate.yaml"
            config.write_text(CONFIG.format(
                state=base / "state", gate=gate, port=relay.port, socket=base / "control.sock",
                key=station_dir / "station_key.pub.pem"))
            log = base / "daemon.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-c", "from menjin.cli import main; main()", "run",
                     "-c", str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
            running[gate] = GateProcess(gate, proc, base / "control.sock",
                                        base / "state" / "journal.db", relay, log)
        procs = list(running.values())
        wait_for(lambda: {g.gate: g.state for g in station.store.gates()}
                 == dict.fromkeys(GATES, "online"), "both gates online", procs)
        yield running
    finally:
        for g in running.values():
            if g.proc.poll() is None:
                g.proc.terminate()
                try:
                    g.proc.wait(20)
                except subprocess.TimeoutExpired:
                    g.proc.kill()
            g.relay.close()


def all_stored(station: Station, gate: GateProcess) -> bool:
    return gate.journal_ids() <= set(station.store.event_ids(gate.gate))


@pytest.mark.timeout(180)
def test_every_event_of_both_gates_is_stored_exactly_once(
    station: Station, gates: dict[str, GateProcess]
) -> None:
    for _ in range(3):
        for gate in gates.values():
            gate.door_cycle()
    procs = list(gates.values())
    for gate in procs:
        wait_for(lambda g=gate: all_stored(station, g), f"{gate.gate}'s events", procs)  # type: ignore[misc]
        journal = gate.journal_ids()
        stored = station.store.event_ids(gate.gate)
        assert len(stored) == len(set(stored))
        assert journal <= set(stored)  # later events may have arrived since
        assert station.store.gaps(gate.gate) == []
        types = [e["type"] for e in station.store.recent_events(gate=gate.gate, limit=1000)]
        assert types.count("door.unlocked") >= 3
    receivers = station.receivers
    assert all(r.stats.stored > 0 for r in receivers)  # the group split the load
    assert sum(r.stats.stored for r in receivers) == station.store.count_events()


@pytest.mark.timeout(240)
def test_a_gate_offline_and_back_fills_its_gap(
    station: Station, gates: dict[str, GateProcess]
) -> None:
    north, south = gates["north"], gates["south"]
    procs = [north, south]
    north.relay.unplug()
    wait_for(lambda: {g.gate: g.state for g in station.store.gates()}["north"] == "offline",
             "north's Last Will", procs)
    before = set(station.store.event_ids("north"))
    for _ in range(3):
        north.door_cycle()
    south.door_cycle()
    recorded_offline = north.journal_ids() - before
    assert len(recorded_offline) >= 6  # unlocked + locked, three times
    time.sleep(1)
    assert not recorded_offline & set(station.store.event_ids("north"))  # really cut off
    wait_for(lambda: all_stored(station, south), "south keeps uploading", procs)
    north.relay.plug()
    wait_for(lambda: all_stored(station, north), "north's backlog", procs)
    wait_for(lambda: {g.gate: g.state for g in station.store.gates()}["north"] == "online",
             "north back online", procs)
    assert station.store.gaps("north") == []
    stored = station.store.event_ids("north")
    assert len(stored) == len(set(stored))


@pytest.mark.timeout(180)
def test_a_signed_open_reaches_the_right_gate_and_only_that_gate(
    station: Station, gates: dict[str, GateProcess]
) -> None:
    north, south = gates["north"], gates["south"]
    south_before = south.journal_types()
    key = signing_key(station.config.signing_key)
    result = asyncio.run(send_command(station.config, "north", "open",
                                      {"door": "front", "seconds": 1}, key=key,
                                      store=station.store))
    assert result["ok"] is True and result["gate"] == "north"
    assert result["result"]["opened"] is True

    def opened_remotely() -> bool:
        types = north.journal_types()
        return "command.accepted" in types and "door.unlocked" in types[
            types.index("command.accepted"):]

    wait_for(opened_remotely, "north: command.accepted then door.unlocked", [north])
    # the same signed command replayed on the south gate's topic is refused there
    refusal = asyncio.run(replay_on(station, "south", new_command(
        "open", "north", {"door": "front", "seconds": 1}, key)))
    assert (refusal["ok"], refusal["reason"]) == (False, "wrong_gate")
    wait_for(lambda: "command.refused" in south.journal_types()[len(south_before):],
             "south: command.refused", [south])
    south_after = south.journal_types()[len(south_before):]
    assert "command.accepted" not in south_after and "door.unlocked" not in south_after
    wait_for(lambda: station.store.command_result(result["id"])["ok"] is True,  # type: ignore[index]
             "the result recorded at the station")


async def replay_on(station: Station, gate: str, envelope: dict[str, Any]) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", station.config.mqtt.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(GateTopics(PREFIX, gate).result("open"), qos=1)
        await client.publish(GateTopics(PREFIX, gate).command("open"), json.dumps(envelope), qos=1)
        async with asyncio.timeout(WAIT_SECONDS):
            async for message in client.messages:
                result = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                if result.get("id") == envelope["id"]:
                    return dict(result)
    raise AssertionError("no result")


@pytest.mark.timeout(120)
def test_the_gates_view_shows_each_running_gates_doors(
    station: Station, gates: dict[str, GateProcess]
) -> None:
    """A running gate's health carries its doors' state and mode, as the page shows them."""
    wait_for(lambda: all("front" in (g.health.get("doors") or {}) for g in station.store.gates()),
             "doors in both gates' health", list(gates.values()))
    for view in station.store.gates():
        shown = gate_health(view)
        assert [(d.door, d.mode) for d in shown.doors] == [("front", "normal")], view.gate
        assert shown.doors[0].state in ("locked", "unlocked", "open")
        assert view.health["tamper"] is False and shown.problems == []
