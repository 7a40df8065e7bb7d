"""`menjin run`: the one place where the configuration becomes a running gate.

Every part (a door, a reader, the camera and vision pipeline, the uplink, the control socket) runs
as a named task (``door:front``, ``reader:front-card`` ...) of one root ``asyncio.TaskGroup``
under :func:`daemon.supervise.supervise`, so a failing part degrades alone and is restarted, and
one that keeps failing stops the process for systemd to restart.  This module maps config
sections to driver constructors (drivers never see a config model), picks the simulated seams in
simulate mode (:mod:`daemon.simulate`), and owns the life cycle:

- start: config → journal → doors (relays idle first) → ``READY=1`` → readers, camera, uplink;
- SIGHUP: validate the new file; apply it part by part (only changed parts restart), or keep the
  running config and say why (``config.reloaded`` / ``config.rejected``);
- SIGTERM/SIGINT: relays idle first, then the task group is cancelled (the uplink publishes
  ``offline`` on its way out), then the journal is flushed and closed; done within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero import Factory

from daemon import __version__, logsetup
from daemon.commands import CommandProcessor
from daemon.config import GateConfig, ReaderSection
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.control import ControlError, ControlServer, Request
from daemon.events import Event, EventBus
from daemon.journal import Journal, JournalError
from daemon.notify import WATCHDOG_FRACTION, Notifier, watchdog_loop, watchdog_seconds
from daemon.simulate import SimInputError, SimulatedBoard
from daemon.supervise import Factory as PartFactory
from daemon.supervise import PartGaveUpError, PartState, supervise
from daemon.uplink import Uplink
from drivers.card import CardRead, mask

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_GAVE_UP = 70  # sysexits.h EX_SOFTWARE: a part kept failing; systemd restarts the unit
#: The whole stop (relays, offline status, journal) must fit in the issue's 5 s.
SHUTDOWN_DEADLINE_SECONDS = 4.5
READY_TIMEOUT_SECONDS = 30.0
RECENT_EVENTS = 500
FOLLOW_QUEUE_EVENTS = 1000
BYTES_PER_MB = 1024 * 1024
SERIAL_READERS = frozenset({"em4100", "ascii", "osdp"})
#: Config sections that cannot change under a running daemon (files, identity, hardware).
RESTART_ONLY_SECTIONS = ("version", "state_dir", "gate", "hardware", "journal", "access", "control")
#: Parts that live as long as the process, whatever a reload changes.
FIXED_PARTS = frozenset({"control"})
GPIO_BACKEND_HINTS = {
    "lgpio": "gpio_backend lgpio needs the lgpio module: apt install python3-lgpio "
             "(or pip install 'menjin[pi]')",
    "rpigpio": "gpio_backend rpigpio needs RPi.GPIO: apt install python3-rpi.gpio",
}


def pin_factory_for(backend: str, board: SimulatedBoard | None) -> Factory:
    """The gpiozero pin factory the config names (MockFactory pins in simulate mode)."""
    if board is not None:
        return board.pin_factory
    try:
        if backend == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    except ImportError as exc:
        raise RuntimeError(GPIO_BACKEND_HINTS[backend]) from exc


@dataclass
class RunningPart:
    name: str
    key: object  # the config slice the part was built from; a reload compares it
    task: asyncio.Task[None]
    state: PartState


@dataclass
class ReaderView:
    """What the status and `readers watch` know of one reader."""

    type: str
    door: str
    status: str = "starting"
    port: str | None = None
    fault: str | None = None
    stats: Mapping[str, int] = field(default_factory=dict)


class Gate:
    """A running gate: its parts, its event flow, its control commands."""

    def __init__(self, config_path: Path, config: GateConfig, notifier: Notifier) -> None:
        self.config_path = config_path
        self.config = config
        self.notifier = notifier
        self.bus = EventBus()
        self.started = time.monotonic()
        self.board = SimulatedBoard() if config.hardware.simulate else None
        self.pins = pin_factory_for(config.hardware.gpio_backend, self.board)
        self.journal: Journal | None = None
        self.uplink: Uplink | None = None
        self.parts: dict[str, RunningPart] = {}
        self.readers: dict[str, ReaderView] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._followers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._raw_watchers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._stopping = False
        self._reload_lock = asyncio.Lock()

    # ------------------------------------------------------------------ events
    def emit(self, event: Event, *, portrait: bytes | None = None) -> None:
        """Record an event in the journal first, then tell everyone else (event loop only)."""
        if self.journal is not None:
            record = self.journal.record(event, portrait=portrait)
        else:  # before the journal opens or after it closed: still visible, not uplinked
            log.warning("event %s not journalled (journal closed)", event.type)
            record = event.to_dict()
        self.bus.emit(event)
        self.recent.append(record)
        for queue in list(self._followers):
            _offer(queue, record)

    def audit(self, action: str, *, actor: str, target: str | None = None,
              details: Mapping[str, Any] | None = None) -> None:
        """Hook point for the security audit log (door test, config reload, remote open)."""
        log.info("audit: %s by %s on %s %s", action, actor, target, dict(details or {}))

    # ------------------------------------------------------------------ parts
    def _start_part(self, name: str, key: object, factory: PartFactory) -> None:
        assert self._group is not None
        state = PartState(name)
        task = self._group.create_task(
            supervise(name, factory, emit=self.emit, state=state), name=name
        )
        self.parts[name] = RunningPart(name, key, task, state)

    async def _stop_part(self, name: str) -> None:
        part = self.parts.pop(name)
        part.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await part.task

    def desired_parts(self, config: GateConfig) -> dict[str, tuple[object, PartFactory]]:
        """Every part the config asks for: name → (the config it depends on, how to run it)."""
        parts: dict[str, tuple[object, PartFactory]] = {}
        for door_id, door in config.doors.items():
            parts[f"door:{door_id}"] = (door, functools.partial(self._run_door, door_id, door))
        for reader_id, reader in config.readers.items():
            parts[f"reader:{reader_id}"] = (
                reader, functools.partial(self._run_reader, reader_id, reader))
        if config.uplink is not None and config.uplink.enabled:
            key = (config.uplink, config.privacy.portraits, config.privacy.legal_basis)
            parts["uplink"] = (key, functools.partial(self._run_uplink, config))
        return parts

    async def apply(self, config: GateConfig) -> list[str]:
        """Start, stop and restart parts so that they match ``config``; returns changed names."""
        desired = self.desired_parts(config)
        stale = [name for name, part in self.parts.items() if name not in FIXED_PARTS
                 and (name not in desired or desired[name][0] != part.key)]
        for name in stale:
            await self._stop_part(name)
        started = []
        for name, (key, factory) in desired.items():
            if name not in self.parts:
                self._start_part(name, key, factory)
                started.append(name)
        return sorted(set(stale) | set(started))

    # ------------------------------------------------------------------ doors
    async def _run_door(self, door_id: str, section: Any) -> None:
        raise NotImplementedError

    def relays_idle(self) -> None:
        """Every lock relay to its idle state, now (first thing on SIGTERM)."""

    def doors_alive(self) -> bool:
        """True while every door part runs (the watchdog keep-alive condition)."""
        doors = [p for n, p in self.parts.items() if n.startswith("door:")]
        return bool(doors) and all(p.state.running for p in doors)

    # ------------------------------------------------------------------ readers
    async def _run_reader(self, reader_id: str, section: ReaderSection) -> None:
        view = self.readers[reader_id] = ReaderView(section.type, section.door)
        reader = self._build_reader(reader_id, section, view)
        view.stats = reader.stats
        view.status = "ok"
        try:
            await reader.run()
        finally:
            view.status = "stopped"

    def _build_reader(self, reader_id: str, s: ReaderSection, view: ReaderView) -> Any:
        """Config → reader driver (simulated: serial readers read a pty, Wiegand mock pins)."""
        callbacks: dict[str, Any] = {
            "on_card": functools.partial(self._on_card, reader_id),
            "on_fault": functools.partial(self._reader_fault, reader_id),
            "on_restored": functools.partial(self._reader_restored, reader_id),
            "on_raw": functools.partial(self._reader_raw, reader_id),
            "name": reader_id,
            "repeat_window_ms": s.repeat_window_ms,
        }
        port = s.port
        if s.type in SERIAL_READERS and self.board is not None and s.type != "osdp":
            port = self.board.serial_port(reader_id)
        view.port = port
        if s.type == "em4100":
            from drivers.em4100 import Em4100Reader

            assert port is not None
            return Em4100Reader(port, baud=s.baud, **callbacks)
        if s.type == "ascii":
            from drivers.ascii_reader import AsciiReader

            assert port is not None
            return AsciiReader(port, baud=s.baud, number_base=s.number_base,
                               byte_order=s.byte_order, strip_prefix=s.strip_prefix,
                               strip_suffix=s.strip_suffix, pattern=s.pattern, **callbacks)
        if s.type == "wiegand":
            from drivers.wiegand import WiegandReader

            return WiegandReader(s.d0_pin, s.d1_pin, formats=s.formats,  # type: ignore[arg-type]
                                 pin_factory=self.pins, **callbacks)
        return self._build_osdp(s, port, callbacks)

    def _build_osdp(self, s: ReaderSection, port: str | None, callbacks: dict[str, Any]) -> Any:
        from drivers.osdp import OsdpReader  # fails with the install hint without the extra

        assert port is not None
        key = bytes.fromhex(s.osdp_key_file.read_text().strip()) if s.osdp_key_file else None
        return OsdpReader(port, address=s.osdp_address, scbk=key, baud=s.baud,
                          formats=s.formats, **callbacks)

    def _on_card(self, reader_id: str, read: CardRead) -> None:
        raise NotImplementedError

    def _reader_fault(self, reader_id: str, reason: str) -> None:
        view = self.readers.get(reader_id)
        if view is not None:
            view.status, view.fault = "fault", reason
        self.emit(Event("reader.fault", door=view.door if view else None, reader=reader_id,
                        reason="unavailable", data={"detail": reason}))
        self._raw(reader_id, "fault", reason)

    def _reader_restored(self, reader_id: str) -> None:
        view = self.readers.get(reader_id)
        if view is not None:
            view.status, view.fault = "ok", None
        self.emit(Event("reader.restored", door=view.door if view else None, reader=reader_id))
        self._raw(reader_id, "restored", "back")

    def _reader_raw(self, reader_id: str, data: bytes | str) -> None:
        if isinstance(data, bytes):
            self._raw(reader_id, "bytes", f"{data!r} ({data.hex(' ')})")
        else:
            self._raw(reader_id, "bits", f"{data} ({len(data)} bits)")

    def _raw(self, reader_id: str, kind: str, text: str) -> None:
        item = {"reader": reader_id, "kind": kind, "text": text}
        for queue in list(self._raw_watchers):
            _offer(queue, item)

    # ------------------------------------------------------------------ uplink
    async def _run_uplink(self, config: GateConfig) -> None:
        assert self.journal is not None and config.uplink is not None
        up = config.uplink
        tls = up.tls
        self.uplink = Uplink(
            self.journal, gate=config.gate.id, host=up.host, port=up.port, prefix=up.prefix,
            ca_file=tls.ca_file if tls else None, cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None, username=up.username,
            password_file=up.password_file, client_id=up.client_id,
            commands=self._commands(config), portraits=config.privacy.portraits,
            legal_basis=config.privacy.legal_basis, health_seconds=up.health_seconds,
            health_source=self._health, inflight=up.inflight,
        )
        await self.uplink.run()

    def _commands(self, config: GateConfig) -> CommandProcessor:
        from station.protocol import load_public_key

        assert self.journal is not None and config.uplink is not None
        key_file = config.uplink.station_public_key_file
        if key_file is None:
            log.warning("uplink: no station_public_key_file: every station command is refused")
        return CommandProcessor(
            gate=config.gate.id,
            station_key=load_public_key(key_file) if key_file is not None else None,
            remember_nonce=self.journal.remember_nonce, emit=self.emit,
            handlers=self._command_handlers(),
        )

    def _command_handlers(self) -> dict[str, Any]:
        return {"config": self._command_config}

    async def _command_config(self, args: dict[str, Any]) -> dict[str, Any]:
        """The running config for the station, without anything secret."""
        return redacted(self.config)

    def _health(self) -> dict[str, Any]:
        return {"readers": {rid: ("ok" if v.status == "ok" else "fault")
                            for rid, v in self.readers.items()},
                "camera": "absent"}

    # ------------------------------------------------------------------ life cycle
    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or until a part gives up (exit 70)."""
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM", main_task)
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT", main_task)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        code = EXIT_OK
        try:
            journal = self._open_journal()
        except JournalError as exc:
            log.error("cannot open the journal: %s", exc)
            return EX_CONFIG
        try:
            try:
                await self._serve()
            except* PartGaveUpError as failed:
                log.error("stopping: %s", failed.exceptions[0])
                code = EXIT_GAVE_UP
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            main_task.uncancel()
        finally:
            self._group = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.relays_idle()
            self.journal = None
            journal.close()
            if self.board is not None:
                self.board.close()
        log.info("gate %s stopped", self.config.gate.id)
        return code

    async def _serve(self) -> None:
        """The root task group: every part, then READY=1 and the watchdog."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            control = self.control_server()
            listening = asyncio.Event()
            self._start_part("control", None, functools.partial(control.serve, listening.set))
            await self.apply(self.config)
            await asyncio.wait_for(listening.wait(), READY_TIMEOUT_SECONDS)
            self.notifier.ready(self.summary())
            log.info("gate %s ready: %s", self.config.gate.id, self.summary())
            interval = watchdog_seconds()
            if interval is not None:
                group.create_task(watchdog_loop(self.notifier, self.doors_alive,
                                                interval * WATCHDOG_FRACTION), name="watchdog")

    def _open_journal(self) -> Journal:
        c = self.config
        self.journal = Journal(
            c.journal.path, gate=c.gate.id, fsync=c.journal.fsync,
            quota_bytes=c.journal.quota_mb * BYTES_PER_MB,
            retention_days=c.journal.retention_days, portraits=c.privacy.portraits,
            portrait_retention_days=c.privacy.retention_days,
        )
        return self.journal

    def request_stop(self, why: str, main_task: asyncio.Task[Any]) -> None:
        """SIGTERM/SIGINT: relays idle at once, then cancel everything (cleanup in finally)."""
        if self._stopping:
            return
        self._stopping = True
        log.info("%s: stopping (relays idle, offline published, journal flushed)", why)
        self.notifier.stopping()
        self.relays_idle()
        _arm_shutdown_deadline()
        main_task.cancel()

    def summary(self) -> str:
        c = self.config
        mode = "simulate" if c.hardware.simulate else c.hardware.gpio_backend
        return (f"{len(c.doors)} door(s), {len(c.readers)} reader(s), "
                f"camera {'yes' if c.camera else 'no'}, {mode} mode")

    # ------------------------------------------------------------------ reload
    def _reload_soon(self) -> None:
        if self._group is not None and not self._stopping:
            self._group.create_task(self.reload(), name="reload")

    async def reload(self) -> bool:
        """SIGHUP: apply a valid new config part by part; keep the old one when it is not."""
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                return await self._reload()
            finally:
                self.notifier.ready(self.summary())

    async def _reload(self) -> bool:
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            log.error("config reload rejected, still running on the previous config:\n%s",
                      "\n".join(problems))
            self.emit(Event("config.rejected", reason="invalid", data={"problems": problems}))
            return False
        fixed = [s for s in RESTART_ONLY_SECTIONS if getattr(new, s) != getattr(self.config, s)]
        if fixed:
            message = f"changing {', '.join(fixed)} needs a restart (systemctl restart menjin)"
            log.error("config reload rejected, still running on the previous config: %s", message)
            self.emit(Event("config.rejected", reason="needs_restart",
                            data={"problems": [message], "sections": fixed}))
            return False
        logsetup.configure(new.logging.level, new.logging.components)
        self.config = new
        changed = await self.apply(new)
        log.info("config reloaded; restarted parts: %s", ", ".join(changed) or "none")
        self.emit(Event("config.reloaded", data={"changed": changed}))
        self.audit("config.reload", actor="signal:SIGHUP", details={"changed": changed})
        return True

    # ------------------------------------------------------------------ control commands
    def control_server(self) -> ControlServer:
        server = ControlServer(self.config.control.socket, group=self.config.control.group)
        server.command("status", self._cmd_status)
        server.stream("events", self._cmd_events)
        server.stream("readers.watch", self._cmd_readers_watch)
        if self.board is not None:
            server.command("sim.swipe", self._sim_swipe)
            server.command("sim.press", self._sim_press)
            server.command("sim.door", self._sim_door)
            server.command("sim.tamper", self._sim_tamper)
        return server

    async def _cmd_status(self, req: Request) -> dict[str, Any]:
        return self.status()

    def status(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {
            "v": 1, "gate": c.gate.id, "site": c.gate.site, "version": __version__,
            "simulate": c.hardware.simulate, "uptime_s": int(time.monotonic() - self.started),
            "portraits": c.privacy.portraits,
            "doors": {},
            "readers": {rid: {"type": v.type, "door": v.door, "status": v.status,
                              "port": v.port, "fault": v.fault, "stats": dict(v.stats)}
                        for rid, v in self.readers.items()},
            "camera": "absent",
            "uplink": self._uplink_status(),
            "journal": {"backlog": self.journal.queue_depth() if self.journal else None},
            "parts": {name: p.state.as_dict() for name, p in self.parts.items()},
        }
        if c.privacy.portraits == "upload":
            out["legal_basis"] = c.privacy.legal_basis
        return out

    def _uplink_status(self) -> dict[str, Any]:
        up = self.config.uplink
        if up is None or not up.enabled:
            return {"state": "disabled"}
        state = self.uplink.state if self.uplink is not None else None
        return {
            "state": "connected" if state is not None and state.connected else "disconnected",
            "broker": f"{up.host}:{up.port}",
            "published": state.published if state else 0,
            "last_error": state.last_error if state else None,
        }

    async def _cmd_events(self, req: Request) -> AsyncIterator[dict[str, Any]]:
        count = int(req.args.get("count", 20))
        follow = bool(req.args.get("follow", False))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FOLLOW_QUEUE_EVENTS)
        if follow:
            self._followers.add(queue)
        try:
            for record in list(self.recent)[-count:] if count > 0 else []:
                yield record
            while follow:
                yield await queue.get()
        finally:
            self._followers.discard(queue)

    async def _cmd_readers_watch(self, req: Request) -> AsyncIterator[dict[str, Any]]:
        only = req.args.get("reader")
        if only is not None and only not in self.config.readers:
            raise ControlError(f"no reader {only!r} (readers: {', '.join(self.config.readers)})")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FOLLOW_QUEUE_EVENTS)
        self._raw_watchers.add(queue)
        try:
            while True:
                item = await queue.get()
                if only is None or item["reader"] == only:
                    yield item
        finally:
            self._raw_watchers.discard(queue)

    def _door_arg(self, req: Request) -> str:
        door = str(req.args.get("door"))
        if door not in self.config.doors:
            raise ControlError(f"no door {door!r} (doors: {', '.join(self.config.doors)})")
        return door

    # ------------------------------------------------------------------ simulated inputs
    async def _sim_swipe(self, req: Request) -> dict[str, Any]:
        assert self.board is not None
        reader_id = str(req.args.get("reader"))
        section = self.config.readers.get(reader_id)
        if section is None:
            raise ControlError(f"no reader {reader_id!r} (readers: "
                               f"{', '.join(self.config.readers) or 'none'})")
        try:
            message = await self.board.swipe(reader_id, section, str(req.args.get("card", "")))
        except SimInputError as exc:
            raise ControlError(str(exc)) from exc
        log.info("sim: card %s presented at %s", mask(str(req.args.get("card"))), reader_id)
        return {"message": message}

    def _door_input(self, req: Request, name: str) -> Any:
        door_id = self._door_arg(req)
        section = getattr(self.config.doors[door_id], name)
        if section is None:
            raise ControlError(f"door {door_id} has no {name.replace('_', ' ')} in the config")
        return door_id, section

    async def _sim_press(self, req: Request) -> dict[str, Any]:
        assert self.board is not None
        door_id, section = self._door_input(req, "exit_button")
        await self.board.press(section)
        return {"message": f"exit button of {door_id} pressed and released"}

    async def _sim_door(self, req: Request) -> dict[str, Any]:
        assert self.board is not None
        door_id, section = self._door_input(req, "contact")
        position = req.args.get("position")
        if position not in ("open", "close"):
            raise ControlError("position must be 'open' or 'close'")
        self.board.set_input(section, position == "open")
        return {"message": f"door {door_id} {'opened' if position == 'open' else 'closed'}"}

    async def _sim_tamper(self, req: Request) -> dict[str, Any]:
        assert self.board is not None
        door_id, section = self._door_input(req, "tamper")
        clear = bool(req.args.get("clear", False))
        self.board.set_input(section, not clear)
        return {"message": f"tamper switch of {door_id} {'closed' if clear else 'opened'}"}


def _offer(queue: asyncio.Queue[dict[str, Any]], item: dict[str, Any]) -> None:
    """Queue for a CLI follower; a slow one loses its oldest lines, never stalls the gate."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


def redacted(config: GateConfig) -> dict[str, Any]:
    """The config as JSON without secrets (credentials in camera URLs)."""
    data = config.model_dump(mode="json")
    camera = data.get("camera")
    if camera and isinstance(camera.get("source"), str) and "@" in camera["source"]:
        scheme, _, rest = camera["source"].partition("://")
        camera["source"] = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return data


def _arm_shutdown_deadline() -> None:
    """Last resort: if the clean stop hangs (a wedged driver), leave anyway; relays are idle."""

    def expire() -> None:
        log.error("clean stop took longer than %g s; exiting now", SHUTDOWN_DEADLINE_SECONDS)
        logging.shutdown()
        os._exit(EXIT_GAVE_UP)

    timer = threading.Timer(SHUTDOWN_DEADLINE_SECONDS, expire)
    timer.daemon = True
    timer.start()


def main(config_path: Path, *, notifier: Notifier | None = None) -> int:
    """Load the config (exit 78 when it is bad), then run the gate until it is stopped."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        logsetup.configure("INFO")
        log.error("%s: cannot start with this config:\n%s", config_path, exc)
        return EX_CONFIG
    logsetup.configure(config.logging.level, config.logging.components)
    log.info("menjin %s starting with %s", __version__, config_path)
    log.info("effective config: %s", json.dumps(redacted(config), ensure_ascii=False))
    gate = Gate(config_path, config, notifier or Notifier.from_env())
    return asyncio.run(gate.run())
