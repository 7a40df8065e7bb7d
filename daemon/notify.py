"""systemd's notify protocol (sd_notify) over the ``NOTIFY_SOCKET`` datagram socket (no libsystemd).

``Type=notify`` lets systemd know when the gate is really ready (``READY=1`` once config, GPIO and
journal are up; the broker may take longer), and ``WatchdogSec=`` lets it restart a daemon whose
event loop is stuck: ``WATCHDOG=1`` is sent from the event loop itself, and only while the door
loops are alive, so a wedged loop or a dead door stops the keep-alives and systemd steps in.
Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

#: Keep-alives go out at this fraction of ``WatchdogSec`` (systemd's own advice is half).
WATCHDOG_FRACTION = 0.5


class Notifier:
    """Sends notify messages to systemd; silent when not started by systemd."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):  # abstract namespace socket
            return b"\0" + self.address[1:].encode()
        return self.address

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; False when there is no systemd to tell."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                # Non-blocking: a listener that stops reading must never stall the event loop
                # (and with it the doors); a lost keep-alive costs less than a frozen gate.
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto("\n".join(fields).encode(), self._target())
        except OSError as exc:
            if not self._warned:  # one line, not one per keep-alive
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1"] + ([f"STATUS={status}"] if status else [])
        return self.send(*fields)

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """``WatchdogSec=`` in seconds when systemd asks this process for keep-alives, else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. a wrapper script)
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
    return value / 1_000_000 if value > 0 else None


async def watchdog_loop(
    notifier: Notifier, alive: Callable[[], bool], interval_seconds: float
) -> None:
    """Send ``WATCHDOG=1`` every ``interval_seconds`` while ``alive()``; runs until cancelled.

    It runs on the event loop, so a blocked loop sends nothing; ``alive`` says whether the door
    loops are running, so a dead door stops the keep-alives as well.
    """
    silent = False
    while True:
        if alive():
            notifier.watchdog()
            if silent:
                log.info("door loops alive again: watchdog keep-alives resumed")
                silent = False
        elif not silent:
            log.error("a door loop is not running: withholding watchdog keep-alives")
            silent = True
        await asyncio.sleep(interval_seconds)
