"""Serial readers that send one card number per line (USB and RS-485 readers, Wiegand converters).

Vendors disagree on everything but the line: decimal or hex, byte order of the number, a prefix
such as ``ID:`` or a suffix such as a checksum.  Either strip a fixed prefix/suffix and read the
rest as a number, or give a regular expression whose named group ``card`` holds the number.
A partial line followed by silence longer than the inter-character timeout is dropped: a reader
that cut a line (power dip, unplug) must not glue its digits onto the next card's.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from drivers.card import CardRead, ReadSink
from drivers.serial_port import SerialTransport

log = logging.getLogger(__name__)

#: Longer lines are noise (or a wrong baud rate); they are dropped up to the next line end.
MAX_LINE_BYTES = 80
#: Characters of one line arrive ~1 ms apart at 9600 baud; a longer pause means the line was cut.
INTER_CHAR_TIMEOUT_MS = 50
LINE_ENDS = b"\r\n"
ByteOrder = Literal["big", "little"]


@dataclass(frozen=True, slots=True)
class AsciiCard:
    value: int
    bits: int


@dataclass(frozen=True, slots=True)
class AsciiRejected:
    counter: str
    detail: str


class AsciiLineParser:
    """Byte stream in, one card or one rejection per non-empty line out."""

    def __init__(
        self,
        *,
        number_base: Literal[10, 16] = 10,
        byte_order: ByteOrder = "big",
        strip_prefix: str = "",
        strip_suffix: str = "",
        pattern: str | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        inter_char_timeout_ms: float | None = INTER_CHAR_TIMEOUT_MS,
    ) -> None:
        if number_base not in (10, 16):
            raise ValueError(f"number_base must be 10 or 16, not {number_base}")
        if byte_order not in ("big", "little"):
            raise ValueError(f"byte_order must be 'big' or 'little', not {byte_order!r}")
        self.number_base = number_base
        self.byte_order = byte_order
        self.strip_prefix = strip_prefix
        self.strip_suffix = strip_suffix
        self.pattern = re.compile(pattern) if pattern is not None else None
        if self.pattern is not None and "card" not in self.pattern.groupindex:
            raise ValueError("the regular expression needs a named group (?P<card>...)")
        self.max_line_bytes = max_line_bytes
        self.timeout_s = None if inter_char_timeout_ms is None else inter_char_timeout_ms / 1000
        self._line = bytearray()
        self._overlong = False
        self._last_s: float | None = None

    def feed(self, data: bytes, now: float | None = None) -> list[AsciiCard | AsciiRejected]:
        """Parse ``data`` that arrived at ``now`` (monotonic seconds; None: no timeout check)."""
        out: list[AsciiCard | AsciiRejected] = []
        if now is not None:
            last, self._last_s = self._last_s, now
            silent = 0.0 if last is None else now - last
            if (self.timeout_s is not None and silent > self.timeout_s
                    and (self._line or self._overlong)):
                out.append(AsciiRejected(
                    "timeout", f"line cut: {len(self._line)} bytes, then "
                    f"{silent * 1000:.0f} ms silence"))
                self._line.clear()
                self._overlong = False
        for byte in data:
            if byte in LINE_ENDS:
                if self._overlong:
                    out.append(AsciiRejected("bad_length", "line too long"))
                elif self._line:
                    out.append(self.parse_line(bytes(self._line)))
                self._line.clear()
                self._overlong = False
            elif len(self._line) >= self.max_line_bytes:
                self._overlong = True
            else:
                self._line.append(byte)
        return out

    def parse_line(self, raw: bytes) -> AsciiCard | AsciiRejected:
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            return AsciiRejected("garbage_lines", "non-ASCII bytes in a line")
        if self.pattern is not None:
            match = self.pattern.search(line)
            if match is None or not match.group("card"):
                return AsciiRejected("bad_format", "line does not match the pattern")
            digits = match.group("card")
        else:
            if not (line.startswith(self.strip_prefix) and line.endswith(self.strip_suffix)):
                return AsciiRejected("bad_format", "prefix or suffix missing")
            digits = line[len(self.strip_prefix):len(line) - len(self.strip_suffix)].strip()
        return self._number(digits)

    def _number(self, digits: str) -> AsciiCard | AsciiRejected:
        allowed = "0123456789abcdefABCDEF" if self.number_base == 16 else "0123456789"
        if not digits or any(c not in allowed for c in digits):
            return AsciiRejected("bad_format", f"not a base-{self.number_base} number")
        value = int(digits, self.number_base)
        if self.number_base == 16:
            size = (len(digits) + 1) // 2
        else:
            size = max((value.bit_length() + 7) // 8, 1)
        if self.byte_order == "little":
            value = int.from_bytes(value.to_bytes(size, "big"), "little")
        return AsciiCard(value, size * 8)


class AsciiReader:
    """A line-per-card reader on a serial port."""

    def __init__(
        self,
        port: str,
        *,
        on_card: Callable[[CardRead], None],
        on_fault: Callable[[str], None],
        on_restored: Callable[[], None],
        on_raw: Callable[[bytes | str], None] | None = None,
        baud: int = 9600,
        number_base: Literal[10, 16] = 10,
        byte_order: ByteOrder = "big",
        strip_prefix: str = "",
        strip_suffix: str = "",
        pattern: str | None = None,
        name: str = "ascii",
        repeat_window_ms: int = 1500,
        keep_bits: int | None = None,
        retry_max_seconds: float = 10.0,
        inter_char_timeout_ms: float | None = INTER_CHAR_TIMEOUT_MS,
    ) -> None:
        self.name = name
        self._new_parser = functools.partial(
            AsciiLineParser, number_base=number_base, byte_order=byte_order,
            strip_prefix=strip_prefix, strip_suffix=strip_suffix, pattern=pattern,
            inter_char_timeout_ms=inter_char_timeout_ms,
        )
        self._parser = self._new_parser()  # validates the options at construction
        self._sink = ReadSink(name, on_card=on_card, repeat_window_ms=repeat_window_ms,
                              keep_bits=keep_bits)
        self.stats = self._sink.stats
        self._on_raw = on_raw
        self.transport = SerialTransport(
            port, baud=baud, on_bytes=self._bytes, on_fault=on_fault, on_restored=on_restored,
            on_opened=self._opened, name=name, retry_max_seconds=retry_max_seconds,
        )

    def _opened(self) -> None:
        self._parser = self._new_parser()

    def _bytes(self, data: bytes) -> None:
        arrived_ns = time.perf_counter_ns()
        if self._on_raw is not None:
            self._on_raw(data)
        for item in self._parser.feed(data, time.monotonic()):
            if isinstance(item, AsciiCard):
                self._sink.card(item.value, card_format="ascii", bits=item.bits,
                                read_ns=arrived_ns)
            else:
                self._sink.malformed(item.counter, item.detail)

    async def run(self) -> None:
        await self.transport.run()
