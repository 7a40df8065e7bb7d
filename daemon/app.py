"""`menjin run`: the composition root, where the configuration becomes a running gate.

This module only composes: it builds the parts of :mod:`daemon.doors`, :mod:`daemon.readers`,
:mod:`daemon.passage`, :mod:`daemon.vision_link`, :mod:`daemon.station_commands`,
:mod:`daemon.upkeep` and :mod:`daemon.reload` with their collaborators, owns the event emission
(journal first, then everyone else) and the life cycle:

- start: config → resident store → journal → doors (relays idle first) → ``READY=1`` → readers,
  camera, uplink; every part a named task of one root ``asyncio.TaskGroup`` under
  :func:`daemon.supervise.supervise` (:mod:`daemon.parts`);
- SIGHUP: :class:`daemon.reload.Reloader`;
- SIGTERM/SIGINT: relays idle first, then the task group is cancelled (the uplink publishes
  ``offline`` on its way out), then the journal is flushed and closed; done within 5 s.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from daemon import __version__, logsetup, recovery, runmark
from daemon.access import EMPTY_INDEX, AccessController, AccessIndex
from daemon.audit import AuditLog
from daemon.builders import door_policies, file_stamp, pin_factory_for, redacted
from daemon.config import GateConfig
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.door_modes import MODES_FILE, ModeBook
from daemon.doors import Doors
from daemon.events import Event, EventBus, now_ms
from daemon.files import PRIVATE_UMASK
from daemon.gatecontrol import GateControl
from daemon.journal import Journal, JournalError
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError
from daemon.liveness import liveness_warnings
from daemon.lockout import Lockout
from daemon.notify import WATCHDOG_FRACTION, Notifier, watchdog_loop, watchdog_seconds
from daemon.parts import Desired, Parts
from daemon.passage import Passage
from daemon.readers import Readers
from daemon.reload import Reloader
from daemon.simulate import SimulatedBoard
from daemon.statelock import StateDirBusyError, StateLock
from daemon.station_commands import StationCommands
from daemon.station_key import StationKeyExchange
from daemon.store import Store, StoreError
from daemon.supervise import PartGaveUpError
from daemon.trusted_time import CLOCK_FLOOR_FILE, TrustedTime
from daemon.upkeep import AUDIT_CURSOR, AuditTrail, Erasure, Residents, privacy_upkeep
from daemon.uplink import Uplink
from daemon.vision_link import VisionLink
from drivers.gpio import GpioBackendError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_GAVE_UP = 70  # sysexits.h EX_SOFTWARE: a part kept failing; systemd restarts the unit
EXIT_BUSY = 75  # sysexits.h EX_TEMPFAIL: another daemon holds the state directory
#: The whole stop (relays, offline status, journal) must fit in the issue's 5 s.
SHUTDOWN_DEADLINE_SECONDS = 4.5
READY_TIMEOUT_SECONDS = 30.0
#: On SIGTERM the last events get this long to reach a reachable broker (within the deadline).
STOP_FLUSH_SECONDS = 1.0
STOP_FLUSH_POLL_SECONDS = 0.02
RECENT_EVENTS = 500
#: How long a thread may keep the GIL while the event loop waits for it (the default is 5 ms).
GIL_SWITCH_SECONDS = 0.0005
BYTES_PER_MB = 1024 * 1024
#: Parts that live as long as the process, whatever a reload changes.
FIXED_PARTS = frozenset({"control", "residents", "privacy", "clock"})


class Gate:
    """A running gate: its parts, its event flow, its life cycle."""

    def __init__(self, config_path: Path, config: GateConfig, notifier: Notifier) -> None:
        self.config_path = config_path
        self.config = config
        self.notifier = notifier
        self.bus = EventBus()
        self.started = time.monotonic()
        self.board = SimulatedBoard() if config.hardware.simulate else None
        self.pins = pin_factory_for(config.hardware.gpio_backend, self.board)
        self.keyring = Keyring(config)
        self.journal: Journal | None = None
        self.store: Store | None = None
        self.residents: Residents | None = None
        self.uplink: Uplink | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.last_seq = 0
        self._stopping = False
        self._flush_task: asyncio.Task[None] | None = None
        #: start-up repairs to report once the journal is open (event type → data or None)
        self.recovered: dict[str, dict[str, Any] | None] = {}
        # a simulated board has a simulated time service: its clock counts as synchronised
        self.time = TrustedTime(emit=self.emit, floor_file=config.state_dir / CLOCK_FLOOR_FILE,
                                rtc=config.clock.rtc,
                                synchronised=(lambda: True) if config.hardware.simulate else None)
        self.access = AccessController(EMPTY_INDEX, door_policies(config), time=self.time.view,
                                       untrusted_policy=config.clock.untrusted_schedules)
        self.control = GateControl(self)
        self.parts = Parts(emit=self.emit, fixed=FIXED_PARTS)
        self.audit_log = AuditLog(config.privacy.audit_path)
        self.audit_trail = AuditTrail(self.audit_log, config.state_dir / AUDIT_CURSOR,
                                      emit=self.emit,
                                      forwarding=lambda: self.journal is not None)
        lockout = config.privacy.lockout
        self.lockout = Lockout(max_denied=lockout.max_denied,
                               window_seconds=lockout.window_seconds,
                               cooldown_seconds=lockout.cooldown_seconds)
        self.doors = Doors(pins=self.pins, board=self.board, emit=self.emit,
                           zone=lambda: ZoneInfo(self.config.gate.timezone),
                           holidays=lambda: self.access.index.holidays,
                           workdays=lambda: self.access.index.workdays, time=self.time.view,
                           modes=ModeBook(config.state_dir / MODES_FILE),
                           groups_of=self._groups_of)
        self.passage = Passage(access=lambda: self.access, doors=self.doors, lockout=self.lockout,
                               emit=self.emit, multi_factor_seconds=self._multi_factor_seconds,
                               passed=self.doors.passed)
        self.readers = Readers(pins=self.pins, board=self.board, emit=self.emit,
                               on_card=self.passage.card, on_keys=self.passage.keys,
                               raw=self.control.raw, feedback=self.doors.feedback)
        self.vision = VisionLink(config_path=config_path, passage=self.passage, emit=self.emit,
                                 capture=self.capture, template_key=self.keyring.template_key)
        station = self.keyring.station
        self.key_exchange = (None if station is None else StationKeyExchange(
            station, gate=config.gate.id, emit=self.emit, unlocked=self.faces_changed))
        self.station_commands = StationCommands(
            config=lambda: self.config, doors=self.doors, residents=self._residents,
            erasure=self._erasure, audit=self.audit_trail, faces_changed=self.faces_changed,
            keyring=self.keyring,
            unwrap=self.key_exchange.unwrap if self.key_exchange is not None else None,
            burst=self.vision.burst)
        self.reloader = Reloader(config_path, current=lambda: self.config, adopt=self.adopt,
                                 emit=self.emit, audit=self.audit_trail, notifier=notifier,
                                 summary=self.summary)

    # ------------------------------------------------------------------ events
    def _multi_factor_seconds(self, door_id: str) -> float:
        """How long a card waits for its PIN at ``door_id`` (the door's multi-factor window)."""
        door = self.config.doors.get(door_id)
        return door.multi_factor_seconds if door is not None else 10.0

    def _groups_of(self, person: str) -> tuple[str, ...]:
        """The access groups ``person`` belongs to now (first-person unlock)."""
        found = self.access.index.person(person)
        return found.groups if found is not None else ()

    def emit(self, event: Event) -> None:
        """Record an event in the journal first, then tell everyone else (event loop only)."""
        self.capture(event, None)

    def capture(self, event: Event, portrait: bytes | None) -> None:
        """:meth:`emit` with a portrait for the journal (``capture`` events)."""
        if self.journal is not None:
            record = self.journal.record(event, portrait=portrait)
        else:  # before the journal opens or after it closed: still visible, not uplinked
            log.warning("event %s not journalled (journal closed)", event.type)
            record = event.to_dict()
        self.last_seq = int(record.get("seq", self.last_seq))
        self.bus.emit(event)
        self.recent.append(record)
        self.control.event(record)

    def scrub(self, person: str, alias: str) -> None:
        """Erasure of ``person`` from what the daemon holds in memory (the recent-events ring
        that `menjin events` shows, and what followers have not read yet): the id becomes the
        pseudonym, and the card reference that would lead back to them goes."""
        self.recent = deque((_scrubbed(r, person, alias) for r in self.recent),
                            maxlen=RECENT_EVENTS)
        self.control.scrub(person, alias)

    def scrubbed(self, record: dict[str, Any], person: str, alias: str) -> dict[str, Any]:
        """One event record with ``person`` erased (see :meth:`scrub`)."""
        result: dict[str, Any] = _scrubbed(record, person, alias)
        return result

    def _residents(self) -> Residents:
        assert self.residents is not None, "the resident store is opened by run()"
        return self.residents

    def _erasure(self) -> Erasure:
        return Erasure(config=lambda: self.config, residents=self._residents(),
                       journal=lambda: self.journal, audit=self.audit_trail, emit=self.emit,
                       faces_changed=self.faces_changed, keyring=self.keyring, scrub=self.scrub)

    async def forget(self, person: str, *, actor: str) -> dict[str, Any]:
        """Erasure of a person everywhere on this gate (control socket, station command)."""
        return await self._erasure().forget(person, actor=actor)

    # ------------------------------------------------------------------ parts
    def desired_parts(self, config: GateConfig) -> Desired:
        """Every part the config asks for: name → (the config it depends on, how to run it)."""
        parts: dict[str, Any] = {}
        for door_id, door in config.doors.items():
            parts[f"door:{door_id}"] = (door, functools.partial(self.doors.run, door_id, door))
        for reader_id, reader in config.readers.items():
            parts[f"reader:{reader_id}"] = (
                reader, functools.partial(self.readers.run, reader_id, reader))
        if config.camera is not None and config.vision is not None and config.vision.enabled:
            # The vision process (camera, models) is a child process: its crash never reaches
            # a relay.  The stamps of the template and model files are part of the key: after
            # `menjin enrol` or a model update, a SIGHUP (systemctl reload menjin) restarts it
            # with the new files (and a model it cannot load faults vision, never the gate).
            parts[f"camera:{config.camera.door}"] = (
                (config.camera, config.vision, config.privacy.portraits,
                 file_stamp(config.vision.templates), file_stamp(config.vision.detector.path),
                 file_stamp(config.vision.embedder.path), self.keyring.face_ready()),
                functools.partial(self.vision.run, config.camera))
        if config.uplink is not None and config.uplink.enabled:
            parts["uplink"] = (
                (config.uplink, config.privacy.portraits, config.privacy.legal_basis),
                functools.partial(self._run_uplink, config))
        return parts

    async def apply(self, config: GateConfig) -> list[str]:
        """Start, stop and restart parts so that they match ``config``; returns changed names."""
        return await self.parts.apply(self.desired_parts(config))

    async def adopt(self, config: GateConfig) -> list[str]:
        """A reloaded config becomes the running one; returns the restarted parts."""
        self.config = config
        self.access.set_policies(door_policies(config))
        self.access.untrusted_policy = config.clock.untrusted_schedules
        changed = await self.apply(config)
        self.doors.release_unused(config.doors)
        return changed

    async def faces_changed(self) -> None:
        """Restart the camera part when the template store changed (and the gate runs)."""
        if self.parts.running and not self._stopping:
            changed = await self.apply(self.config)
            log.info("face templates changed; restarted: %s", ", ".join(changed) or "nothing")

    async def _run_uplink(self, config: GateConfig) -> None:
        assert self.journal is not None and config.uplink is not None
        up = config.uplink
        tls = up.tls
        self.uplink = Uplink(
            self.journal, gate=config.gate.id, site=config.gate.site, host=up.host, port=up.port,
            prefix=up.prefix,
            ca_file=tls.ca_file if tls else None, cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None, username=up.username,
            password_file=up.password_file, password_env=up.password_env,
            client_id=up.client_id,
            commands=self.station_commands.processor(config, self.journal, self.emit,
                                                     self.time),
            portraits=config.privacy.portraits, legal_basis=config.privacy.legal_basis,
            health_seconds=up.health_seconds, health_source=self.health,
            inflight=up.inflight,
        )
        await self.uplink.run()

    def health(self) -> dict[str, Any]:
        doors = {door_id: self.doors.status(door_id) for door_id in self.doors}
        clock = self.time.view()
        return {"clock": {"trusted": clock.trusted, "source": clock.source,
                          "floor_ms": clock.floor_ms},
                "readers": self.readers.health(), "camera": self.vision.camera,
                "vision": self.vision.status(),
                "doors": {door_id: {"state": next((a for a in ("forced", "held")
                                                   if a in s["alarms"]), s["state"]),
                                    "mode": s["mode"], "mode_source": s.get("mode_source", "")}
                          for door_id, s in doors.items()},
                "tamper": any("tamper" in s["alarms"] for s in doors.values()),
                "parts": {name: part.state.as_dict() for name, part in self.parts.items()
                          if not part.state.running or part.state.failed}}

    def doors_alive(self) -> bool:
        """True while every door part runs (the watchdog keep-alive condition)."""
        return self.parts.alive("door:")

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
            store = self.open_store()
        except (StoreError, KeyProviderError, OSError) as exc:
            log.error("cannot open the resident store: %s", exc)
            return EX_CONFIG
        marker = runmark.read(self.config.state_dir)  # before the journal: its last seq
        try:
            journal = self._open_journal(
                seq_floor=(marker.last_seq or 0) if marker is not None else 0)
        except JournalError as exc:
            store.close()
            log.error("cannot open the journal: %s", exc)
            return EX_CONFIG
        journal.start_writer(loop)  # from here on no fsync runs on the door's loop
        self.time.raise_floor(journal.newest_ts_ms())
        journal.stamp = self.time.stamp
        self.time.view()  # a clock behind the journal is reported before anything else
        self._report_recoveries()
        started_ms = now_ms()
        previous = runmark.begin(self.config.state_dir, started_ms=started_ms,
                                 last_seq=journal.last_seq)
        try:
            try:
                await self._serve(previous)
            except* PartGaveUpError as failed:
                log.error("stopping: %s", failed.exceptions[0])
                code = EXIT_GAVE_UP
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            main_task.uncancel()
        finally:
            self.parts.bind(None)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.doors.relays_idle()
            self.doors.release_pins()
            self.journal = None
            journal.close()
            store.close()
            runmark.end(self.config.state_dir, started_ms=started_ms, stopped_ms=now_ms(),
                        last_seq=journal.last_seq)
            if self.board is not None:
                self.board.close()
        log.info("gate %s stopped", self.config.gate.id)
        return code

    async def _serve(self, previous: runmark.PreviousRun | None) -> None:
        """The root task group: every part, then READY=1 and the watchdog."""
        async with asyncio.TaskGroup() as group:
            self.parts.bind(group)
            residents, journal = self._residents(), self.journal
            assert journal is not None
            control = self.control.server()
            listening = asyncio.Event()
            self.parts.start("control", None, functools.partial(control.serve, listening.set))
            self.parts.start("residents", None, residents.watch)
            self.parts.start("clock", None, self.time.watch)
            self.parts.start("privacy", None, functools.partial(
                privacy_upkeep, journal, self.audit_trail,
                lambda: self.config.privacy.audit_retention_days))
            await self.apply(self.config)
            if self.key_exchange is not None:
                try:
                    self.key_exchange.request()
                except KeyProviderError as exc:
                    log.error("keys: %s; face entry stays off, cards work", exc)
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):  # GPIO up: relays idle
                await listening.wait()
                for door_id in self.config.doors:
                    await self.doors.ready(door_id).wait()
            self._report_restart(previous, journal)
            self.notifier.ready(self.summary())
            log.info("gate %s ready: %s", self.config.gate.id, self.summary())
            # What start-up built (modules, config, the access index) lives as long as the
            # daemon: out of the collector's sight, a full collection no longer stops the loop
            # for tens of milliseconds (docs/performance.md).
            gc.collect()
            gc.freeze()
            # A thread busy in Python (the journal's writer sealing a batch) keeps the GIL for
            # up to the switch interval while the loop waits with a card's last byte: 5 ms by
            # default, a door's whole latency budget.  At 0.5 ms the loop gets it back sooner,
            # for a few more switches a second.
            sys.setswitchinterval(GIL_SWITCH_SECONDS)
            interval = watchdog_seconds()
            if interval is not None:
                group.create_task(watchdog_loop(self.notifier, self.doors_alive,
                                                interval * WATCHDOG_FRACTION), name="watchdog")

    def _report_restart(self, previous: runmark.PreviousRun | None, journal: Journal) -> None:
        """``gate.restarted``: whether the previous run stopped cleanly, its last seq, and each
        door's relay as this start set it (after an unclean stop the record may have a hole
        between the previous run's last event and now, and the station must be told).

        The previous last seq is the highest known (the journal's, the run marker's, a damaged
        journal's); a journal that was recovered or knew less than the marker lost events, so
        the stop counts as unclean whatever the marker says."""
        if previous is None:
            return
        recovered = self.recovered.get("journal.recovered")
        last_seq = max(journal.seq_at_open, previous.last_seq or 0,
                       recovered["continues_after"] if recovered is not None else 0)
        clean = previous.clean and recovered is None and journal.seq_at_open >= last_seq
        doors = {door_id: {k: v for k, v in self.doors.status(door_id).items()
                           if k in ("relay", "lock", "mode", "mode_source")}
                 for door_id in self.doors}
        if not clean:
            log.warning("the previous run (pid %s) did not stop cleanly or its journal was lost; "
                        "its last known event is seq %d", previous.pid, last_seq)
        self.emit(Event("gate.restarted", reason="clean" if clean else "unclean",
                        data={"clean": clean, "previous_last_seq": last_seq,
                              "previous_pid": previous.pid,
                              "previous_started_ms": previous.started_ms,
                              "previous_stopped_ms": previous.stopped_ms, "doors": doors}))

    def open_store(self) -> Store:
        """The resident store and the first decision index (cards work before the broker)."""
        c = self.config
        keyring = self.keyring

        def opener() -> tuple[Store, AccessIndex]:
            store = keyring.open_store(c)
            try:
                return store, store.load_index()
            except BaseException:
                store.close()
                raise

        (self.store, index), self.recovered["store.recovered"] = recovery.open_store(
            c.access.db, opener)
        try:  # the snapshot is a copy of the sealed store: no clear name or card in it either
            self.store.snapshot(recovery.snapshot_path(c.access.db))
        except (OSError, sqlite3.Error) as exc:  # a full disk keeps the older snapshot
            log.warning("resident store snapshot not refreshed: %s", exc)
        self.access = AccessController(index, door_policies(c), card_key=self.store.card_ref,
                                       time=self.time.view,
                                       untrusted_policy=c.clock.untrusted_schedules)
        self.residents = Residents(self.store, self.access,
                                   snapshot=recovery.snapshot_path(c.access.db))
        log.info("resident store %s: version %d, %d person(s)", c.access.db,
                 self.access.index.version, len(self.access.index.persons))
        return self.store

    def _open_journal(self, *, seq_floor: int) -> Journal:
        c = self.config
        journal, self.recovered["journal.recovered"] = recovery.open_journal(
            c.journal.path, lambda floor: Journal(
                c.journal.path, gate=c.gate.id, fsync=c.journal.fsync,
                quota_bytes=c.journal.quota_mb * BYTES_PER_MB,
                retention_days=c.journal.retention_days, portraits=c.privacy.portraits,
                portrait_retention_days=c.privacy.retention_days, seq_floor=floor,
                data_key=self.keyring.local().journal,
            ), seq_floor=seq_floor)
        self.journal = journal
        return journal

    def _report_recoveries(self) -> None:
        """Tell the station what start-up found damaged and repaired (journal open by now)."""
        if self.audit_log.repaired is not None:
            log.error("audit log %s: torn last entry cut off (%d bytes kept in %s)",
                      self.audit_log.path, self.audit_log.repaired["bytes"],
                      self.audit_log.repaired["kept_in"])
            self.emit(Event("audit.repaired", reason="torn_tail", data=self.audit_log.repaired))
        for event_type, data in self.recovered.items():
            if data is not None:
                self.emit(Event(event_type, reason="corrupt", data=data))

    def request_stop(self, why: str, main_task: asyncio.Task[Any]) -> None:
        """SIGTERM/SIGINT: relays idle at once, then cancel everything (cleanup in finally)."""
        if self._stopping:
            return
        self._stopping = True
        log.info("%s: stopping (relays idle, offline published, journal flushed)", why)
        self.notifier.stopping()
        self.doors.relays_idle()
        _arm_shutdown_deadline()
        self._flush_task = asyncio.get_running_loop().create_task(
            self._flush_then_stop(main_task), name="stop")

    async def _flush_then_stop(self, main_task: asyncio.Task[Any]) -> None:
        """Give the uplink at most :data:`STOP_FLUSH_SECONDS` to deliver the last events (the
        relays' ``door.locked`` ``stopped`` among them) while the broker is reachable, then
        cancel everything."""
        try:
            uplink, journal = self.uplink, self.journal
            if uplink is not None and journal is not None and uplink.state.connected:
                deadline = time.monotonic() + STOP_FLUSH_SECONDS
                while journal.queue_depth() > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 (acks arrive on the uplink task)
                    await asyncio.sleep(STOP_FLUSH_POLL_SECONDS)
                left = journal.queue_depth()
                if left:
                    log.warning("stop: %d event(s) not delivered yet; they stay in the journal "
                                "and go at the next start", left)
        finally:
            main_task.cancel()

    def summary(self) -> str:
        c = self.config
        mode = "simulate" if c.hardware.simulate else c.hardware.gpio_backend
        return (f"{len(c.doors)} door(s), {len(c.readers)} reader(s), "
                f"camera {'yes' if c.camera else 'no'}, {mode} mode")

    def _reload_soon(self) -> None:
        if self.parts.running and not self._stopping:
            self.parts.spawn(self.reloader.reload(), name="reload")


def _scrubbed(value: Any, person: str, alias: str) -> Any:
    """``value`` (an event record) with every ``person`` string replaced by ``alias`` and, in a
    record about them, the card reference removed."""
    if isinstance(value, dict):
        out = {k: _scrubbed(v, person, alias) for k, v in value.items()}
        if person in value.values():
            out.pop("credential_ref", None)
            if isinstance(out.get("data"), dict):
                out["data"].pop("card", None)
        return out
    if isinstance(value, list):
        return [_scrubbed(v, person, alias) for v in value]
    return alias if value == person else value


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
    os.umask(PRIVATE_UMASK)  # names, card hashes, portraits: 0600 whoever started us
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        logsetup.configure("INFO")
        log.error("%s: cannot start with this config:\n%s", config_path, exc)
        return EX_CONFIG
    logsetup.configure(config.logging.level, config.logging.components)
    log.info("menjin %s starting with %s", __version__, config_path)
    log.info("effective config: %s", json.dumps(redacted(config), ensure_ascii=False))
    for warning in liveness_warnings(config):
        log.warning("%s", warning)
    lock = StateLock(config.state_dir)
    try:  # before anything is opened: a second daemon touches no relay, socket or file
        lock.acquire()
    except StateDirBusyError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_BUSY
    except OSError as exc:  # state_dir cannot be made or written: the config or its permissions
        log.error("cannot start: state folder %s: %s", config.state_dir, exc.strerror or exc)
        return EX_CONFIG
    try:
        try:
            gate = Gate(config_path, config, notifier or Notifier.from_env())
        except (GpioBackendError, KeyProviderError) as exc:  # a restart cannot fix these: stop
            log.error("cannot start: %s", exc)
            return EX_CONFIG
        return asyncio.run(gate.run())
    finally:
        lock.release()
