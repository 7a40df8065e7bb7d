"""sd_notify against a fake NOTIFY_SOCKET: a real datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.notify import Notifier, watchdog_loop, watchdog_seconds


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield path, sock
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    out: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


def test_ready_status_stopping_arrive_as_datagrams(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, sock = systemd_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.ready("2 doors, 1 reader")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=2 doors, 1 reader"
    assert notifier.stopping()
    assert sock.recv(4096).decode() == "STOPPING=1"
    notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"menjin-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert Notifier(f"@{name}").watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


@pytest.mark.timeout(10)
def test_a_listener_that_stops_reading_never_blocks_the_sender(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, _sock = systemd_socket  # bound, never read: its queue fills up
    notifier = Notifier(path)
    results = [notifier.watchdog() for _ in range(5000)]
    assert results[0] is True
    assert results[-1] is False  # dropped once the queue is full, instead of blocking
    notifier.close()


def test_unreachable_socket_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert not notifier.ready()
    assert not notifier.watchdog()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 20.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 20.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_seconds_from_environment(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_seconds(env) == expected


@pytest.mark.timeout(10)
async def test_keep_alives_only_while_doors_are_alive(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, sock = systemd_socket
    notifier = Notifier(path)
    doors_alive = True
    task = asyncio.create_task(watchdog_loop(notifier, lambda: doors_alive, 0.01))
    try:
        while not received(sock):  # noqa: ASYNC110 - polling a socket, no Event to wait on
            await asyncio.sleep(0.01)
        doors_alive = False
        await asyncio.sleep(0.05)  # let any keep-alive already in flight arrive
        received(sock)
        await asyncio.sleep(0.1)  # ten intervals with a dead door
        assert received(sock) == []
        doors_alive = True
        while not (got := received(sock)):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert set(got) == {"WATCHDOG=1"}
    finally:
        task.cancel()
        notifier.close()


@pytest.mark.timeout(10)
async def test_blocked_loop_sends_no_keep_alive(systemd_socket: tuple[str, socket.socket]) -> None:
    """Keep-alives come from the loop itself: while it is blocked, none go out."""
    path, sock = systemd_socket
    notifier = Notifier(path)
    task = asyncio.create_task(watchdog_loop(notifier, lambda: True, 0.01))
    try:
        while not received(sock):  # noqa: ASYNC110 - polling a socket, no Event to wait on
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        received(sock)
        time.sleep(0.2)  # noqa: ASYNC251 - the loop is stuck on purpose
        assert received(sock) == []  # nothing ran on the loop in between
    finally:
        task.cancel()
        notifier.close()
