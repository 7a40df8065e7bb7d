"""What the person at the door sees and hears: green/red LEDs and a buzzer.

Patterns run on gpiozero's background blink threads, so no call here ever blocks the event loop:

- unlocked: green LED on while the lock is released (pulse or hold-open);
- granted: one short beep;
- denied: three short red flashes and beeps;
- alarm (door forced or held, tamper): red LED and buzzer on until the alarm is cleared.

An active alarm keeps the red LED and buzzer: a grant or a denial does not silence it.
"""

from __future__ import annotations

import logging
from typing import Final

from gpiozero import LED, Buzzer, Factory

log = logging.getLogger(__name__)

BEEP_SECONDS: Final = 0.1
BEEP_GAP_SECONDS: Final = 0.1
DENIED_BEEPS: Final = 3


class Feedback:
    """Optional LEDs and buzzer of a door; any of the three pins may be absent."""

    def __init__(
        self,
        *,
        green: int | str | None = None,
        red: int | str | None = None,
        buzzer: int | str | None = None,
        pin_factory: Factory | None = None,
    ) -> None:
        self._green = LED(green, pin_factory=pin_factory) if green is not None else None
        self._red = LED(red, pin_factory=pin_factory) if red is not None else None
        self._buzzer = Buzzer(buzzer, pin_factory=pin_factory) if buzzer is not None else None
        self._alarm = False

    @property
    def alarm_active(self) -> bool:
        return self._alarm

    def unlocked(self, active: bool) -> None:
        """Green LED on while the lock is released, so it never outlives an early relock."""
        if self._green is not None:
            if active:
                self._green.on()
            else:
                self._green.off()

    def granted(self) -> None:
        """One short beep."""
        if self._buzzer is not None and not self._alarm:
            self._buzzer.blink(on_time=BEEP_SECONDS, off_time=BEEP_GAP_SECONDS, n=1,
                               background=True)

    def denied(self) -> None:
        """Three short red flashes and beeps."""
        if self._alarm:
            return
        for device in (self._red, self._buzzer):
            if device is not None:
                device.blink(on_time=BEEP_SECONDS, off_time=BEEP_GAP_SECONDS, n=DENIED_BEEPS,
                             background=True)

    def alarm(self, active: bool) -> None:
        """Red LED and buzzer on while ``active``; off when the alarm clears."""
        if active == self._alarm:
            return
        self._alarm = active
        for device in (self._red, self._buzzer):
            if device is not None:
                if active:
                    device.on()
                else:
                    device.off()

    def close(self) -> None:
        for device in (self._green, self._red, self._buzzer):
            if device is not None:
                device.close()
