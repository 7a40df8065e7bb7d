"""The gate's side of the control socket: what `menjin status|events|door|readers|sim` ask for.

Commands read the running gate (anything shaped like :class:`GateView`; the composition root
:class:`daemon.app.Gate` in the daemon) and act only through its real seams: a door
test goes through the door controller (and the audit hook), simulated inputs through the
simulated board (MockFactory pins, reader ptys, the synthetic camera), never around the drivers.
Followers of ``events`` and ``readers.watch`` get bounded queues: a slow terminal loses its oldest
lines and never holds up a door.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from daemon import __version__
from daemon.audit import uid_actor
from daemon.config import GateConfig
from daemon.control import ControlError, ControlServer, Request
from daemon.door_modes import ModeError
from daemon.doors import Doors
from daemon.journal import Journal
from daemon.parts import RunningPart
from daemon.passage import Passage
from daemon.readers import Readers
from daemon.simulate import SimInputError, SimulatedBoard
from daemon.upkeep import AuditTrail
from daemon.uplink import Uplink
from daemon.vision_link import VisionLink
from daemon.vision_wire import MAX_BURST_FRAMES, MAX_BURST_SECONDS
from drivers.card import mask

log = logging.getLogger(__name__)

FOLLOW_QUEUE_ITEMS = 1000
MAX_AUDIT_FIELD = 200
#: JPEG and PNG signatures: a sim photo is checked here, decoded in the vision process.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
#: Longest a simulated face stays in front of the camera.
SIM_FACE_MAX_SECONDS = 120.0


def peer_actor(req: Request) -> str:
    """The audit actor of a control request: the caller's uid from SO_PEERCRED, never a name
    the client sent."""
    return uid_actor(req.peer.uid)


def _offer(queue: asyncio.Queue[dict[str, Any]], item: dict[str, Any]) -> None:
    """Queue for a CLI follower; a slow one loses its oldest lines, never stalls the gate."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


class GateView(Protocol):
    """What the control commands read and use of the running gate."""

    config: GateConfig
    started: float
    board: SimulatedBoard | None
    journal: Journal | None
    uplink: Uplink | None
    last_seq: int
    recent: deque[dict[str, Any]]

    @property
    def doors(self) -> Doors: ...
    @property
    def readers(self) -> Readers: ...
    @property
    def passage(self) -> Passage: ...
    @property
    def vision(self) -> VisionLink: ...
    @property
    def parts(self) -> Mapping[str, RunningPart]: ...
    @property
    def audit_trail(self) -> AuditTrail: ...

    async def forget(self, person: str, *, actor: str) -> dict[str, Any]: ...

    def scrubbed(self, record: dict[str, Any], person: str, alias: str) -> dict[str, Any]: ...
    async def faces_changed(self) -> None: ...


class GateControl:
    """Control commands of one running gate."""

    def __init__(self, gate: GateView) -> None:
        self.gate = gate
        self._followers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._raw_watchers: set[asyncio.Queue[dict[str, Any]]] = set()

    def event(self, record: dict[str, Any]) -> None:
        """A recorded event, for every `menjin events --follow`."""
        for queue in list(self._followers):
            _offer(queue, record)

    def raw(self, item: dict[str, Any]) -> None:
        """What a reader sent, for every `menjin readers watch`."""
        for queue in list(self._raw_watchers):
            _offer(queue, item)

    def scrub(self, person: str, alias: str) -> None:
        """Erasure: followers' unread events name ``alias`` instead of ``person``."""
        for queue in list(self._followers):
            items = []
            while not queue.empty():
                items.append(queue.get_nowait())
            for item in items:
                queue.put_nowait(self.gate.scrubbed(item, person, alias))

    def server(self) -> ControlServer:
        """The control socket of the gate's config, with every command registered."""
        config = self.gate.config
        server = ControlServer(config.control.socket, group=config.control.group)
        server.command("status", self._cmd_status)
        server.stream("events", self._cmd_events)
        server.stream("readers.watch", self._cmd_readers_watch)
        server.command("door.test", self._cmd_door_test)
        server.command("forget", self._cmd_forget)
        server.command("audit.record", self._cmd_audit_record)
        server.command("faces.changed", self._cmd_faces_changed)
        server.command("door.mode", self._cmd_door_mode)
        server.command("faces.burst", self._cmd_faces_burst)
        if self.gate.board is not None:  # simulated inputs exist only on a simulated board
            server.command("sim.swipe", self._sim_swipe)
            server.command("sim.press", self._sim_press)
            server.command("sim.door", self._sim_door)
            server.command("sim.tamper", self._sim_tamper)
            server.command("sim.face", self._sim_face)
            server.command("sim.camera", self._sim_camera)
        return server

    async def _cmd_faces_changed(self, req: Request) -> dict[str, Any]:
        """`menjin enrol` changed the template store: the vision part reloads it now."""
        await self.gate.faces_changed()
        return {"reloaded": self.gate.config.vision is not None}

    async def _cmd_status(self, req: Request) -> dict[str, Any]:
        return self.status()

    def status(self) -> dict[str, Any]:
        c = self.gate.config
        out: dict[str, Any] = {
            "v": 1, "gate": c.gate.id, "site": c.gate.site, "version": __version__,
            "timezone": c.gate.timezone,
            "simulate": c.hardware.simulate, "uptime_s": int(time.monotonic() - self.gate.started),
            "portraits": c.privacy.portraits,
            "doors": {door_id: {"name": c.doors[door_id].name,
                                **self.gate.doors.status(door_id)}
                      for door_id in self.gate.doors},
            "readers": self._readers_status(),
            "camera": self.gate.vision.camera,
            "vision": self.gate.vision.status(),
            "uplink": self._uplink_status(),
            "journal": {"backlog": self.gate.journal.queue_depth() if self.gate.journal else None,
                        "last_seq": self.gate.last_seq},
            "parts": {name: p.state.as_dict() for name, p in self.gate.parts.items()},
        }
        if c.privacy.portraits == "upload":
            out["legal_basis"] = c.privacy.legal_basis
        return out

    def _readers_status(self) -> dict[str, Any]:
        """Each reader's state; one cooling down after card scanning shows as ``lockout``."""
        locked = self.gate.passage.lockout_status(time.monotonic())
        out: dict[str, Any] = {}
        for rid, v in self.gate.readers.views.items():
            out[rid] = {"type": v.type, "door": v.door, "status": v.status, "port": v.port,
                        "fault": v.fault, "stats": dict(v.stats), "lockout": locked.get(rid)}
            if rid in locked and v.status == "ok":
                out[rid]["status"] = "lockout"
        return out

    def _uplink_status(self) -> dict[str, Any]:
        up = self.gate.config.uplink
        if up is None or not up.enabled:
            return {"state": "disabled"}
        state = self.gate.uplink.state if self.gate.uplink is not None else None
        return {
            "state": "connected" if state is not None and state.connected else "disconnected",
            "broker": f"{up.host}:{up.port}",
            "published": state.published if state else 0,
            "last_error": state.last_error if state else None,
        }

    async def _cmd_events(self, req: Request) -> AsyncIterator[dict[str, Any]]:
        count = int(req.args.get("count", 20))
        follow = bool(req.args.get("follow", False))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FOLLOW_QUEUE_ITEMS)
        if follow:
            self._followers.add(queue)
        try:
            for record in list(self.gate.recent)[-count:] if count > 0 else []:
                yield record
            while follow:
                yield await queue.get()
        finally:
            self._followers.discard(queue)

    async def _cmd_readers_watch(self, req: Request) -> AsyncIterator[dict[str, Any]]:
        only = req.args.get("reader")
        readers = self.gate.config.readers
        if only is not None and only not in readers:
            raise ControlError(f"no reader {only!r} (readers: {', '.join(readers)})")
        show_cards = req.args.get("show_cards") is True
        if show_cards:  # whole card numbers on a terminal: an administrative act
            await self.gate.audit_trail.record("readers.show_cards", actor=peer_actor(req),
                                               target=only or "all readers", details={})
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FOLLOW_QUEUE_ITEMS)
        self._raw_watchers.add(queue)
        try:
            while True:
                item = dict(await queue.get())
                clear = item.pop("clear", None)
                if show_cards and clear is not None:
                    item["text"] = clear
                if only is None or item["reader"] == only:
                    yield item
        finally:
            self._raw_watchers.discard(queue)

    async def _cmd_door_test(self, req: Request) -> dict[str, Any]:
        """Pulse a relay to check the wiring; an administrative action, so it is audited."""
        door_id = self._door_arg(req)
        seconds = float(req.args.get("seconds", 1.0))
        controller = self.gate.doors.get(door_id)
        if controller is None:
            raise ControlError(f"door {door_id} is not running (see `menjin status`)")
        refusal = controller.unlock("test", seconds)
        if refusal is not None:
            raise ControlError(f"door {door_id}: test pulse refused ({refusal})")
        await self.gate.audit_trail.record("door.test", actor=peer_actor(req),
                                           target=door_id, details={"seconds": seconds})
        return {"door": door_id, "seconds": seconds, "note": "the relay clicks twice"}

    async def _cmd_door_mode(self, req: Request) -> dict[str, Any]:
        """A local admin sets a door's mode (durable; ``schedule`` cancels it); audited."""
        door_id = self._door_arg(req)
        mode = str(req.args.get("mode"))
        until = req.args.get("until_ms")
        if until is not None and (not isinstance(until, int) or isinstance(until, bool)):
            raise ControlError("until_ms: UTC milliseconds or absent")
        if door_id not in self.gate.doors:
            raise ControlError(f"door {door_id} is not running (see `menjin status`)")
        actor = f"uid:{req.peer.uid}"
        try:
            effective = await self.gate.doors.change_mode(door_id, mode, source="admin",
                                                          actor=actor, until_ms=until)
        except ModeError as exc:
            raise ControlError(f"door {door_id}: {exc}") from None
        await self.gate.audit_trail.record("door.mode", actor=actor, target=door_id,
                                           details={"mode": mode, "until_ms": until})
        return {"door": door_id, **effective.as_dict()}

    async def _cmd_forget(self, req: Request) -> dict[str, Any]:
        """Erasure request from `menjin residents forget` (the socket is admin-only)."""
        person = req.args.get("person")
        if not isinstance(person, str) or not person:
            raise ControlError("forget: a person id is required")
        return await self.gate.forget(person, actor=peer_actor(req))

    async def _cmd_audit_record(self, req: Request) -> dict[str, Any]:
        """An audit entry of a CLI command; the actor is who the kernel says is calling."""
        action, target, details = (req.args.get(k) for k in ("action", "target", "details"))
        if not isinstance(action, str) or not action or len(action) > MAX_AUDIT_FIELD:
            raise ControlError("audit.record: action must be a short string")
        if target is not None and (not isinstance(target, str) or len(target) > MAX_AUDIT_FIELD):
            raise ControlError("audit.record: target must be a short string or null")
        if not isinstance(details, dict):
            raise ControlError("audit.record: details must be an object")
        await self.gate.audit_trail.record(action, actor=peer_actor(req), target=target,
                                           details=details)
        return {"recorded": action}

    async def _cmd_faces_burst(self, req: Request) -> dict[str, Any]:
        """Frames of a door's camera for `menjin enrol --at-door` (base64 JPEG); the CLI
        chooses the templates and stores them."""
        door_id = self._door_arg(req)
        frames, seconds = req.args.get("frames"), req.args.get("seconds")
        if (not isinstance(frames, int) or isinstance(frames, bool)
                or not 1 <= frames <= MAX_BURST_FRAMES):
            raise ControlError(f"frames: 1 to {MAX_BURST_FRAMES} expected")
        if (not isinstance(seconds, int | float) or isinstance(seconds, bool)
                or not 0 < seconds <= MAX_BURST_SECONDS):
            raise ControlError(f"seconds: more than 0 and at most {MAX_BURST_SECONDS:g}")
        try:
            jpegs = await self.gate.vision.burst(door_id, frames, float(seconds))
        except LookupError as exc:
            raise ControlError(f"door {door_id}: {exc}") from exc
        log.info("door %s: enrolment burst of %d frame(s) for pid %d", door_id, len(jpegs),
                 req.peer.pid)
        return {"frames": [base64.b64encode(j).decode() for j in jpegs]}

    def _door_arg(self, req: Request) -> str:
        door = str(req.args.get("door"))
        if door not in self.gate.config.doors:
            raise ControlError(f"no door {door!r} (doors: {', '.join(self.gate.config.doors)})")
        return door

    # ------------------------------------------------------------------ simulated inputs
    async def _sim_swipe(self, req: Request) -> dict[str, Any]:
        assert self.gate.board is not None
        reader_id = str(req.args.get("reader"))
        section = self.gate.config.readers.get(reader_id)
        if section is None:
            raise ControlError(f"no reader {reader_id!r} (readers: "
                               f"{', '.join(self.gate.config.readers) or 'none'})")
        try:
            message = await self.gate.board.swipe(reader_id, section, str(req.args.get("card", "")))
        except SimInputError as exc:
            raise ControlError(str(exc)) from exc
        log.info("sim: card %s presented at %s", mask(str(req.args.get("card"))), reader_id)
        return {"message": message}

    def _door_input(self, req: Request, name: str) -> Any:
        door_id = self._door_arg(req)
        section = getattr(self.gate.config.doors[door_id], name)
        if section is None:
            raise ControlError(f"door {door_id} has no {name.replace('_', ' ')} in the config")
        return door_id, section

    async def _sim_press(self, req: Request) -> dict[str, Any]:
        assert self.gate.board is not None
        door_id, section = self._door_input(req, "exit_button")
        await self.gate.board.press(section)
        return {"message": f"exit button of {door_id} pressed and released"}

    async def _sim_door(self, req: Request) -> dict[str, Any]:
        assert self.gate.board is not None
        door_id, section = self._door_input(req, "contact")
        position = req.args.get("position")
        if position not in ("open", "close"):
            raise ControlError("position must be 'open' or 'close'")
        self.gate.board.set_input(section, position == "open")
        return {"message": f"door {door_id} {'opened' if position == 'open' else 'closed'}"}

    async def _sim_face(self, req: Request) -> dict[str, Any]:
        """Put a photo in front of a door's synthetic camera (in the vision process)."""
        door_id = self._door_arg(req)
        try:
            data = base64.b64decode(str(req.args.get("photo", "")), validate=True)
        except binascii.Error as exc:
            raise ControlError(f"photo: not base64 ({exc})") from exc
        if not data.startswith(IMAGE_MAGIC):
            raise ControlError("photo: not a readable image (JPEG or PNG)")
        try:
            seconds = float(req.args.get("seconds", 2.0))
            frames = int(req.args.get("frames", 0))
            max_seconds = float(req.args.get("max_seconds", seconds))
        except (TypeError, ValueError) as exc:
            raise ControlError(f"seconds, frames, max_seconds: numbers ({exc})") from exc
        if not (0 < seconds <= max_seconds <= SIM_FACE_MAX_SECONDS) or not 0 <= frames <= 1000:
            raise ControlError(f"need 0 < seconds <= max_seconds <= {SIM_FACE_MAX_SECONDS:g} "
                               "and 0 <= frames <= 1000")
        try:
            await self.gate.vision.show(door_id, data, seconds, frames=frames,
                                        max_seconds=max_seconds)
        except LookupError as exc:
            raise ControlError(f"door {door_id}: {exc} (camera and vision in the config, face "
                               "models present?)") from exc
        until = (f", then until {frames} frame(s) were processed (at most {max_seconds:g} s)"
                 if frames else "")
        return {"message": f"{req.args.get('name', 'photo')} shown to the camera of {door_id} "
                           f"for {seconds:g} s{until}"}

    async def _sim_camera(self, req: Request) -> dict[str, Any]:
        """Unplug (``present: false``) or plug back a door's simulated camera."""
        door_id = self._door_arg(req)
        present = req.args.get("present") is True
        try:
            await self.gate.vision.plug(door_id, present)
        except LookupError as exc:
            raise ControlError(str(exc)) from None
        return {"message": f"door {door_id}: camera {'plugged in' if present else 'unplugged'}"}

    async def _sim_tamper(self, req: Request) -> dict[str, Any]:
        assert self.gate.board is not None
        door_id, section = self._door_input(req, "tamper")
        clear = bool(req.args.get("clear", False))
        self.gate.board.set_input(section, not clear)
        return {"message": f"tamper switch of {door_id} {'closed' if clear else 'opened'}"}
