"""Door controller latency on MockFactory pins, beside the raw cost of toggling a mock pin.

Two paths are timed, each N iterations, in one run with their baselines:

- grant: ``DoorController.grant()`` called → relay pin at its active level
  (baseline: setting the state of a raw MockFactory output pin);
- edge: door contact pin driven from a worker thread (as gpiozero's callback threads do on a
  board) → ``door.opened`` event emitted, through gpiozero's callback, the thread-safe hand-off
  to the event loop and the state machine
  (baseline: driving a raw MockFactory input pin until a gpiozero callback sees the edge).

Overhead = percentile of the path minus the same percentile of its baseline; the JSON keys
``p50_overhead_ms``/``p99_overhead_ms`` give the worse of the two paths.  Target: p99 <= 2 ms.

    python bench/door_latency.py [--quick] [--iterations N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockFactory, MockPin

from daemon.door import DoorController
from daemon.events import Event
from drivers.inputs import DoorContact
from drivers.lock import Lock

ITERATIONS = 10_000
QUICK_ITERATIONS = 300
LOCK_PIN, CONTACT_PIN, RAW_OUT_PIN, RAW_IN_PIN = 17, 27, 20, 21
MS = 1000.0


def summary(samples_s: list[float]) -> tuple[float, float]:
    """Median and 99th percentile, in milliseconds."""
    ms = [s * MS for s in samples_s]
    return statistics.median(ms), statistics.quantiles(ms, n=100, method="inclusive")[98]


def raw_output_toggle(factory: MockFactory, iterations: int) -> list[float]:
    pin: MockPin = factory.pin(RAW_OUT_PIN)
    pin.function = "output"
    out = []
    for _ in range(iterations):
        start = time.perf_counter()
        pin.state = True
        out.append(time.perf_counter() - start)
        pin.state = False
    return out


def raw_input_edge(factory: MockFactory, iterations: int) -> list[float]:
    device = DigitalInputDevice(RAW_IN_PIN, pull_up=True, pin_factory=factory)
    pin: MockPin = device.pin
    seen: list[float] = []
    device.when_deactivated = lambda: seen.append(time.perf_counter())
    out = []
    for _ in range(iterations):
        pin.drive_low()
        start = time.perf_counter()
        pin.drive_high()
        out.append(seen[-1] - start)
    device.close()
    return out


def drive(pin: MockPin, high: bool) -> float:
    """Drive an input pin (on the calling thread); returns when the edge began."""
    start = time.perf_counter()
    if high:
        pin.drive_high()
    else:
        pin.drive_low()
    return start


async def controller_paths(factory: MockFactory, iterations: int) -> tuple[list[float],
                                                                            list[float]]:
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[float]] = {}

    def emit(event: Event) -> None:
        future = waiting.pop(event.type, None)
        if future is not None:
            future.set_result(time.perf_counter())

    lock = Lock(LOCK_PIN, pin_factory=factory)
    contact = DoorContact(CONTACT_PIN, debounce_ms=0, pin_factory=factory)
    contact_pin: MockPin = factory.pin(CONTACT_PIN)
    contact_pin.drive_low()  # normally-closed contact, door shut
    lock_pin: MockPin = factory.pin(LOCK_PIN)
    door = DoorController("bench", lock=lock, contact=contact, unlock_seconds=5,
                          held_open_seconds=600, held_reminder_seconds=600, emit=emit,
                          relock_on_close=True, loop=loop)
    grant, edge = [], []
    try:
        for _ in range(iterations):
            start = time.perf_counter()
            door.grant("card")
            if not lock_pin.state:
                raise RuntimeError("relay did not energise")
            grant.append(time.perf_counter() - start)

            # Edges come from a thread other than the loop's, as gpiozero's do on a board.
            opened = waiting["door.opened"] = loop.create_future()
            start = await asyncio.to_thread(drive, contact_pin, True)
            edge.append(await opened - start)
            relocked = waiting["door.locked"] = loop.create_future()
            await asyncio.to_thread(drive, contact_pin, False)  # relock on close ends the pulse
            await relocked
    finally:
        door.close()
    return grant, edge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred iterations (CI)")
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    iterations = args.iterations or (QUICK_ITERATIONS if args.quick else ITERATIONS)

    factory = MockFactory()
    try:
        base_out = raw_output_toggle(factory, iterations)
        base_in = raw_input_edge(factory, iterations)
        grant, edge = asyncio.run(controller_paths(factory, iterations))
    finally:
        factory.close()

    rows = {"baseline pin toggle": base_out, "grant -> relay": grant,
            "baseline pin edge": base_in, "contact edge -> event": edge}
    stats = {name: summary(samples) for name, samples in rows.items()}
    for name, (p50, p99) in stats.items():
        print(f"{name:24s} p50 {p50:8.4f} ms   p99 {p99:8.4f} ms")
    grant_over = (stats["grant -> relay"][0] - stats["baseline pin toggle"][0],
                  stats["grant -> relay"][1] - stats["baseline pin toggle"][1])
    edge_over = (stats["contact edge -> event"][0] - stats["baseline pin edge"][0],
                 stats["contact edge -> event"][1] - stats["baseline pin edge"][1])
    print(f"overhead grant: p50 {grant_over[0]:.4f} ms, p99 {grant_over[1]:.4f} ms; "
          f"edge: p50 {edge_over[0]:.4f} ms, p99 {edge_over[1]:.4f} ms (target p99 <= 2 ms)")
    result = {
        "iterations": iterations,
        "p50_overhead_ms": round(max(grant_over[0], edge_over[0]), 4),
        "p99_overhead_ms": round(max(grant_over[1], edge_over[1]), 4),
        "grant_p50_ms": round(stats["grant -> relay"][0], 4),
        "grant_p99_ms": round(stats["grant -> relay"][1], 4),
        "edge_p50_ms": round(stats["contact edge -> event"][0], 4),
        "edge_p99_ms": round(stats["contact edge -> event"][1], 4),
        "baseline_toggle_p50_ms": round(stats["baseline pin toggle"][0], 4),
        "baseline_toggle_p99_ms": round(stats["baseline pin toggle"][1], 4),
        "baseline_edge_p50_ms": round(stats["baseline pin edge"][0], 4),
        "baseline_edge_p99_ms": round(stats["baseline pin edge"][1], 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
