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
import base64
import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gpiozero import Factory

from daemon import __version__, logsetup
from daemon.access import (
    EMPTY_INDEX,
    AccessController,
    Decision,
    DoorPolicy,
    Reason,
    decision_events,
)
from daemon.audit import AuditLog, forward_new
from daemon.commands import CommandProcessor
from daemon.config import CameraSection, DoorSection, GateConfig, ReaderSection, VisionSection
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.door import DoorController
from daemon.events import Event, EventBus
from daemon.gatecontrol import GateControl
from daemon.journal import Journal, JournalError, keep_retention
from daemon.keys import KeyFileError, load_or_create_key, read_key
from daemon.lockout import Lockout
from daemon.notify import WATCHDOG_FRACTION, Notifier, watchdog_loop, watchdog_seconds
from daemon.privacy import forget_person, forgotten_event
from daemon.schedule import local_time, parse_schedule
from daemon.simulate import SimulatedBoard
from daemon.store import Store, StoreError
from daemon.supervise import Factory as PartFactory
from daemon.supervise import PartGaveUpError, PartState, supervise
from daemon.uplink import Uplink
from drivers.card import CardRead
from drivers.feedback import Feedback
from drivers.gpio import GpioBackendError, pin_factory
from drivers.inputs import DoorContact, ExitButton, TamperSwitch
from drivers.lock import Lock

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_GAVE_UP = 70  # sysexits.h EX_SOFTWARE: a part kept failing; systemd restarts the unit
#: The whole stop (relays, offline status, journal) must fit in the issue's 5 s.
SHUTDOWN_DEADLINE_SECONDS = 4.5
READY_TIMEOUT_SECONDS = 30.0
RECENT_EVENTS = 500
BYTES_PER_MB = 1024 * 1024
SERIAL_READERS = frozenset({"em4100", "ascii", "osdp"})
#: Config sections that cannot change under a running daemon (files, identity, hardware).
RESTART_ONLY_SECTIONS = ("version", "state_dir", "gate", "hardware", "journal", "access", "control")
#: Parts that live as long as the process, whatever a reload changes.
FIXED_PARTS = frozenset({"control", "residents", "privacy"})
UPKEEP_SECONDS = 3600.0
HOLD_OPEN_CHECK_SECONDS = 15
AUDIT_CURSOR = "audit.cursor"
STORE_POLL_SECONDS = 2.0


def door_policies(config: GateConfig) -> dict[str, DoorPolicy]:
    """Each door's access rule, from its config section."""
    return {
        door_id: DoorPolicy(
            door_id, rule=door.access, multi_factor_seconds=door.multi_factor_seconds,
            entry_reader=door.anti_passback.entry_reader if door.anti_passback else None,
            exit_reader=door.anti_passback.exit_reader if door.anti_passback else None,
        )
        for door_id, door in config.doors.items()
    }


def build_pipeline(vision: VisionSection, portraits: str) -> Any:
    """Config → face models, template gallery and pipeline (blocking: model loading)."""
    from daemon.faces_cli import template_store
    from vision.embed import default_match_threshold
    from vision.liveness import LivenessGate
    from vision.models import load_detector, load_embedder, load_liveness, load_refiner
    from vision.pipeline import FacePipeline, PipelineSettings
    from vision.quality import QualityThresholds

    det, q = vision.detector, vision.quality
    detector = load_detector(det.kind, det.path, input_size=det.input_size,
                             score_threshold=det.score_threshold, roi=det.roi,
                             threads=vision.threads)
    embedder = load_embedder(vision.embedder.kind, vision.embedder.path, threads=vision.threads,
                             mirror=vision.embedder.mirror_average)
    liveness = None
    if vision.liveness is not None:
        liveness = LivenessGate(load_liveness(vision.liveness.kind, vision.liveness.paths,
                                              threads=vision.threads), vision.liveness.threshold)
    threshold = vision.match_threshold or default_match_threshold(vision.embedder.kind)
    gallery = template_store(vision).load_gallery(embedder.dim, threshold=threshold,
                                                  margin=vision.match_margin)
    log.info("vision: %d enrolled person(s), match threshold %.2f", len(gallery), threshold)
    refiner = (load_refiner(det.kind, det.path, threads=vision.threads)
               if vision.refine_landmarks else None)
    settings = PipelineSettings(
        agree_frames=vision.agree_frames, fuse_frames=vision.fuse_frames, detector_kind=det.kind,
        portraits=portraits,
        portrait_margin=vision.portrait_margin, portrait_size_px=vision.portrait_size,
        quality=QualityThresholds(
            min_face_px_recognise=q.min_face_px_recognise,
            min_face_px_capture=q.min_face_px_capture,
            min_sharpness_recognise=q.min_sharpness_recognise,
            min_sharpness_capture=q.min_sharpness_capture,
        ),
    )
    return FacePipeline(detector, embedder, gallery, liveness=liveness, settings=settings,
                        refiner=refiner)


def enrol_from_station(config: GateConfig, vision: VisionSection, person: str,
                       photos_b64: list[str]) -> Any:
    """Templates from base64 photos of a station ``enrol`` command (blocking: inference)."""
    from daemon.faces_cli import face_models, store_enrolment, template_store
    from vision.enrol import decode_image, enrol_images

    models = face_models(vision)
    images = [
        (f"photo {i + 1}", functools.partial(decode_image, base64.b64decode(data),
                                             f"photo {i + 1}"))
        for i, data in enumerate(photos_b64)
    ]
    result = enrol_images(images, models.detector, models.embedder, models.thresholds,
                          models.refiner)
    return store_enrolment(config, models, template_store(vision), person, result,
                           actor="station")


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, None when it does not exist: a cheap "has it changed"."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def pin_factory_for(backend: str, board: SimulatedBoard | None) -> Factory:
    """The gpiozero pin factory the config names (the simulated board's pins in simulate mode)."""
    if board is not None:
        return board.pin_factory
    return pin_factory(backend)


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
        self.access = AccessController(EMPTY_INDEX, door_policies(config))
        self.store: Store | None = None
        self._store_lock = asyncio.Lock()
        self.uplink: Uplink | None = None
        self.parts: dict[str, RunningPart] = {}
        self.readers: dict[str, ReaderView] = {}
        self.cameras: dict[str, Any] = {}  # door → synthetic camera source (simulate mode)
        self.camera_state = "absent"
        self.doors: dict[str, DoorController] = {}
        self._doors_built: dict[str, asyncio.Event] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.last_seq = 0
        self.control = GateControl(self)
        self._group: asyncio.TaskGroup | None = None
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self.audit_log = AuditLog(config.privacy.audit_path)
        self._held: list[Event] | None = None
        lockout = config.privacy.lockout
        self.lockout = Lockout(max_denied=lockout.max_denied,
                               window_seconds=lockout.window_seconds,
                               cooldown_seconds=lockout.cooldown_seconds)

    # ------------------------------------------------------------------ events
    def emit(self, event: Event, *, portrait: bytes | None = None) -> None:
        """Record an event in the journal first, then tell everyone else (event loop only)."""
        if self._held is not None and portrait is None:  # a door moving for a decision
            self._held.append(event)
            return
        if self.journal is not None:
            record = self.journal.record(event, portrait=portrait)
        else:  # before the journal opens or after it closed: still visible, not uplinked
            log.warning("event %s not journalled (journal closed)", event.type)
            record = event.to_dict()
        self.last_seq = int(record.get("seq", self.last_seq))
        self.bus.emit(event)
        self.recent.append(record)
        self.control.event(record)

    def audit(self, action: str, *, actor: str, target: str | None = None,
              details: Mapping[str, Any] | None = None) -> None:
        """Append to the hash-chained audit log and uplink the entry as an ``audit`` event."""
        log.info("audit: %s by %s on %s", action, actor, target)
        try:
            self.audit_log.append(action, actor=actor, target=target, details=details)
        except OSError as exc:  # a full disk must not stop the door
            log.error("audit log %s: %s", self.audit_log.path, exc)
            return
        self._forward_audit()

    def _forward_audit(self) -> None:
        """Uplink audit entries not yet sent, including those the CLI wrote meanwhile."""
        if self.journal is not None:
            forward_new(self.audit_log, self.config.state_dir / AUDIT_CURSOR, self.emit)

    async def _privacy_upkeep(self) -> None:
        """Retention at start-up and hourly: journal (events, portraits), audit log."""
        assert self.journal is not None
        async with asyncio.TaskGroup() as group:
            group.create_task(keep_retention(self.journal, every_seconds=UPKEEP_SECONDS))
            while True:
                self.audit_log.prune(self.config.privacy.audit_retention_days)
                self._forward_audit()
                await asyncio.sleep(UPKEEP_SECONDS)

    async def forget(self, person: str, *, actor: str) -> dict[str, Any]:
        """Erasure of a person everywhere on this gate, then the station is told.

        The running daemon does it (not the CLI on the files) so that the decision index and the
        face gallery in memory forget the person too.
        """
        from daemon.faces_cli import template_store

        assert self.store is not None
        vision = self.config.vision
        async with self._store_lock:
            templates = (template_store(vision) if vision is not None
                         and vision.templates.exists() else None)
            erasure = forget_person(
                person, store=self.store,
                pseudonym_key=load_or_create_key(self.config.privacy.pseudonym_key_file),
                templates=templates, journal=self.journal)
        self.emit(forgotten_event(erasure, actor=actor))
        self.audit("person.forget", actor=actor, target=erasure.pseudonym,
                   details={k: v for k, v in erasure.as_dict().items() if k != "person"})
        await self.reload_residents()
        if erasure.templates_removed:
            await self._reload_faces()
        return erasure.as_dict()

    async def _command_forget(self, args: dict[str, Any]) -> dict[str, Any]:
        """The station's signed erasure request."""
        person = args.get("person")
        if not isinstance(person, str) or not person:
            raise ValueError("person: a person id is required")
        return await self.forget(person, actor="station")

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
        if config.camera is not None and config.vision is not None and config.vision.enabled:
            # The template file's stamp is part of the key: after `menjin enrol`, a SIGHUP
            # (systemctl reload menjin) restarts the pipeline with the new gallery.
            parts[f"camera:{config.camera.door}"] = (
                (config.camera, config.vision, config.privacy.portraits,
                 _file_stamp(config.vision.templates)),
                functools.partial(self._run_vision, config.camera, config.vision,
                                  config.privacy.portraits))
        if config.uplink is not None and config.uplink.enabled:
            parts["uplink"] = (
                (config.uplink, config.privacy.portraits, config.privacy.legal_basis),
                functools.partial(self._run_uplink, config))
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
    async def _run_door(self, door_id: str, s: DoorSection) -> None:
        """Config → lock, inputs, feedback and the door's state machine; relay idle on exit."""
        if self.board is not None:
            for switch in (s.contact, s.exit_button, s.tamper):
                if switch is not None:
                    self.board.rest_position(switch)
        controller = self._build_door(door_id, s)
        self.doors[door_id] = controller
        self._door_ready(door_id).set()
        try:
            if s.hold_open_schedule is None:
                await controller.run()
            else:
                async with asyncio.TaskGroup() as group:
                    group.create_task(controller.run())
                    group.create_task(self._hold_open_hours(controller, s.hold_open_schedule))
        finally:
            if self.doors.get(door_id) is controller:
                del self.doors[door_id]

    async def _hold_open_hours(self, door: DoorController, text: str) -> None:
        """Scheduled unlocked hours: hold_open inside the schedule, normal outside it.

        A door put in lockdown stays there: the schedule never lifts a lockdown.
        """
        schedule, zone = parse_schedule(text), ZoneInfo(self.config.gate.timezone)
        while True:
            local = local_time(datetime.now(UTC), zone)
            inside = schedule.is_open(local, self.access.index.holidays)
            wanted = "hold_open" if inside else "normal"
            if door.mode != "lockdown" and door.mode != wanted:
                door.set_mode(wanted)
            await asyncio.sleep(HOLD_OPEN_CHECK_SECONDS - local.second % HOLD_OPEN_CHECK_SECONDS)

    def _build_door(self, door_id: str, s: DoorSection) -> DoorController:
        opened: list[Any] = []

        def claim(device: Any) -> Any:
            opened.append(device)
            return device

        try:  # the lock first: its pin goes idle as it is claimed
            lock = claim(Lock(s.lock.pin, active_high=s.lock.active_high,
                              fail_mode=s.lock.fail_mode.value, pin_factory=self.pins))
            contact = exit_button = tamper = feedback = None
            if s.contact is not None:
                contact = claim(DoorContact(s.contact.pin, wiring=s.contact.wiring.value,
                                            debounce_ms=s.contact.debounce_ms,
                                            pin_factory=self.pins))
            if s.exit_button is not None:
                exit_button = claim(ExitButton(s.exit_button.pin,
                                               wiring=s.exit_button.wiring.value,
                                               debounce_ms=s.exit_button.debounce_ms,
                                               pin_factory=self.pins))
            if s.tamper is not None:
                tamper = claim(TamperSwitch(s.tamper.pin, wiring=s.tamper.wiring.value,
                                            debounce_ms=s.tamper.debounce_ms,
                                            pin_factory=self.pins))
            if s.leds.green is not None or s.leds.red is not None or s.buzzer is not None:
                feedback = claim(Feedback(green=s.leds.green, red=s.leds.red, buzzer=s.buzzer,
                                          pin_factory=self.pins))
            return DoorController(
                door_id, lock=lock, contact=contact, exit_button=exit_button, tamper=tamper,
                feedback=feedback, unlock_seconds=s.unlock_seconds,
                relock_on_close=s.relock_on_close, held_open_seconds=s.held_open_seconds,
                held_reminder_seconds=s.held_reminder_seconds, egress=s.egress, emit=self.emit,
                interlock=self._interlock(s.interlock_with),
            )
        except BaseException:
            for device in reversed(opened):  # the lock last: idle until the very end
                with contextlib.suppress(Exception):
                    device.close()
            raise

    def _interlock(self, other: str | None) -> Callable[[], bool] | None:
        """Sally port: refuse to unlock while the other door is open or unlocked."""
        if other is None:
            return None

        def other_unsecured() -> bool:
            door = self.doors.get(other)
            return door is not None and not door.secured

        return other_unsecured

    def _door_ready(self, door_id: str) -> asyncio.Event:
        return self._doors_built.setdefault(door_id, asyncio.Event())

    def relays_idle(self) -> None:
        """Every lock relay to its idle state, now (first thing on SIGTERM)."""
        for controller in list(self.doors.values()):
            try:
                controller.close()
            except Exception:  # one broken door must not keep the others unlocked
                log.exception("door %s: could not return the relay to idle", controller.door_id)

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
            "presentation": s.presentation,
            "keep_bits": s.keep_bits,
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
        """A card at a reader: screen for card scanning, decide, move the door, record.

        While a reader cools down after a card-scanning attack its *unknown* cards are ignored
        (no decision, no feedback); cards the store knows are decided as always.
        """
        view = self.readers.get(reader_id)
        if view is None:
            return
        self._raw(reader_id, "card", f"{read.credential} ({read.format}, {read.bits} bits)")
        now = time.monotonic()
        decision = self.access.decide_card(view.door, read.credential, datetime.now(UTC),
                                           reader=reader_id, lockdown=self._lockdown(view.door))
        if (decision.reason is Reason.UNKNOWN_CREDENTIAL
                and self.lockout.locked(reader_id, now)):
            ignored = self.lockout.ignore(reader_id)
            log.debug("reader %s: unknown card ignored during lockout (%d so far)", reader_id,
                      ignored)
            return
        self._decided(decision, reader=reader_id,
                      credential_ref=self.access.card_ref(read.credential))
        if not decision.granted and self.lockout.denied(reader_id, now):
            log.warning("reader %s: card scanning suspected; unknown cards ignored for %g s",
                        reader_id, self.lockout.cooldown_seconds)
            self.emit(Event("reader.attack", door=view.door, reader=reader_id,
                            reason="card_scanning",
                            data={"denied": self.lockout.max_denied + 1,
                                  "window_seconds": self.lockout.window_seconds,
                                  "cooldown_seconds": self.lockout.cooldown_seconds}))

    def _lockdown(self, door_id: str) -> bool:
        door = self.doors.get(door_id)
        return door is not None and door.mode == "lockdown"

    def _decided(self, decision: Decision, *, reader: str | None,
                 credential_ref: str | None) -> None:
        """Move the door at once, then record the decision and what the door did, in order.

        The resident waits for the relay, not for the journal's fsync: the door's own events are
        held while it moves, then the decision is recorded first and the door's events after it
        (all still before anything is published).  A grant the door itself refuses (interlock,
        stopping) is recorded as a denial with the door's reason.
        """
        events = decision_events(decision, reader=reader, credential_ref=credential_ref)
        door = self.doors.get(decision.door)
        held: list[Event] = []
        if door is None:
            log.error("door %s: not running; %s decision not carried out", decision.door,
                      decision.reason.value)
        elif decision.granted:
            self._held = held
            try:
                refusal = door.grant(decision.credential_kind, decision.person)
            finally:
                self._held = None
            if refusal is not None:
                events[0] = dataclasses.replace(events[0], type="access.denied", reason=refusal)
        else:
            door.deny()
        for event in (*events, *held):
            self.emit(event)

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
        self.control.raw({"reader": reader_id, "kind": kind, "text": text})

    # ------------------------------------------------------------------ camera and faces
    async def _run_vision(self, cam: CameraSection, vision: VisionSection, portraits: str) -> None:
        """Camera → face pipeline (one inference thread) → access decisions and captures.

        The portrait policy goes to the pipeline itself: with ``off`` no face pixel outlives
        its frame and no JPEG is ever encoded; ``local`` and ``upload`` hand the best portrait
        of each passage to the journal with its ``capture`` event.
        """
        from drivers.camera import Camera, SyntheticSource, open_source
        from vision.pipeline import PipelineWorker, loop_delivery

        loop = asyncio.get_running_loop()
        pipeline = await asyncio.to_thread(build_pipeline, vision, portraits)
        size = (cam.width, cam.height)
        synthetic = SyntheticSource(size) if self.board is not None else None
        source = synthetic or open_source(cam.source, size=size, fps=cam.fps)
        worker = PipelineWorker(pipeline, loop_delivery(loop, functools.partial(
            self._on_observation, cam.door)), name=f"vision:{cam.door}")
        camera = Camera(
            source, fps=cam.fps, name=f"camera:{cam.door}",
            on_frame=lambda frame: worker.submit(frame.image, frame.ts),
            on_fault=functools.partial(_threadsafe, loop, self._camera_fault, cam.door),
            on_restored=functools.partial(_threadsafe, loop, self._camera_restored, cam.door),
        )
        self.camera_state = "ok"
        if synthetic is not None:
            self.cameras[cam.door] = synthetic
        worker.start()
        camera.start()
        try:
            await asyncio.Event().wait()
        finally:
            self.cameras.pop(cam.door, None)
            self.camera_state = "absent"
            await asyncio.to_thread(camera.stop)  # joins threads: never on the loop
            await asyncio.to_thread(worker.stop)

    def _on_observation(self, door_id: str, observation: Any) -> None:
        from vision.pipeline import LIVENESS_FAILED, FaceRecognised, FaceRefused, TrackCapture

        now = datetime.now(UTC)
        if isinstance(observation, FaceRecognised):
            decision = self.access.decide_face(door_id, observation.person, now,
                                               lockdown=self._lockdown(door_id))
            self._decided(decision, reader=None, credential_ref=None)
        elif isinstance(observation, FaceRefused):
            if observation.reason == LIVENESS_FAILED and observation.person is not None:
                decision = self.access.decide_face(door_id, observation.person, now, live=False)
                self._decided(decision, reader=None, credential_ref=None)
            else:
                self.emit(Event("access.denied", door=door_id, credential_kind="face",
                                person=observation.person, reason=observation.reason))
        elif isinstance(observation, TrackCapture):
            self.emit(Event("capture", door=door_id, person=observation.person,
                            data={"recognised": observation.recognised,
                                  "frames": observation.frames,
                                  "portrait": observation.jpeg is not None}),
                      portrait=observation.jpeg)

    def _camera_fault(self, door_id: str, reason: str) -> None:
        self.camera_state = "fault"
        self.emit(Event("camera.fault", door=door_id, reason="unavailable",
                        data={"detail": reason}))

    def _camera_restored(self, door_id: str) -> None:
        self.camera_state = "ok"
        self.emit(Event("camera.restored", door=door_id))

    # ------------------------------------------------------------------ uplink
    async def _run_uplink(self, config: GateConfig) -> None:
        assert self.journal is not None and config.uplink is not None
        up = config.uplink
        tls = up.tls
        self.uplink = Uplink(
            self.journal, gate=config.gate.id, host=up.host, port=up.port, prefix=up.prefix,
            ca_file=tls.ca_file if tls else None, cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None, username=up.username,
            password_file=up.password_file, password_env=up.password_env,
            client_id=up.client_id,
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
        return {"config": self._command_config, "open": self._command_open,
                "sync": self._command_sync, "enrol": self._command_enrol,
                "remove": self._command_remove, "forget": self._command_forget,
                "mode": self._command_mode}

    async def _command_enrol(self, args: dict[str, Any]) -> dict[str, Any]:
        """Station face enrolment: consent checked, templates stored (never the photos), audited.

        The camera part restarts afterwards to load the new gallery (its key holds the template
        file's stamp).  A refusal raises, which the command processor turns into ok=false.
        """
        from daemon.faces_cli import check_consent

        vision = self.config.vision
        if vision is None:
            raise ValueError("this gate has no face recognition (no vision section)")
        person, photos = str(args.get("person", "")), args.get("photos")
        if not isinstance(photos, list) or not photos:
            raise ValueError("photos: a non-empty list of base64 JPEG photos is required")
        consent = await asyncio.to_thread(check_consent, self.config, person)
        if consent.problem is not None:
            raise ValueError(consent.problem)
        outcome = await asyncio.to_thread(enrol_from_station, self.config, vision, person,
                                          [str(p) for p in photos])
        await self._reload_faces()
        return {"person": person, "accepted": outcome.accepted, "rejected": outcome.rejected,
                "templates": outcome.templates, "warning": consent.warning}

    async def _command_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        """Station removal of a person's face templates (opt-out); cards are not touched."""
        from daemon.faces_cli import template_store

        vision = self.config.vision
        if vision is None:
            raise ValueError("this gate has no face recognition (no vision section)")
        person = str(args.get("person", ""))
        removed = await asyncio.to_thread(lambda: template_store(vision).remove(person))
        self.audit("face.remove", actor="station", target=person, details={"removed": removed})
        await self._reload_faces()
        return {"person": person, "removed": removed}

    async def _reload_faces(self) -> None:
        """Restart the camera part when the template store changed (and the gate runs)."""
        if self._group is not None and not self._stopping:
            changed = await self.apply(self.config)
            log.info("face templates changed; restarted: %s", ", ".join(changed) or "nothing")

    async def _command_sync(self, args: dict[str, Any]) -> dict[str, Any]:
        """Station credential sync: one transaction, then the new index swapped in."""
        assert self.store is not None
        async with self._store_lock:  # a SyncRefusedError becomes an ok=false result
            result = await asyncio.to_thread(self.store.apply_sync, args)
        await self.reload_residents()
        return result.as_dict()

    async def _command_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """Signed remote open from the station (verified by the command processor)."""
        door_id = str(args.get("door"))
        controller = self.doors.get(door_id)
        if controller is None:
            raise ValueError(f"no running door {door_id!r}")
        seconds = float(args["seconds"]) if "seconds" in args else None
        refusal = controller.grant("remote", seconds=seconds)
        self.audit("remote.open", actor="station", target=door_id,
                   details={"seconds": seconds, "refused": refusal})
        return {"door": door_id, "opened": refusal is None, "refusal": refusal}

    async def _command_mode(self, args: dict[str, Any]) -> dict[str, Any]:
        """Signed door mode change (lockdown, hold_open, normal); audited."""
        door_id, mode = str(args.get("door")), str(args.get("mode"))
        controller = self.doors.get(door_id)
        if controller is None:
            raise ValueError(f"no running door {door_id!r}")
        previous = controller.mode
        controller.set_mode(mode)  # ValueError for an unknown mode: an ok=false result
        self.audit("door.mode", actor="station", target=door_id,
                   details={"mode": mode, "previous": previous})
        return {"door": door_id, "mode": controller.mode, "previous": previous}

    async def _command_config(self, args: dict[str, Any]) -> dict[str, Any]:
        """The running config for the station, without anything secret."""
        return redacted(self.config)

    def _health(self) -> dict[str, Any]:
        return {"readers": {rid: ("ok" if v.status == "ok" else "fault")
                            for rid, v in self.readers.items()},
                "camera": self.camera_state}

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
            store = self._open_store()
        except (StoreError, KeyFileError, OSError) as exc:
            log.error("cannot open the resident store: %s", exc)
            return EX_CONFIG
        try:
            journal = self._open_journal()
        except JournalError as exc:
            store.close()
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
            store.close()
            if self.board is not None:
                self.board.close()
        log.info("gate %s stopped", self.config.gate.id)
        return code

    async def _serve(self) -> None:
        """The root task group: every part, then READY=1 and the watchdog."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            control = self.control.server()
            listening = asyncio.Event()
            self._start_part("control", None, functools.partial(control.serve, listening.set))
            self._start_part("residents", None, self._watch_store)
            self._start_part("privacy", None, self._privacy_upkeep)
            await self.apply(self.config)
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):  # GPIO up: relays idle
                await listening.wait()
                for door_id in self.config.doors:
                    await self._door_ready(door_id).wait()
            self.notifier.ready(self.summary())
            log.info("gate %s ready: %s", self.config.gate.id, self.summary())
            interval = watchdog_seconds()
            if interval is not None:
                group.create_task(watchdog_loop(self.notifier, self.doors_alive,
                                                interval * WATCHDOG_FRACTION), name="watchdog")

    def _open_store(self) -> Store:
        """The resident store and the first decision index (cards work before the broker)."""
        c = self.config
        key_file = c.access.card_hash_key_file
        self.store = Store(c.access.db, card_key=read_key(key_file) if key_file else None,
                           zone=ZoneInfo(c.gate.timezone))
        self.access = AccessController(self.store.load_index(), door_policies(c),
                                       card_key=self.store.card_ref)
        log.info("resident store %s: version %d, %d person(s)", c.access.db,
                 self.access.index.version, len(self.access.index.persons))
        return self.store

    async def _watch_store(self) -> None:
        """Swap in a new index whenever the store changes (`menjin residents ...`, a sync).

        SQLite's ``data_version`` of a connection of our own changes with every commit made
        through any other connection, so polling it costs one pragma every few seconds.
        """
        assert self.store is not None
        probe = sqlite3.connect(self.store.path, check_same_thread=False)
        try:
            seen = probe.execute("PRAGMA data_version").fetchone()[0]
            while True:
                await asyncio.sleep(STORE_POLL_SECONDS)
                version = probe.execute("PRAGMA data_version").fetchone()[0]
                if version != seen:
                    seen = version
                    await self.reload_residents()
        finally:
            probe.close()

    async def reload_residents(self) -> None:
        """Rebuild the decision index off the loop and swap it in (one assignment)."""
        assert self.store is not None
        async with self._store_lock:
            index = await asyncio.to_thread(self.store.load_index)
        self.access.replace(index)
        log.info("residents reloaded: version %d, %d person(s)", index.version,
                 len(index.persons))

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
        self.access.set_policies(door_policies(new))
        changed = await self.apply(new)
        log.info("config reloaded; restarted parts: %s", ", ".join(changed) or "none")
        self.emit(Event("config.reloaded", data={"changed": changed}))
        self.audit("config.reload", actor="signal:SIGHUP", details={"changed": changed})
        return True

def _threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[..., None],
                *args: Any) -> None:
    """Run ``callback(*args)`` on ``loop`` (from a driver's thread); dropped once it closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


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
    try:
        gate = Gate(config_path, config, notifier or Notifier.from_env())
    except GpioBackendError as exc:  # restarting cannot install a library: stop the loop
        log.error("cannot start: %s", exc)
        return EX_CONFIG
    return asyncio.run(gate.run())
