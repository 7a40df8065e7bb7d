"""The gate's doors: each door's parts and state machine, its mode, the interlock.

:class:`Doors` is a read-only mapping door id → running :class:`~daemon.door.DoorController`
(what the passage, the station commands and the status read) and runs one door part per door
(:meth:`Doors.run`, supervised by the composition root).  Relays go to their idle state in every
exit path: when a door part ends and, first thing on a stop, through :meth:`Doors.relays_idle`.

Each door's mode follows :mod:`daemon.door_modes` (lockdown > a mode set by the station or an
admin > first-person unlock > the hold-open schedule > normal), applied as the door part starts
and whenever it changes; :meth:`Doors.passed` starts a door's first-person unlock
(:mod:`daemon.first_person`).
The lock relay's pin is claimed once and kept across restarts of the door part (a reload, a
failure): only a change of the lock's own wiring, the door's removal or the stop release it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gpiozero import Factory

from daemon.access import Decision
from daemon.builders import build_door, build_lock
from daemon.config import DoorSection, LockSection
from daemon.door import DoorController, LockRelay
from daemon.door_modes import FIRST_PERSON, Effective, FirstPersonRun, ModeBook, SetMode
from daemon.events import Emit, Event, now_ms
from daemon.first_person import FirstPersonRule
from daemon.schedule import Schedule, local_time, parse_schedule
from daemon.simulate import SimulatedBoard
from daemon.trusted_time import TimeView
from drivers.feedback import FeedbackFanout

log = logging.getLogger(__name__)

HOLD_OPEN_CHECK_SECONDS = 15
#: What a door's first-person rule is doing now (``menjin status``): the clock cannot say;
#: no window; in a window, no first card yet; holding the door open; ended by a set mode.
CLOCK_UNTRUSTED, OUTSIDE_WINDOW, WAITING, ACTIVE, CANCELLED = (
    "clock_untrusted", "outside_window", "waiting", "active", "cancelled")


class KeptLock:
    """The door controller's view of a lock relay whose pin :class:`Doors` keeps claimed:
    ``close()`` only returns the relay to idle, so a restarted door part finds the pin as it
    was and never releases it in between."""

    def __init__(self, lock: LockRelay) -> None:
        self._lock = lock

    @property
    def relay_active(self) -> bool:
        return self._lock.relay_active

    @property
    def is_unlocked(self) -> bool:
        return self._lock.is_unlocked

    def unlock(self) -> None:
        self._lock.unlock()

    def lock(self) -> None:
        self._lock.lock()

    def close(self) -> None:
        self._lock.lock()


class Doors(Mapping[str, DoorController]):
    """The running doors of one gate (door id → controller)."""

    def __init__(self, *, pins: Factory, board: SimulatedBoard | None, emit: Emit,
                 zone: Callable[[], ZoneInfo], holidays: Callable[[], frozenset[date]],
                 workdays: Callable[[], frozenset[date]] = frozenset,
                 time: Callable[[], TimeView] | None = None,
                 modes: ModeBook, clock: Callable[[], int] | None = None,
                 groups_of: Callable[[str], Collection[str]] = lambda person: ()) -> None:
        self._pins = pins
        self._board = board
        self._emit = emit
        self._zone = zone
        self._holidays = holidays
        self._workdays = workdays
        self._time = time
        self.modes = modes
        self._clock = clock if clock is not None else self._mode_clock
        self._groups_of = groups_of
        self._running: dict[str, DoorController] = {}
        #: door → its GPIO LEDs plus the LED/buzzer of the OSDP readers serving it
        self._feedback: dict[str, FeedbackFanout] = {}
        self._built: dict[str, asyncio.Event] = {}
        #: door → (its lock's config, the claimed relay), kept across door part restarts
        self._locks: dict[str, tuple[LockSection, LockRelay]] = {}
        self._schedules: dict[str, Schedule | None] = {}
        self._first_person: dict[str, FirstPersonRule] = {}
        self._effective: dict[str, Effective] = {}
        self._mode_changed: dict[str, asyncio.Event] = {}
        self._saving = asyncio.Lock()  # mode file writes one after the other, in order
        self._saves: set[asyncio.Task[None]] = set()

    def __getitem__(self, door_id: str) -> DoorController:
        return self._running[door_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._running)

    def __len__(self) -> int:
        return len(self._running)

    def ready(self, door_id: str) -> asyncio.Event:
        """Set once the door's relay is claimed and idle (start-up waits for every door)."""
        return self._built.setdefault(door_id, asyncio.Event())

    def feedback(self, door_id: str) -> FeedbackFanout:
        """The door's feedback fan-out (readers add their LED/buzzer before the door runs too)."""
        return self._feedback.setdefault(door_id, FeedbackFanout())

    def in_lockdown(self, door_id: str) -> bool:
        door = self._running.get(door_id)
        return door is not None and door.mode == "lockdown"

    def status(self, door_id: str) -> dict[str, Any]:
        """The running door's status with its mode's source (``mode_source``, ``mode_until_ms``)
        and, for a door with a first-person rule, ``first_person``: the rule, its ``state``
        (see :data:`WAITING` ...), the window's end ``until_ms`` and who opened it."""
        out = self._running[door_id].status()
        effective = self._effective.get(door_id)
        if effective is not None:
            out.update(effective.as_dict(), mode=out["mode"])
        rule = self._first_person.get(door_id)
        if rule is not None:
            state, until = self._first_person_state(door_id, rule, self._view())
            run = self.modes.first_person(door_id) if state in (ACTIVE, CANCELLED) else None
            out["first_person"] = {**rule.as_dict(), "state": state, "until_ms": until,
                                   "person": run.person if run is not None else None}
        return out

    # ------------------------------------------------------------------ modes
    def set_mode(self, door_id: str, mode: str, *, source: str, actor: str,
                 until_ms: int | None = None) -> SetMode | None:
        """A mode set by the station or a local admin (``schedule`` cancels it); applied at
        once.  The caller saves :attr:`modes` (a small file write, off the loop).  Raises
        :class:`~daemon.door_modes.ModeError` when refused, KeyError for an unknown door."""
        if door_id not in self._running:
            raise KeyError(door_id)
        entry = self.modes.set(door_id, mode, source=source, actor=actor, now_ms=self._clock(),
                               until_ms=until_ms)
        self._apply_mode(door_id)
        return entry

    async def change_mode(self, door_id: str, mode: str, *, source: str, actor: str,
                          until_ms: int | None = None) -> Effective:
        """:meth:`set_mode`, then the mode file written off the loop; returns the door's mode
        now.  A mode that cannot be saved (a full disk) still holds until the next restart."""
        self.set_mode(door_id, mode, source=source, actor=actor, until_ms=until_ms)
        await self._save(door_id, mode)
        return self._effective[door_id]

    async def _save(self, door_id: str, what: str) -> None:
        """The mode file, snapshot on the loop and written in a worker thread, in order."""
        async with self._saving:
            data = self.modes.snapshot(self._clock())
            try:
                await asyncio.to_thread(self.modes.write, data)
            except OSError as exc:
                log.error("door %s: mode %s holds but could not be saved in %s (%s); it is lost "
                          "at the next restart", door_id, what, self.modes.path, exc)

    def _save_soon(self, door_id: str, what: str) -> None:
        task = asyncio.get_running_loop().create_task(self._save(door_id, what),
                                                      name=f"modes:{door_id}")
        self._saves.add(task)  # a strong reference until it is done
        task.add_done_callback(self._saves.discard)

    # ------------------------------------------------------------------ first person
    def passed(self, decision: Decision) -> None:
        """A passage the door carried out: the first one of a window that counts
        (:meth:`FirstPersonRule.counts`) puts the door in ``hold_open`` until the window ends.

        Only while the door follows its schedule (no mode set by the station or an admin) and
        the clock is trusted; a later passage of the same window changes nothing.
        """
        door_id = decision.door
        rule = self._first_person.get(door_id)
        if rule is None or door_id not in self._running or decision.person is None:
            return
        if not rule.counts(decision, self._groups_of(decision.person)):
            return
        now = self._clock()
        chosen = self.modes.get(door_id)
        if chosen is not None and chosen.active(now):
            log.info("door %s: first card of group %s not counted: mode %s set by %s", door_id,
                     rule.group, chosen.mode, chosen.source)
            return
        state, until = self._first_person_state(door_id, rule, self._view())
        if state == CLOCK_UNTRUSTED:
            log.warning("door %s: first-person unlock not started, the clock is not trusted",
                        door_id)
            return
        if state != WAITING or until is None:
            return
        self.modes.start_first_person(
            door_id, FirstPersonRun(decision.person, rule.group, now, until))
        log.info("door %s: first card of group %s (%s): held open until the window ends",
                 door_id, rule.group, decision.person)
        self._apply_mode(door_id)
        self._save_soon(door_id, FIRST_PERSON)

    def _view(self) -> TimeView:
        if self._time is not None:
            return self._time()
        ms = now_ms()
        return TimeView(ms, ms, True, "assumed")

    def _first_person_state(self, door_id: str, rule: FirstPersonRule,
                            view: TimeView) -> tuple[str, int | None]:
        """(state, end of the current window in UTC ms) of the door's first-person rule.

        A run counts only for the window it was started in, by the current rule: a clock that
        was corrected, a changed window or group make it a thing of the past.
        """
        if not view.trusted:
            return CLOCK_UNTRUSTED, None
        end = rule.window_end(local_time(view.clock, self._zone()), self._holidays(),
                              self._workdays())
        if end is None:
            return OUTSIDE_WINDOW, None
        until = int(end.timestamp() * 1000)
        run = self.modes.first_person(door_id)
        if run is None or run.until_ms != until or run.group != rule.group:
            return WAITING, until
        return (ACTIVE if run.cancelled_ms is None else CANCELLED), until

    def _mode_clock(self) -> int:
        """UTC ms against which set modes' ``until_ms`` are judged: the clock while it is
        trusted, else the floor (a lower bound of the true time, so a clock running ahead
        cannot end a lockdown early)."""
        if self._time is None:
            return now_ms()
        view = self._time()
        return view.clock_ms if view.trusted else view.floor_ms

    def _apply_mode(self, door_id: str) -> Effective:
        """Put the door in the mode it should be in now; returns it.

        Time the gate cannot trust never opens the hold-open schedule nor holds a first-person
        unlock: while the clock is untrusted both count as closed (the door stays locked),
        whatever the clock says.
        """
        door = self._running[door_id]
        previous = self._effective.get(door_id)
        schedule = self._schedules.get(door_id)
        rule = self._first_person.get(door_id)
        view = self._view()
        scheduled_open = None
        if schedule is not None:
            scheduled_open = view.trusted and schedule.is_open(
                local_time(view.clock, self._zone()), self._holidays(), self._workdays())
        first_person = rule is not None and \
            self._first_person_state(door_id, rule, view)[0] == ACTIVE
        if not view.trusted and previous is not None and previous.mode == "hold_open" \
                and previous.source in ("schedule", FIRST_PERSON):
            log.warning("door %s: %s suspended, the clock is not trusted", door_id,
                        "hold-open hours" if previous.source == "schedule"
                        else "first-person unlock")
        effective = self.modes.effective(door_id, scheduled_open=scheduled_open,
                                         now_ms=self._clock(), first_person=first_person)
        self._effective[door_id] = effective
        before = door.mode
        if before != effective.mode:
            log.info("door %s: mode %s (%s)", door_id, effective.mode, effective.source)
            door.set_mode(effective.mode)
        elif previous is not None and previous.source != effective.source:
            log.info("door %s: mode %s now from %s", door_id, effective.mode, effective.source)
        if before != effective.mode or (previous is not None
                                        and previous.source != effective.source):
            run = self.modes.first_person(door_id) if effective.source == FIRST_PERSON else None
            self._emit(Event("door.mode", door=door_id, reason=effective.source,
                             person=run.person if run is not None else None,
                             data={"mode": effective.mode, "previous": before,
                                   "previous_source": previous.source if previous else None,
                                   "until_ms": effective.until_ms,
                                   **({"group": run.group} if run is not None else {})}))
        self._mode_changed.setdefault(door_id, asyncio.Event()).set()
        return effective

    async def _keep_mode(self, door_id: str) -> None:
        """Follow the schedule and the end times of set modes (checked every 15 s)."""
        changed = self._mode_changed.setdefault(door_id, asyncio.Event())
        while True:
            changed.clear()
            effective = self._apply_mode(door_id)
            changed.clear()
            second = datetime.now(UTC).second
            wait: float = HOLD_OPEN_CHECK_SECONDS - second % HOLD_OPEN_CHECK_SECONDS
            if effective.until_ms is not None:
                wait = min(wait, max(0.0, (effective.until_ms - self._clock()) / 1000))
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
            # arrives in the turn the event is set, and this loop would then never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await changed.wait()

    # ------------------------------------------------------------------ parts
    def _lock_for(self, door_id: str, s: DoorSection) -> LockRelay:
        """The door's claimed lock relay; claimed anew only when its wiring changed."""
        kept = self._locks.get(door_id)
        if kept is not None and kept[0] == s.lock:
            return kept[1]
        if kept is not None:
            self._release(door_id)
        lock = build_lock(s, pins=self._pins)
        self._locks[door_id] = (s.lock, lock)
        return lock

    def _release(self, door_id: str) -> None:
        _, lock = self._locks.pop(door_id)
        try:
            lock.lock()
        finally:
            lock.close()

    def release_unused(self, doors: Mapping[str, DoorSection]) -> None:
        """Release the pins of doors no longer configured (after a reload applied)."""
        for door_id in [d for d in self._locks if d not in doors and d not in self._running]:
            self._release(door_id)

    def release_pins(self) -> None:
        """Every lock relay idle and its pin released (the very end of a stop)."""
        for door_id in list(self._locks):
            try:
                self._release(door_id)
            except Exception:  # one broken door must not keep the others claimed
                log.exception("door %s: could not release the relay", door_id)

    async def run(self, door_id: str, s: DoorSection) -> None:
        """One door part: build it, put it in its mode, run it; relay idle on exit."""
        if self._board is not None:
            for switch in (s.contact, s.exit_button, s.tamper):
                if switch is not None:
                    self._board.rest_position(switch)
        lock = self._lock_for(door_id, s)
        controller = build_door(door_id, s, lock=KeptLock(lock), pins=self._pins,
                                emit=self._emit, interlock=self._interlock(s.interlock_with),
                                feedback=self.feedback(door_id))
        self._running[door_id] = controller
        self._schedules[door_id] = (parse_schedule(s.hold_open_schedule)
                                    if s.hold_open_schedule is not None else None)
        if s.first_person is not None:
            self._first_person[door_id] = FirstPersonRule.from_config(s.first_person, s.access)
        else:
            self._first_person.pop(door_id, None)
            if self.modes.end_first_person(door_id) is not None:  # the rule was removed
                log.info("door %s: first-person unlock ended (no longer configured)", door_id)
                self._save_soon(door_id, "first_person removed")
        try:
            self._apply_mode(door_id)  # a durable lockdown holds from the first moment
            self.ready(door_id).set()
            async with asyncio.TaskGroup() as group:
                group.create_task(controller.run())
                group.create_task(self._keep_mode(door_id))
        finally:
            if self._running.get(door_id) is controller:
                del self._running[door_id]
                controller.close()

    def _interlock(self, other: str | None) -> Callable[[], bool] | None:
        """Sally port: refuse to unlock while the other door is open or unlocked."""
        if other is None:
            return None

        def other_unsecured() -> bool:
            door = self._running.get(other)
            return door is not None and not door.secured

        return other_unsecured

    def relays_idle(self) -> None:
        """Every lock relay to its idle state, now (first thing on SIGTERM)."""
        for controller in list(self._running.values()):
            try:
                controller.close()
            except Exception:  # one broken door must not keep the others unlocked
                log.exception("door %s: could not return the relay to idle", controller.door_id)
