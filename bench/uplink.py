"""Store-and-forward throughput: journal + uplink against raw aiomqtt QoS 1, and a backlog drain.

Both sides run in the same process against the same private mosquitto, with the same payloads,
the same in-flight window and the same station subscriber counting arrivals:
- raw: ``aiomqtt.Client.publish(qos=1)`` of the payloads, ``--inflight`` at a time, no journal;
- journal: events recorded in the journal (SQLite WAL, default fsync policy; the events are
  routine ``door.opened``/``door.closed``, which that policy batches) and published by
  ``daemon.uplink.Uplink``; the clock stops when the last one is marked delivered (PUBACK).
Each is measured ``--rounds`` times, alternating; the medians are reported.  A smaller round of
access decisions (each fsynced before ``record`` returns) is reported beside them.
Then the broker is stopped, a backlog of ``--backlog`` events is recorded, the broker is started
again, and the time until the journal's queue is empty is ``backlog_drain_s``.

Usage: .venv/bin/python bench/uplink.py [--quick] [--events N] [--backlog N] [--inflight N]
The last line is JSON: events_per_s, raw_events_per_s, ratio_vs_raw, backlog_drain_s, lost, ...
(``lost`` = ids recorded in the journal and never received by the subscriber).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.events import Event  # noqa: E402
from daemon.journal import Journal  # noqa: E402
from daemon.uplink import Uplink  # noqa: E402
from tests.broker import Broker, start_broker  # noqa: E402

GATE = "bench"
RAW_TOPIC = "menjin/raw/events"
EVENTS_TOPIC = f"menjin/{GATE}/events"
POLL_SECONDS = 0.005
PRODUCER_CHUNK = 500
#: paho's connection chatter (resets while the broker is stopped on purpose) is not a result.
QUIET = logging.getLogger("bench.mqtt")
QUIET.setLevel(logging.CRITICAL)


class Station:
    """Counts distinct event ids arriving on the events and raw topics (persistent session)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.ids: set[str] = set()
        self.raw: set[str] = set()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host, self.broker.port, identifier="bench-station",
                    protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props,
                    logger=QUIET,
                ) as client:
                    await client.subscribe(EVENTS_TOPIC, qos=1)
                    await client.subscribe(RAW_TOPIC, qos=1)
                    self.ready.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        target = self.raw if message.topic.value == RAW_TOPIC else self.ids
                        target.add(json.loads(message.payload)["id"])
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll: the journal and the counters have no event to await."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)


def payloads(count: int, scratch: Path) -> list[bytes]:
    """The exact bytes the journal publishes for ``count`` routine events."""
    journal = Journal(scratch, gate=GATE)
    out = [json.dumps(journal.record(Event("door.opened", door="front", data={"i": i})),
                      separators=(",", ":")).encode() for i in range(count)]
    journal.close()
    return out


async def raw_round(broker: Broker, station: Station, data: list[bytes], inflight: int) -> float:
    station.raw.clear()
    window = asyncio.Semaphore(inflight)
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=inflight, logger=QUIET) as client:
        client.pending_calls_threshold = inflight  # the window is the point: no warning per call

        async def publish(payload: bytes) -> None:
            try:
                await client.publish(RAW_TOPIC, payload, qos=1)
            finally:
                window.release()

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            for payload in data:
                await window.acquire()
                tasks.create_task(publish(payload))
        elapsed = time.perf_counter() - start
    await wait_until(lambda: len(station.raw) >= len(data))
    return len(data) / elapsed


async def drained(journal: Journal, uplink: Uplink, acks: int) -> None:
    """Wait for ``acks`` more PUBACKs (a cheap counter), then for the journal to agree."""
    await wait_until(lambda: uplink.state.published >= acks)
    await wait_until(lambda: journal.queue_depth() == 0)


async def journal_round(journal: Journal, uplink: Uplink, count: int,
                        event_type: str | tuple[str, ...]) -> float:
    types = (event_type,) if isinstance(event_type, str) else event_type
    acks = uplink.state.published + count
    start = time.perf_counter()
    for i in range(count):
        journal.record(Event(types[i % len(types)], door="front", data={"i": i}))
        if i % PRODUCER_CHUNK == PRODUCER_CHUNK - 1:
            await asyncio.sleep(0)
    journal.flush()
    await drained(journal, uplink, acks)
    return count / (time.perf_counter() - start)


def make_persistent(broker: Broker) -> None:
    """Keep the station's session across the broker restart of the backlog phase."""
    conf = broker.directory / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("persistence false", "persistence true"))
    broker.stop()
    broker.start()


async def bench(args: argparse.Namespace, work: Path) -> dict[str, float | int]:
    broker = start_broker(work / "broker")
    make_persistent(broker)
    station = Station(broker)
    journal = Journal(work / "journal.db", gate=GATE, quota_bytes=4 * 1024**3)
    uplink = Uplink(journal, gate=GATE, host=broker.host, port=broker.port,
                    inflight=args.inflight, initial_backoff_seconds=0.05,
                    max_backoff_seconds=0.2, health_seconds=3600)
    data = payloads(args.events, work / "scratch.db")
    tasks = [asyncio.create_task(station.run()), asyncio.create_task(uplink.run())]
    try:
        await station.ready.wait()
        await wait_until(lambda: uplink.state.connected)
        raw_rates, journal_rates = [], []
        for round_no in range(1, args.rounds + 1):
            raw_rates.append(await raw_round(broker, station, data, args.inflight))
            journal_rates.append(await journal_round(journal, uplink, args.events,
                                                     ("door.opened", "door.closed")))
            print(f"round {round_no}: raw {raw_rates[-1]:,.0f} events/s, "
                  f"journal+uplink {journal_rates[-1]:,.0f} events/s", flush=True)
        access_rate = await journal_round(journal, uplink, max(100, args.events // 10),
                                         "access.granted")
        print(f"access decisions (fsynced each): {access_rate:,.0f} events/s", flush=True)

        broker.stop()
        await wait_until(lambda: not uplink.state.connected)
        acks = uplink.state.published + args.backlog
        start = time.perf_counter()
        for i in range(args.backlog):
            journal.record(Event("door.opened", door="front", data={"i": i}))
        journal.flush()
        print(f"backlog of {args.backlog:,} recorded offline in "
              f"{time.perf_counter() - start:.2f} s", flush=True)
        broker.start()
        start = time.perf_counter()
        await drained(journal, uplink, acks)
        drain_s = time.perf_counter() - start
        print(f"backlog drained in {drain_s:.2f} s "
              f"({args.backlog / drain_s:,.0f} events/s incl. reconnect)", flush=True)
        recorded = journal.all_ids()
        await asyncio.wait_for(wait_until(lambda: station.ids >= recorded), 60)
    except TimeoutError:
        print("subscriber did not receive every recorded id within 60 s", flush=True)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        broker.stop()
    lost = len(journal.all_ids() - station.ids)
    journal.close()
    events_per_s = statistics.median(journal_rates)
    raw_per_s = statistics.median(raw_rates)
    return {
        "events_per_s": round(events_per_s, 1),
        "raw_events_per_s": round(raw_per_s, 1),
        "ratio_vs_raw": round(events_per_s / raw_per_s, 3),
        "backlog_drain_s": round(drain_s, 3),
        "lost": lost,
        "access_events_per_s": round(access_rate, 1),
        "events_per_round": args.events,
        "rounds": args.rounds,
        "backlog_events": args.backlog,
        "inflight": args.inflight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI (a few seconds)")
    parser.add_argument("--events", type=int, help="events per round (default 20000; quick 1000)")
    parser.add_argument("--backlog", type=int, help="backlog size (default 100000; quick 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds (median)")
    parser.add_argument("--inflight", type=int, default=32, help="QoS 1 in-flight window")
    args = parser.parse_args()
    args.events = args.events or (1000 if args.quick else 20_000)
    args.backlog = args.backlog or (1000 if args.quick else 100_000)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="menjin-bench-") as tmp:
        result = asyncio.run(bench(args, Path(tmp)))
    print(f"journal+uplink {result['events_per_s']:,.0f} events/s vs raw aiomqtt "
          f"{result['raw_events_per_s']:,.0f} events/s (median of {args.rounds}): ratio "
          f"{result['ratio_vs_raw']:.2f}; backlog of {args.backlog:,} drained in "
          f"{result['backlog_drain_s']:.2f} s; lost {result['lost']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
