"""The far end of a Wiegand cable: pulses D0/D1 of simulated pins with a real reader's timing.

Tests and simulate mode drive gpiozero ``MockFactory`` pins through this emitter, so the reader
under test sees the same edge sequence and spacing as on a board (50 us pulses, 2 ms apart),
plus the faults of real cables: stray noise pulses and frames cut short.
"""

from __future__ import annotations

import time

from gpiozero.pins.mock import MockPin

PULSE_US = 50
BIT_INTERVAL_US = 2000
#: Sleeping is accurate to well under a bit interval; the last stretch is busy-waited.
_SPIN_BELOW_NS = 200_000


def wait_until(deadline_ns: int) -> None:
    """Wait for a ``time.perf_counter_ns`` deadline: sleep most of it, spin the rest."""
    while True:
        left = deadline_ns - time.perf_counter_ns()
        if left <= 0:
            return
        if left > _SPIN_BELOW_NS:
            time.sleep((left - _SPIN_BELOW_NS) / 1e9)


class WiegandEmitter:
    """Sends Wiegand frames on two MockPins (idle high; a pulse drives a line low)."""

    def __init__(self, d0: MockPin, d1: MockPin, *, pulse_us: int = PULSE_US,
                 bit_interval_us: int = BIT_INTERVAL_US) -> None:
        self.lines = (d0, d1)
        self.pulse_ns = pulse_us * 1000
        self.bit_interval_ns = bit_interval_us * 1000
        for line in self.lines:
            line.drive_high()

    def pulse(self, bit: int) -> None:
        """One pulse on D0 (bit 0) or D1 (bit 1); also how a noise spike looks to the reader."""
        line = self.lines[bit]
        start = time.perf_counter_ns()
        line.drive_low()
        wait_until(start + self.pulse_ns)
        line.drive_high()

    def send(self, bits: str) -> None:
        """Send one frame, e.g. ``encode("h10301", 12345, 18)``; blocks for its duration."""
        start = time.perf_counter_ns()
        for index, bit in enumerate(bits):
            wait_until(start + index * self.bit_interval_ns)
            self.pulse(int(bit))
        wait_until(start + len(bits) * self.bit_interval_ns)
