"""The far end of a serial card reader: writes EM4100 frames and ASCII lines into a pty.

Tests and simulate mode write through this emitter into the master side of a pty whose slave side
the reader under test opens as its port, so the reader's whole path (open, termios, reads that
split frames anywhere) is the real one.  A real reader's faults are reproduced here too: frames
split across writes, garbage, flipped bits.
"""

from __future__ import annotations

import contextlib
import os
import time
import tty
from collections.abc import Iterable

STX = b"\x02"
ETX = b"\x03"
EM4100_VALUE_BITS = 40


def em4100_frame(value: int) -> bytes:
    """The 14 bytes an RDM6300-class reader sends for a 40-bit tag ``value``."""
    if not 0 <= value < 1 << EM4100_VALUE_BITS:
        raise ValueError(f"an EM4100 tag has 40 bits, {value:#x} does not fit")
    data = value.to_bytes(5, "big")
    checksum = 0
    for byte in data:
        checksum ^= byte
    return STX + f"{value:010X}{checksum:02X}".encode("ascii") + ETX


def ascii_line(text: str, *, line_end: str = "\r\n") -> bytes:
    """One line of a line-per-card reader."""
    return (text + line_end).encode("ascii")


class PtyEmitter:
    """A raw pty pair: the reader opens ``port``; the emitter writes to the master side."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)  # no line discipline: STX/ETX, CR and LF pass untouched
        self.port = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view):]

    def write_split(self, data: bytes, cuts: Iterable[int], *, gap_seconds: float = 0.0) -> None:
        """Write ``data`` in pieces cut at the given offsets, pausing between pieces."""
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            if cut > start:
                if start:
                    time.sleep(gap_seconds)
                self.write(data[start:cut])
                start = cut

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
