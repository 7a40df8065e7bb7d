"""Card swipe to lock relay: how much time the software adds on top of the reader's own wire time.

A pty stands in for an RDM6300-class EM4100 reader on USB serial.  For every swipe the emulator
writes the 14-byte frame (the first 13 bytes, then the last one), and we time from the write of
that last byte to the moment the lock relay pin goes active, through the real path: the serial
transport and EM4100 parser (drivers), the access decision for an enrolled card
(daemon.access), and the door controller energising the relay (daemon.door) on gpiozero
MockFactory pins.  The relay pin is wired (gpiozero's MockConnectedPin) to a sense input whose
edge callback stamps the time, as a logic analyser on the relay line would.

A pty adds no wire time, so the figure is the software's own overhead; beside it stands the
physical floor a real reader adds, the frame's time on a 9600-baud 8N1 line (14 bytes x 10 bits).
Also reported: the reader stage alone (last byte -> CardRead handed out).

As in the daemon (``Gate._decided``), the door moves first and the decision is recorded durably in
the journal (SQLite, fsync) right after, before anything is published; the headline figure runs
with that journal, and the same path without the journal is reported beside it.

Usage: .venv/bin/python bench/card_latency.py [--quick] [--swipes N] [--journal-dir DIR]
The last line is JSON: p50_overhead_ms, p99_overhead_ms, wire_time_ms, swipes (and the stages).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpiozero import DigitalInputDevice  # noqa: E402
from gpiozero.pins.mock import MockConnectedPin, MockFactory  # noqa: E402

from daemon.access import (  # noqa: E402
    AccessController,
    AccessIndex,
    DoorPolicy,
    Group,
    Person,
    decision_events,
)
from daemon.config import AccessRule  # noqa: E402
from daemon.door import DoorController  # noqa: E402
from daemon.events import Event  # noqa: E402
from daemon.journal import Journal  # noqa: E402
from daemon.schedule import parse_schedule  # noqa: E402
from drivers.card import CardRead, card_credential  # noqa: E402
from drivers.em4100 import EM4100_BAUD, EM4100_FRAME_BYTES, Em4100Reader  # noqa: E402
from drivers.lock import Lock  # noqa: E402
from drivers.sim.serial_emitter import PtyEmitter, em4100_frame  # noqa: E402

BITS_PER_BYTE_8N1 = 10  # start bit, 8 data bits, stop bit
WIRE_TIME_MS = EM4100_FRAME_BYTES * BITS_PER_BYTE_8N1 / EM4100_BAUD * 1000
CARD = 0x0A0012D687
SWIPE_TIMEOUT_SECONDS = 5.0
TARGET_P99_MS = 5.0
DOOR = "front"
READER = "front-card"
RELAY_PIN = 17
RELAY_SENSE_PIN = 18  # wired to the relay pin, like a logic analyser probe on the relay line
#: Each grant is a short pulse, so the door relocks by itself between swipes.
UNLOCK_SECONDS = 0.002


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Swipes:
    """The emulator thread: writes frames and waits for the far end to answer each one."""

    def __init__(self, pty: PtyEmitter, count: int) -> None:
        self.pty = pty
        self.count = count
        self.frame = em4100_frame(CARD)
        self.sent_ns: list[int] = []
        self.answered = threading.Event()
        self.failures = 0

    def run(self, before_each: Callable[[], None]) -> None:
        for _ in range(self.count):
            before_each()
            self.answered.clear()
            self.pty.write(self.frame[:-1])
            time.sleep(0.0005)  # the first 13 bytes are in; time only the last one
            self.sent_ns.append(time.perf_counter_ns())
            self.pty.write(self.frame[-1:])
            if not self.answered.wait(SWIPE_TIMEOUT_SECONDS):
                self.failures += 1


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def reader_stage(swipes: int) -> list[float]:
    """Last byte written -> CardRead handed to on_card (the reader driver alone)."""
    loop = asyncio.get_running_loop()
    with PtyEmitter() as pty:
        emitter = Swipes(pty, swipes)
        got_ns: list[int] = []

        def on_card(read: CardRead) -> None:
            got_ns.append(time.perf_counter_ns())
            emitter.answered.set()

        reader = Em4100Reader(pty.port, on_card=on_card, on_fault=print,
                              on_restored=lambda: None, repeat_window_ms=0, name="bench")
        task = asyncio.create_task(reader.run())
        while reader.transport.opens == 0:  # noqa: ASYNC110 - a counter, no event to wait on
            await asyncio.sleep(0.001)
        await loop.run_in_executor(None, emitter.run, lambda: None)
        await stop(task)
    if emitter.failures or len(got_ns) != swipes:
        raise SystemExit(f"reader stage: {emitter.failures} swipes unanswered")
    return [(g - s) / 1e6 for g, s in zip(got_ns, emitter.sent_ns, strict=True)]


class Gate:
    """The card path of the daemon, as daemon/app.py's ``_on_card`` and ``_decided`` run it
    (decide, record the events, grant at the door), minus the journal: its fsync is measured by
    the journal's own benchmark and would hide the software path this one is about."""

    def __init__(self, emitter: Swipes, journal: Journal | None) -> None:
        self.events: list[Event] = []
        self.journal = journal
        self.card_ns: list[int] = []
        self.relay_ns: list[int] = []
        self.released = threading.Event()
        self.released.set()
        factory = MockFactory()
        self.factory = factory
        sense = factory.pin(RELAY_SENSE_PIN)
        factory.pin(RELAY_PIN, pin_class=MockConnectedPin, input_pin=sense)
        self.probe = DigitalInputDevice(RELAY_SENSE_PIN, pull_up=None, active_state=True,
                                        pin_factory=factory)

        def relay_on() -> None:
            self.relay_ns.append(time.perf_counter_ns())
            emitter.answered.set()

        self.probe.when_activated = relay_on
        self.probe.when_deactivated = self.released.set
        self.lock = Lock(RELAY_PIN, pin_factory=factory)
        self.held: list[Event] = []
        self.door = DoorController(DOOR, lock=self.lock, unlock_seconds=UNLOCK_SECONDS,
                                   emit=self.emit)
        resident = Person("p-0001", "Resident", groups=("residents",),
                          cards=(card_credential(CARD),))
        everyone = Group("residents", (DOOR,), parse_schedule("always"))
        self.access = AccessController(AccessIndex.build([resident], [everyone]),
                                       {DOOR: DoorPolicy(DOOR, rule=AccessRule.CARD)})

    def emit(self, event: Event) -> None:
        """The door's events are held while it moves, then journalled after the decision."""
        self.held.append(event)

    def record(self, event: Event) -> None:
        if self.journal is not None:
            self.journal.record(event)
        self.events.append(event)

    def on_card(self, read: CardRead) -> None:
        self.card_ns.append(time.perf_counter_ns())
        decision = self.access.decide_card(DOOR, read.credential, datetime.now(UTC),
                                           reader=READER)
        events = decision_events(decision, reader=READER,
                                 credential_ref=self.access.card_ref(read.credential))
        self.held = []
        if decision.granted:
            self.door.grant(decision.credential_kind, decision.person)
        else:
            self.door.deny()
        for event in (*events, *self.held):
            self.record(event)

    def before_swipe(self) -> None:
        """Wait for the door to relock (the relay released) before the next card."""
        if not self.released.wait(SWIPE_TIMEOUT_SECONDS):
            raise SystemExit("the door did not relock")
        self.released.clear()

    def close(self) -> None:
        self.door.close()
        if self.journal is not None:
            self.journal.close()
        self.probe.close()
        self.factory.close()


async def full_path(swipes: int, journal_dir: Path | None) -> tuple[list[float], list[float]]:
    """Last byte written -> lock relay active, through reader, access decision and door (and the
    journal's durable write of the decision when ``journal_dir`` is given)."""
    loop = asyncio.get_running_loop()
    with PtyEmitter() as pty:
        emitter = Swipes(pty, swipes)
        journal = None if journal_dir is None else Journal(journal_dir / "journal.db", gate="bench")
        gate = Gate(emitter, journal)
        reader = Em4100Reader(pty.port, on_card=gate.on_card, on_fault=print,
                              on_restored=lambda: None, repeat_window_ms=0, name=READER)
        task = asyncio.create_task(reader.run())
        try:
            while reader.transport.opens == 0:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.001)
            await loop.run_in_executor(None, emitter.run, gate.before_swipe)
        finally:
            await stop(task)
            gate.close()
    granted = sum(e.type == "access.granted" for e in gate.events)
    if emitter.failures or len(gate.relay_ns) != swipes or granted != swipes:
        raise SystemExit(f"full path: {emitter.failures} swipes unanswered, {granted} granted")
    total = [(r - s) / 1e6 for r, s in zip(gate.relay_ns, emitter.sent_ns, strict=True)]
    decide = [(r - c) / 1e6 for r, c in zip(gate.relay_ns, gate.card_ns, strict=True)]
    return total, decide


def report(name: str, samples: list[float]) -> dict[str, float]:
    p50, p99 = statistics.median(samples), percentile(samples, 0.99)
    print(f"{name:<46} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   max {max(samples):7.3f} ms")
    return {"p50": p50, "p99": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred swipes (CI smoke)")
    parser.add_argument("--swipes", type=int, default=None, help="swipes to time (default 2000)")
    parser.add_argument("--journal-dir", type=Path, default=None,
                        help="where the journal goes (default: a temporary folder); put it on the "
                             "disk the gate's state_dir uses to see that disk's fsync cost")
    args = parser.parse_args()
    swipes = args.swipes or (200 if args.quick else 2000)

    reader = asyncio.run(reader_stage(swipes))
    bare, bare_decide = asyncio.run(full_path(swipes, None))
    with tempfile.TemporaryDirectory(prefix="menjin-bench-", dir=args.journal_dir) as tmp:
        journalled, journalled_decide = asyncio.run(full_path(swipes, Path(tmp)))
    print(f"{swipes} swipes of a {EM4100_FRAME_BYTES}-byte EM4100 frame over a pty, all granted")
    print(f"{'wire time at 9600 baud (the floor)':<46} {WIRE_TIME_MS:7.3f} ms")
    full = report("last byte -> relay active, as the daemon runs", journalled)
    report("  of which CardRead -> relay (journal after)", journalled_decide)
    without = report("last byte -> relay active, no journal", bare)
    report("  of which CardRead -> decision -> relay", bare_decide)
    stage = report("reader alone: last byte -> CardRead", reader)
    verdict = "meets" if full["p99"] <= TARGET_P99_MS else "MISSES"
    print(f"p99 overhead {full['p99']:.3f} ms {verdict} the {TARGET_P99_MS:g} ms target; "
          f"the wire alone takes {WIRE_TIME_MS / full['p50']:.0f}x the median overhead")
    result = {
        "p50_overhead_ms": round(full["p50"], 4),
        "p99_overhead_ms": round(full["p99"], 4),
        "wire_time_ms": round(WIRE_TIME_MS, 4),
        "swipes": swipes,
        "no_journal_p50_ms": round(without["p50"], 4),
        "no_journal_p99_ms": round(without["p99"], 4),
        "reader_p50_ms": round(stage["p50"], 4),
        "reader_p99_ms": round(stage["p99"], 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
