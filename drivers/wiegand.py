"""Wiegand readers on two GPIO inputs: a pure frame decoder and the edge-timing reader around it.

A Wiegand reader pulls D0 low for a 0 and D1 low for a 1 (pulses of ~50 us, ~2 ms apart); a frame
ends when the lines stay quiet.  Frames are therefore cut by the gap between edge timestamps, not
by counting bits, so a noise pulse or a truncated frame costs one rejected frame and never shifts
the bits of the next one.  A frame with a wrong length or bad parity is counted and dropped, never
turned into a card number: a misread must not open a door for someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gpiozero import DigitalInputDevice, Factory

from drivers.card import CardRead, Presentation, ReadSink

log = logging.getLogger(__name__)

#: Silence on both lines for this long ends a frame (bit spacing is 0.2-20 ms by the standard).
FRAME_GAP_MS = 25.0
#: Fewer bits than this are noise pulses, not a frame (no card format is this short).
MIN_FRAME_BITS = 4
#: Longer bursts are noise too; the longest format in use is 37 bits.
MAX_FRAME_BITS = 128
#: A line held low this long is a wiring fault (idle is high).
STUCK_LINE_SECONDS = 1.0


class WiegandError(ValueError):
    """A frame that is not a card: ``counter`` is ``bad_length`` or ``bad_parity``."""

    def __init__(self, counter: str, detail: str) -> None:
        super().__init__(detail)
        self.counter = counter


@dataclass(frozen=True, slots=True)
class WiegandFormat:
    """A card format: facility and number widths and the ranges each parity bit covers.

    The even parity bit is the first bit and covers ``bits[0:even_end]``; the odd parity bit is the
    last and covers ``bits[odd_start:]`` (the ranges include the parity bits themselves).
    """

    name: str
    length: int
    facility_bits: int
    number_bits: int
    even_end: int
    odd_start: int


FORMATS: dict[str, WiegandFormat] = {
    f.name: f
    for f in (
        WiegandFormat("h10301", 26, 8, 16, 13, 13),
        WiegandFormat("34bit", 34, 16, 16, 17, 17),
        WiegandFormat("h10304", 37, 16, 19, 19, 18),
        WiegandFormat("h10302", 37, 0, 35, 19, 18),
    )
}
RAW = "raw"
FORMAT_NAMES = (*FORMATS, RAW)


@dataclass(frozen=True, slots=True)
class WiegandCard:
    """A decoded frame: ``value`` is the data bits (parity removed) as one integer."""

    format: str
    value: int
    bits: int
    facility: int | None
    number: int


def _bits_of(bits: str | Sequence[int]) -> list[int]:
    out = [int(b) for b in bits]
    if any(b not in (0, 1) for b in out):
        raise ValueError("Wiegand bits must be 0 or 1")
    return out


def check_formats(formats: Iterable[str]) -> list[str]:
    """The format names, or a ValueError naming the first unknown one."""
    names = list(formats)
    for name in names:
        if name not in FORMAT_NAMES:
            raise ValueError(f"unknown Wiegand format {name!r} (one of {', '.join(FORMAT_NAMES)})")
    if not names:
        raise ValueError("a Wiegand reader needs at least one format")
    return names


def decode(bits: str | Sequence[int], formats: Iterable[str] = ("h10301",)) -> WiegandCard:
    """Decode one frame with the first of ``formats`` whose length and parity match.

    ``raw`` takes only lengths that no other listed format claims: a 26-bit frame with bad parity
    is rejected, never passed off as a raw number.  Raises :class:`WiegandError` (``bad_length``
    when no format has this many bits, ``bad_parity`` when one does but its parity fails).
    """
    frame = _bits_of(bits)
    names = check_formats(formats)
    parity_failed: list[str] = []
    for name in names:
        fmt = FORMATS.get(name)
        if fmt is None or len(frame) != fmt.length:
            continue
        if sum(frame[: fmt.even_end]) % 2 != 0 or sum(frame[fmt.odd_start:]) % 2 != 1:
            parity_failed.append(name)
            continue
        data = frame[1:-1]
        value = int("".join(map(str, data)), 2)
        number = value & ((1 << fmt.number_bits) - 1)
        facility = value >> fmt.number_bits if fmt.facility_bits else None
        return WiegandCard(name, value, len(data), facility, number)
    if parity_failed:
        raise WiegandError("bad_parity", f"{len(frame)} bits, parity wrong for {parity_failed[0]}")
    if RAW in names and frame:
        value = int("".join(map(str, frame)), 2)
        return WiegandCard(RAW, value, len(frame), None, value)
    raise WiegandError("bad_length", f"{len(frame)} bits fit none of {', '.join(names)}")


def encode(format_name: str, number: int, facility: int = 0) -> str:
    """The frame a reader sends for a card (simulate mode and emulators), parity included."""
    fmt = FORMATS[format_name]
    if not 0 <= number < 1 << fmt.number_bits:
        raise ValueError(f"card number {number} does not fit {format_name}")
    if not 0 <= facility < 1 << fmt.facility_bits:
        raise ValueError(f"facility code {facility} does not fit {format_name}")
    data = f"{(facility << fmt.number_bits) | number:0{fmt.length - 2}b}"
    frame = [0, *map(int, data), 0]
    frame[0] = sum(frame[1: fmt.even_end]) % 2
    frame[-1] = 1 - sum(frame[fmt.odd_start:-1]) % 2
    return "".join(map(str, frame))


class WiegandReader:
    """A Wiegand reader on two GPIO inputs (idle high, pulled up; a pulse pulls a line low).

    gpiozero calls back on its own thread; each edge is time-stamped there with
    ``time.perf_counter_ns`` and handed to the loop with ``call_soon_threadsafe``, where frames
    are cut by the gap between timestamps.
    """

    def __init__(
        self,
        d0_pin: int | str,
        d1_pin: int | str,
        *,
        on_card: Callable[[CardRead], None],
        on_fault: Callable[[str], None],
        on_restored: Callable[[], None],
        on_raw: Callable[[bytes | str], None] | None = None,
        formats: Sequence[str] = ("h10301",),
        frame_gap_ms: float = FRAME_GAP_MS,
        pin_factory: Factory | None = None,
        name: str = "wiegand",
        repeat_window_ms: int = 1500,
        presentation: Presentation = "decimal",
        keep_bits: int | None = None,
    ) -> None:
        check_formats(formats)
        self.name = name
        self.d0_pin, self.d1_pin = d0_pin, d1_pin
        self.formats = tuple(formats)
        self.frame_gap_ns = int(frame_gap_ms * 1_000_000)
        self.pin_factory = pin_factory
        self._sink = ReadSink(name, on_card=on_card, repeat_window_ms=repeat_window_ms,
                              style=presentation, keep_bits=keep_bits)
        self.stats = self._sink.stats
        self._on_fault = on_fault
        self._on_restored = on_restored
        self._on_raw = on_raw
        self._bits: list[int] = []
        self._last_edge_ns = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.faulted = False

    # ---------------------------------------------------------------- edges (loop thread)
    def _edge(self, bit: int, edge_ns: int) -> None:
        if self._loop is None:  # an edge queued just before the reader stopped
            return
        if self._bits and edge_ns - self._last_edge_ns > self.frame_gap_ns:
            self._finish()
        self._bits.append(bit)
        self._last_edge_ns = edge_ns
        if self._timer is None:
            self._arm(self.frame_gap_ns)

    def _arm(self, delay_ns: int) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(delay_ns / 1e9, self._quiet)

    def _quiet(self) -> None:
        """Timer: end the frame once the lines have been silent for the frame gap."""
        self._timer = None
        if not self._bits:
            return
        silent_ns = time.perf_counter_ns() - self._last_edge_ns
        if silent_ns <= self.frame_gap_ns:
            self._arm(self.frame_gap_ns - silent_ns + 1)
            return
        self._finish()

    def _finish(self) -> None:
        bits, self._bits = self._bits, []
        frame = "".join(map(str, bits))
        if self._on_raw is not None:
            self._on_raw(frame)
        if len(bits) < MIN_FRAME_BITS:
            self._sink.malformed("noise_pulses", f"{len(bits)} stray pulse(s)", len(bits))
            return
        if len(bits) > MAX_FRAME_BITS:
            self._sink.malformed("bad_length", f"{len(bits)} bits is no card format")
            return
        try:
            card = decode(bits, self.formats)
        except WiegandError as exc:
            self._sink.malformed(exc.counter, str(exc))
            return
        self._sink.card(card.value, card_format=card.format, bits=card.bits,
                        facility=card.facility, number=card.number,
                        read_ns=self._last_edge_ns)

    # ---------------------------------------------------------------- life cycle
    def _check_lines(self, lines: Sequence[DigitalInputDevice]) -> None:
        stuck = [f"D{i}" for i, line in enumerate(lines) if line.is_active]
        if stuck and not self.faulted:
            self.faulted = True
            reason = f"{' and '.join(stuck)} held low (wiring short or reader unpowered)"
            log.warning("reader %s: unavailable (%s)", self.name, reason)
            self._on_fault(reason)
        elif not stuck and self.faulted:
            self.faulted = False
            log.info("reader %s: back", self.name)
            self._on_restored()

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        lines: list[DigitalInputDevice] = []
        try:
            for bit, pin in enumerate((self.d0_pin, self.d1_pin)):
                line = DigitalInputDevice(pin, pull_up=True, pin_factory=self.pin_factory)
                line.when_activated = _bridge(loop, self._edge, bit)
                lines.append(line)
            held_since: float | None = None
            while True:
                await asyncio.sleep(STUCK_LINE_SECONDS / 2)
                if any(line.is_active for line in lines):
                    held_since = held_since or time.monotonic()
                    if time.monotonic() - held_since >= STUCK_LINE_SECONDS:
                        self._check_lines(lines)
                else:
                    held_since = None
                    self._check_lines(lines)
        finally:
            self._loop = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._bits.clear()
            for line in lines:
                with contextlib.suppress(Exception):
                    line.close()


def _bridge(loop: asyncio.AbstractEventLoop, edge: Callable[[int, int], None],
            bit: int) -> Callable[[], None]:
    """A gpiozero callback that stamps the edge on its own thread and hands it to the loop."""

    def activated() -> None:
        loop.call_soon_threadsafe(edge, bit, time.perf_counter_ns())

    return activated
