"""The serial transport: bytes from a real pty, a port that vanishes and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tty
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
import serial

from drivers.card import CardRead
from drivers.em4100 import Em4100Reader
from drivers.serial_port import SerialTransport
from drivers.sim.serial_emitter import PtyEmitter, em4100_frame

SOCAT = shutil.which("socat") or "/usr/bin/socat"


async def wait_for(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll state changed by the reader's callbacks until ``condition`` holds."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - callbacks set plain attributes, no event
            await asyncio.sleep(0.005)


class Recorder:
    def __init__(self) -> None:
        self.data = bytearray()
        self.faults: list[str] = []
        self.restored = 0

    def transport(self, port: str, **kwargs: float) -> SerialTransport:
        return SerialTransport(port, on_bytes=self.data.extend, on_fault=self.faults.append,
                               on_restored=self.restored_once, name="front", **kwargs)

    def restored_once(self) -> None:
        self.restored += 1


@contextlib.asynccontextmanager
async def task_of(coro: object):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(coro)  # type: ignore[arg-type]
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.timeout(20)
async def test_bytes_arrive_in_order_and_the_port_is_closed_on_cancel() -> None:
    rec = Recorder()
    with PtyEmitter() as pty:
        transport = rec.transport(pty.port)
        async with task_of(transport.run()):
            await wait_for(lambda: transport.opens == 1)
            payload = bytes(range(256)) * 20
            await asyncio.to_thread(pty.write, payload)
            await wait_for(lambda: len(rec.data) == len(payload))
        assert bytes(rec.data) == payload
        # cancelled: the port is free again, an exclusive open succeeds
        serial.Serial(pty.port, 9600, exclusive=True).close()
    assert rec.faults == []


@pytest.mark.timeout(20)
async def test_pty_vanishing_and_coming_back_under_a_stable_name(tmp_path: Path) -> None:
    """The udev-style stable name is a symlink; the reader follows it to the new device."""
    link = tmp_path / "menjin-reader-front"
    rec = Recorder()
    first = PtyEmitter()
    link.symlink_to(first.port)
    transport = rec.transport(str(link), retry_initial_seconds=0.02, retry_max_seconds=0.1)
    try:
        async with task_of(transport.run()):
            await wait_for(lambda: transport.opens == 1)
            await asyncio.to_thread(first.write, b"one")
            await wait_for(lambda: bytes(rec.data) == b"one")
            link.unlink()  # unplugged: the device node goes, the other end hangs up
            first.close()
            await wait_for(lambda: len(rec.faults) == 1)
            await asyncio.sleep(0.3)  # several retries fail while it is away
            assert len(rec.faults) == 1
            assert rec.restored == 0
            second = PtyEmitter()
            try:
                link.symlink_to(second.port)
                await wait_for(lambda: rec.restored == 1)
                await asyncio.to_thread(second.write, b"two")
                await wait_for(lambda: bytes(rec.data) == b"onetwo")
            finally:
                second.close()
    finally:
        first.close()
    assert "port" in rec.faults[0] and "front" in rec.faults[0]
    assert transport.opens == 2


def start_socat(reader: Path, writer: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [SOCAT, f"pty,link={reader},raw,echo=0", f"pty,link={writer},raw,echo=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc


def stop_socat(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(5)


async def open_writer(path: Path) -> int:
    await wait_for(path.exists)
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


@pytest.mark.skipif(not Path(SOCAT).exists(), reason="socat not installed")
@pytest.mark.timeout(30)
async def test_em4100_reader_across_socat_restart(tmp_path: Path) -> None:
    """A socat pty pair dies (cable pulled) and is recreated: one fault, one restore, no loss."""
    reader_end, writer_end = tmp_path / "ttyReader", tmp_path / "ttyCard"
    cards: list[CardRead] = []
    faults: list[str] = []
    restored: list[bool] = []
    reader = Em4100Reader(str(reader_end), on_card=cards.append, on_fault=faults.append,
                          on_restored=lambda: restored.append(True), name="gate",
                          repeat_window_ms=0, retry_max_seconds=0.1)
    proc = start_socat(reader_end, writer_end)
    try:
        await wait_for(reader_end.exists)
        async with task_of(reader.run()):
            fd = await open_writer(writer_end)
            await wait_for(lambda: reader.transport.opens == 1)
            os.write(fd, em4100_frame(0x0A0012D687)[:9])  # half a frame, then the cable goes
            await asyncio.sleep(0.05)
            os.close(fd)
            stop_socat(proc)
            await wait_for(lambda: len(faults) == 1)
            proc = start_socat(reader_end, writer_end)
            fd = await open_writer(writer_end)
            await wait_for(lambda: len(restored) == 1)
            os.write(fd, em4100_frame(0x0A0012D687)[9:] + em4100_frame(0x01020304FF))
            await wait_for(lambda: len(cards) == 1)
            os.close(fd)
    finally:
        stop_socat(proc)
    # the half frame from before the outage never joins the tail written after it
    assert [c.value for c in cards] == [0x01020304FF]
    assert len(faults) == 1 and len(restored) == 1


@pytest.mark.timeout(20)
async def test_missing_port_retries_with_capped_backoff_without_spinning() -> None:
    rec = Recorder()
    transport = rec.transport("/dev/menjin-reader-absent", retry_initial_seconds=0.01,
                              retry_max_seconds=0.05)
    with mock.patch("drivers.serial_port.serial.Serial", autospec=True,
                    side_effect=FileNotFoundError(2, "No such file or directory")) as opened:
        async with task_of(transport.run()):
            await asyncio.sleep(0.6)
    # 0.01 + 0.02 + 0.04 + 0.05 * n: about a dozen attempts; a spinning retry makes thousands
    assert 3 <= opened.call_count <= 40
    assert rec.faults == [
        "port /dev/menjin-reader-absent unavailable: [Errno 2] No such file or directory"
    ]
