"""Station ingest: events/s received and stored with deduplication, beside a plain subscriber.

One private mosquitto; events of several gates as their uplinks publish them, with 10 % of them
sent twice (a gate re-sending after a lost PUBACK).  Both consumers have a persistent session
subscribed before the replay, so the broker queues the same messages for each, and each then
drains its queue on its own (neither competes with the publisher or the other for the CPU):
- station: ``station.receiver.Receiver`` (shared subscription, validation, batched
  ``INSERT ... ON CONFLICT DO NOTHING`` into SQLite, acknowledgement after commit);
- baseline: a plain aiomqtt subscriber that parses each message and inserts it into a SQLite
  table without any key, in batches of the same size (duplicates are stored twice).
The clock runs from connect until every message is stored.  Each is measured ``--rounds`` times
on fresh sessions and databases; medians are reported.

Usage: .venv/bin/python bench/station_ingest.py [--quick] [--events N] [--rounds N]
The last line is JSON: events_per_s, baseline_events_per_s, ratio_vs_baseline,
duplicates_stored (must be 0), messages, duplicates_sent, ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from station.config import DatabaseConfig, MqttConfig, StationConfig  # noqa: E402
from station.receiver import Receiver  # noqa: E402
from station.store import Store  # noqa: E402
from tests.broker import Broker, start_broker  # noqa: E402

PREFIX = "menjin"
GATES = 4
DUPLICATE_SHARE = 0.10
BATCH_SIZE = 500
TARGET_EVENTS_PER_S = 5000
SESSION_EXPIRY_SECONDS = 3600
PUBLISH_INFLIGHT = 1000
POLL_SECONDS = 0.01
DRAIN_TIMEOUT_SECONDS = 300
FIRST_TS_MS = 1_790_000_000_000
EVENT_TYPES = ("access.granted", "access.granted", "access.denied", "door.opened",
               "door.closed", "door.forced")


def uuid7(ts_ms: int, rng: random.Random) -> str:
    """A UUIDv7 as the gates' journals assign them (time-ordered: the store's key grows)."""
    rand = rng.getrandbits(74)
    value = (ts_ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    return str(uuid.UUID(int=value))


def make_messages(events: int, seed: int) -> tuple[list[tuple[str, bytes]], int]:
    """Payloads in each gate's seq order with 10 % re-sent later; returns (messages, unique)."""
    rng = random.Random(seed)
    seqs = dict.fromkeys(range(GATES), 0)
    unique: list[tuple[str, bytes]] = []
    for _ in range(events):
        gate = rng.randrange(GATES)
        seqs[gate] += 1
        ts_ms = FIRST_TS_MS + len(unique)
        event = {"v": 1, "id": uuid7(ts_ms, rng), "seq": seqs[gate], "gate": f"gate-{gate}",
                 "ts_ms": ts_ms, "type": rng.choice(EVENT_TYPES),
                 "door": "front", "reader": "front-card", "credential_kind": "card",
                 "credential_ref": f"{rng.randrange(10**8):08x}",
                 "person": f"p-{rng.randrange(5000)}", "data": {}}
        unique.append((f"{PREFIX}/gate-{gate}/events", json.dumps(event).encode()))
    resent: dict[int, list[tuple[str, bytes]]] = {}
    for original in rng.sample(range(events), int(events * DUPLICATE_SHARE)):
        resent.setdefault(rng.randrange(original, events), []).append(unique[original])
    messages = []
    for position, message in enumerate(unique):
        messages.append(message)
        messages.extend(resent.get(position, []))
    return messages, len(unique)


def publish(broker: Broker, messages: list[tuple[str, bytes]]) -> float:
    """Replay the gates' messages with QoS 1; returns messages/s (paho's own network thread)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(PUBLISH_INFLIGHT)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    started = time.perf_counter()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(120)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(messages) / (time.perf_counter() - started)


def session_properties() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    return props


async def open_session(broker: Broker, identifier: str, topic: str) -> None:
    """Create a persistent session with its subscription, so the broker queues for it."""
    async with aiomqtt.Client(broker.host, broker.port, identifier=identifier,
                              protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                              properties=session_properties()) as client:
        await client.subscribe(topic, qos=1)


async def drain_baseline(broker: Broker, identifier: str, db: Path, expected: int) -> float:
    """The plain subscriber: parse, insert without a key, commit per batch."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE events (id TEXT, gate TEXT, seq INTEGER, ts_ms INTEGER, "
                 "type TEXT, body TEXT)")
    started = time.perf_counter()
    stored = 0
    batch: list[tuple[Any, ...]] = []
    async with aiomqtt.Client(broker.host, broker.port, identifier=identifier,
                              protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                              properties=session_properties()) as client:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            event = json.loads(message.payload)
            batch.append((event["id"], event["gate"], event["seq"], event["ts_ms"],
                          event["type"], message.payload.decode()))
            if len(batch) >= BATCH_SIZE or stored + len(batch) == expected:
                conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", batch)
                conn.commit()
                stored += len(batch)
                batch.clear()
            if stored == expected:
                break
    elapsed = time.perf_counter() - started
    rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert rows == expected
    return expected / elapsed


async def drain_station(config: StationConfig, store: Store, expected: int) -> float:
    receiver = Receiver(config, store)
    started = time.perf_counter()
    task = asyncio.create_task(receiver.run())
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS):
            await _until_stored(receiver, task, expected)
        elapsed = time.perf_counter() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return expected / elapsed


async def _until_stored(receiver: Receiver, task: asyncio.Task[None], expected: int) -> None:
    while receiver.stats.stored + receiver.stats.duplicates < expected:
        if task.done():
            task.result()
        await asyncio.sleep(POLL_SECONDS)


async def one_round(
    workdir: Path, messages: list[tuple[str, bytes]], unique: int, index: int
) -> dict[str, float]:
    broker = start_broker(workdir / f"broker-{index}")
    try:
        config = StationConfig(
            version=1,
            mqtt=MqttConfig(port=broker.port, prefix=PREFIX, client_id=f"bench-{index}"),
            database=DatabaseConfig(url=f"sqlite:///{workdir / f'station-{index}.db'}",
                                    batch_size=BATCH_SIZE),
            portraits_dir=workdir / "portraits",
        )
        station_id = f"bench-{index}-receiver"  # the id make_client derives from client_id
        baseline_id = f"bench-{index}-baseline"
        await open_session(broker, station_id, f"$share/station/{PREFIX}/+/events")
        await open_session(broker, baseline_id, f"{PREFIX}/+/events")
        publish_rate = await asyncio.to_thread(publish, broker, messages)
        store = Store(config.database.url, portraits_dir=config.portraits_dir)
        if index % 2:  # alternate who drains first
            station = await drain_station(config, store, len(messages))
            baseline = await asyncio.wait_for(drain_baseline(
                broker, baseline_id, workdir / f"baseline-{index}.db", len(messages)),
                DRAIN_TIMEOUT_SECONDS)
        else:
            baseline = await asyncio.wait_for(drain_baseline(
                broker, baseline_id, workdir / f"baseline-{index}.db", len(messages)),
                DRAIN_TIMEOUT_SECONDS)
            station = await drain_station(config, store, len(messages))
        stored = store.count_events()
        store.close()
        return {"station": station, "baseline": baseline, "publish": publish_rate,
                "duplicates_stored": stored - unique, "missing": max(unique - stored, 0)}
    finally:
        broker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--events", type=int, default=None, help="unique events per round")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    events = args.events or (2000 if args.quick else 40_000)
    rounds = args.rounds or (1 if args.quick else 3)
    logging.basicConfig(level=logging.WARNING)
    messages, unique = make_messages(events, seed=7)
    duplicates_sent = len(messages) - unique
    print(f"{unique} events from {GATES} gates + {duplicates_sent} duplicates "
          f"= {len(messages)} messages per round, {rounds} round(s)")
    results = []
    with tempfile.TemporaryDirectory(prefix="station-ingest-") as tmp:
        for index in range(rounds):
            result = await one_round(Path(tmp), messages, unique, index)
            results.append(result)
            print(f"round {index + 1}: station {result['station']:.0f} msg/s, "
                  f"baseline {result['baseline']:.0f} msg/s "
                  f"(replay published at {result['publish']:.0f} msg/s), "
                  f"duplicates stored {result['duplicates_stored']:.0f}")
    station = statistics.median(r["station"] for r in results)
    baseline = statistics.median(r["baseline"] for r in results)
    duplicates_stored = max(int(r["duplicates_stored"]) for r in results)
    missing = max(int(r["missing"]) for r in results)
    print(f"median: station {station:.0f} events/s with dedup, plain subscriber "
          f"{baseline:.0f} events/s without; ratio {station / baseline:.2f}; "
          f"target >= {TARGET_EVENTS_PER_S}")
    print(json.dumps(with_machine({
        "events_per_s": round(station, 1),
        "baseline_events_per_s": round(baseline, 1),
        "ratio_vs_baseline": round(station / baseline, 3),
        "duplicates_stored": duplicates_stored,
        "missing": missing,
        "events": unique,
        "duplicates_sent": duplicates_sent,
        "messages": len(messages),
        "gates": GATES,
        "rounds": rounds,
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "meets_target": station >= TARGET_EVENTS_PER_S and duplicates_stored == 0,
    }, libraries=("paho-mqtt", "psycopg"))))


if __name__ == "__main__":
    asyncio.run(main())
