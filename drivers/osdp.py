"""OSDP readers on RS-485: the control-panel (CP) side, through libosdp (the ``osdp`` extra).

libosdp runs the protocol (polling, Secure Channel, retries) on its own refresh thread and talks to
the wire through a :class:`osdp.Channel` that we back with a pyserial port.  Its callbacks arrive on
that thread and are handed to the event loop with ``call_soon_threadsafe``.  Card reads come as raw
Wiegand bits and go through the same decoder and presentation as a wired Wiegand reader, so a card
gives the same credential on both.  When the reader stops answering, libosdp itself would wait
minutes before probing again; we tear the session down and reopen it with our own capped backoff
instead, so a reader that is plugged back is back within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import serial

from drivers.card import CardRead, ReadSink
from drivers.wiegand import WiegandError, WiegandKey, check_formats, decode
from protocol.backoff import Backoff

log = logging.getLogger(__name__)

INSTALL_HINT = "kind 'osdp' needs: pip install menjin[osdp]"
OSDP_BAUD = 115200
STATUS_POLL_SECONDS = 0.2
#: A reader that has not come online this long after the port opened is reported as a fault.
ONLINE_TIMEOUT_SECONDS = 10.0
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
#: OSDP LED and buzzer timers count in units of 100 ms.
OSDP_TIME_UNIT_MS = 100
#: The timer of a temporary LED command, in OSDP time units, as libosdp takes it (one byte).
OSDP_MAX_TIMER_UNITS = 255
#: LED colours by installer name (OSDP colour codes).
LED_COLOURS = {"off": 0, "red": 1, "green": 2, "amber": 3, "blue": 4,
               "magenta": 5, "cyan": 6, "white": 7}
_EVENT_CARD_READ = 1
_EVENT_KEYPRESS = 2
#: OSDP keypad codes that are not digits.
_KEYPAD = {0x7F: "*", 0x0D: "#"}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message is the exact install command."""


def load_libosdp() -> ModuleType:
    """Import libosdp's Python module, or fail with the install hint (never a bare ImportError)."""
    try:
        return importlib.import_module("osdp")
    except ImportError as exc:
        raise MissingExtraError(INSTALL_HINT) from exc


class OsdpReader:
    """One OSDP peripheral device (card reader with keypad, LED, buzzer) on a serial port.

    ``scbk`` is the reader's 16-byte Secure Channel base key; when given, Secure Channel is
    enforced (a reader that cannot do it never comes online).  ``on_keypad`` receives the keys
    pressed as text (digits, ``*``, ``#``); PINs are never logged.
    """

    def __init__(
        self,
        port: str,
        *,
        on_card: Callable[[CardRead], None],
        on_fault: Callable[[str], None],
        on_restored: Callable[[], None],
        on_raw: Callable[[bytes | str], None] | None = None,
        on_keypad: Callable[[str], None] | None = None,
        baud: int = OSDP_BAUD,
        address: int = 0,
        scbk: bytes | None = None,
        formats: Sequence[str] = ("h10301", "34bit", "h10304"),
        name: str = "osdp",
        repeat_window_ms: int = 1500,
        keep_bits: int | None = None,
        online_timeout_seconds: float = ONLINE_TIMEOUT_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
    ) -> None:
        if scbk is not None and len(scbk) != 16:
            raise ValueError(f"an OSDP Secure Channel key has 16 bytes, not {len(scbk)}")
        self.port = port
        self.baud = baud
        self.address = address
        self.scbk = scbk
        self.formats = tuple(check_formats(formats))
        self.name = name
        self.online_timeout_seconds = online_timeout_seconds
        self.retry_max_seconds = retry_max_seconds
        self._sink = ReadSink(name, on_card=on_card, repeat_window_ms=repeat_window_ms,
                              keep_bits=keep_bits)
        self.stats = self._sink.stats
        self._on_fault = on_fault
        self._on_restored = on_restored
        self._on_raw = on_raw
        self._on_keypad = on_keypad
        self._cp: Any = None
        self.online = False
        self._was_online = False
        self.faulted = False

    # ------------------------------------------------------------------ commands
    def feedback(self) -> OsdpFeedback:
        """This reader's LED and buzzer as a door feedback sink."""
        return OsdpFeedback(self)

    def led(self, colour: str, *, seconds: float = 1.0, blink_ms: int = 0,
            permanent: bool = False) -> bool:
        """Light the reader's LED in ``colour`` for ``seconds`` (blinking if ``blink_ms``).

        ``permanent`` sets the LED's resting state instead (no timer): a temporary colour shows
        over it and the LED returns to it afterwards.  Temporary timers are capped at
        ``OSDP_MAX_TIMER_UNITS`` (25.5 s).
        """
        units = max(1, round(blink_ms / OSDP_TIME_UNIT_MS)) if blink_ms else 0
        timer = min(OSDP_MAX_TIMER_UNITS, max(1, round(seconds * 1000 / OSDP_TIME_UNIT_MS)))
        command = {
            "command": load_libosdp().Command.LED, "reader": 0, "led_number": 0,
            "control_code": 1, "temporary": not permanent,
            "on_count": units or 1, "off_count": units,  # no off time: steady
            "on_color": LED_COLOURS[colour], "off_color": LED_COLOURS["off"],
            "timer_count": 0 if permanent else timer,
        }
        return self._submit(command)

    def beep(self, *, count: int = 1, on_ms: int = 100, off_ms: int = 100) -> bool:
        """Sound the buzzer ``count`` times."""
        command = {
            "command": load_libosdp().Command.Buzzer, "reader": 0, "control_code": 2,
            "on_count": max(1, round(on_ms / OSDP_TIME_UNIT_MS)),
            "off_count": max(1, round(off_ms / OSDP_TIME_UNIT_MS)), "rep_count": count,
        }
        return self._submit(command)

    def _submit(self, command: dict[str, Any]) -> bool:
        """Queue a command for the reader; False when it is offline (nothing to tell it then)."""
        if self._cp is None or not self.online:
            return False
        return bool(self._cp.submit_command(self.address, command))

    @property
    def secure(self) -> bool:
        """True while Secure Channel is active with the reader."""
        return self._cp is not None and bool(self._cp.is_sc_active(self.address))

    # ------------------------------------------------------------------ life cycle
    async def run(self) -> None:
        osdp = load_libosdp()
        backoff = Backoff(RETRY_INITIAL_SECONDS, self.retry_max_seconds)
        while True:
            reason = await self._session(osdp)
            self._fault(reason)
            if self._was_online:  # it worked until now: try again soon
                backoff.reset()
            await asyncio.sleep(backoff.next())

    async def _session(self, osdp: ModuleType) -> str:
        """Open the port and poll the reader until it fails; returns why it ended."""
        try:
            port = serial.Serial(self.port, self.baud, timeout=0, exclusive=True)
        except (OSError, serial.SerialException, ValueError) as exc:
            return f"port {self.port} unavailable: {exc}"
        loop = asyncio.get_running_loop()
        channel = _serial_channel(osdp, port)
        flags = [osdp.LibFlag.EnforceSecure] if self.scbk is not None else []
        info = osdp.PDInfo(self.address, channel, scbk=self.scbk, flags=flags, name=self.name)

        def event_handler(pd: int, event: dict[str, Any]) -> int:
            loop.call_soon_threadsafe(self._event, event, time.perf_counter_ns())
            return 0

        cp = osdp.ControlPanel([info], log_level=osdp.LogLevel.Error, event_handler=event_handler)
        cp.start()
        self._cp = cp
        self.online = self._was_online = False
        try:
            return await self._watch(cp, channel)
        finally:
            self._cp = None
            self.online = False
            await asyncio.to_thread(cp.stop)
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()

    async def _watch(self, cp: Any, channel: Any) -> str:
        opened = time.monotonic()
        while True:
            await asyncio.sleep(STATUS_POLL_SECONDS)
            if channel.lost is not None:
                return f"port {self.port} lost: {channel.lost}"
            online = await asyncio.to_thread(cp.is_online, self.address)
            if online and not self.online:
                self.online = self._was_online = True
                if self.faulted:
                    self.faulted = False
                    log.info("reader %s: back (OSDP address %d)", self.name, self.address)
                    self._on_restored()
            elif not online and self.online:
                return f"OSDP reader at address {self.address} stopped answering"
            elif not online and time.monotonic() - opened > self.online_timeout_seconds:
                return f"no OSDP reader answering at address {self.address} on {self.port}"

    def _fault(self, reason: str) -> None:
        self._sink.count("offline")
        if self.faulted:
            return
        self.faulted = True
        log.warning("reader %s: unavailable (%s); retrying in the background", self.name, reason)
        self._on_fault(reason)

    # ------------------------------------------------------------------ events (loop thread)
    def _event(self, event: dict[str, Any], arrived_ns: int) -> None:
        kind = event.get("event")
        data = bytes(event.get("data", b""))
        if kind == _EVENT_CARD_READ:
            length = int(event.get("length", len(data) * 8))
            self._card(data, length, arrived_ns)
        elif kind == _EVENT_KEYPRESS:  # a PIN: counted, handed on, never shown on the raw tap
            keys = "".join(_KEYPAD.get(b, chr(b) if 0x30 <= b <= 0x39 else "?") for b in data)
            self._sink.count("keypresses", len(keys))
            if self._on_keypad is not None:
                self._on_keypad(keys)
        else:
            self._sink.count("other_events")

    def _card(self, data: bytes, length: int, arrived_ns: int) -> None:
        if not 0 < length <= len(data) * 8:
            self._sink.malformed("bad_length", f"{length} bits in {len(data)} bytes")
            return
        value = int.from_bytes(data, "big") >> (len(data) * 8 - length)
        frame = f"{value:0{length}b}"
        if self._on_raw is not None:
            self._on_raw(frame)  # the same bit string a wired Wiegand reader shows
        try:
            card = decode(frame, self.formats)
        except WiegandError as exc:
            self._sink.malformed(exc.counter, str(exc))
            return
        if isinstance(card, WiegandKey):  # a keypad behind an OSDP converter
            self._sink.count("keypresses")
            if self._on_keypad is not None:
                self._on_keypad(card.key)
            return
        self._sink.card(card.value, card_format=card.format, bits=card.bits,
                        facility=card.facility, number=card.number, read_ns=arrived_ns)


def _serial_channel(osdp: ModuleType, port: serial.Serial) -> Any:
    """An ``osdp.Channel`` over a pyserial port that records a failure instead of raising it
    into libosdp's C refresh loop."""

    class SerialChannel(osdp.Channel):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.lost: str | None = None

        def read(self, max_bytes: int) -> bytes:
            try:
                data: bytes = port.read(max_bytes)
            except (OSError, serial.SerialException) as exc:
                self.lost = str(exc) or type(exc).__name__
                return b""
            return data

        def write(self, buf: bytes) -> int:
            try:
                written: int | None = port.write(buf)
            except (OSError, serial.SerialException) as exc:
                self.lost = str(exc) or type(exc).__name__
                return 0
            return written or 0

        def flush(self) -> None:
            return None

    return SerialChannel()


GRANTED_LED_SECONDS = 2.0
DENIED_LED_SECONDS = 1.0
DENIED_BEEPS = 3
ALARM_BLINK_MS = 500


class OsdpFeedback:
    """A door's feedback on an OSDP reader's own LED and buzzer (green and one beep: granted;
    red flashes and three beeps: denied; red blinking: alarm such as door held; red steady:
    lockdown).  Commands to an offline reader are dropped: it shows nothing stale later."""

    def __init__(self, reader: OsdpReader) -> None:
        self.reader = reader
        self._alarm = False
        self._lockdown = False

    def __repr__(self) -> str:
        return f"OsdpFeedback({self.reader.name})"

    def unlocked(self, active: bool) -> None:
        if active and not (self._alarm or self._lockdown):
            self.reader.led("green", seconds=GRANTED_LED_SECONDS)

    def granted(self) -> None:
        if not self._alarm:
            self.reader.led("green", seconds=GRANTED_LED_SECONDS)
            self.reader.beep(count=1)

    def denied(self) -> None:
        if not self._alarm:
            self.reader.led("red", seconds=DENIED_LED_SECONDS, blink_ms=100)
            self.reader.beep(count=DENIED_BEEPS)

    def alarm(self, active: bool) -> None:
        self._alarm = active
        self._state()
        if active:
            self.reader.beep(count=DENIED_BEEPS)

    def lockdown(self, active: bool) -> None:
        self._lockdown = active
        self._state()

    def _state(self) -> None:
        """The LED's resting state: red blinking (alarm), red (lockdown) or off."""
        if self._alarm:
            self.reader.led("red", blink_ms=ALARM_BLINK_MS, permanent=True)
        elif self._lockdown:
            self.reader.led("red", permanent=True)
        else:
            self.reader.led("off", permanent=True)
