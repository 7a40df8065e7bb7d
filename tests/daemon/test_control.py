"""The control socket protocol: a real UNIX socket, the real client functions."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.control import (
    ControlError,
    ControlServer,
    ControlUnavailableError,
    DaemonStoppedError,
    Request,
    call,
    follow,
)


async def started(server: ControlServer) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.timeout(20)
async def test_command_result_and_peer_credentials(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock")
    seen: list[Request] = []

    async def status(req: Request) -> dict[str, Any]:
        seen.append(req)
        return {"doors": {"front": {"relay": "idle"}}, "echo": req.args.get("x")}

    server.command("status", status)
    task = await started(server)
    try:
        result = await call(server.path, "status", {"x": 7})
        assert result == {"doors": {"front": {"relay": "idle"}}, "echo": 7}
        assert seen[0].peer.uid == os.getuid()
        assert seen[0].peer.pid == os.getpid()
    finally:
        await stop(task)
    assert not server.path.exists()  # removed on the way out


@pytest.mark.timeout(20)
async def test_socket_is_0660_and_belongs_to_the_admin_group(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    server = ControlServer(tmp_path / "run" / "control.sock", group=group)
    task = await started(server)
    try:
        st = server.path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == os.getgid()
    finally:
        await stop(task)


@pytest.mark.timeout(20)
async def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("left over from a crash")
    server = ControlServer(path)

    async def ping(req: Request) -> str:
        return "pong"

    server.command("ping", ping)
    task = await started(server)
    try:
        assert await call(path, "ping") == "pong"
    finally:
        await stop(task)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("cmd", "error"),
    [
        ("nope", "unknown command 'nope' (this daemon offers: fail, ping)"),
        ("fail", "door 'side' does not exist"),
    ],
)
async def test_errors_reach_the_client_verbatim(tmp_path: Path, cmd: str, error: str) -> None:
    server = ControlServer(tmp_path / "control.sock")

    async def ping(req: Request) -> str:
        return "pong"

    async def fail(req: Request) -> None:
        raise ControlError("door 'side' does not exist")

    server.command("ping", ping)
    server.command("fail", fail)
    task = await started(server)
    try:
        with pytest.raises(ControlError) as info:
            await call(server.path, cmd)
        assert str(info.value) == error
        assert await call(server.path, "ping") == "pong"  # still serving
    finally:
        await stop(task)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("raw", [b"not json\n", b'{"args": {}}\n', b'{"cmd": 3}\n', b"[1]\n"])
async def test_malformed_requests_get_a_clear_error(tmp_path: Path, raw: bytes) -> None:
    server = ControlServer(tmp_path / "control.sock")
    task = await started(server)
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(raw)
        reply = json.loads(await reader.readline())
        writer.close()
        assert reply["ok"] is False
        assert reply["error"].startswith("malformed request")
    finally:
        await stop(task)


@pytest.mark.timeout(20)
async def test_stream_delivers_items_and_ends_when_the_client_hangs_up(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock")
    finished = asyncio.Event()

    async def events(req: Request) -> AsyncIterator[dict[str, Any]]:
        try:
            n = 0
            while True:
                n += 1
                yield {"seq": n}
                await asyncio.sleep(0.001)
        finally:
            finished.set()

    server.stream("events", events)
    task = await started(server)
    try:
        got: list[int] = []
        stream = follow(server.path, "events")
        async for item in stream:
            got.append(item["seq"])
            if len(got) == 3:
                break
        await stream.aclose()
        assert got == [1, 2, 3]
        await asyncio.wait_for(finished.wait(), 5)  # the server noticed the hang-up
    finally:
        await stop(task)


@pytest.mark.timeout(20)
async def test_stream_error_is_reported(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock")

    async def watch(req: Request) -> AsyncIterator[str]:
        yield "front-card: 0012345678"
        raise ControlError("reader front-card went away")

    server.stream("readers.watch", watch)
    task = await started(server)
    try:
        got: list[str] = []
        with pytest.raises(ControlError, match="reader front-card went away"):
            async for item in follow(server.path, "readers.watch"):
                got.append(item)
        assert got == ["front-card: 0012345678"]
    finally:
        await stop(task)


@pytest.mark.timeout(20)
async def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlUnavailableError, match="no menjin daemon at"):
        await call(tmp_path / "missing.sock", "status")


@pytest.mark.timeout(20)
async def test_cancelling_the_server_ends_open_streams(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock")

    async def quiet(req: Request) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield "never"

    server.stream("events", quiet)
    task = await started(server)
    stream = follow(server.path, "events")
    pending = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    await stop(task)
    with pytest.raises(DaemonStoppedError, match=r"^daemon stopped$"):
        await asyncio.wait_for(pending, 5)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"[" * 100_000 + b"]" * 100_000 + b"\n",
         'malformed request (nested deeper than 32 levels): expected one JSON line '
         '{"cmd": ..., "args": {...}}'),
        (b'{"cmd": "ping", "args": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}\n",
         'malformed request (nested deeper than 32 levels): expected one JSON line '
         '{"cmd": ..., "args": {...}}'),
        (b'{"cmd": "ping", "cmd": "status"}\n',
         "malformed request (duplicate key 'cmd'): expected one JSON line "
         '{"cmd": ..., "args": {...}}'),
        (b'{"cmd": "ping", "args": {"n": 1e999}}\n',
         'malformed request (number is not finite): expected one JSON line '
         '{"cmd": ..., "args": {...}}'),
    ],
)
async def test_hostile_requests_get_an_error_answer_and_the_server_goes_on(
        tmp_path: Path, raw: bytes, error: str, caplog: pytest.LogCaptureFixture) -> None:
    """Deeply nested input used to end in a RecursionError traceback and no answer."""
    server = ControlServer(tmp_path / "control.sock")

    async def ping(req: Request) -> str:
        return "pong"

    server.command("ping", ping)
    task = await started(server)
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(raw)
        reply = json.loads(await reader.readline())
        writer.close()
        assert reply == {"ok": False, "error": error}
        assert await call(server.path, "ping") == "pong"  # still serving
    finally:
        await stop(task)
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
