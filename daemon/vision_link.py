"""The door daemon's side of the vision process: start it, listen to it, survive it.

:class:`VisionLink` runs ``menjin vision`` as a child process (:mod:`daemon.vision_process`)
with one end of a UNIX socket pair, and turns its messages into what the door daemon does:
recognitions go to the passage (the access decision is taken here, never in the vision process),
captures become ``capture`` events with their portrait, camera faults ``camera.fault`` /
``camera.restored``.  The child's crash, hang (no heartbeat for :data:`HANG_SECONDS`), OOM kill or
garbage on the socket never reaches a relay: the link marks vision faulted (``vision.fault``),
restarts the child with a jittered, capped backoff, forever, and says ``vision.restored`` when a
new child is ready.  Cards never wait for any of it.

Enrolment at the door (:meth:`VisionLink.burst`) asks the running child for a burst of its camera
frames: the child owns the camera, so nothing else may open it while the daemon runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.config import CameraSection
from daemon.events import Emit, Event
from daemon.keys import KeyProviderError
from daemon.passage import FACE_RECOGNISED, FACE_REFUSED, Passage
from daemon.vision_wire import MAX_MESSAGE_BYTES, WireError, count, decode, encode, text
from protocol.backoff import backoff_seconds

log = logging.getLogger(__name__)

#: No message (the heartbeat comes every second) for this long: the child is hung, and killed.
HANG_SECONDS = 10.0
#: Model loading may take a while on a small board before ``ready``; heartbeats still flow.
INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
#: A child that stayed ready this long resets the backoff.
STABLE_SECONDS = 30.0
#: On a stop, the child gets this long after SIGTERM before SIGKILL.
TERM_GRACE_SECONDS = 2.0
#: A `sim face` waits this long for a (re)starting vision process to be ready.
SHOW_WAIT_SECONDS = 30.0
#: A burst of S seconds is awaited S + this long (JPEG encoding, a slow first frame).
BURST_GRACE_SECONDS = 5.0


class VisionEndedError(Exception):
    """Why one vision process ended (exit status, signal, hang, bad message)."""


class VisionLink:
    """Supervises the vision process of one camera; ``status()`` for health and `menjin status`."""

    def __init__(self, *, config_path: Path, passage: Passage, emit: Emit,
                 capture: Any, template_key: Callable[[], bytes]) -> None:
        self._config_path = config_path
        self._template_key = template_key  # KeyProviderError: face entry waits (station key)
        self._passage = passage
        self._emit = emit
        self._capture = capture  # capture(event, jpeg | None): a capture event with a portrait
        self.state = "absent"  # absent | starting | ok | fault
        self.camera = "absent"
        self.door: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.faults = 0
        self.last_error: str | None = None
        self.health: dict[str, int] = {}
        #: why the door refuses every face although vision runs (a missing NIR calibration)
        self.faces_refused: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._faulted = False
        self._burst: asyncio.Future[list[bytes]] | None = None

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Vision state, restarts and pipeline counters (frames, processed, dropped, errors)."""
        return {"state": self.state, "camera": self.camera, "door": self.door, "pid": self.pid,
                "restarts": self.restarts, "faults": self.faults,
                "last_error": self.last_error, "faces_refused": self.faces_refused,
                **self.health}

    # ------------------------------------------------------------------ the part
    async def run(self, cam: CameraSection) -> None:
        """The vision part: run the child, restart it after any end, forever (non-critical)."""
        self.door = cam.door
        attempt = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._run_child(cam)
                    reason = "exited"
                except VisionEndedError as exc:
                    reason = str(exc)
                except OSError as exc:  # cannot even start a process (no memory, no fds)
                    reason = f"cannot start: {exc}"
                attempt = 1 if time.monotonic() - started > STABLE_SECONDS else attempt + 1
                delay = backoff_seconds(attempt, initial=INITIAL_BACKOFF_SECONDS,
                                        cap=MAX_BACKOFF_SECONDS)
                self._fault(cam.door, reason, delay)
                await asyncio.sleep(delay)
                self.restarts += 1
        finally:
            self.state, self.camera, self.pid = "absent", "absent", None

    def _fault(self, door: str, reason: str, delay: float) -> None:
        # "fault", not "absent": the camera is configured, its vision process is down (`menjin
        # status` said "camera: absent" while vision crash-looped); health.json's enum has both
        self.state, self.camera, self.last_error = "fault", "fault", reason
        self.faces_refused = None
        self.faults += 1
        self._ready.clear()
        if not self._faulted:
            self._faulted = True
            log.warning("vision: faulted (%s); cards keep working; restarting in %.1f s",
                        reason, delay)
            self._emit(Event("vision.fault", door=door, reason="unavailable",
                             data={"detail": reason, "restart_in_s": round(delay, 3)}))
        else:
            log.debug("vision: failed again (%s); restarting in %.1f s", reason, delay)

    async def _run_child(self, cam: CameraSection) -> None:
        try:
            key = self._template_key()
        except KeyProviderError as exc:
            raise VisionEndedError(f"face key not available: {exc}") from None
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemon.vision_process", "-c", str(self._config_path),
                "--fd", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.PIPE,
            )
        finally:
            theirs.close()
        assert proc.stdin is not None
        proc.stdin.write(key.hex().encode() + b"\n")  # through a pipe: never argv or environ
        proc.stdin.close()
        self.pid, self.state = proc.pid, "starting"
        self.faces_refused = None  # the new process tells its own
        reader: asyncio.StreamReader | None = None
        try:
            reader, self._writer = await asyncio.open_unix_connection(
                sock=ours, limit=MAX_MESSAGE_BYTES)
            await self._listen(reader, cam.door)
            try:
                async with asyncio.timeout(TERM_GRACE_SECONDS):
                    code = await proc.wait()
            except TimeoutError:
                raise VisionEndedError("closed its socket but did not exit") from None
            raise VisionEndedError(_exit_text(code) + (f": {self.last_error}"
                                                       if self.last_error else ""))
        finally:
            self._ready.clear()
            if proc.returncode is None:
                # A stop or reload: the child ends its open tracks (their captures) and exits.
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                if reader is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(TERM_GRACE_SECONDS):
                            await self._listen(reader, cam.door)
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            ours.close()
            await _end(proc)
            self.pid = None

    async def _listen(self, reader: asyncio.StreamReader, door: str) -> None:
        """Read messages until the child closes the socket; VisionEndedError: hang, garbage."""
        while True:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a line that
                # arrived together with a cancellation and drops the cancellation, so a stop or
                # reload would keep this loop (and the child) running forever.
                async with asyncio.timeout(HANG_SECONDS):
                    line = await reader.readline()
            except TimeoutError:
                raise VisionEndedError(f"hung: no heartbeat for {HANG_SECONDS:g} s") from None
            except ValueError as exc:  # asyncio's LimitOverrunError: a line over the bound
                raise VisionEndedError(f"message over {MAX_MESSAGE_BYTES} bytes") from exc
            if not line:
                return
            try:
                self._handle(decode(line), door)
            except (WireError, binascii.Error) as exc:
                raise VisionEndedError(f"bad message: {exc}") from exc

    def _handle(self, message: dict[str, Any], door: str) -> None:
        kind = message["type"]
        if kind == "health":
            self.health = {k: count(message, k)
                           for k in ("frames", "processed", "dropped", "errors")}
            error = text(message, "last_error")
            if error is not None:
                self.last_error = error
            self.faces_refused = text_or_none(message, "faces_refused")
        elif kind == "ready":
            self.state, self.camera, self.last_error = "ok", "ok", None
            self._ready.set()
            if self._faulted:
                self._faulted = False
                log.info("vision: back")
                self._emit(Event("vision.restored", door=door,
                                 data={"restarts": self.restarts}))
        elif kind == "observation":
            what = text(message, "kind")
            person, reason = text(message, "person"), text(message, "reason")
            if what == "recognised":
                self._passage.face(door, FACE_RECOGNISED, person, None)
            elif what == "refused":
                self._passage.face(door, FACE_REFUSED, person, reason)
            else:
                raise WireError(f"unknown observation kind {what!r}")
        elif kind == "capture":
            portrait = text_or_none(message, "portrait")
            jpeg = base64.b64decode(portrait, validate=True) if portrait is not None else None
            self._capture(Event("capture", door=door, person=text(message, "person"),
                                data={"recognised": bool(message.get("recognised")),
                                      "frames": count(message, "frames"),
                                      "portrait": jpeg is not None}), jpeg)
        elif kind == "camera":
            if text(message, "state") == "fault":
                self.camera = "fault"
                self._emit(Event("camera.fault", door=door, reason="unavailable",
                                 data={"detail": text(message, "detail")}))
            else:
                self.camera = "ok"
                self._emit(Event("camera.restored", door=door))
        elif kind == "burst":
            self._burst_done(message)
        elif kind == "fatal":
            self.last_error = text(message, "error")
        elif kind != "hello":
            raise WireError(f"unknown message type {kind!r}")

    # ------------------------------------------------------------------ simulate mode
    async def show(self, door: str, photo: bytes, seconds: float, *, frames: int = 0,
                   max_seconds: float | None = None) -> None:
        """Put a photo in front of the synthetic camera of the vision process (simulate mode):
        for ``seconds``, and then until the pipeline processed ``frames`` frames since it was
        shown, but at most ``max_seconds``.

        Raises LookupError when this door has no vision process or it does not become ready.
        """
        if self.door != door:
            raise LookupError(f"door {door} has no camera with vision")
        try:
            await asyncio.wait_for(self._ready.wait(), SHOW_WAIT_SECONDS)
        except TimeoutError:
            raise LookupError(f"the vision process of {door} is not ready "
                              f"({self.state}: {self.last_error})") from None
        assert self._writer is not None
        self._writer.write(encode({"type": "show", "seconds": seconds, "frames": frames,
                                   "max_seconds": max_seconds or seconds,
                                   "photo": base64.b64encode(photo).decode()}))
        await self._writer.drain()

    async def plug(self, door: str, present: bool) -> None:
        """Unplug (or plug back) the synthetic camera of the vision process (simulate mode).

        Raises LookupError when this door has no running vision process.
        """
        if self.door != door or self._writer is None:
            raise LookupError(f"door {door} has no running vision process")
        self._writer.write(encode({"type": "plug", "present": present}))
        await self._writer.drain()


    # ------------------------------------------------------------------ enrolment at the door
    async def burst(self, door: str, frames: int, seconds: float) -> list[bytes]:
        """``frames`` JPEG frames of the door's camera, spread over ``seconds`` (enrolment).

        Raises LookupError when this door has no ready vision process, the burst does not come
        (the camera delivers no frames) or the vision process refused it."""
        if self.door != door:
            raise LookupError(f"door {door} has no camera with vision")
        if self._burst is not None and not self._burst.done():
            raise LookupError(f"an enrolment burst is already running at {door}")
        try:
            await asyncio.wait_for(self._ready.wait(), SHOW_WAIT_SECONDS)
        except TimeoutError:
            raise LookupError(f"the vision process of {door} is not ready "
                              f"({self.state}: {self.last_error})") from None
        assert self._writer is not None
        future = self._burst = asyncio.get_running_loop().create_future()
        try:
            self._writer.write(encode({"type": "burst", "frames": frames, "seconds": seconds}))
            await self._writer.drain()
            return await asyncio.wait_for(future, seconds + BURST_GRACE_SECONDS)
        except TimeoutError:
            raise LookupError(f"the camera of {door} delivered no burst within "
                              f"{seconds + BURST_GRACE_SECONDS:g} s ({self.camera})") from None
        finally:
            self._burst = None

    def _burst_done(self, message: dict[str, Any]) -> None:
        error = text(message, "error")
        frames = message.get("frames", [])
        if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
            raise WireError("frames: a list of base64 strings expected")
        jpegs = [base64.b64decode(f, validate=True) for f in frames]
        future = self._burst
        if future is None or future.done():
            return  # nobody waits any more (timed out): the frames are dropped
        if error is not None:
            future.set_exception(LookupError(f"the vision process refused the burst: {error}"))
        else:
            future.set_result(jpegs)


def text_or_none(message: dict[str, Any], key: str) -> str | None:
    """A possibly long string field (a base64 portrait), bounded by the line limit only."""
    value = message.get(key)
    if value is not None and not isinstance(value, str):
        raise WireError(f"{key}: a string expected")
    return value


def _exit_text(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


async def _end(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, a short grace, then SIGKILL; returns (or passes a cancellation on) only once
    the child is gone (no zombie)."""
    try:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TERM_GRACE_SECONDS):
                    await asyncio.shield(proc.wait())
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        exited = asyncio.ensure_future(proc.wait())
        try:
            await asyncio.shield(exited)
        except asyncio.CancelledError:
            await asyncio.wait([exited])  # killed: gone in a moment; the stop goes on after it
            raise
