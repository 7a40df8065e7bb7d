"""The gate's doors: each door's parts and state machine, its hold-open hours, the interlock.

:class:`Doors` is a read-only mapping door id → running :class:`~daemon.door.DoorController`
(what the passage, the station commands and the status read) and runs one door part per door
(:meth:`Doors.run`, supervised by the composition root).  Relays go to their idle state in every
exit path: when a door part ends and, first thing on a stop, through :meth:`Doors.relays_idle`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from gpiozero import Factory

from daemon.builders import build_door
from daemon.config import DoorSection
from daemon.door import DoorController
from daemon.events import Emit
from daemon.schedule import Schedule, local_time, parse_schedule
from daemon.simulate import SimulatedBoard
from daemon.trusted_time import TimeView
from drivers.feedback import FeedbackFanout

log = logging.getLogger(__name__)

HOLD_OPEN_CHECK_SECONDS = 15


class Doors(Mapping[str, DoorController]):
    """The running doors of one gate (door id → controller)."""

    def __init__(self, *, pins: Factory, board: SimulatedBoard | None, emit: Emit,
                 zone: Callable[[], ZoneInfo], holidays: Callable[[], frozenset[date]],
                 workdays: Callable[[], frozenset[date]] = frozenset,
                 time: Callable[[], TimeView] | None = None) -> None:
        self._pins = pins
        self._board = board
        self._emit = emit
        self._zone = zone
        self._holidays = holidays
        self._workdays = workdays
        self._time = time
        self._running: dict[str, DoorController] = {}
        #: door → its GPIO LEDs plus the LED/buzzer of the OSDP readers serving it
        self._feedback: dict[str, FeedbackFanout] = {}
        self._built: dict[str, asyncio.Event] = {}

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

    async def run(self, door_id: str, s: DoorSection) -> None:
        """One door part: build it, run its state machine (and schedule); relay idle on exit."""
        if self._board is not None:
            for switch in (s.contact, s.exit_button, s.tamper):
                if switch is not None:
                    self._board.rest_position(switch)
        controller = build_door(door_id, s, pins=self._pins, emit=self._emit,
                                interlock=self._interlock(s.interlock_with),
                                feedback=self.feedback(door_id))
        self._running[door_id] = controller
        self.ready(door_id).set()
        try:
            if s.hold_open_schedule is None:
                await controller.run()
            else:
                async with asyncio.TaskGroup() as group:
                    group.create_task(controller.run())
                    group.create_task(self._hold_open_hours(controller, s.hold_open_schedule))
        finally:
            if self._running.get(door_id) is controller:
                del self._running[door_id]

    async def _hold_open_hours(self, door: DoorController, text: str) -> None:
        """Scheduled unlocked hours: hold_open inside the schedule, normal outside it.

        A door put in lockdown stays there: the schedule never lifts a lockdown.
        """
        schedule = parse_schedule(text)
        while True:
            delay = self.hold_open_step(door, schedule)
            await asyncio.sleep(delay)

    def hold_open_step(self, door: DoorController, schedule: Schedule) -> float:
        """Put ``door`` in the mode its hold-open schedule wants now; returns the seconds until
        the next check.  Time the gate cannot trust never unlocks: outside trusted time the
        door is ``normal`` (locked) whatever the clock says."""
        view = self._time() if self._time is not None else None
        local = local_time(view.clock if view is not None else datetime.now(UTC), self._zone())
        trusted = view is None or view.trusted
        inside = trusted and schedule.is_open(local, self._holidays(), self._workdays())
        wanted = "hold_open" if inside else "normal"
        if door.mode != "lockdown" and door.mode != wanted:
            if not trusted and wanted == "normal":
                log.warning("door %s: hold-open hours suspended, the clock is not trusted",
                            door.door_id)
            door.set_mode(wanted)
        return float(HOLD_OPEN_CHECK_SECONDS - local.second % HOLD_OPEN_CHECK_SECONDS)

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
