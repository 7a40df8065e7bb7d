"""Serial EM4100 readers (RDM6300 class, 125 kHz, 9600 baud 8N1).

Each read is 14 bytes: STX, ten ASCII hex digits (a version/customer byte and the 32-bit tag id),
two ASCII hex digits of the XOR of the five data bytes, ETX.  Noise on a long cable, a reader
powering up mid-frame or a cable plugged in half way through a frame leave garbage and half
frames; the parser counts them and picks up at the next STX, so the next good frame is never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.card import CardRead, Presentation, ReadSink
from drivers.serial_port import SerialTransport

log = logging.getLogger(__name__)

STX = 0x02
ETX = 0x03
EM4100_FRAME_BYTES = 14
EM4100_DATA_DIGITS = 10
EM4100_CHECKSUM_DIGITS = 2
EM4100_DATA_BITS = 40
EM4100_BAUD = 9600
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")
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
    """Byte stream in, frames and rejections out; keeps state across arbitrary splits."""

    def __init__(self) -> None:
        self._payload = bytearray()
        self._in_frame = False
        self._garbage = 0

    def feed(self, data: bytes) -> list[Em4100Frame | Em4100Rejected]:
        out: list[Em4100Frame | Em4100Rejected] = []
        for byte in data:
            self._byte(byte, out)
        self._flush_garbage(out)
        return out

    def _flush_garbage(self, out: list[Em4100Frame | Em4100Rejected]) -> None:
        if self._garbage:
            out.append(Em4100Rejected("garbage_bytes", f"{self._garbage} bytes outside a frame",
                                      self._garbage))
            self._garbage = 0

    def _byte(self, byte: int, out: list[Em4100Frame | Em4100Rejected]) -> None:
        if byte == STX:  # a new frame starts here, whatever came before
            if self._in_frame:
                out.append(Em4100Rejected("bad_length",
                                          f"frame cut after {len(self._payload)} of 12 digits"))
            self._flush_garbage(out)
            self._in_frame = True
            self._payload.clear()
            return
        if not self._in_frame:
            self._garbage += 1
            return
        if len(self._payload) < _PAYLOAD_DIGITS:
            if byte in _HEX_DIGITS:
                self._payload.append(byte)
                return
            self._in_frame = False
            if byte == ETX:
                out.append(Em4100Rejected("bad_length",
                                          f"frame ended after {len(self._payload)} of 12 digits"))
            else:
                out.append(Em4100Rejected("bad_frame", f"byte 0x{byte:02x} inside a frame"))
            return
        self._in_frame = False
        if byte != ETX:
            out.append(Em4100Rejected("bad_length", f"byte 0x{byte:02x} where ETX belongs"))
            return
        out.append(_check(bytes(self._payload)))


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
    """An RDM6300-class reader on a serial port (``port`` may be a pty in simulate mode)."""

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
        presentation: Presentation = "decimal",
        keep_bits: int | None = None,
        retry_max_seconds: float = 10.0,
    ) -> None:
        self.name = name
        self._sink = ReadSink(name, on_card=on_card, repeat_window_ms=repeat_window_ms,
                              style=presentation, keep_bits=keep_bits)
        self.stats = self._sink.stats
        self._parser = Em4100Parser()
        self._on_raw = on_raw
        self.transport = SerialTransport(
            port, baud=baud, on_bytes=self._bytes, on_fault=on_fault, on_restored=on_restored,
            name=name, retry_max_seconds=retry_max_seconds, on_opened=self._opened,
        )

    def _bytes(self, data: bytes) -> None:
        arrived_ns = time.perf_counter_ns()
        if self._on_raw is not None:
            self._on_raw(data)
        for item in self._parser.feed(data):
            if isinstance(item, Em4100Frame):
                self._sink.card(item.value, card_format="em4100", bits=EM4100_DATA_BITS,
                                read_ns=arrived_ns)
            else:
                self._sink.malformed(item.counter, item.detail, item.size)

    def _opened(self) -> None:
        self._parser = Em4100Parser()  # a half frame never joins bytes of the next session

    async def run(self) -> None:
        await self.transport.run()
