"""Serial EM4100 readers (RDM6300 and ID-12LA/ID-20LA classes, 125 kHz, 9600 baud 8N1).

A read is ten ASCII hex digits (a version/customer byte and the 32-bit tag id) followed by two
ASCII hex digits of the XOR of the five data bytes.  The reader families frame it differently:

- RDM6300: ``STX`` 10 data, 2 checksum ``ETX`` (14 bytes);
- ID-12LA / ID-20LA (ASCII output): ``STX`` 10 data, 2 checksum, ``CR`` ``LF``, ``ETX`` (16 bytes);
- USB and converter boards without STX/ETX: 10 data, 2 checksum, then ``CR``, ``LF`` or both.

The checksum is always verified.  A frame of only ten hex digits carries no checksum and is
refused (``no_checksum``): such a reader belongs to the ``ascii`` type, which says so openly.
Noise on a long cable, a reader powering up mid-frame or a cable plugged in half way through a
frame leave garbage and half frames; the parser counts them and picks up at the next STX or line,
so the next good frame is never lost.  A frame whose bytes stop for longer than the
inter-character timeout is dropped (``timeout``), so a cut frame never joins the next read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.card import CardRead, ReadSink
from drivers.serial_port import SerialTransport

log = logging.getLogger(__name__)

STX = 0x02
ETX = 0x03
EM4100_FRAME_BYTES = 14
EM4100_DATA_DIGITS = 10
EM4100_CHECKSUM_DIGITS = 2
EM4100_DATA_BITS = 40
EM4100_BAUD = 9600
#: Bytes of one frame arrive ~1 ms apart at 9600 baud; a pause this long means the frame was cut.
INTER_CHAR_TIMEOUT_MS = 50
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")
_LINE_ENDS = frozenset(b"\r\n")
#: ID-12LA sends CR LF between the checksum and ETX; at most this many line-end bytes there.
_MAX_LINE_END_BYTES = 2
_PAYLOAD_DIGITS = EM4100_DATA_DIGITS + EM4100_CHECKSUM_DIGITS


@dataclass(frozen=True, slots=True)
class Em4100Frame:
    """A frame whose checksum matched: ``value`` is the 40 data bits."""

    value: int


@dataclass(frozen=True, slots=True)
class Em4100Rejected:
    """Input that was not a valid frame; ``counter`` names the stats counter it goes to."""

    counter: str
    detail: str
    size: int = 1


class Em4100Parser:
    """Byte stream in, frames and rejections out; keeps state across arbitrary splits.

    ``inter_char_timeout_ms`` (None: no timeout) drops a half frame or half line when the next
    bytes arrive later than that after the previous ones; ``feed`` takes the arrival time in
    seconds of a monotonic clock.
    """

    def __init__(self, *, inter_char_timeout_ms: float | None = INTER_CHAR_TIMEOUT_MS) -> None:
        self.timeout_s = None if inter_char_timeout_ms is None else inter_char_timeout_ms / 1000
        self._payload = bytearray()
        self._line = bytearray()  # hex digits outside STX/ETX: a reader without framing
        self._in_frame = False
        self._line_ends = 0
        self._garbage = 0
        self._last_s: float | None = None

    def feed(self, data: bytes, now: float | None = None) -> list[Em4100Frame | Em4100Rejected]:
        out: list[Em4100Frame | Em4100Rejected] = []
        if now is not None:
            self._expire(now, out)
        for byte in data:
            self._byte(byte, out)
        self._flush_garbage(out)
        return out

    def _expire(self, now: float, out: list[Em4100Frame | Em4100Rejected]) -> None:
        last, self._last_s = self._last_s, now
        if self.timeout_s is None or last is None or now - last <= self.timeout_s:
            return
        pending = len(self._payload) + 1 if self._in_frame else len(self._line)
        if pending:
            out.append(Em4100Rejected(
                "timeout", f"frame cut: {pending} bytes, then {(now - last) * 1000:.0f} ms silence",
                pending))
        self._in_frame = False
        self._payload.clear()
        self._line.clear()

    def _flush_garbage(self, out: list[Em4100Frame | Em4100Rejected]) -> None:
        if self._garbage:
            out.append(Em4100Rejected("garbage_bytes", f"{self._garbage} bytes outside a frame",
                                      self._garbage))
            self._garbage = 0

    def _start(self, out: list[Em4100Frame | Em4100Rejected]) -> None:
        if self._in_frame:
            out.append(Em4100Rejected("bad_length",
                                      f"frame cut after {len(self._payload)} of 12 digits"))
        self._garbage += len(self._line)
        self._line.clear()
        self._flush_garbage(out)
        self._in_frame = True
        self._line_ends = 0
        self._payload.clear()

    def _byte(self, byte: int, out: list[Em4100Frame | Em4100Rejected]) -> None:
        if byte == STX:  # a new frame starts here, whatever came before
            self._start(out)
        elif not self._in_frame:
            self._unframed(byte, out)
        elif len(self._payload) < _PAYLOAD_DIGITS:
            self._digit(byte, out)
        elif byte in _LINE_ENDS and self._line_ends < _MAX_LINE_END_BYTES:
            self._line_ends += 1  # ID-12LA: CR LF before ETX
        else:
            self._in_frame = False
            if byte != ETX:
                out.append(Em4100Rejected("bad_length", f"byte 0x{byte:02x} where ETX belongs"))
                return
            out.append(_check(bytes(self._payload)))

    def _digit(self, byte: int, out: list[Em4100Frame | Em4100Rejected]) -> None:
        if byte in _HEX_DIGITS:
            self._payload.append(byte)
            return
        self._in_frame = False
        if len(self._payload) == EM4100_DATA_DIGITS and (byte == ETX or byte in _LINE_ENDS):
            out.append(Em4100Rejected("no_checksum", "10 digits without a checksum "
                                      "(a reader of type ascii, number_base 16?)"))
        elif byte == ETX:
            out.append(Em4100Rejected("bad_length",
                                      f"frame ended after {len(self._payload)} of 12 digits"))
        else:
            out.append(Em4100Rejected("bad_frame", f"byte 0x{byte:02x} inside a frame"))

    def _unframed(self, byte: int, out: list[Em4100Frame | Em4100Rejected]) -> None:
        """Readers without STX/ETX: twelve hex digits and a line end; anything else is garbage."""
        if byte in _HEX_DIGITS and len(self._line) < _PAYLOAD_DIGITS:
            self._line.append(byte)
            return
        if byte in _LINE_ENDS and len(self._line) == _PAYLOAD_DIGITS:
            self._flush_garbage(out)
            out.append(_check(bytes(self._line)))
        elif byte in _LINE_ENDS and len(self._line) == EM4100_DATA_DIGITS:
            self._flush_garbage(out)
            out.append(Em4100Rejected("no_checksum", "10 digits without a checksum "
                                      "(a reader of type ascii, number_base 16?)"))
        else:
            self._garbage += len(self._line) + 1
        self._line.clear()


def _check(payload: bytes) -> Em4100Frame | Em4100Rejected:
    data = bytes.fromhex(payload[:EM4100_DATA_DIGITS].decode("ascii"))
    checksum = int(payload[EM4100_DATA_DIGITS:], 16)
    computed = 0
    for byte in data:
        computed ^= byte
    if computed != checksum:
        return Em4100Rejected("bad_checksum",
                              f"checksum 0x{checksum:02x}, data gives 0x{computed:02x}")
    return Em4100Frame(int.from_bytes(data, "big"))


class Em4100Reader:
    """An RDM6300 or ID-12LA class reader on a serial port (a pty in simulate mode)."""

    def __init__(
        self,
        port: str,
        *,
        on_card: Callable[[CardRead], None],
        on_fault: Callable[[str], None],
        on_restored: Callable[[], None],
        on_raw: Callable[[bytes | str], None] | None = None,
        baud: int = EM4100_BAUD,
        name: str = "em4100",
        repeat_window_ms: int = 1500,
        keep_bits: int | None = None,
        retry_max_seconds: float = 10.0,
        inter_char_timeout_ms: float | None = INTER_CHAR_TIMEOUT_MS,
    ) -> None:
        self.name = name
        self.inter_char_timeout_ms = inter_char_timeout_ms
        self._sink = ReadSink(name, on_card=on_card, repeat_window_ms=repeat_window_ms,
                              keep_bits=keep_bits)
        self.stats = self._sink.stats
        self._parser = Em4100Parser(inter_char_timeout_ms=inter_char_timeout_ms)
        self._on_raw = on_raw
        self.transport = SerialTransport(
            port, baud=baud, on_bytes=self._bytes, on_fault=on_fault, on_restored=on_restored,
            name=name, retry_max_seconds=retry_max_seconds, on_opened=self._opened,
        )

    def _bytes(self, data: bytes) -> None:
        arrived_ns = time.perf_counter_ns()
        if self._on_raw is not None:
            self._on_raw(data)
        for item in self._parser.feed(data, time.monotonic()):
            if isinstance(item, Em4100Frame):
                self._sink.card(item.value, card_format="em4100", bits=EM4100_DATA_BITS,
                                read_ns=arrived_ns)
            else:
                self._sink.malformed(item.counter, item.detail, item.size)

    def _opened(self) -> None:
        # a half frame never joins bytes of the next session
        self._parser = Em4100Parser(inter_char_timeout_ms=self.inter_char_timeout_ms)

    async def run(self) -> None:
        await self.transport.run()
