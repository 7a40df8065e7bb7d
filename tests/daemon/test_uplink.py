"""The uplink against a real mosquitto: TLS, passwords and an ACL, outages, restarts, SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from referencing import Registry, Resource

from daemon.events import Event
from daemon.journal import Journal
from daemon.uplink import Uplink
from tests.broker import Broker, mosquitto_binary, start_broker

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = {name: json.loads((REPO / "docs" / "schemas" / f"{name}.json").read_text())
           for name in ("event", "pack", "status", "health")}
#: pack.json names event.json by its $id
REGISTRY: Registry[Any] = Registry().with_resource(
    SCHEMAS["event"]["$id"], Resource.from_contents(SCHEMAS["event"]))
GATE = "g1"
BASE = f"menjin/{GATE}"
GATE_ACL = f"""user gate-{GATE}
topic write {BASE}/status
topic write {BASE}/events
topic write {BASE}/health
topic write {BASE}/captures/#
topic read {BASE}/cmd/#
topic write {BASE}/cmd/+/result

user station
topic readwrite menjin/#
"""
PASSWORDS = {f"gate-{GATE}": "gate-secret", "station": "station-secret"}
JPEG = b"\xff\xd8\xff\xe0" + bytes(500) + b"\xff\xd9"
LEGAL_BASIS = "Public Security Administration Punishments Law, art. 1 (test)"


@dataclass
class Received:
    topic: str
    payload: bytes
    properties: Any


@dataclass
class Collector:
    """The station: a subscriber with a persistent MQTT 5 session, so nothing queued for it is
    lost while it reconnects after a broker restart."""

    broker: Broker
    topics: tuple[str, ...] = (f"{BASE}/#",)
    username: str | None = None
    password: str | None = None
    identifier: str = "station-test"
    received: list[Received] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host, self.broker.port, username=self.username,
                    password=self.password, identifier=self.identifier,
                    protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props,
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.ready.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        self.received.append(Received(str(message.topic), payload,
                                                      message.properties))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def on(self, suffix: str) -> list[Received]:
        return [r for r in self.received if r.topic == f"{BASE}/{suffix}"]

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in order, those of packs (a backlog's) one by one."""
        out = []
        for message in self.messages():
            out.extend(message if isinstance(message, list) else [message])
        return out

    def messages(self) -> list[dict[str, Any] | list[dict[str, Any]]]:
        """What arrived on ``events``: one event (an object) or a pack of them (an array)."""
        return [json.loads(r.payload) for r in self.on("events")]

    def event_ids(self) -> set[str]:
        return {e["id"] for e in self.events()}


async def wait_until(condition: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(*coroutines: Any) -> Any:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def uplink_for(journal: Journal, broker: Broker, **kwargs: Any) -> Uplink:
    settings: dict[str, Any] = {"host": broker.host, "port": broker.port, "inflight": 16,
                                "initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.3}
    settings.update(kwargs)
    return Uplink(journal, gate=GATE, **settings)


def make_persistent(broker: Broker) -> None:
    """Keep sessions across a broker restart (the test's stand-in for the station's cluster)."""
    conf = broker.directory / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("persistence false", "persistence true"))
    broker.stop()
    broker.start()


def record_many(journal: Journal, types: Iterable[str]) -> list[str]:
    return [journal.record(Event(t, door="front"))["id"] for t in types]


CLOCK = {"trusted": False, "source": "", "floor_ms": 1_700_000_000_000}
VISION = {"state": "fault", "pid": None, "restarts": 2, "faults": 1, "last_error": "exit -9",
          "frames": 10, "processed": 8, "dropped": 2, "errors": 0}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("require_certificate", [False, True], ids=["password", "cert-identity"])
async def test_tls_client_cert_password_acl_status_events_captures_health(
    tmp_path: Path, require_certificate: bool
) -> None:
    broker = start_broker(tmp_path / "broker", tls=True, acl=GATE_ACL, passwords=PASSWORDS,
                          require_certificate=require_certificate)
    try:
        assert broker.pki is not None and broker.tls_port is not None
        cert, key = broker.pki.issue(f"gate-{GATE}")
        password_file = tmp_path / "mqtt.password"
        password_file.write_text(PASSWORDS[f"gate-{GATE}"] + "\n")
        journal = Journal(tmp_path / "journal.db", gate=GATE, portraits="upload")
        station = Collector(broker, username="station", password=PASSWORDS["station"])
        uplink = uplink_for(
            journal, broker, port=broker.tls_port, ca_file=broker.pki.ca_cert, cert_file=cert,
            key_file=key, username=f"gate-{GATE}", password_file=password_file,
            portraits="upload", legal_basis=LEGAL_BASIS, health_seconds=0.2,
            site="幸福里小区 北门",
            health_source=lambda: {"readers": {"r1": "ok"}, "camera": "ok", "tamper": False,
                                   "doors": {"front": {"state": "locked", "mode": "lockdown"}},
                                   "clock": CLOCK, "vision": VISION},
        )
        async with running(station.run()):
            await station.ready.wait()
            ids = record_many(journal, ["door.opened", "access.granted", "door.closed"] * 10)
            capture = journal.record(Event("capture", door="front", person="p1"), portrait=JPEG)
            journal.flush()  # all of it waiting in the file, not half of it in the batch timer
            async with running(uplink.run()):
                await wait_until(lambda: len(station.event_ids()) == 31 and station.on("health"))
                await wait_until(lambda: journal.queue_depth() == 0)
            await wait_until(lambda: json.loads(station.on("status")[-1].payload)["state"]
                             == "offline")
    finally:
        broker.stop()
        journal.close()

    events = station.events()
    assert [e["seq"] for e in events] == list(range(1, 32))
    assert [e["id"] for e in events] == [*ids, capture["id"]]
    for event in events:
        jsonschema.validate(event, SCHEMAS["event"])
    # waiting before the uplink started: the 30 events in one pack, the capture's alone
    packed, alone = station.messages()
    jsonschema.Draft202012Validator(SCHEMAS["pack"], registry=REGISTRY).validate(packed)
    assert len(packed) == 30 and alone == events[-1]
    online, offline = (json.loads(r.payload) for r in station.on("status"))
    assert online["state"] == "online" and online["legal_basis"] == LEGAL_BASIS
    assert online["version"] == uplink.version and online["portraits"] == "upload"
    for status in (online, offline):
        jsonschema.validate(status, SCHEMAS["status"])
    health = json.loads(station.on("health")[0].payload)
    jsonschema.validate(health, SCHEMAS["health"])
    assert health["readers"] == {"r1": "ok"} and health["camera"] == "ok"
    assert health["doors"] == {"front": {"state": "locked", "mode": "lockdown"}}
    assert (health["clock"], health["vision"]) == (CLOCK, VISION)  # the station alarms on them
    assert online["site"] == "幸福里小区 北门"
    portrait = station.on(f"captures/{capture['id']}")[0]
    assert portrait.payload == JPEG
    assert portrait.properties.ContentType == "image/jpeg"
    assert dict(portrait.properties.UserProperty) == {
        "event_id": capture["id"], "seq": "31", "gate": GATE, "ts_ms": str(capture["ts_ms"])}
    assert "Denied" not in broker.log_text()


@pytest.mark.timeout(30)
async def test_wrong_password_is_logged_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = start_broker(tmp_path / "broker", acl=GATE_ACL, passwords=PASSWORDS)
    password_file = tmp_path / "mqtt.password"
    password_file.write_text("wrong")
    journal = Journal(tmp_path / "journal.db", gate=GATE)
    uplink = uplink_for(journal, broker, username=f"gate-{GATE}", password_file=password_file)
    try:
        async with running(uplink.run()) as (task,):
            await wait_until(lambda: broker.log_text().count("not authorised") >= 3)
            assert not task.done()
    finally:
        broker.stop()
        journal.close()
    assert uplink.state.connects == 0
    warnings = [r for r in caplog.records if "uplink: unavailable" in r.message]
    assert len(warnings) == 1 and "Not authorized" in warnings[0].getMessage()


@pytest.mark.timeout(60)
async def test_broker_down_then_backlog_drains_in_order_with_the_alarm_first(
    tmp_path: Path,
) -> None:
    broker = start_broker(tmp_path / "broker")
    make_persistent(broker)
    journal = Journal(tmp_path / "journal.db", gate=GATE)
    station = Collector(broker)
    uplink = uplink_for(journal, broker)
    try:
        async with running(station.run(), uplink.run()):
            await station.ready.wait()
            await wait_until(lambda: uplink.state.connected)
            before = record_many(journal, ["door.opened"] * 10)
            await wait_until(lambda: station.event_ids() >= set(before))
            await wait_until(lambda: journal.queue_depth() == 0)
            broker.stop()
            backlog = record_many(journal, ["door.opened", "access.granted"] * 100)
            alarm = journal.record(Event("door.forced", door="front"))["id"]
            backlog += record_many(journal, ["door.closed"] * 50)
            await asyncio.sleep(0.5)  # let the uplink fail to reconnect a few times
            assert journal.queue_depth() == 251
            broker.start()
            await wait_until(lambda: station.event_ids() >= {*backlog, alarm})
            await wait_until(lambda: journal.queue_depth() == 0)
    finally:
        broker.stop()
        journal.close()
    arrived = [e["id"] for e in station.events()]
    after = list(dict.fromkeys(i for i in arrived if i not in before))  # first arrivals
    assert after[0] == alarm
    assert after[1:] == backlog
    assert uplink.state.connects >= 2
    # recorded while connected: one event per message; waiting at the reconnect: packs
    messages = station.messages()
    assert [m["id"] for m in messages[:10] if isinstance(m, dict)] == before
    packs = [m for m in messages[10:] if isinstance(m, list)]
    assert sum(len(p) for p in packs) >= 251 and max(len(p) for p in packs) == 100


@pytest.mark.timeout(60)
async def test_broker_restarted_mid_stream_loses_nothing(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker")
    make_persistent(broker)
    journal = Journal(tmp_path / "journal.db", gate=GATE)
    station = Collector(broker)
    uplink = uplink_for(journal, broker)
    recorded: list[str] = []

    async def produce() -> None:
        for i in range(3000):
            recorded.append(journal.record(Event("door.opened", data={"i": i}))["id"])
            if i % 20 == 0:
                await asyncio.sleep(0.005)

    try:
        async with running(station.run(), uplink.run()):
            await station.ready.wait()
            async with running(produce()) as (producer,):
                await wait_until(lambda: len(station.event_ids()) >= 500)
                broker.stop()
                await asyncio.sleep(0.2)
                broker.start()
                await producer
            await wait_until(lambda: station.event_ids() >= set(recorded))
            await wait_until(lambda: journal.queue_depth() == 0)
    finally:
        broker.stop()
        journal.close()
    arrived = [e["seq"] for e in station.events()]
    assert set(arrived) == set(range(1, 3001))
    assert len(arrived) >= 3000  # duplicates allowed (at-least-once), nothing missing


@pytest.mark.timeout(30)
async def test_acl_denial_is_logged_once_and_not_looped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acl = f"user gate-{GATE}\ntopic write {BASE}/status\ntopic read {BASE}/cmd/#\n"
    broker = start_broker(tmp_path / "broker", acl=acl, passwords=PASSWORDS)
    password_file = tmp_path / "mqtt.password"
    password_file.write_text(PASSWORDS[f"gate-{GATE}"])
    journal = Journal(tmp_path / "journal.db", gate=GATE)
    uplink = uplink_for(journal, broker, username=f"gate-{GATE}", password_file=password_file,
                        denied_pause_seconds=60)
    try:
        record_many(journal, ["access.granted"] * 5)
        async with running(uplink.run()):
            await wait_until(lambda: uplink.state.denied >= 1)
            await asyncio.sleep(1.0)  # a looping uplink would retry many times in a second
    finally:
        broker.stop()
        journal.close()
    assert uplink.state.denied == 1 and uplink.state.connects == 1
    denied = [line for line in broker.log_text().splitlines()
              if "Denied PUBLISH" in line and f"{BASE}/events" in line]
    assert len(denied) == 1  # the five events waiting at the connect, in one pack, tried once
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refused event seq 1" in errors[0].getMessage()
    assert "Not authorized" in errors[0].getMessage()


DRAINER = """
import asyncio, sys
from pathlib import Path
from daemon.journal import Journal
from daemon.uplink import Uplink

async def main() -> None:
    journal = Journal(Path(sys.argv[1]), gate="g1")
    await Uplink(journal, gate="g1", host="127.0.0.1", port=int(sys.argv[2]), inflight=32,
                 initial_backoff_seconds=0.05, max_backoff_seconds=0.3).run()

asyncio.run(main())
"""


def undelivered(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM events WHERE delivered = 0").fetchone()[0])
    finally:
        db.close()


@pytest.mark.timeout(90)
async def test_sigkill_during_backlog_drain_then_restart_delivers_every_id(
    tmp_path: Path,
) -> None:
    broker = start_broker(tmp_path / "broker")
    path = tmp_path / "journal.db"
    journal = Journal(path, gate=GATE)
    for i in range(10_000):
        journal.record(Event("door.opened" if i % 7 else "access.granted", data={"i": i}))
    journal.record(Event("tamper"))  # fsynced, with everything batched before it
    journal_ids = journal.all_ids()
    journal.close()
    station = Collector(broker)
    children: list[subprocess.Popen[bytes]] = []

    def start_drainer() -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-c", DRAINER, str(path), str(broker.port)],
                                 cwd=REPO)
        children.append(child)
        return child

    def last_status() -> str | None:
        statuses = station.on("status")
        return json.loads(statuses[-1].payload)["state"] if statuses else None

    try:
        async with running(station.run()):
            await station.ready.wait()
            first = start_drainer()
            # killed at the first pack: a backlog of 10,000 drains in a fraction of a second
            await wait_until(lambda: len(station.event_ids()) >= 100)
            first.send_signal(signal.SIGKILL)
            first.wait()
            await wait_until(lambda: last_status() == "offline")  # the Last Will
            assert undelivered(path) > 0
            start_drainer()
            await wait_until(lambda: undelivered(path) == 0, within_s=60)
            await wait_until(lambda: station.event_ids() >= journal_ids)
            assert last_status() == "online"
    finally:
        for child in children:
            child.kill()
            child.wait()
        broker.stop()
    assert station.event_ids() == journal_ids
    assert station.events()[0]["type"] == "tamper"  # the alarm went ahead of the backlog
