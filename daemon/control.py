"""The local control socket: how `menjin status`, `events`, `sim ...` talk to the daemon.

A UNIX stream socket (mode 0660, group = the configured admin group) so that only the service user
and the installers' group can reach it; the kernel tells us who is on the other end (SO_PEERCRED),
which goes into the audit trail of administrative actions such as a door test.

Protocol: JSON lines.  The client sends one request ``{"cmd": "status", "args": {...}}``; the
server answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}`` and closes.
Streaming commands (``events``, ``readers.watch``) answer ``{"ok": true, "stream": true}`` and then
one ``{"item": ...}`` line per item until the client hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.bounded_json import PayloadError, loads_object

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
#: Large enough for a photo sent by `menjin sim face` (base64), small enough to bound memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Answers carry events and status trees, deeper and with longer numbers than requests.
REPLY_MAX_DEPTH = 128
REPLY_MAX_NUMBER_DIGITS = 64
CONNECT_TIMEOUT_SECONDS = 5.0
_PEERCRED = struct.Struct("3i")


class ControlError(Exception):
    """A request the daemon refused; the message is shown to the installer as it is."""


class ControlUnavailableError(ControlError):
    """No daemon listens on the socket (not running, wrong path, or no permission)."""


class DaemonStoppedError(ControlUnavailableError):
    """The daemon stopped while a client was following a stream."""


DAEMON_STOPPED = "daemon stopped"


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection (from the kernel, not from the client's word)."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Request:
    cmd: str
    args: Mapping[str, Any]
    peer: Peer


Handler = Callable[[Request], Awaitable[Any]]
StreamHandler = Callable[[Request], AsyncIterator[Any]]


@dataclass
class _Command:
    handler: Handler | None = None
    stream: StreamHandler | None = None


def _peer(writer: asyncio.StreamWriter) -> Peer:
    sock = writer.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, uid, gid = _PEERCRED.unpack(raw)
    except (OSError, AttributeError):
        return Peer(-1, -1, -1)
    return Peer(pid, uid, gid)


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass
class ControlServer:
    """Serves registered commands on a UNIX socket until cancelled."""

    path: Path
    group: str | None = None
    _commands: dict[str, _Command] = field(default_factory=dict)
    _clients: set[asyncio.Task[None]] = field(default_factory=set)
    _stopping: bool = False

    def command(self, name: str, handler: Handler) -> None:
        self._commands[name] = _Command(handler=handler)

    def stream(self, name: str, handler: StreamHandler) -> None:
        self._commands[name] = _Command(stream=handler)

    def remove(self, name: str) -> None:
        self._commands.pop(name, None)

    @property
    def commands(self) -> list[str]:
        return sorted(self._commands)

    async def serve(self, started: Callable[[], None] | None = None) -> None:
        """Listen until cancelled; the socket file is removed on the way out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a previous run
        old_umask = os.umask(0o117)  # never world-accessible, not even for an instant
        try:
            server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_LINE_BYTES
            )
        finally:
            os.umask(old_umask)
        try:
            self._restrict()
            log.info("control socket listening on %s", self.path)
            if started is not None:
                started()
            async with server:
                await server.serve_forever()
        finally:
            self._stopping = True
            for task in list(self._clients):
                task.cancel()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _restrict(self) -> None:
        self.path.chmod(SOCKET_MODE)
        if self.group is None:
            return
        try:
            gid = grp.getgrnam(self.group).gr_gid
        except KeyError:
            log.error("control socket: group %r does not exist; only the service user can use "
                      "the socket", self.group)
            return
        try:
            os.chown(self.path, -1, gid)
        except PermissionError:
            log.error("control socket: cannot give it to group %r (the service user must be a "
                      "member of it: SupplementaryGroups=)", self.group)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("control client hung up")
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # The daemon is stopping (serve() cancelled us): tell the client, and end this task
            # normally; a cancelled client task would be logged as an error by asyncio's streams
            # (Python 3.11) although nothing went wrong.
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(_line({"ok": False, "error": DAEMON_STOPPED, "stopped": True}))
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            writer.write(_line({"ok": False, "error": "request too large"}))
            return
        try:
            # bounded: plain json.loads dies of a RecursionError on deeply nested input
            request = loads_object(raw, max_bytes=MAX_LINE_BYTES)
            cmd = request["cmd"]
            args = request.get("args") or {}
            if not isinstance(cmd, str) or not isinstance(args, dict):
                raise TypeError
        except PayloadError as exc:
            writer.write(_line({"ok": False, "error": f"malformed request ({exc}): expected "
                                "one JSON line {\"cmd\": ..., \"args\": {...}}"}))
            await writer.drain()
            return
        except (KeyError, TypeError):
            writer.write(_line({"ok": False, "error": "malformed request: expected one JSON "
                                "line {\"cmd\": ..., \"args\": {...}}"}))
            await writer.drain()
            return
        entry = self._commands.get(cmd)
        if entry is None:
            known = ", ".join(self.commands)
            writer.write(_line({"ok": False, "error": f"unknown command {cmd!r} (this daemon "
                                f"offers: {known})"}))
            return
        req = Request(cmd, args, _peer(writer))
        if entry.stream is not None:
            await self._stream(entry.stream, req, reader, writer)
            return
        assert entry.handler is not None
        try:
            result = await entry.handler(req)
        except ControlError as exc:
            writer.write(_line({"ok": False, "error": str(exc)}))
        except Exception as exc:
            log.exception("control command %s failed", cmd)
            writer.write(_line({"ok": False, "error": f"internal error: {exc}"}))
        else:
            writer.write(_line({"ok": True, "result": result}))
        await writer.drain()

    async def _stream(
        self,
        handler: StreamHandler,
        req: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        async def pump() -> None:
            items = handler(req)
            writer.write(_line({"ok": True, "stream": True}))
            await writer.drain()
            async for item in items:
                writer.write(_line({"item": item}))
                await writer.drain()
            writer.write(_line({"ok": True, "end": True}))
            await writer.drain()

        pump_task = asyncio.create_task(pump(), name=f"control:{req.cmd}")
        hangup = asyncio.create_task(reader.read(), name="control:hangup")
        try:
            await asyncio.wait({pump_task, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump_task, hangup):
                task.cancel()
            results = await asyncio.gather(pump_task, hangup, return_exceptions=True)
        error = results[0]
        if isinstance(error, ControlError):
            writer.write(_line({"ok": False, "error": str(error)}))
        elif isinstance(error, Exception) and not isinstance(error, ConnectionError):
            log.error("control stream %s failed: %s", req.cmd, error)


def _reply(raw: bytes) -> dict[str, Any]:
    """One line of the daemon's answer (bounded, as every JSON this project reads)."""
    try:
        return loads_object(raw, max_bytes=MAX_LINE_BYTES, max_depth=REPLY_MAX_DEPTH,
                            max_number_digits=REPLY_MAX_NUMBER_DIGITS)
    except PayloadError as exc:
        raise ControlError(f"the daemon's answer is not acceptable JSON: {exc}") from None


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_LINE_BYTES),
            CONNECT_TIMEOUT_SECONDS,
        )
    except FileNotFoundError as exc:
        raise ControlUnavailableError(
            f"no menjin daemon at {path} (is it running? `systemctl status menjin`; "
            "or pass the gate's config with -c)"
        ) from exc
    except PermissionError as exc:
        raise ControlUnavailableError(f"no permission to use {path} (run as the menjin user or a "
                                 "member of the control group)") from exc
    except (ConnectionRefusedError, TimeoutError) as exc:
        raise ControlUnavailableError(f"the daemon does not answer at {path}: {exc}") from exc


async def call(path: Path, cmd: str, args: Mapping[str, Any] | None = None) -> Any:
    """Send one request and return its result; raises ControlError with the daemon's reason."""
    reader, writer = await _connect(path)
    try:
        writer.write(_line({"cmd": cmd, "args": dict(args or {})}))
        await writer.drain()
        raw = await reader.readline()
    finally:
        writer.close()
    if not raw:
        raise ControlError("the daemon closed the connection without an answer")
    reply = _reply(raw)
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "refused"))
    return reply.get("result")


async def follow(
    path: Path, cmd: str, args: Mapping[str, Any] | None = None
) -> AsyncIterator[Any]:
    """Items of a streaming command, as they come, until the daemon ends the stream."""
    reader, writer = await _connect(path)
    try:
        writer.write(_line({"cmd": cmd, "args": dict(args or {})}))
        await writer.drain()
        first = await reader.readline()
        if not first:
            raise ControlError("the daemon closed the connection without an answer")
        reply = _reply(first)
        if not reply.get("ok"):
            raise ControlError(reply.get("error", "refused"))
        while raw := await reader.readline():
            message = _reply(raw)
            if message.get("end"):
                return
            if message.get("stopped"):
                raise DaemonStoppedError(DAEMON_STOPPED)
            if "item" not in message:
                raise ControlError(message.get("error", "stream ended with an error"))
            yield message["item"]
        raise DaemonStoppedError(DAEMON_STOPPED)  # end of file without an end: it went away
    finally:
        writer.close()
