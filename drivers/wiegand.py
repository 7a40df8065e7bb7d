"""Wiegand readers on two GPIO inputs: a pure frame decoder and the edge-timing reader around it.

A Wiegand reader pulls D0 low for a 0 and D1 low for a 1 (pulses of ~50 us, ~2 ms apart); a frame
ends when the lines stay quiet.  Frames are therefore cut by the gap between edge timestamps, not
by counting bits, so a noise pulse or a truncated frame costs one rejected frame and never shifts
the bits of the next one.  A frame with a wrong length or bad parity is counted and dropped, never
turned into a card number: a misread must not open a door for someone else.

Two rules make that promise hold for a lost or an extra pulse, the usual misread on a long cable:
every parity bit of the published formats is checked, and the lengths a reader accepts are at
least 2 bits apart (3 bits for ``raw_lengths``, which have no parity), so a frame that lost or
gained one pulse has a length no accepted format has.  :func:`check_formats` enforces both.

Keypads send each key as its own frame: 4 bits (the key code) or 8 bits (the complement nibble,
then the key code).  Those are :class:`WiegandKey`, never cards.

Sources of the parity rules: HID "Understanding Card Data Formats" (H10301, H10302, H10304),
HID Corporate 1000 35- and 48-bit format descriptions, Keyscan/HID C15001 (36 bits).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gpiozero import DigitalInputDevice, Factory

from drivers.card import CardRead, ReadSink

log = logging.getLogger(__name__)

#: Silence on both lines for this long ends a frame (bit spacing is 0.2-20 ms by the standard).
FRAME_GAP_MS = 25.0
#: Fewer bits than this are noise pulses, not a frame (a keypad key is 4 bits).
MIN_FRAME_BITS = 4
#: Longer bursts are noise too; the longest format in the table is 48 bits.
MAX_FRAME_BITS = 128
#: A line held low this long is a wiring fault (idle is high).
STUCK_LINE_SECONDS = 1.0
#: Keypad frames: one key as 4 bits, or as 8 bits with the complement nibble first.
KEY_BITS_SHORT = 4
KEY_BITS_LONG = 8
#: Key codes of Wiegand keypads (HID and most Chinese keypads): 0-9, then '*' and '#'.
KEY_NAMES = (*"0123456789", "*", "#")
#: Lengths accepted by one reader must differ by this much, so one lost or extra pulse never
#: turns a frame of one format into a frame of another.
MIN_LENGTH_DISTANCE = 2
#: Raw lengths have no parity at all: they keep one more bit of distance (two pulse errors).
MIN_RAW_DISTANCE = 3


class WiegandError(ValueError):
    """A frame that is not a card or key: ``counter`` is ``bad_length`` or ``bad_parity``."""

    def __init__(self, counter: str, detail: str) -> None:
        super().__init__(detail)
        self.counter = counter


@dataclass(frozen=True, slots=True)
class Parity:
    """One parity bit: the bit at ``position`` (0 = first bit sent) makes the count of ones over
    itself and ``covers`` even (or odd when ``odd``)."""

    position: int
    odd: bool
    covers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WiegandFormat:
    """A card format: its length, parity bits and how the data bits split.

    The data bits are all bits that are not parity bits, in the order sent; ``value`` of a card is
    those bits as one integer, the low ``number_bits`` are the card number and the
    ``facility_bits`` above them the facility code (0: the format has none).  Parity bits are
    listed in the order :func:`encode` computes them (a bit that covers another comes later).
    """

    name: str
    length: int
    facility_bits: int
    number_bits: int
    parity: tuple[Parity, ...]
    description: str

    @property
    def data_positions(self) -> tuple[int, ...]:
        parity = {p.position for p in self.parity}
        return tuple(i for i in range(self.length) if i not in parity)


def _span(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


def _two_of_three(first: int, last: int, skip: int) -> tuple[int, ...]:
    """Positions first..last except those with ``position % 3 == skip`` (Corporate 1000)."""
    return tuple(i for i in range(first, last + 1) if i % 3 != skip)


def _even_odd(length: int, even_last: int, odd_first: int) -> tuple[Parity, ...]:
    """The classic pair: a leading even parity bit and a trailing odd one over two halves."""
    return (Parity(0, False, _span(1, even_last)),
            Parity(length - 1, True, _span(odd_first, length - 2)))


FORMATS: dict[str, WiegandFormat] = {
    f.name: f
    for f in (
        WiegandFormat("h10301", 26, 8, 16, _even_odd(26, 12, 13),
                      "HID H10301, the common 26-bit format: facility 8 bits, card 16 bits"),
        WiegandFormat("32bit", 32, 0, 32, (),
                      "32-bit card UID (Mifare and ID readers set to 32 bits); no parity"),
        WiegandFormat("34bit", 34, 16, 16, _even_odd(34, 16, 17),
                      "34-bit (HID N10002, Mifare 4-byte UID with parity)"),
        WiegandFormat("c1000_35", 35, 12, 20, (
            Parity(1, False, _two_of_three(2, 33, 1)),
            Parity(34, True, _two_of_three(1, 32, 0)),
            Parity(0, True, _span(1, 34)),
        ), "HID Corporate 1000 35-bit: company 12 bits, card 20 bits"),
        WiegandFormat("c15001", 36, 8, 16, _even_odd(36, 17, 18),
                      "36-bit Keyscan/HID C15001: OEM 10 bits, facility 8 bits, card 16 bits"),
        WiegandFormat("h10304", 37, 16, 19, _even_odd(37, 18, 18),
                      "HID H10304 37-bit: facility 16 bits, card 19 bits"),
        WiegandFormat("h10302", 37, 0, 35, _even_odd(37, 18, 18),
                      "HID H10302 37-bit: card 35 bits, no facility"),
        WiegandFormat("c1000_48", 48, 22, 23, (
            Parity(1, False, _two_of_three(3, 46, 2)),
            Parity(47, True, _two_of_three(2, 45, 1)),
            Parity(0, True, _span(1, 47)),
        ), "HID Corporate 1000 48-bit: company 22 bits, card 23 bits"),
    )
}
FORMAT_NAMES = tuple(FORMATS)


@dataclass(frozen=True, slots=True)
class WiegandCard:
    """A decoded frame: ``value`` is the data bits (parity removed) as one integer."""

    format: str
    value: int
    bits: int
    facility: int | None
    number: int


@dataclass(frozen=True, slots=True)
class WiegandKey:
    """One key of a Wiegand keypad: ``key`` is '0'..'9', '*' or '#'."""

    key: str
    bits: int


def _bits_of(bits: str | Sequence[int]) -> list[int]:
    out = [int(b) for b in bits]
    if any(b not in (0, 1) for b in out):
        raise ValueError("Wiegand bits must be 0 or 1")
    return out


def check_formats(formats: Iterable[str], raw_lengths: Iterable[int] = ()) -> list[str]:
    """The format names, after checking that a misread can never become another card.

    Raises ValueError (the message is shown by ``check-config``) for an unknown name, two formats
    whose lengths are 1 bit apart (one lost pulse turns one into the other), or a raw length that
    is not at least 3 bits away from every format listed or is a keypad length.
    """
    names = list(formats)
    raws = sorted(set(raw_lengths))
    for name in names:
        if name not in FORMATS:
            hint = (" (list the frame lengths to pass unchecked in raw_lengths instead)"
                    if name == "raw" else "")
            raise ValueError(f"unknown Wiegand format {name!r} (one of {', '.join(FORMATS)})"
                             f"{hint}")
    if not names and not raws:
        raise ValueError("a Wiegand reader needs at least one format")
    listed = [FORMATS[n] for n in dict.fromkeys(names)]
    for i, a in enumerate(listed):
        for b in listed[i + 1:]:
            if a.length != b.length and abs(a.length - b.length) < MIN_LENGTH_DISTANCE:
                raise ValueError(
                    f"formats {a.name} ({a.length} bits) and {b.name} ({b.length} bits) are "
                    f"1 bit apart: a {a.length}-bit frame that lost or gained one pulse would "
                    "be read as the other format; keep only the one your readers send")
            if a.length == b.length and a.parity != b.parity:
                raise ValueError(f"formats {a.name} and {b.name} both have {a.length} bits with "
                                 "different parity; keep only the one your readers send")
    for length in raws:
        if not KEY_BITS_LONG < length <= MAX_FRAME_BITS:
            raise ValueError(f"raw length {length} must be between {KEY_BITS_LONG + 1} and "
                             f"{MAX_FRAME_BITS} bits (4 and 8 bits are keypad keys)")
        for fmt in listed:
            if abs(fmt.length - length) < MIN_RAW_DISTANCE:
                raise ValueError(
                    f"raw length {length} is {abs(fmt.length - length)} bit(s) from "
                    f"{fmt.name} ({fmt.length} bits): a {fmt.name} frame with lost or extra "
                    "pulses would pass unchecked as a raw number; raw lengths must be at least "
                    f"{MIN_RAW_DISTANCE} bits away from every format listed")
    for shorter, longer in itertools.pairwise(raws):
        if longer - shorter < MIN_LENGTH_DISTANCE:
            raise ValueError(f"raw lengths {shorter} and {longer} are 1 bit apart: one lost "
                             "pulse turns one into the other")
    return names


def _parity_ok(frame: Sequence[int], fmt: WiegandFormat) -> bool:
    for p in fmt.parity:
        ones = frame[p.position] + sum(frame[i] for i in p.covers)
        if ones % 2 != int(p.odd):
            return False
    return True


def _key(frame: Sequence[int]) -> WiegandKey:
    bits = len(frame)
    if bits == KEY_BITS_LONG:
        high = int("".join(map(str, frame[:4])), 2)
        frame = frame[4:]
        if high != (~int("".join(map(str, frame)), 2)) & 0xF:
            raise WiegandError("bad_parity", "8-bit key: the first nibble is not the complement")
    code = int("".join(map(str, frame)), 2)
    if code >= len(KEY_NAMES):
        raise WiegandError("bad_length", f"key code {code} is no keypad key")
    return WiegandKey(KEY_NAMES[code], bits)


def decode(
    bits: str | Sequence[int],
    formats: Iterable[str] = ("h10301",),
    raw_lengths: Iterable[int] = (),
) -> WiegandCard | WiegandKey:
    """Decode one frame: a keypad key (4 or 8 bits), or a card of the first listed format whose
    length and parity match, or a raw number of a length listed in ``raw_lengths``.

    Raises :class:`WiegandError` (``bad_length`` when nothing accepts this many bits,
    ``bad_parity`` when a format does but its parity fails) and ValueError for a format list
    that :func:`check_formats` refuses.
    """
    frame = _bits_of(bits)
    raws = tuple(raw_lengths)
    names = check_formats(formats, raws)
    if len(frame) in (KEY_BITS_SHORT, KEY_BITS_LONG):
        return _key(frame)
    parity_failed: list[str] = []
    for name in names:
        fmt = FORMATS[name]
        if len(frame) != fmt.length:
            continue
        if not _parity_ok(frame, fmt):
            parity_failed.append(name)
            continue
        data = [frame[i] for i in fmt.data_positions]
        value = int("".join(map(str, data)), 2) if data else 0
        number = value & ((1 << fmt.number_bits) - 1)
        facility = ((value >> fmt.number_bits) & ((1 << fmt.facility_bits) - 1)
                    if fmt.facility_bits else None)
        return WiegandCard(name, value, len(data), facility, number)
    if parity_failed:
        raise WiegandError("bad_parity", f"{len(frame)} bits, parity wrong for {parity_failed[0]}")
    if len(frame) in raws:
        value = int("".join(map(str, frame)), 2)
        return WiegandCard("raw", value, len(frame), None, value)
    accepted = [f"{n} ({FORMATS[n].length})" for n in names] + [f"raw {n}" for n in raws]
    raise WiegandError("bad_length", f"{len(frame)} bits fit none of {', '.join(accepted)}")


def encode_value(format_name: str, value: int) -> str:
    """The frame a reader sends for the data bits ``value`` of ``format_name``, parity included."""
    fmt = FORMATS[format_name]
    positions = fmt.data_positions
    if not 0 <= value < 1 << len(positions):
        raise ValueError(f"value {value} does not fit the {len(positions)} data bits of "
                         f"{format_name}")
    frame = [0] * fmt.length
    for i, pos in enumerate(positions):
        frame[pos] = (value >> (len(positions) - 1 - i)) & 1
    for p in fmt.parity:
        frame[p.position] = (sum(frame[i] for i in p.covers) + int(p.odd)) % 2
    return "".join(map(str, frame))


def encode(format_name: str, number: int, facility: int = 0) -> str:
    """The frame a reader sends for a card (simulate mode and emulators), parity included."""
    fmt = FORMATS[format_name]
    if not 0 <= number < 1 << fmt.number_bits:
        raise ValueError(f"card number {number} does not fit {format_name}")
    if not 0 <= facility < 1 << fmt.facility_bits:
        raise ValueError(f"facility code {facility} does not fit {format_name}")
    return encode_value(format_name, (facility << fmt.number_bits) | number)


def encode_key(key: str, *, bits: int = KEY_BITS_SHORT) -> str:
    """The frame a Wiegand keypad sends for one key (4 bits, or 8 with the complement nibble)."""
    code = KEY_NAMES.index(key)
    if bits == KEY_BITS_SHORT:
        return f"{code:04b}"
    if bits == KEY_BITS_LONG:
        return f"{~code & 0xF:04b}{code:04b}"
    raise ValueError(f"a keypad key is 4 or 8 bits, not {bits}")


class WiegandReader:
    """A Wiegand reader on two GPIO inputs (idle high, pulled up; a pulse pulls a line low).

    gpiozero calls back on its own thread; each edge is time-stamped there with
    ``time.perf_counter_ns`` and handed to the loop with ``call_soon_threadsafe``, where frames
    are cut by the gap between timestamps.  Keypad keys go to ``on_key`` (counted as ``keys``
    and dropped without it), cards to ``on_card``.
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
        raw_lengths: Sequence[int] = (),
        on_key: Callable[[str], None] | None = None,
        frame_gap_ms: float = FRAME_GAP_MS,
        pin_factory: Factory | None = None,
        name: str = "wiegand",
        repeat_window_ms: int = 1500,
        keep_bits: int | None = None,
    ) -> None:
        check_formats(formats, raw_lengths)
        self.name = name
        self.d0_pin, self.d1_pin = d0_pin, d1_pin
        self.formats = tuple(formats)
        self.raw_lengths = tuple(raw_lengths)
        self._on_key = on_key
        self.frame_gap_ns = int(frame_gap_ms * 1_000_000)
        self.pin_factory = pin_factory
        self._sink = ReadSink(name, on_card=on_card, repeat_window_ms=repeat_window_ms,
                              keep_bits=keep_bits)
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
        if self._on_raw is not None and len(bits) not in (KEY_BITS_SHORT, KEY_BITS_LONG):
            self._on_raw(frame)  # keys stay off the raw tap: they may be a PIN
        if len(bits) < MIN_FRAME_BITS:
            self._sink.malformed("noise_pulses", f"{len(bits)} stray pulse(s)", len(bits))
            return
        if len(bits) > MAX_FRAME_BITS:
            self._sink.malformed("bad_length", f"{len(bits)} bits is no card format")
            return
        try:
            card = decode(bits, self.formats, self.raw_lengths)
        except WiegandError as exc:
            self._sink.malformed(exc.counter, str(exc))
            return
        if isinstance(card, WiegandKey):
            self._sink.count("keys")
            if self._on_key is not None:
                self._on_key(card.key)
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
