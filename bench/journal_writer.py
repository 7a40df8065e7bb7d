"""Journal commits behind a busy event loop: the journal's writer thread against ``executemany``.

What it measures: how fast routine events reach the disk while the door's event loop is busy in
Python.  Python's sqlite3 module lets go of the GIL around every ``sqlite3_step``.  When another
thread running Python is waiting for it on another CPU, that thread takes it at once, and the
writer then waits until that thread is told to drop it again, up to a switch interval
(``sys.getswitchinterval()``).  ``executemany`` steps once per row, so a writer thread inserting a
batch that way can pay that wait per row; the journal (``daemon/journal.py``) writes a batch in a
few multi-row ``INSERT ... VALUES (...), (...)`` statements (``_INSERT_SIZES``) and pays it a few
times per batch.  The wait needs the two threads on two CPUs at once: on one CPU the writer
mostly takes the GIL back before the other thread is scheduled.  A gate has free cores for both
(a Pi 4 has four; vision runs at idle priority), so the bench pins the busy loop and the writing
thread to two different CPUs (``--no-pin``: wherever the scheduler puts them; on a shared host
the two then often share one CPU, and the contention mostly disappears).

A pass: a busy "door loop" (a thread spinning in pure Python from before the clock starts until
after it stops, as an event loop loaded with Python work does; it never lets go of the GIL of its
own accord) and ``--events`` routine events (``door.opened``) to commit in transactions of
``batch_max`` (the daemon's 512) on a thread, each commit announced on an asyncio loop in the main
thread, as the journal tells the uplink.  The clock starts when the writing thread is started and
stops when the loop has run the last commit's callback; ``batch_ms`` are the times between
successive commits (the first from the start), ``cpu_us_per_event`` is the writing thread's own
CPU time (its POSIX thread clock) per event, ``loop_cpu_share`` the busy loop's CPU time over its
wall time (about 1 when the host gave it its CPU whenever it held the GIL; well below, other
processes took that CPU and the writer met less contention than on a gate).  Every pass writes a
new file, checked to hold every event when the last commit has been announced.  Contenders:

- ``menjin``: a real :class:`~daemon.journal.Journal` in a temporary folder, its writer thread
  started with :meth:`~daemon.journal.Journal.start_writer` on the loop, commits seen through
  :meth:`~daemon.journal.Journal.add_listener`.  The events are recorded before the writer starts
  (with ``batch_max`` raised for the recording only, so that :meth:`~daemon.journal.Journal.record`
  keeps them in memory instead of committing them itself; it is 512 again before the writer
  starts): the pass times the writer draining a full tail, not the loop numbering events.  Bodies
  in clear (no ``data_key``), like the baseline's.
- ``sealed``: the same with a ``data_key``, as the daemon runs it: each body is sealed (AES-GCM,
  a fresh nonce from ``secrets``) on the writer thread.  Beside the others for what the daemon
  pays; the baseline does no such work, so no ratio is taken against it.
- ``executemany`` (the baseline): the same rows (the ``events`` columns menjin stored for the
  same events, read back from a scratch journal) inserted by a thread of its own with
  ``executemany`` of a one-row ``INSERT``, ``BEGIN IMMEDIATE`` ... ``COMMIT`` per ``batch_max``
  rows, each commit announced on the loop with ``call_soon_threadsafe``.

Why this baseline is the fair one: it is what a competent engineer writes for a group-committing
journal on a writer thread: one prepared statement, ``executemany`` over the batch, one
transaction per batch.  It writes into a file the journal itself created (the same table, primary
key, UNIQUE id and partial indexes), in WAL mode with ``synchronous=NORMAL``, which is how the
journal commits routine events; it skips what the journal adds to each transaction (its
``last_seq`` in ``meta``, its quota check every 1,000 events), so it does less work than menjin.
Same rows, same transaction size, same busy loop, same CPUs, same switch interval, same
notification of each commit.

Each pass runs with the loop busy and idle, at the daemon's switch interval
(``daemon.app.GIL_SWITCH_SECONDS``, 0.5 ms; importing the module has no side effect, the daemon
sets it once the gate is ready) and at CPython's default of 5 ms, in interleaved rounds (the order
of the contenders turns from round to round); the figures are medians over the rounds.

Target: behind the busy loop at the daemon's switch interval the writer keeps up with its own
batching, a full batch committed within ``batch_seconds`` (50 ms): ≥ ``batch_max /
batch_seconds`` = 10,240 events/s (``target_events_per_s``).

Usage: python bench/journal_writer.py [--quick] [--events N] [--rounds N] [--no-pin]
The last line is JSON: events_per_s (menjin, busy loop, the daemon's switch interval), baseline
(executemany's figures), ratio (menjin / executemany events per second, busy, daemon interval),
ratio_default_switch (the same at 5 ms), ratio_idle (idle loop, daemon interval), cpu_ratio_idle
and cpu_ratio_busy (executemany's CPU per event / menjin's, daemon interval),
sealed_events_per_s, target_events_per_s, switch_intervals_s, pinned_cpus (busy loop, writer;
null when not pinned), results (per contender and condition ``busy_daemon``, ``idle_daemon``,
``busy_default``, ``idle_default``: events_per_s, batch_ms_p50, batch_ms_max, cpu_us_per_event,
and loop_cpu_share when busy), rounds_events_per_s and rounds_loop_cpu_share (each round's
figure, in order), events, batch_max, rounds, quick, machine, versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from daemon.app import GIL_SWITCH_SECONDS  # noqa: E402
from daemon.events import Event  # noqa: E402
from daemon.journal import DEFAULT_BATCH_MAX, DEFAULT_BATCH_SECONDS, Journal  # noqa: E402

GATE = "bench"
#: CPython's default switch interval (``sys.getswitchinterval()`` of a fresh interpreter).
PYTHON_SWITCH_SECONDS = 0.005
INTERVALS = (("daemon", GIL_SWITCH_SECONDS), ("default", PYTHON_SWITCH_SECONDS))
CONTENDERS = ("menjin", "sealed", "executemany")
CONDITIONS = tuple(f"{load}_{label}" for label, _ in INTERVALS for load in ("busy", "idle"))
#: Events per pass: eight full batches (executemany behind the busy loop at 5 ms takes up to
#: 4 ms per row here, up to 16 s per pass, which sets the length of a full run).
EVENTS = 4_096
QUICK_EVENTS = 1_024
ROUNDS = 7
QUICK_ROUNDS = 2
PASS_TIMEOUT_SECONDS = 300.0
#: The busy loop checks whether to stop after this many additions (pure Python either way).
SPIN_CHUNK = 1000
TARGET_EVENTS_PER_S = round(DEFAULT_BATCH_MAX / DEFAULT_BATCH_SECONDS)
COLUMNS = "seq, id, ts_ms, type, priority, person, body"
INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
BASELINE = ("sqlite3 executemany of a one-row INSERT on a writer thread, a transaction per "
            f"{DEFAULT_BATCH_MAX} rows, WAL, synchronous=NORMAL, the journal's own table")

Row = tuple[Any, ...]


@dataclass
class Pass:
    """One contender's pass: wall seconds, the commits' spacing, the writer's CPU time and the
    busy loop's share of a CPU (None: idle loop)."""

    seconds: float
    batch_s: list[float]
    cpu_s: float
    loop_cpu_share: float | None


@dataclass(frozen=True)
class Load:
    """Whether the door loop is busy, and the CPUs of the busy loop and of the writing thread
    (None: where the scheduler puts them)."""

    busy: bool
    cpus: tuple[int, int] | None

    @property
    def loop_cpu(self) -> int | None:
        return None if self.cpus is None else self.cpus[0]

    @property
    def writer_cpu(self) -> int | None:
        return None if self.cpus is None else self.cpus[1]


def cpus_to_pin(pin: bool) -> tuple[int, int] | None:
    """Two different CPUs this process may use, for the busy loop and the writing thread (None
    when not asked, or with a single CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if pin and len(cpus) >= 2 else None


def pin(thread: threading.Thread, cpu: int | None) -> None:
    if cpu is not None:
        assert thread.native_id is not None
        os.sched_setaffinity(thread.native_id, {cpu})


class DoorLoop:
    """The busy door loop: a thread spinning in pure Python for the whole ``with`` block
    (nothing when the loop is idle).  ``cpu_share`` is the CPU time it got over the block's
    wall time: about 1 when the host gave it a CPU whenever it held the GIL, lower when other
    processes took its CPU (then the writer met less contention than a gate's would)."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.cpu_share: float | None = None
        self._stop, self._spinning = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._spin, name="busy-door-loop", daemon=True)

    def _spin(self) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        self._spinning.set()
        total = 0
        while not self._stop.is_set():
            for _ in range(SPIN_CHUNK):
                total += 1
        self.cpu_share = (time.thread_time() - cpu) / (time.perf_counter() - wall)

    def __enter__(self) -> DoorLoop:
        if self.load.busy:
            self._thread.start()
            pin(self._thread, self.load.loop_cpu)
            self._spinning.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.load.busy:
            self._stop.set()
            self._thread.join()


def thread_cpu_s(thread: threading.Thread) -> float:
    """CPU seconds a running thread has used so far (its POSIX thread clock)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def count_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        db.close()


def check_complete(path: Path, expected: int, name: str) -> None:
    found = count_rows(path)
    if found != expected:
        raise RuntimeError(f"{name}: {found} of {expected} events committed when it reported done")


def spacing(start: float, stamps: Sequence[float]) -> list[float]:
    return [b - a for a, b in zip([start, *stamps], stamps, strict=False)]


def record(journal: Journal, count: int) -> None:
    for i in range(count):
        journal.record(Event("door.opened", door="front", data={"i": i}))


def rows_of(folder: Path, count: int) -> list[Row]:
    """The ``events`` rows menjin stores for the bench's events (bodies in clear)."""
    path = folder / "rows.db"
    journal = Journal(path, gate=GATE)
    record(journal, count)
    journal.flush()
    journal.close()
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT {COLUMNS} FROM events ORDER BY seq").fetchall()
    finally:
        db.close()


def commit_counter(commits: int) -> tuple[list[float], asyncio.Event, Callable[[], None]]:
    """A callback for the loop stamping each commit; the event is set at the ``commits``-th."""
    stamps: list[float] = []
    done = asyncio.Event()

    def committed() -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= commits:
            done.set()

    return stamps, done, committed


async def _drain_journal(journal: Journal, count: int, load: Load) -> Pass:
    commits = -(-count // DEFAULT_BATCH_MAX)
    stamps, done, committed = commit_counter(commits)
    journal.add_listener(committed)
    with DoorLoop(load) as door:
        before = set(threading.enumerate())
        start = time.perf_counter()
        journal.start_writer(asyncio.get_running_loop())
        (writer,) = set(threading.enumerate()) - before
        pin(writer, load.writer_cpu)
        await asyncio.wait_for(done.wait(), PASS_TIMEOUT_SECONDS)
    return Pass(stamps[-1] - start, spacing(start, stamps), thread_cpu_s(writer),
                door.cpu_share)


def menjin_pass(folder: Path, count: int, load: Load, data_key: bytes | None) -> Pass:
    path = folder / "journal.db"
    journal = Journal(path, gate=GATE, data_key=data_key)
    try:
        journal.batch_max = count + 1  # recording only: record() keeps the events in memory
        record(journal, count)
        journal.batch_max = DEFAULT_BATCH_MAX
        result = asyncio.run(_drain_journal(journal, count, load))
        check_complete(path, count, "menjin")  # by the writer, before close() flushes anything
    finally:
        journal.close()
    return result


async def _drain_executemany(db: sqlite3.Connection, rows: list[Row], load: Load) -> Pass:
    commits = -(-len(rows) // DEFAULT_BATCH_MAX)
    stamps, done, committed = commit_counter(commits)
    loop = asyncio.get_running_loop()
    cpu: list[float] = []
    failed: list[BaseException] = []

    def write() -> None:
        started = time.thread_time()
        try:
            for first in range(0, len(rows), DEFAULT_BATCH_MAX):
                db.execute("BEGIN IMMEDIATE")
                db.executemany(INSERT, rows[first:first + DEFAULT_BATCH_MAX])
                db.execute("COMMIT")
                loop.call_soon_threadsafe(committed)
        except BaseException as exc:
            failed.append(exc)
            loop.call_soon_threadsafe(done.set)
            raise
        finally:
            cpu.append(time.thread_time() - started)

    writer = threading.Thread(target=write, name="executemany-writer", daemon=True)
    with DoorLoop(load) as door:
        start = time.perf_counter()
        writer.start()
        pin(writer, load.writer_cpu)
        await asyncio.wait_for(done.wait(), PASS_TIMEOUT_SECONDS)
    writer.join()
    if failed:
        raise failed[0]
    return Pass(stamps[-1] - start, spacing(start, stamps), cpu[0], door.cpu_share)


def executemany_pass(folder: Path, rows: list[Row], load: Load) -> Pass:
    path = folder / "baseline.db"
    Journal(path, gate=GATE).close()  # the journal's own schema and indexes, no events
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        result = asyncio.run(_drain_executemany(db, rows, load))
    finally:
        db.close()
    check_complete(path, len(rows), "executemany")
    return result


def run_pass(name: str, work: Path, rows: list[Row], load: Load, key: bytes) -> Pass:
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        folder = Path(tmp)
        if name == "executemany":
            return executemany_pass(folder, rows, load)
        return menjin_pass(folder, len(rows), load, key if name == "sealed" else None)


def summary(passes: list[Pass], count: int) -> dict[str, float]:
    """Medians over the rounds of each figure."""
    shares = [p.loop_cpu_share for p in passes if p.loop_cpu_share is not None]
    return {
        "events_per_s": round(statistics.median(count / p.seconds for p in passes), 1),
        "batch_ms_p50": round(statistics.median(
            statistics.median(p.batch_s) * 1000 for p in passes), 3),
        "batch_ms_max": round(statistics.median(max(p.batch_s) * 1000 for p in passes), 3),
        "cpu_us_per_event": round(statistics.median(p.cpu_s / count * 1e6 for p in passes), 3),
        **({"loop_cpu_share": round(statistics.median(shares), 3)} if shares else {}),
    }


def describe(figures: dict[str, float]) -> str:
    return (f"{figures['events_per_s']:>11,.0f} events/s, batch p50 "
            f"{figures['batch_ms_p50']:8.2f} ms, max {figures['batch_ms_max']:8.2f} ms, "
            f"{figures['cpu_us_per_event']:5.1f} µs CPU per event"
            + (f", busy loop on {figures['loop_cpu_share']:.0%} of a CPU"
               if "loop_cpu_share" in figures else ""))


def bench(count: int, rounds: int, cpus: tuple[int, int] | None) -> dict[str, Any]:
    key = secrets.token_bytes(32)
    passes: dict[str, dict[str, list[Pass]]] = {
        name: {condition: [] for condition in CONDITIONS} for name in CONTENDERS}
    previous = sys.getswitchinterval()
    with tempfile.TemporaryDirectory(prefix="menjin-bench-") as tmp:
        work = Path(tmp)
        rows = rows_of(work, count)
        try:
            for round_no in range(rounds):
                turn = round_no % len(CONTENDERS)  # who goes first changes every round
                order = CONTENDERS[turn:] + CONTENDERS[:turn]
                for label, interval in INTERVALS:
                    sys.setswitchinterval(interval)
                    for load in ("busy", "idle"):
                        for name in order:
                            passes[name][f"{load}_{label}"].append(
                                run_pass(name, work, rows, Load(load == "busy", cpus), key))
                print(f"round {round_no + 1}, busy loop: " + "; ".join(
                    f"{interval * 1000:g} ms switch interval " + ", ".join(
                        f"{name} {count / passes[name][f'busy_{label}'][-1].seconds:,.0f}"
                        for name in CONTENDERS) for label, interval in INTERVALS)
                      + " events/s", flush=True)
        finally:
            sys.setswitchinterval(previous)
    results = {name: {condition: summary(p, count) for condition, p in by_condition.items()}
               for name, by_condition in passes.items()}
    return {"results": results,
            "rounds_events_per_s": {
                name: {condition: [round(count / p.seconds, 1) for p in ps]
                       for condition, ps in by_condition.items()}
                for name, by_condition in passes.items()},
            "rounds_loop_cpu_share": {
                name: {condition: [round(p.loop_cpu_share, 3) for p in ps
                                   if p.loop_cpu_share is not None]
                       for condition, ps in by_condition.items() if condition.startswith("busy")}
                for name, by_condition in passes.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI (a few seconds)")
    parser.add_argument("--events", type=int,
                        help=f"events per pass (default {EVENTS:,}; quick {QUICK_EVENTS:,})")
    parser.add_argument("--rounds", type=int,
                        help=f"interleaved rounds (default {ROUNDS}; quick {QUICK_ROUNDS})")
    parser.add_argument("--no-pin", action="store_true",
                        help="leave the busy loop and the writer wherever the scheduler puts them")
    args = parser.parse_args()
    count = args.events or (QUICK_EVENTS if args.quick else EVENTS)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    cpus = cpus_to_pin(not args.no_pin)
    measured = bench(count, rounds, cpus)
    results = measured["results"]
    ours, sealed, base = results["menjin"], results["sealed"], results["executemany"]

    def ratio(condition: str) -> float:
        return round(ours[condition]["events_per_s"] / base[condition]["events_per_s"], 2)

    def cpu_ratio(condition: str) -> float:
        return round(base[condition]["cpu_us_per_event"] / ours[condition]["cpu_us_per_event"], 2)

    for label, interval in INTERVALS:
        for load in ("busy", "idle"):
            condition = f"{load}_{label}"
            print(f"{load} loop, switch interval {interval * 1000:g} ms ({label}):")
            for name in CONTENDERS:
                print(f"  {name:<12}{describe(results[name][condition])}")
            print(f"  menjin / executemany: {ratio(condition):,.1f}x the events per second, "
                  f"{cpu_ratio(condition):.2f}x less CPU per event")

    headline = ours["busy_daemon"]["events_per_s"]
    verdict = "meets" if headline >= TARGET_EVENTS_PER_S else "MISSES"
    print(f"median of {rounds} interleaved rounds of {count:,} events: busy loop at the daemon's "
          f"switch interval, menjin {headline:,.0f} events/s against executemany "
          f"{base['busy_daemon']['events_per_s']:,.0f} ({ratio('busy_daemon'):,.1f}x; at 5 ms "
          f"{ratio('busy_default'):,.1f}x); {verdict} the target of {TARGET_EVENTS_PER_S:,} "
          "events/s")
    out: dict[str, Any] = {
        "events_per_s": headline,
        "baseline": {"name": BASELINE, "events_per_s": base["busy_daemon"]["events_per_s"],
                     "events_per_s_default_switch": base["busy_default"]["events_per_s"],
                     "events_per_s_idle": base["idle_daemon"]["events_per_s"],
                     "batch_ms_p50": base["busy_daemon"]["batch_ms_p50"],
                     "cpu_us_per_event_idle": base["idle_daemon"]["cpu_us_per_event"]},
        "ratio": ratio("busy_daemon"),
        "ratio_default_switch": ratio("busy_default"),
        "ratio_idle": ratio("idle_daemon"),
        "cpu_ratio_idle": cpu_ratio("idle_daemon"),
        "cpu_ratio_busy": cpu_ratio("busy_daemon"),
        "sealed_events_per_s": sealed["busy_daemon"]["events_per_s"],
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "switch_intervals_s": dict(INTERVALS),
        "pinned_cpus": None if cpus is None else list(cpus),
        **measured,
        "events": count,
        "batch_max": DEFAULT_BATCH_MAX,
        "rounds": rounds,
        "quick": args.quick,
    }
    print(json.dumps(with_machine(out, libraries=("cryptography",))))


if __name__ == "__main__":
    main()
