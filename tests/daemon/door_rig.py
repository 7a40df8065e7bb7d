"""A door on MockFactory pins and an event loop with a virtual clock, shared by the door tests.

The clock is the only fake: the loop is asyncio's own selector loop whose ``time()`` returns a
number the test advances; timers fire through the loop's normal machinery.  Pins are gpiozero's
``MockFactory`` pins, driven with ``drive_low()/drive_high()`` as the wiring would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import Context
from dataclasses import dataclass, field
from typing import Any, TypeVarTuple

from gpiozero.pins.mock import MockFactory, MockPin

from daemon.door import DoorController
from daemon.events import Event
from drivers.feedback import Feedback
from drivers.inputs import DoorContact, ExitButton, TamperSwitch
from drivers.lock import Lock

LOCK_PIN, CONTACT_PIN, EXIT_PIN, TAMPER_PIN = 17, 27, 22, 23
GREEN_PIN, RED_PIN, BUZZER_PIN = 5, 6, 13

Ts = TypeVarTuple("Ts")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """asyncio's loop with a clock that moves only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.timers: list[asyncio.TimerHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[*Ts], object], *args: *Ts,
                context: Context | None = None) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        self.timers.append(handle)
        return handle

    def settle(self) -> None:
        """Run everything that is ready now (bridged pin callbacks, due timers)."""
        for _ in range(3):
            self.run_until_complete(asyncio.sleep(0))

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing each due timer at its own instant, in order."""
        target = self.now + seconds
        while True:
            self.timers = [t for t in self.timers if not t.cancelled()]
            due = [t.when() for t in self.timers if t.when() <= target]
            if not due:
                break
            self.now = max(self.now, min(due))
            self.timers = [t for t in self.timers if t.when() > self.now]
            self.settle()
        self.now = target
        self.settle()


def press_level(wiring: str, asserted: bool) -> bool:
    """Pin level of a pulled-up input whose switch is ``asserted`` (True = high)."""
    closed = asserted if wiring == "normally_open" else not asserted
    return not closed


@dataclass
class DoorRig:
    """A door controller with every part on MockFactory pins, and the events it emitted."""

    loop: VirtualClockLoop
    factory: MockFactory
    door: DoorController
    lock: Lock
    contact: DoorContact
    exit_button: ExitButton
    tamper: TamperSwitch
    events: list[Event] = field(default_factory=list)

    def pin(self, number: int) -> MockPin:
        pin: MockPin = self.factory.pin(number)
        return pin

    def set_input(self, number: int, wiring: str, asserted: bool) -> None:
        pin = self.pin(number)
        if press_level(wiring, asserted):
            pin.drive_high()
        else:
            pin.drive_low()

    def open_door(self, *, bounce: int = 0) -> None:
        self._switch(CONTACT_PIN, self.contact.wiring, True, bounce)

    def close_door(self, *, bounce: int = 0) -> None:
        self._switch(CONTACT_PIN, self.contact.wiring, False, bounce)

    def press_exit(self) -> None:
        self._switch(EXIT_PIN, self.exit_button.wiring, True, 0)
        self._switch(EXIT_PIN, self.exit_button.wiring, False, 0)

    def set_tamper(self, tripped: bool) -> None:
        self._switch(TAMPER_PIN, self.tamper.wiring, tripped, 0)

    def _switch(self, number: int, wiring: str, asserted: bool, bounce: int) -> None:
        """Drive a switch to a position, chattering ``bounce`` times first; then let it settle."""
        for _ in range(bounce):
            self.set_input(number, wiring, asserted)
            self.set_input(number, wiring, not asserted)
        self.set_input(number, wiring, asserted)
        self.loop.settle()
        debounce_ms = max(self.contact.debounce_ms, self.exit_button.debounce_ms,
                          self.tamper.debounce_ms)
        if debounce_ms:
            self.loop.advance(debounce_ms / 1000)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def count(self, event_type: str, reason: str | None = None) -> int:
        return sum(1 for e in self.events
                   if e.type == event_type and (reason is None or e.reason == reason))

    def relay_pin_high(self) -> bool:
        return bool(self.pin(LOCK_PIN).state)

    def close(self) -> None:
        self.door.close()
        self.loop.close()
        self.factory.close()


def make_rig(
    *,
    fail_mode: str = "secure",
    active_high: bool = True,
    debounce_ms: int = 0,
    contact_wiring: str = "normally_closed",
    exit_wiring: str = "normally_open",
    door_open_at_start: bool = False,
    tamper_at_start: bool = False,
    feedback: bool = False,
    **door_kwargs: Any,
) -> DoorRig:
    """Build the pins and the controller; switch positions before start-up are set on the pins."""
    loop = VirtualClockLoop()
    factory = MockFactory()
    events: list[Event] = []
    lock = Lock(LOCK_PIN, active_high=active_high, fail_mode=fail_mode, pin_factory=factory)
    contact = DoorContact(CONTACT_PIN, wiring=contact_wiring, debounce_ms=debounce_ms,
                          pin_factory=factory)
    exit_button = ExitButton(EXIT_PIN, wiring=exit_wiring, debounce_ms=debounce_ms,
                             pin_factory=factory)
    tamper = TamperSwitch(TAMPER_PIN, wiring="normally_closed", debounce_ms=debounce_ms,
                          pin_factory=factory)
    # Pull-ups are set now; put every switch in its resting (or requested) position.
    positions = [(CONTACT_PIN, contact_wiring, door_open_at_start),
                 (EXIT_PIN, exit_wiring, False),
                 (TAMPER_PIN, "normally_closed", tamper_at_start)]
    for number, wiring, asserted in positions:
        pin = factory.pin(number)
        if press_level(wiring, asserted):
            pin.drive_high()
        else:
            pin.drive_low()
    fb = (Feedback(green=GREEN_PIN, red=RED_PIN, buzzer=BUZZER_PIN, pin_factory=factory)
          if feedback else None)
    settings: dict[str, Any] = {
        "unlock_seconds": 5.0, "relock_on_close": True, "held_open_seconds": 30.0,
        "held_reminder_seconds": 60.0, "egress": True,
    }
    settings.update(door_kwargs)
    door = DoorController(
        "front", lock=lock, contact=contact, exit_button=exit_button, tamper=tamper,
        feedback=fb, emit=events.append, loop=loop, **settings,
    )
    rig = DoorRig(loop, factory, door, lock, contact, exit_button, tamper, events)
    loop.settle()
    return rig
