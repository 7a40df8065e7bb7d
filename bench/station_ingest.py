"""Station ingest: events/s received and stored with deduplication, beside a plain subscriber.

One private mosquitto; events of several gates as their uplinks publish them, with 10 % of them
sent twice (a gate re-sending after a lost PUBACK), in two forms measured apart:
- ``pack`` (the headline): the gates drain backlogs, as a gate's uplink does after an outage:
  each gate's events in packs of up to ``protocol.packs.MAX_PACK_EVENTS`` (one JSON array per
  MQTT message, built by ``protocol.packs.packs`` as the uplink builds them);
- ``single``: one event per message, as a gate sends what it records while connected (and as a
  broker holds them for a receiver that was down while the gates were up).
Both consumers have a persistent session subscribed before the replay, so the broker queues the
same messages for each, and each then drains its queue on its own (neither competes with the
publisher or the other for the CPU):
- station: ``station.receiver.Receiver`` (shared subscription, bounded JSON and contract checks,
  batched ``INSERT ... ON CONFLICT DO NOTHING`` with the gate table kept, acknowledgement of each
  message after its batch is committed);
- baseline: the same MQTT client (``protocol.mqtt.MqttClient``), the same messages (packs or
  single events), the same batches (``database.batch_size`` messages, and as many events to a
  transaction) and the same message checks, but a plain ``INSERT`` (the station's technique:
  the driver's own parameters, one array per column on PostgreSQL) into a table of the same
  columns without any key or index (duplicates are stored twice) and the broker's automatic
  acknowledgements, so the ratio shows what deduplication, the station's indexes and
  acknowledgement after commit cost.
The clock runs from connect until every event is stored.  Each is measured ``--rounds`` times
on fresh sessions and databases, on SQLite and (when reachable) on PostgreSQL at
``--postgres``; medians are reported.

Usage: .venv/bin/python bench/station_ingest.py [--quick] [--events N] [--rounds N]
       [--postgres URL | --no-postgres]
Wall-clock rates depend on what else the machine runs; the CPU time of this process per event
(``cpu_us_per_event``, decoding, checks and the database client; the broker is another process)
is reported beside them, and ``events_per_cpu_s`` is what one otherwise idle core sustains.
The last line is JSON: events_per_s, baseline_events_per_s, ratio_vs_baseline (SQLite, packs),
single_events_per_s, single_baseline_events_per_s, single_ratio_vs_baseline (SQLite, one event
per message), the same four with a ``postgres_`` prefix (null without PostgreSQL),
duplicates_stored (must be 0), missing, messages (single), pack_messages, duplicates_sent, ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from protocol.packs import MAX_PACK_EVENTS, is_pack, packs  # noqa: E402
from protocol.topics import parse_topic  # noqa: E402
from station.config import DatabaseConfig, MqttConfig, StationConfig  # noqa: E402
from station.messages import EventRow, parse_event, parse_pack  # noqa: E402
from station.mqtt import make_client, receiver_client_id  # noqa: E402
from station.receiver import Receiver  # noqa: E402
from station.store import EVENT_COLUMNS, Store, now_ms  # noqa: E402
from tests.broker import Broker, start_broker  # noqa: E402

PREFIX = "menjin"
GATES = 4
DUPLICATE_SHARE = 0.10
BATCH_SIZE = 500
TARGET_EVENTS_PER_S = 20_000
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
PUBLISH_INFLIGHT = 1000
#: Unacknowledged messages the broker sends each consumer: two batches, so one can be read
#: while the other is committed (a station broker should be set up the same way).
BROKER_INFLIGHT = 2 * BATCH_SIZE
POLL_SECONDS = 0.01
DRAIN_TIMEOUT_SECONDS = 300
FIRST_TS_MS = now_ms() - 86_400_000
EVENT_TYPES = ("access.granted", "access.granted", "access.denied", "door.opened",
               "door.closed", "door.forced")
MODES = ("pack", "single")


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


def packed(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The same events as the gates' uplinks send a backlog: each gate's in its order, in packs,
    the gates' packs interleaved (they drain at the same time)."""
    by_gate: dict[str, list[bytes]] = {}
    for topic, payload in messages:
        by_gate.setdefault(topic, []).append(payload)
    queues = [[(topic, pack) for _, pack in packs(payloads)]
              for topic, payloads in by_gate.items()]
    out = []
    for position in range(max(len(q) for q in queues)):
        out.extend(q[position] for q in queues if position < len(q))
    return out


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


def baseline_client(config: StationConfig) -> Any:
    return make_client(config.mqtt, "baseline", persistent=True, manual_ack=False,
                       client_id_override=f"{config.mqtt.client_id}-baseline")


async def open_sessions(config: StationConfig) -> None:
    """Create both persistent sessions with their subscriptions, so the broker queues for them."""
    station = make_client(config.mqtt, "receiver", persistent=True, manual_ack=True,
                          client_id_override=receiver_client_id(config.mqtt, 0))
    async with station:
        await station.subscribe(f"$share/{config.mqtt.share_group}/{PREFIX}/+/events")
    async with baseline_client(config) as baseline:
        await baseline.subscribe(f"{PREFIX}/+/events")


def plain_table(store: Store, schema: str | None) -> sa.Table:
    """The station's event columns, without a key or an index."""
    metadata = sa.MetaData(schema=schema)
    events = store.t["events"]
    table = sa.Table("plain_events", metadata,
                     *(sa.Column(name, events.c[name].type) for name in EVENT_COLUMNS))
    metadata.create_all(store.engine)
    return table


def plain_insert(store: Store, table: sa.Table) -> Callable[[list[tuple[Any, ...]]], None]:
    """The baseline's insert: the station's technique (the driver's own parameters; PostgreSQL:
    one array per column, unnested) without ``ON CONFLICT`` or ``RETURNING``."""
    dialect = store.engine.dialect
    name = dialect.identifier_preparer.format_table(table)
    head = f"INSERT INTO {name} ({', '.join(EVENT_COLUMNS)}) "
    if dialect.name == "sqlite":
        statement = f"{head}VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"

        def insert(values: list[tuple[Any, ...]]) -> None:
            with store.engine.begin() as conn:
                conn.exec_driver_sql(statement, values)
    else:
        arrays = ", ".join(f"%({column})s::{table.c[column].type.compile(dialect)}[]"
                           for column in EVENT_COLUMNS)
        statement = f"{head}SELECT * FROM unnest({arrays})"

        def insert(values: list[tuple[Any, ...]]) -> None:
            columns = dict(zip(EVENT_COLUMNS, map(list, zip(*values, strict=True)),
                               strict=True))
            with store.engine.begin() as conn:
                conn.exec_driver_sql(statement, columns)
    return insert


async def drain_baseline(config: StationConfig, store: Store, schema: str | None,
                         expected: int) -> tuple[float, float]:
    """The plain subscriber: same client, batches and checks; keyless insert, auto acks."""
    table = plain_table(store, schema)
    insert = plain_insert(store, table)
    started, cpu = time.perf_counter(), time.process_time()
    stored = 0
    async with baseline_client(config) as client:
        async for batch in client.batches(config.database.batch_size):
            now = now_ms()
            values = []
            for message in batch:
                gate = parse_topic(message.topic, PREFIX).gate
                rows: list[EventRow] = []
                if is_pack(message.payload):
                    rows = [r for r in parse_pack(message.payload, gate, now_ms=now)
                            if isinstance(r, EventRow)]
                else:
                    rows = [parse_event(message.payload, gate, now_ms=now)]
                values.extend((
                    r.id, r.gate, r.seq, r.ts_ms, r.type, r.door, r.reader, r.credential_kind,
                    r.credential_ref, r.person, r.reason, r.alarm, ENCODE(r.data), now,
                    r.time_trusted, r.ts_ms) for r in rows)
            for start in range(0, len(values), config.database.batch_size):
                await asyncio.to_thread(insert, values[start:start + config.database.batch_size])
            stored += len(values)
            if stored >= expected:
                break
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(table)) == expected
    return expected / elapsed, cpu / expected * 1e6


async def drain_station(config: StationConfig, store: Store,
                        expected: int) -> tuple[float, float]:
    """The station's receiver; (events/s, CPU microseconds of this process per event)."""
    receiver = Receiver(config, store, signing_key=None)
    started, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(receiver.run())
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_SECONDS):
            while receiver.stats.stored + receiver.stats.duplicates < expected:
                if task.done():
                    task.result()
                await asyncio.sleep(POLL_SECONDS)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return expected / elapsed, cpu / expected * 1e6


def postgres_schema(url: str) -> str | None:
    """A fresh schema for one round, or None when PostgreSQL cannot be reached."""
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        schema = f"bench_ingest_{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # any connection failure means: no PostgreSQL here
        print(f"PostgreSQL not reachable at {url} ({type(exc).__name__}); SQLite only")
        return None
    return schema


def drop_schema(url: str, schema: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


async def one_round(workdir: Path, messages: list[tuple[str, bytes]], events: int, unique: int,
                    index: int, backend: str, mode: str,
                    postgres: str) -> dict[str, float] | None:
    """One round of one form (``mode``) on one database: both consumers drain ``messages``
    (``events`` events in all, ``unique`` of them distinct)."""
    schema = None
    name = f"{backend}-{mode}-{index}"
    url = f"sqlite:///{workdir / f'station-{name}.db'}"
    if backend == "postgresql":
        schema = postgres_schema(postgres)
        if schema is None:
            return None
        url = postgres
    broker = start_broker(workdir / f"broker-{name}", max_inflight_messages=BROKER_INFLIGHT)
    try:
        config = StationConfig(
            version=1,
            mqtt=MqttConfig(port=broker.port, prefix=PREFIX, client_id=f"bench-{name}"),
            database=DatabaseConfig(url=url, batch_size=BATCH_SIZE),
            portraits_dir=workdir / "portraits", signing_key=workdir / "no_key.pem",
        )
        await open_sessions(config)
        publish_rate = await asyncio.to_thread(publish, broker, messages)
        store = Store(config.database.url, portraits_dir=config.portraits_dir, schema=schema)
        if index % 2:  # alternate who drains first
            station = await drain_station(config, store, events)
            baseline = await drain_baseline(config, store, schema, events)
        else:
            baseline = await drain_baseline(config, store, schema, events)
            station = await drain_station(config, store, events)
        stored = store.count_events()
        store.close()
        return {"station": station[0], "baseline": baseline[0], "publish": publish_rate,
                "station_cpu_us": station[1], "baseline_cpu_us": baseline[1],
                "duplicates_stored": stored - unique, "missing": max(unique - stored, 0)}
    finally:
        broker.stop()
        if schema is not None:
            drop_schema(postgres, schema)


def medians(results: list[dict[str, float]], *keys: str) -> list[float]:
    return [statistics.median(r[key] for r in results) for key in keys]


def figures(results: dict[tuple[str, str], list[dict[str, float]]], backend: str, mode: str,
            prefix: str) -> dict[str, float | None]:
    """The medians of one database and form as JSON fields named with ``prefix``."""
    rounds = results.get((backend, mode)) or []
    if not rounds:
        return {f"{prefix}events_per_s": None, f"{prefix}baseline_events_per_s": None,
                f"{prefix}ratio_vs_baseline": None}
    station, baseline, cpu, baseline_cpu = medians(
        rounds, "station", "baseline", "station_cpu_us", "baseline_cpu_us")
    print(f"median {backend}, {mode}: station {station:.0f} events/s with dedup "
          f"({cpu:.0f} us CPU each), plain {baseline:.0f} events/s without "
          f"({baseline_cpu:.0f} us); ratio {station / baseline:.2f}")
    out: dict[str, float | None] = {
        f"{prefix}events_per_s": round(station, 1),
        f"{prefix}baseline_events_per_s": round(baseline, 1),
        f"{prefix}ratio_vs_baseline": round(station / baseline, 3),
    }
    if backend == "sqlite":
        out |= {f"{prefix}cpu_us_per_event": round(cpu, 1),
                f"{prefix}baseline_cpu_us_per_event": round(baseline_cpu, 1),
                f"{prefix}events_per_cpu_s": round(1e6 / cpu, 1)}
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--events", type=int, default=None, help="unique events per round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="SQLAlchemy URL")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    events = args.events or (5000 if args.quick else 40_000)
    rounds = args.rounds or (1 if args.quick else 3)
    logging.basicConfig(level=logging.WARNING)
    singles, unique = make_messages(events, seed=7)
    forms = {"single": singles, "pack": packed(singles)}
    duplicates_sent = len(singles) - unique
    print(f"{unique} events from {GATES} gates + {duplicates_sent} duplicates "
          f"= {len(singles)} messages one by one, {len(forms['pack'])} in packs; "
          f"{rounds} round(s)")
    backends = ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="station-ingest-") as tmp:
        for backend in backends:
            for index in range(rounds):
                for mode in MODES if index % 2 == 0 else MODES[::-1]:
                    result = await one_round(Path(tmp), forms[mode], len(singles), unique,
                                             index, backend, mode, args.postgres)
                    if result is None:
                        break
                    results.setdefault((backend, mode), []).append(result)
                    print(f"{backend} {mode} round {index + 1}: station "
                          f"{result['station']:.0f} events/s "
                          f"({result['station_cpu_us']:.0f} us CPU each), baseline "
                          f"{result['baseline']:.0f} events/s ({result['baseline_cpu_us']:.0f} "
                          f"us) (replay published at {result['publish']:.0f} messages/s), "
                          f"duplicates stored {result['duplicates_stored']:.0f}", flush=True)
                if (backend, MODES[0]) not in results:
                    break
    every = [r for rs in results.values() for r in rs]
    duplicates_stored = max(int(r["duplicates_stored"]) for r in every)
    missing = max(int(r["missing"]) for r in every)
    headline = figures(results, "sqlite", "pack", "")
    station = headline["events_per_s"] or 0.0
    print(f"target: >= {TARGET_EVENTS_PER_S} events/s with dedup on SQLite (packs); 1e6 / CPU "
          "per event = what one idle core would sustain")
    print(json.dumps(with_machine({
        **headline,
        **figures(results, "sqlite", "single", "single_"),
        **figures(results, "postgresql", "pack", "postgres_"),
        **figures(results, "postgresql", "single", "postgres_single_"),
        "duplicates_stored": duplicates_stored,
        "missing": missing,
        "events": unique,
        "duplicates_sent": duplicates_sent,
        "messages": len(singles),
        "pack_messages": len(forms["pack"]),
        "max_pack_events": MAX_PACK_EVENTS,
        "gates": GATES,
        "rounds": rounds,
        "batch_size": BATCH_SIZE,
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "meets_target": station >= TARGET_EVENTS_PER_S and duplicates_stored == 0,
    }, libraries=("paho-mqtt", "psycopg"))))


if __name__ == "__main__":
    asyncio.run(main())
