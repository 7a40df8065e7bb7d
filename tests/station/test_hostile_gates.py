"""A gate may be stolen or tampered with: nothing it sends stops the station or touches other
gates' records.

The whole ingest path (:class:`station.ingest.Ingest`: topic, bounds, contract, database,
quarantine, erasure) is fuzzed with 10^5 generated messages of every kind (packs of events among
them) on SQLite and PostgreSQL,
then a few hundred go through a real mosquitto to a running receiver, and a hostile *retained*
message is met at every start.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.mqtt import Message
from station.config import DatabaseConfig, MqttConfig, StationConfig
from station.ingest import Ingest
from station.messages import EventRow
from station.receiver import Receiver
from station.store import Store, now_ms
from tests.broker import Broker
from tests.station.test_store import _postgres_schema
from tests.station.webpage import add_users, client, serving, sign_in, station_config

PREFIX = "menjin"
GATES = ("g1", "g2", "g3")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32 + b"\xff\xd9"
FUZZ_MESSAGES = 100_000
BATCH = 500
BROKER_MESSAGES = 300


def valid_event(rng: random.Random, gate: str, seq: int) -> dict[str, Any]:
    return {"v": 1, "id": str(uuid.UUID(int=rng.getrandbits(128))), "seq": seq, "gate": gate,
            "ts_ms": now_ms() - rng.randrange(10**9), "type": rng.choice(
                ["access.granted", "access.denied", "door.forced", "person.forgotten",
                 "capture", "audit"]),
            "door": "front", "credential_kind": "card", "credential_ref": "****1234",
            "person": f"p-{rng.randrange(50):04d}", "data": {"n": rng.randrange(100)}}


HOSTILE_VALUES: list[Any] = [
    None, True, -1, 0, 2**63, 2**64 + 1, 10**19, -(10**19), 1.5, 1e308, "", "x" * 300,
    "\x00", "../../etc", "\ud7ff", [], {}, [[[]]], {"a": {"b": {"c": []}}}, "😀" * 100,
    "p-0001'; DROP TABLE events; --", 9007199254740993,
]
RAW_HOSTILE = [
    b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"v":1,"seq":' + b"9" * 5000 + b"}",
    b"[" * 100_000, b'{"a":NaN}', b'{"a":Infinity}', b'{"a":1e99999}', b'{"a":"\\ud800"}',
    b'{"a":1,"a":2}', b'{"v":1}' * 3, b"\xc0\xaf", b'{"gate":"g1","ts_ms":1e400}',
    b'"' + b"\\" * 1000 + b'"', b" " * 2_000_000,
]


def mutate(rng: random.Random, obj: dict[str, Any]) -> bytes:
    """A valid payload with one to three fields made hostile, or raw bytes made hostile."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(RAW_HOSTILE)
    if roll < 0.25:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
    obj = dict(obj)
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice([*obj.keys(), "data", "extra", "seq", "ts_ms", "gate", "person"])
        obj[key] = rng.choice(HOSTILE_VALUES)
    if rng.random() < 0.1:  # an erasure naming someone, with a pseudonym of the gate's choosing
        obj["type"] = "person.forgotten"
        obj["data"] = {"erase": rng.choice(["p-0001", "p-0002", None, 5]),
                       "pseudonym": rng.choice(["anon-1", "../x", "", None, "p-0003"])}
    try:
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    except (ValueError, TypeError):
        return b"{}"
    payload = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:  # truncated
        payload = payload[: rng.randrange(len(payload) + 1)]
    return payload


def generate(seed: int, count: int) -> Iterator[Message]:
    """Messages of every kind a gate can publish, about half valid, the rest hostile."""
    rng = random.Random(seed)
    seqs = dict.fromkeys(GATES, 0)
    for mid in range(1, count + 1):
        gate = rng.choice(GATES)
        kind = rng.choices(["events", "status", "health", "result", "capture", "odd"],
                           weights=[70, 6, 6, 6, 4, 8])[0]
        props: tuple[tuple[str, str], ...] = ()
        if kind == "events" and rng.random() < 0.2:  # a backlog's pack, some events hostile
            parts = []
            for _ in range(rng.randrange(2, 7)):
                seqs[gate] += 1
                obj = valid_event(rng, gate, seqs[gate])
                parts.append(json.dumps(obj).encode() if rng.random() < 0.7 else mutate(rng, obj))
            yield Message(f"{PREFIX}/{gate}/events", b"[" + b",".join(parts) + b"]", 1,
                          rng.random() < 0.02, mid)
            continue
        if kind == "events":
            seqs[gate] += 1
            obj = valid_event(rng, gate, seqs[gate])
            topic = f"{PREFIX}/{gate}/events"
        elif kind == "status":
            obj = {"v": 1, "gate": gate, "state": "online", "version": "0.1", "ts_ms": now_ms()}
            topic = f"{PREFIX}/{gate}/status"
        elif kind == "health":
            obj = {"v": 1, "gate": gate, "ts_ms": now_ms(), "queue_depth": rng.randrange(9)}
            topic = f"{PREFIX}/{gate}/health"
        elif kind == "result":
            obj = {"v": 1, "id": str(uuid.uuid4()), "gate": gate,
                   "name": rng.choice(["resend", "enrol", "forget", "sync"]), "ok": True,
                   "reason": "", "result": {"missing": [[1, 2]], "next": None, "to": 3},
                   "ts_ms": now_ms()}
            topic = f"{PREFIX}/{gate}/cmd/{obj['name']}/result"
        elif kind == "capture":
            event_id = rng.choice([str(uuid.uuid4()), "..", "a" * 80, "x/y"])
            props = (("event_id", event_id), ("gate", rng.choice([gate, "g9"])),
                     ("ts_ms", rng.choice([str(now_ms()), "9" * 5000, "-1", "nan", ""])))
            payload = rng.choice([JPEG, b"GIF89a", JPEG + b"\x00" * rng.randrange(1000)])
            yield Message(f"{PREFIX}/{gate}/captures/{event_id}", payload, 1, False, mid,
                          "image/jpeg", props)
            continue
        else:
            topic = rng.choice([f"{PREFIX}/{gate}", f"{PREFIX}/../events", f"other/{gate}/events",
                                f"{PREFIX}/{gate}/cmd/open", f"{PREFIX}/{'g' * 100}/events",
                                f"{PREFIX}/{gate}/events/extra", f"{PREFIX}//events"])
            obj = valid_event(rng, gate, 1)
        payload = json.dumps(obj).encode() if rng.random() < 0.5 else mutate(rng, obj)
        yield Message(topic, payload, 1, rng.random() < 0.02, mid, None, props)


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "p")
        yield store
        store.close()
        return
    for url, schema in _postgres_schema():  # skips with the reason when PostgreSQL is absent
        store = Store(url, portraits_dir=tmp_path / "p", schema=schema)
        try:
            yield store
        finally:
            store.close()


@pytest.mark.timeout(900)
async def test_fuzzing_the_ingest_path_never_stops_the_station(fuzz_store: Store,
                                                              tmp_path: Path) -> None:
    ingest = Ingest(fuzz_store, prefix=PREFIX)
    batch: list[Message] = []
    for message in generate(17, FUZZ_MESSAGES):
        batch.append(message)
        if len(batch) == BATCH:
            await ingest.handle(batch)
            batch = []
    await ingest.handle(batch)
    stats = ingest.stats
    assert stats.received == FUZZ_MESSAGES
    assert stats.stored > FUZZ_MESSAGES // 5 and stats.rejected > FUZZ_MESSAGES // 5
    assert fuzz_store.count_quarantined() == stats.rejected  # every refusal is set aside
    assert fuzz_store.count_events() == stats.stored
    # still working: a valid event after all that is stored, and the page renders
    last = valid_event(random.Random(1), "g1", 10**6)
    await ingest.handle([Message(f"{PREFIX}/g1/events", json.dumps(last).encode(), 1, False, 1)])
    assert last["id"] in fuzz_store.event_ids("g1")
    add_users(fuzz_store)
    async with serving(fuzz_store, station_config(tmp_path)) as url, client() as http:
        await sign_in(http, url, "chief")
        for path in ("/passages", "/passages?gate=g1", "/alarms", "/gates", "/admin",
                     "/api/events"):
            async with http.get(url + path) as response:
                assert response.status == 200, path


def row(gate: str, seq: int, person: str) -> EventRow:
    return EventRow(id=str(uuid.uuid4()), gate=gate, seq=seq, ts_ms=now_ms(),
                    type="access.granted", door="front", reader=None, credential_kind="face",
                    credential_ref="****1234", person=person, reason=None, data={})


async def test_a_gates_erasure_only_touches_that_gates_records(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "p")
    mine, theirs = row("g1", 1, "p-0101"), row("g2", 1, "p-0101")
    store.add_events([mine, theirs])
    for r in (mine, theirs):
        store.add_portrait(event_id=r.id, gate=r.gate, ts_ms=r.ts_ms, jpeg=JPEG)
    forgotten = {"v": 1, "id": str(uuid.uuid4()), "seq": 2, "gate": "g1", "ts_ms": now_ms(),
                 "type": "person.forgotten", "person": "anon-3f2a",
                 "data": {"erase": "p-0101", "pseudonym": "anon-3f2a"}}
    ingest = Ingest(store, prefix=PREFIX)
    await ingest.handle([Message(f"{PREFIX}/g1/events", json.dumps(forgotten).encode(), 1,
                                 False, 1)])
    by_id = {e["id"]: e for e in store.recent_events()}
    assert (by_id[mine.id]["person"], by_id[mine.id]["credential_ref"]) == ("anon-3f2a", None)
    assert (by_id[theirs.id]["person"], by_id[theirs.id]["credential_ref"]) == (
        "p-0101", "****1234")
    assert store.portrait_file(mine.id) is None
    assert store.portrait_file(theirs.id) is not None


def config_for(broker: Broker, tmp_path: Path) -> StationConfig:
    return StationConfig(
        version=1, mqtt=MqttConfig(port=broker.port, prefix=PREFIX),
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'station.db'}"),
        portraits_dir=tmp_path / "portraits", signing_key=tmp_path / "no_key.pem")


@pytest.mark.timeout(120)
async def test_hostile_messages_through_a_broker_and_a_retained_one_at_every_start(
    broker: Broker, tmp_path: Path
) -> None:
    config = config_for(broker, tmp_path)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    hostile_status = b'{"v":1,"gate":"g1","state":"online","uptime_s":' + b"9" * 4301 + b"}"
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as gate:
        await gate.publish(f"{PREFIX}/g1/status", hostile_status, qos=1, retain=True)
        for start in (1, 2):  # the retained message is met at every start
            receiver = Receiver(config, store, gap_check_seconds=0.2, settle_ms=0)
            task = asyncio.create_task(receiver.run())
            await asyncio.wait_for(receiver.subscribed.wait(), 10)
            if start == 2:
                for message in generate(5, BROKER_MESSAGES):
                    props = None
                    if message.user_properties:
                        props = Properties(PacketTypes.PUBLISH)
                        props.UserProperty = list(message.user_properties)
                    await gate.publish(message.topic, message.payload, qos=1, properties=props)
            expected = 1 + (BROKER_MESSAGES if start == 2 else 0)
            # some generated topics are outside the subscriptions: those never arrive
            async with asyncio.timeout(60):
                while receiver.stats.received < expected - BROKER_MESSAGES // 5:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1)
            assert not task.done()  # still running
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert store.count_quarantined("g1") >= start
    retained = [q for q in store.quarantined(gate="g1") if q["topic"] == f"{PREFIX}/g1/status"]
    assert retained[-1]["reason"] == "number with more than 20 digits"
