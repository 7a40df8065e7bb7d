"""Store-and-forward throughput: journal + uplink against a raw paho-mqtt publisher, and a backlog.

Why this baseline is the fair one: menjin publishes through paho-mqtt (``protocol/mqtt.py``), so
the baseline is the same library on its fastest public-API path, as a competent engineer would
write a bulk QoS 1 publisher without a journal: one ``paho.mqtt.client.Client`` (MQTT 5) with the
network loop on paho's own thread (``loop_start()``), ``max_inflight_messages_set(--inflight)`` as
the window (paho queues the rest in order), every payload handed to ``publish(qos=1)`` in a tight
loop, done when ``on_publish`` has counted every PUBACK.  No per-message future or task.
Both sides run in the same process against the same private mosquitto, with the same payloads
(the journal's exact bytes), the same window and the same station subscriber counting arrivals.

Menjin's own adapter (``protocol/mqtt.py``: paho's public API driven from the event loop) is a
second candidate for the fastest path, so it is measured too, without the journal; whichever of
the two raw publishers is faster in a run is the baseline of its ratios.

Contenders, measured in interleaved rounds (raw, raw adapter, routine, access, raw, ...) so the
noise of a shared machine hits all of them; the medians are reported:
- ``raw``: the paho publisher above, no journal;
- ``raw_client``: the same payloads through ``MqttClient.publish_nowait``, no journal;
- ``routine``: ``door.opened``/``door.closed`` recorded in the journal as the daemon runs it
  (SQLite WAL, its writer thread, group commit without fsync, every body sealed at rest with a
  journal key) and published by ``daemon.uplink.Uplink``;
- ``access``: ``access.granted`` recorded the same way, each group commit fsynced
  (``synchronous=FULL``) before the uplink can read it: durable decisions per second, the headline.
The clock of a journal round starts before the first ``record`` and stops at the last PUBACK.
Events recorded while the uplink is connected go one per message (packs are for a backlog), so
in these rounds both sides publish the same payloads one by one through the same window.
Then the broker is stopped, a backlog of ``--backlog`` events is recorded, the broker is started
again, and the time until the journal's queue is empty is ``backlog_drain_s``: the uplink sends
such a backlog in packs of up to 100 events per message (``protocol.packs``).

The process runs with the door daemon's GIL switch interval (``daemon.app.GIL_SWITCH_SECONDS``,
0.5 ms; CPython's default is 5 ms), since the journal's writer thread shares the GIL with the
loop as it does in the daemon; the raw publishers run under the same interval, in the same
process.  ``--switch-interval 0.005`` measures at CPython's default.

Targets: routine ≥ 0.8 of raw (``ratio_routine_vs_raw``); fsynced access events reported beside
(``ratio_vs_raw``, the headline ratio).

Usage: python bench/uplink.py [--quick] [--events N] [--backlog N] [--inflight N] [--rounds N]
                              [--switch-interval SECONDS]
The last line is JSON: access_events_per_s, events_per_s (routine), raw_events_per_s (the
faster raw publisher: raw_paho_events_per_s, raw_adapter_events_per_s), ratio_vs_raw,
ratio_routine_vs_raw, backlog_drain_s, lost, switch_interval_s, baseline, machine, versions, ...
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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from daemon.app import GIL_SWITCH_SECONDS  # noqa: E402
from daemon.events import Event  # noqa: E402
from daemon.journal import Journal  # noqa: E402
from daemon.uplink import Uplink  # noqa: E402
from protocol.mqtt import MqttClient, MqttError  # noqa: E402
from tests.broker import Broker, start_broker  # noqa: E402

GATE = "bench"
RAW_TOPIC = "menjin/raw/events"
EVENTS_TOPIC = f"menjin/{GATE}/events"
POLL_SECONDS = 0.005
STATION_POLL_SECONDS = 0.02
#: The `ids` answer is one JSON line of every event id (some 40 bytes each).
STATION_LINE_LIMIT = 256 * 1024 * 1024
PRODUCER_CHUNK = 500
#: The daemon always seals the journal's bodies (the key comes from its keyring); any 32 bytes.
JOURNAL_KEY = bytes(range(32))
ROUTINE = ("door.opened", "door.closed")
#: Measured in this order in every round (interleaved).
CONTENDERS = ("raw", "raw_client", "routine", "access")
BASELINES = {
    "raw": "paho-mqtt Client, loop_start(), publish(qos=1) in a loop, "
           "max_inflight_messages_set(window)",
    "raw_client": "paho-mqtt Client through protocol.mqtt.MqttClient (no journal), "
                  "publish_nowait() of every payload, max_inflight(window)",
}
ACCESS = ("access.granted",)
CONNECT_TIMEOUT_SECONDS = 10.0
ROUND_TIMEOUT_SECONDS = 300.0
#: paho's connection chatter (resets while the broker is stopped on purpose) is not a result.
QUIET = logging.getLogger("bench.mqtt")
QUIET.setLevel(logging.CRITICAL)


class StationProcess:
    """The station's subscriber, in a process of its own (as it is in life: not on the gate).

    It counts distinct event ids arriving on the events and raw topics (one event or a pack of
    them per message; a persistent session, so the backlog phase loses nothing across the broker
    restart) and answers one-line requests on its stdin: ``count`` → ``{"raw": n, "events": n}``,
    ``clear`` forgets the raw ids, ``ids`` → every event id received.  Running it here would put
    the station's reading and parsing on the uplink's event loop, a cost neither contender pays
    on a gate.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--station", f"{self.broker.host}:{self.broker.port}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=STATION_LINE_LIMIT)
        assert await self._ask("ready") == "ready"

    async def _ask(self, request: str) -> Any:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{request}\n".encode())
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("the station process ended")
        return json.loads(line)

    async def counts(self) -> dict[str, int]:
        return dict(await self._ask("count"))

    async def clear_raw(self) -> None:
        await self._ask("clear")

    async def ids(self) -> set[str]:
        return set(await self._ask("ids"))

    async def wait_for(self, topic: str, count: int) -> None:
        while (await self.counts())[topic] < count:  # noqa: ASYNC110 (another process)
            await asyncio.sleep(STATION_POLL_SECONDS)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def station_main(address: str) -> None:
    """The body of :class:`StationProcess` (``--station HOST:PORT``)."""
    host, _, port = address.rpartition(":")
    ids: set[str] = set()
    raw: set[str] = set()
    ready = asyncio.Event()

    async def subscribe() -> None:
        while True:
            try:
                async with MqttClient(host, int(port), client_id="bench-station",
                                      clean_start=False, session_expiry_seconds=3600,
                                      logger=QUIET) as client:
                    await client.subscribe(EVENTS_TOPIC)
                    await client.subscribe(RAW_TOPIC)
                    ready.set()
                    async for batch in client.batches():
                        for message in batch:
                            target = raw if message.topic == RAW_TOPIC else ids
                            received = json.loads(message.payload)  # an event or a pack
                            target.update(e["id"] for e in (
                                received if isinstance(received, list) else [received]))
            except MqttError:
                await asyncio.sleep(0.05)

    task = asyncio.create_task(subscribe())
    while True:
        request = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if not request:
            task.cancel()
            return
        if request == "ready":
            await ready.wait()
            answer: Any = "ready"
        elif request == "count":
            answer = {"raw": len(raw), "events": len(ids)}
        elif request == "clear":
            raw.clear()
            answer = "cleared"
        else:
            answer = sorted(ids)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll: the journal and the counters have no event to await."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)


def payloads(count: int, scratch: Path) -> list[bytes]:
    """The exact bytes the journal publishes for ``count`` events of the mix."""
    journal = Journal(scratch, gate=GATE, fsync="batched")
    out = [json.dumps(journal.record(Event(ROUTINE[i % 2], door="front", data={"i": i})),
                      separators=(",", ":"), ensure_ascii=False).encode()
           for i in range(count)]
    journal.close()
    return out


def raw_publish(broker: Broker, data: list[bytes], inflight: int) -> float:
    """The baseline (see the module docstring); events per second, on the calling thread."""
    acked = 0
    done = threading.Event()
    connected = threading.Event()

    def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        connected.set()

    def on_publish(client: paho.Client, userdata: Any, mid: int, reason: Any,
                   properties: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == len(data):
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(inflight)
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        if not connected.wait(CONNECT_TIMEOUT_SECONDS):
            raise RuntimeError("raw publisher: no CONNACK")
        start = time.perf_counter()
        for payload in data:
            client.publish(RAW_TOPIC, payload, qos=1)
        if not done.wait(ROUND_TIMEOUT_SECONDS):
            raise RuntimeError(f"raw publisher: {acked} of {len(data)} PUBACKs")
        elapsed = time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()
    return len(data) / elapsed


async def client_publish(broker: Broker, data: list[bytes], inflight: int) -> float:
    """The second baseline: menjin's own MQTT adapter (``protocol.mqtt.MqttClient``, paho's
    public API driven from the event loop) without the journal: every payload handed over at
    once, the same window; events per second from connect to the last PUBACK."""
    async with MqttClient(broker.host, broker.port, client_id="bench-raw-client",
                          max_inflight=inflight, logger=QUIET) as client:
        start = time.perf_counter()
        futures = [client.publish_nowait(RAW_TOPIC, payload) for payload in data]
        for future in futures:
            await future
        return len(data) / (time.perf_counter() - start)


async def raw_round(broker: Broker, station: StationProcess, data: list[bytes], inflight: int,
                    *, adapter: bool) -> tuple[float, float]:
    """Events per second and per CPU second of this process (every thread of it) of one raw
    publisher: paho's own loop thread, or (``adapter``) menjin's MQTT adapter."""
    await station.clear_raw()
    cpu = time.process_time()
    if adapter:
        rate = await client_publish(broker, data, inflight)
    else:
        rate = await asyncio.to_thread(raw_publish, broker, data, inflight)
    cpu_rate = len(data) / max(time.process_time() - cpu, 1e-9)
    await station.wait_for("raw", len(data))
    return rate, cpu_rate


async def drained(journal: Journal, uplink: Uplink, acks: int) -> None:
    """Wait for ``acks`` more PUBACKs (a cheap counter), then for the journal to agree."""
    await wait_until(lambda: uplink.state.published >= acks)
    await wait_until(lambda: journal.queue_depth() == 0)


async def journal_round(journal: Journal, uplink: Uplink, count: int,
                        types: tuple[str, ...]) -> tuple[float, float]:
    """Events per second and per CPU second of this process (loop, writer thread and all)."""
    acks = uplink.state.published + count
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        journal.record(Event(types[i % len(types)], door="front", data={"i": i}))
        if i % PRODUCER_CHUNK == PRODUCER_CHUNK - 1:
            await asyncio.sleep(0)  # the door loop has other work: let the uplink run
    await drained(journal, uplink, acks)
    return (count / (time.perf_counter() - start),
            count / max(time.process_time() - cpu, 1e-9))


def make_persistent(broker: Broker) -> None:
    """Keep the station's session across the broker restart of the backlog phase."""
    conf = broker.directory / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("persistence false", "persistence true"))
    broker.stop()
    broker.start()


async def backlog_phase(broker: Broker, journal: Journal, uplink: Uplink, size: int) -> float:
    """Record ``size`` events with the broker down, start it, time the drain."""
    broker.stop()
    await wait_until(lambda: not uplink.state.connected)
    acks = uplink.state.published + size
    start = time.perf_counter()
    for i in range(size):
        journal.record(Event("door.opened", door="front", data={"i": i}))
        if i % PRODUCER_CHUNK == PRODUCER_CHUNK - 1:
            await asyncio.sleep(0)
    journal.flush()
    print(f"backlog of {size:,} recorded offline in {time.perf_counter() - start:.2f} s",
          flush=True)
    broker.start()
    start = time.perf_counter()
    await drained(journal, uplink, acks)
    drain_s = time.perf_counter() - start
    print(f"backlog drained in {drain_s:.2f} s ({size / drain_s:,.0f} events/s incl. "
          "reconnect)", flush=True)
    return drain_s


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = start_broker(work / "broker")
    make_persistent(broker)
    station = StationProcess(broker)
    journal = Journal(work / "journal.db", gate=GATE, quota_bytes=4 * 1024**3,
                      data_key=JOURNAL_KEY)
    journal.start_writer()  # as the daemon does: commits on the writer thread
    uplink = Uplink(journal, gate=GATE, host=broker.host, port=broker.port,
                    inflight=args.inflight, initial_backoff_seconds=0.05,
                    max_backoff_seconds=0.2, health_seconds=3600)
    data = payloads(args.events, work / "scratch.db")
    tasks = [asyncio.create_task(uplink.run())]
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    cpu_rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    drain_s = float("nan")
    lost = -1
    try:
        await station.start()
        await wait_until(lambda: uplink.state.connected)
        for round_no in range(1, args.rounds + 1):
            for name, measured in (
                ("raw", raw_round(broker, station, data, args.inflight, adapter=False)),
                ("raw_client", raw_round(broker, station, data, args.inflight, adapter=True)),
                ("routine", journal_round(journal, uplink, args.events, ROUTINE)),
                ("access", journal_round(journal, uplink, args.events, ACCESS)),
            ):
                rate, cpu_rate = await measured
                rates[name].append(rate)
                cpu_rates[name].append(cpu_rate)
            print(f"round {round_no}: raw paho {rates['raw'][-1]:,.0f} events/s "
                  f"({cpu_rates['raw'][-1]:,.0f} per CPU s), raw adapter "
                  f"{rates['raw_client'][-1]:,.0f} ({cpu_rates['raw_client'][-1]:,.0f}), "
                  f"journal+uplink routine {rates['routine'][-1]:,.0f} "
                  f"({cpu_rates['routine'][-1]:,.0f}), access.granted fsynced "
                  f"{rates['access'][-1]:,.0f} ({cpu_rates['access'][-1]:,.0f})", flush=True)
        stats = journal.group_commits
        drain_s = await backlog_phase(broker, journal, uplink, args.backlog)
        recorded = journal.all_ids()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(station.wait_for("events", len(recorded)), 60)
        lost = len(recorded - await station.ids())
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await station.stop()
        broker.stop()
    journal.close()
    median = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_rates.items()}
    fastest = max(("raw", "raw_client"), key=median.__getitem__)  # the baseline
    raw, routine, access = median[fastest], median["routine"], median["access"]
    return {
        "access_events_per_s": round(access, 1),
        "events_per_s": round(routine, 1),
        "raw_events_per_s": round(raw, 1),
        "raw_paho_events_per_s": round(median["raw"], 1),
        "raw_adapter_events_per_s": round(median["raw_client"], 1),
        "ratio_vs_raw": round(access / raw, 3),
        "ratio_routine_vs_raw": round(routine / raw, 3),
        "target_routine_ratio": 0.8,
        "events_per_cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "cpu_ratio_vs_raw": round(cpu["access"] / cpu[fastest], 3),
        "cpu_ratio_routine_vs_raw": round(cpu["routine"] / cpu[fastest], 3),
        "baseline": {"name": BASELINES[fastest], "events_per_s": round(raw, 1),
                     "events_per_cpu_s": round(cpu[fastest], 1)},
        "rounds_events_per_s": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "rounds_events_per_cpu_s": {k: [round(r, 1) for r in v] for k, v in cpu_rates.items()},
        "group_commits": stats,
        "backlog_drain_s": round(drain_s, 3),
        "lost": lost,
        "events_per_round": args.events,
        "rounds": args.rounds,
        "backlog_events": args.backlog,
        "inflight": args.inflight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI (a few seconds)")
    parser.add_argument("--events", type=int, help="events per round (default 20000; quick 1000)")
    parser.add_argument("--backlog", type=int, help="backlog size (default 50000; quick 1000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 2)")
    parser.add_argument("--inflight", type=int, default=32, help="QoS 1 in-flight window")
    parser.add_argument("--switch-interval", type=float, default=GIL_SWITCH_SECONDS,
                        help="GIL switch interval in seconds (default: the door daemon's)")
    parser.add_argument("--station", help=argparse.SUPPRESS)  # HOST:PORT: the station process
    args = parser.parse_args()
    if args.station:
        asyncio.run(station_main(args.station))
        return
    args.events = args.events or (1000 if args.quick else 20_000)
    args.backlog = args.backlog or (1000 if args.quick else 50_000)
    args.rounds = args.rounds or (2 if args.quick else 5)
    logging.basicConfig(level=logging.ERROR)
    sys.setswitchinterval(args.switch_interval)
    with tempfile.TemporaryDirectory(prefix="menjin-bench-") as tmp:
        result = asyncio.run(bench(args, Path(tmp)))
    result["switch_interval_s"] = args.switch_interval
    print(f"median of {args.rounds} interleaved rounds: access.granted fsynced "
          f"{result['access_events_per_s']:,.0f} events/s, routine "
          f"{result['events_per_s']:,.0f} events/s, raw (the faster of paho "
          f"{result['raw_paho_events_per_s']:,.0f} and adapter "
          f"{result['raw_adapter_events_per_s']:,.0f}) "
          f"{result['raw_events_per_s']:,.0f} events/s; ratios {result['ratio_vs_raw']:.2f} "
          f"(fsynced) and {result['ratio_routine_vs_raw']:.2f} (routine, target 0.8); backlog "
          f"of {args.backlog:,} drained in {result['backlog_drain_s']:.2f} s; lost "
          f"{result['lost']}")
    print(json.dumps(with_machine(result, libraries=("paho-mqtt",))))


if __name__ == "__main__":
    main()
