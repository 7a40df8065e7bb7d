"""OSDP control-panel side against libosdp's own peripheral-device side on a real pty pair."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from drivers.card import CardRead
from drivers.osdp import INSTALL_HINT, MissingExtraError, OsdpReader, load_libosdp
from drivers.sim.serial_emitter import PtyEmitter

osdp = pytest.importorskip("osdp", reason="libosdp (the osdp extra) is not installed")

ADDRESS = 101
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


class FdChannel(osdp.Channel):  # type: ignore[misc]
    """The peripheral's end of the wire: the pty master, non-blocking."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        os.set_blocking(fd, False)

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.fd, max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self.fd, buf)
        except (BlockingIOError, OSError):
            return 0

    def flush(self) -> None:
        return None


def start_pd(fd: int, scbk: bytes | None) -> Any:
    flags = [osdp.LibFlag.EnforceSecure] if scbk else []
    info = osdp.PDInfo(ADDRESS, FdChannel(fd), scbk=scbk, flags=flags, name="pd")
    caps = osdp.PDCapabilities([
        (osdp.Capability.LEDControl, 1, 1),
        (osdp.Capability.AudibleControl, 1, 1),
        (osdp.Capability.CardDataFormat, 1, 1),
        (osdp.Capability.Readers, 1, 1),
    ])
    pd = osdp.PeripheralDevice(info, caps, log_level=osdp.LogLevel.Error)
    pd.start()
    return pd


def wiegand_event(bits: str) -> dict[str, Any]:
    """A raw-Wiegand card read as a reader reports it: bits MSB first, padded to bytes."""
    padded = bits + "0" * (-len(bits) % 8)
    data = int(padded, 2).to_bytes(len(padded) // 8, "big")
    return {"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0,
            "format": osdp.CardFormat.Wiegand, "length": len(bits), "data": data}


def h10301(facility: int, number: int) -> str:
    """Computed here from the format: even parity over the first 12 data bits, odd over the rest."""
    data = f"{facility:08b}{number:016b}"
    return str(data[:12].count("1") % 2) + data + str(1 - data[12:].count("1") % 2)


async def wait_for(condition: Callable[[], bool], within_s: float = 15.0) -> None:
    """Poll state changed by the reader's callbacks until ``condition`` holds."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - callbacks set plain attributes, no event
            await asyncio.sleep(0.01)


class Harness:
    def __init__(self, port: str, scbk: bytes | None) -> None:
        self.cards: list[CardRead] = []
        self.keys: list[str] = []
        self.raw: list[bytes | str] = []
        self.faults: list[str] = []
        self.restored = 0
        self.reader = OsdpReader(
            port, address=ADDRESS, scbk=scbk, on_card=self.cards.append,
            on_fault=self.faults.append, on_restored=self._restored, on_keypad=self.keys.append,
            on_raw=self.raw.append,
            name="lobby", repeat_window_ms=0, retry_max_seconds=1.0,
        )

    def _restored(self) -> None:
        self.restored += 1


@pytest.fixture
def pty() -> Iterator[PtyEmitter]:
    with PtyEmitter() as pair:
        yield pair


@contextlib.asynccontextmanager
async def running(pty: PtyEmitter, scbk: bytes | None) -> AsyncIterator[tuple[Harness, Any]]:
    pd = start_pd(pty.master, scbk)
    h = Harness(pty.port, scbk)
    task = asyncio.create_task(h.reader.run())
    try:
        await wait_for(lambda: h.reader.online)
        yield h, pd
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(RuntimeError):
            pd.stop()


@pytest.mark.timeout(60)
async def test_secure_channel_cards_keypad_led_and_buzzer(pty: PtyEmitter) -> None:
    async with running(pty, KEY) as (h, pd):
        await wait_for(lambda: h.reader.secure)
        pd.submit_event(wiegand_event(h10301(18, 54919)))
        bad = h10301(7, 4242)
        pd.submit_event(wiegand_event(bad[:-1] + ("0" if bad[-1] == "1" else "1")))
        pd.submit_event(wiegand_event("1" * 30))
        pd.submit_event({"event": osdp.Event.KeyPress, "reader_no": 0, "data": b"1234\x0d"})
        await wait_for(lambda: bool(h.keys) and h.reader.stats["bad_length"] == 1)
        assert h.reader.led("green", seconds=2)
        assert h.reader.beep(count=2)
        led = await asyncio.to_thread(pd.get_command, 5)
        buzzer = await asyncio.to_thread(pd.get_command, 5)
    assert [(c.format, c.facility, c.number) for c in h.cards] == [("h10301", 18, 54919)]
    assert h.cards[0].credential == str((18 << 16) | 54919)
    assert h.reader.stats["bad_parity"] == 1
    assert h.keys == ["1234#"]
    assert h.raw == [h10301(18, 54919), bad[:-1] + ("0" if bad[-1] == "1" else "1"), "1" * 30]
    assert led["command"] == osdp.Command.LED and led["on_color"] == osdp.CommandLEDColor.Green
    assert led["timer_count"] == 20
    assert buzzer["command"] == osdp.Command.Buzzer and buzzer["rep_count"] == 2
    assert h.faults == []


@pytest.mark.timeout(60)
async def test_door_feedback_drives_the_reader_led_and_buzzer(pty: PtyEmitter) -> None:
    """Issue 16, finding 7: granted, denied, held (an alarm) and lockdown reach the reader."""
    async with running(pty, KEY) as (h, pd):
        await wait_for(lambda: h.reader.secure)
        feedback = h.reader.feedback()
        feedback.granted()
        feedback.denied()
        feedback.alarm(True)  # door held open
        feedback.alarm(False)
        feedback.lockdown(True)
        commands = [await asyncio.to_thread(pd.get_command, 5) for _ in range(8)]
    shown = [(c["command"], c.get("temporary"), c.get("on_color"), c.get("off_count"),
              c.get("rep_count")) for c in commands]
    led, buzzer, red, green = (osdp.Command.LED, osdp.Command.Buzzer, osdp.CommandLEDColor.Red,
                               osdp.CommandLEDColor.Green)
    assert shown == [
        (led, True, green, 0, None), (buzzer, None, None, 1, 1),  # granted: green, one beep
        (led, True, red, 1, None), (buzzer, None, None, 1, 3),  # denied: red flashes, 3 beeps
        (led, False, red, 5, None), (buzzer, None, None, 1, 3),  # held: red blinking, beeps
        (led, False, 0, 0, None),  # the alarm cleared: LED off at rest
        (led, False, red, 0, None),  # lockdown: red steady at rest
    ]


@pytest.mark.timeout(90)
async def test_reader_going_silent_is_one_fault_and_coming_back_is_restored(
    pty: PtyEmitter,
) -> None:
    async with running(pty, None) as (h, pd):
        pd.stop()  # powered off: nothing answers the polls any more
        await wait_for(lambda: len(h.faults) == 1, within_s=30)
        assert h.restored == 0
        assert not h.reader.led("red")  # nothing is queued for an offline reader
        again = start_pd(pty.master, None)
        try:
            await wait_for(lambda: h.restored == 1, within_s=30)
            again.submit_event(wiegand_event(h10301(1, 1)))
            await wait_for(lambda: len(h.cards) == 1)
        finally:
            again.stop()
    assert h.faults == [f"OSDP reader at address {ADDRESS} stopped answering"]
    assert h.cards[0].number == 1


@pytest.mark.timeout(30)
async def test_missing_port_is_a_fault() -> None:
    faults: list[str] = []
    reader = OsdpReader("/dev/menjin-reader-absent", on_card=lambda c: None,
                        on_fault=faults.append, on_restored=lambda: None)
    task = asyncio.create_task(reader.run())
    try:
        await wait_for(lambda: bool(faults))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert faults == ["port /dev/menjin-reader-absent unavailable: "
                      "[Errno 2] could not open port /dev/menjin-reader-absent: "
                      "[Errno 2] No such file or directory: '/dev/menjin-reader-absent'"]


def test_missing_libosdp_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "osdp", None)  # what an absent package looks like
    with pytest.raises(MissingExtraError) as caught:
        load_libosdp()
    assert str(caught.value) == "kind 'osdp' needs: pip install menjin[osdp]" == INSTALL_HINT


def test_bad_key_and_format_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes, not 4"):
        OsdpReader("/dev/null", scbk=b"1234", on_card=lambda c: None,
                   on_fault=lambda r: None, on_restored=lambda: None)
    with pytest.raises(ValueError, match="unknown Wiegand format 'h1'"):
        OsdpReader("/dev/null", formats=["h1"], on_card=lambda c: None,
                   on_fault=lambda r: None, on_restored=lambda: None)


@pytest.mark.timeout(60)
async def test_reader_with_the_wrong_key_never_comes_online(pty: PtyEmitter) -> None:
    """Secure Channel is enforced: a reader (or an impostor on the bus) without the key gets no
    session, so its card reads never reach access control."""
    pd = start_pd(pty.master, bytes(16))
    faults: list[str] = []
    cards: list[CardRead] = []
    reader = OsdpReader(pty.port, address=ADDRESS, scbk=KEY, on_card=cards.append,
                        on_fault=faults.append, on_restored=lambda: None,
                        online_timeout_seconds=2.0)
    task = asyncio.create_task(reader.run())
    try:
        pd.submit_event(wiegand_event(h10301(18, 54919)))
        await wait_for(lambda: bool(faults))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pd.stop()
    assert faults == [f"no OSDP reader answering at address {ADDRESS} on {pty.port}"]
    assert cards == []
    assert not reader.secure
