"""The serial transport under every serial card reader: bytes in, faults out, never a blocked loop.

pyserial opens and configures the port (baud, raw mode, exclusive lock); the open file descriptor
is then watched with the event loop's own ``add_reader``, the way pyserial-asyncio does it, so a
byte reaches the parser without a thread hop and without any extra dependency.  A USB reader that
is unplugged makes the read fail: that is reported once through ``on_fault``, the port is retried
with capped exponential backoff (the loop sleeps, nothing spins), and ``on_restored`` is called
when it opens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import serial

from protocol.backoff import Backoff

log = logging.getLogger(__name__)

#: Largest chunk taken from the port per readiness callback.
READ_CHUNK_BYTES = 4096
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0


class PortLostError(Exception):
    """The open port failed (unplugged, or the other end of a pty went away)."""


class SerialTransport:
    """Reads a serial port on the event loop and hands every chunk to ``on_bytes``.

    All callbacks run on the event loop thread; ``on_opened`` on every (re)open, so a parser can
    drop a half frame left from before an unplug.
    ``run()`` keeps the port open until cancelled, reopening it after faults.
    """

    def __init__(
        self,
        port: str,
        *,
        baud: int = 9600,
        on_bytes: Callable[[bytes], None],
        on_fault: Callable[[str], None],
        on_restored: Callable[[], None],
        on_opened: Callable[[], None] | None = None,
        name: str = "serial",
        retry_initial_seconds: float = RETRY_INITIAL_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
    ) -> None:
        self.port = port
        self.baud = baud
        self.name = name
        self._on_bytes = on_bytes
        self._on_fault = on_fault
        self._on_restored = on_restored
        self._on_opened = on_opened
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.faulted = False
        self.opens = 0

    def _open(self) -> serial.Serial:
        """Open and configure the port (a local tty open: fast, fine on the loop)."""
        return serial.Serial(self.port, self.baud, timeout=0, exclusive=True)

    async def run(self) -> None:
        backoff = Backoff(self.retry_initial_seconds, self.retry_max_seconds)
        while True:
            try:
                port = self._open()
            except (OSError, serial.SerialException, ValueError) as exc:
                self._fault(f"port {self.port} unavailable: {_reason(exc)}")
                await asyncio.sleep(backoff.next())
                continue
            try:
                self.opens += 1
                if self._on_opened is not None:
                    self._on_opened()
                if self.faulted:
                    self.faulted = False
                    log.info("reader %s: port %s back", self.name, self.port)
                    self._on_restored()
                backoff.reset()
                await self._pump(port)
            except PortLostError as exc:
                self._fault(f"port {self.port} lost: {exc}")
            finally:
                with contextlib.suppress(OSError, serial.SerialException):
                    port.close()
            await asyncio.sleep(backoff.next())

    def _fault(self, reason: str) -> None:
        if self.faulted:
            return
        self.faulted = True
        log.warning("reader %s: unavailable (%s); retrying in the background", self.name, reason)
        self._on_fault(reason)

    async def _pump(self, port: serial.Serial) -> None:
        """Deliver bytes until the port fails; raises :class:`PortLostError` then."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()
        fd = port.fileno()

        def readable() -> None:
            try:
                data = port.read(max(port.in_waiting, 1))
            except (OSError, serial.SerialException) as exc:
                data = b""
                reason = _reason(exc)
            else:
                reason = "end of file"
            if data:
                self._on_bytes(data)
            elif not lost.done():  # readable with nothing to read: the device is gone
                loop.remove_reader(fd)
                lost.set_result(reason)

        loop.add_reader(fd, readable)
        try:
            raise PortLostError(await lost)
        finally:
            loop.remove_reader(fd)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
