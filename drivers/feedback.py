"""What the person at the door sees and hears: green/red LEDs and a buzzer.

Patterns run on gpiozero's background blink threads, so no call here ever blocks the event loop:

- unlocked: green LED on while the lock is released (pulse or hold-open);
- granted: one short beep;
- denied: three short red flashes and beeps;
- alarm (door forced or held, tamper): red LED and buzzer on until the alarm is cleared;
- lockdown: red LED on while the door is locked down.

An active alarm keeps the red LED and buzzer: a grant or a denial does not silence it.
:class:`FeedbackFanout` gives a door one feedback that drives its GPIO LEDs and any number of
reader-side sinks (an OSDP reader's own LED and buzzer) that come and go with their readers.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from gpiozero import LED, Buzzer, Factory

log = logging.getLogger(__name__)

BEEP_SECONDS: Final = 0.1
BEEP_GAP_SECONDS: Final = 0.1
DENIED_BEEPS: Final = 3


class FeedbackSink(Protocol):
    """What a door tells the person in front of it (GPIO LEDs, an OSDP reader's LED/buzzer)."""

    def unlocked(self, active: bool) -> None: ...
    def granted(self) -> None: ...
    def denied(self) -> None: ...
    def alarm(self, active: bool) -> None: ...
    def lockdown(self, active: bool) -> None: ...


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
        self._lockdown = False

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
        if not active:
            self._show_lockdown()

    def lockdown(self, active: bool) -> None:
        """Red LED steady while the door is locked down (under an alarm, the alarm wins)."""
        self._lockdown = active
        if not self._alarm:
            self._show_lockdown()

    def _show_lockdown(self) -> None:
        if self._red is not None:
            if self._lockdown:
                self._red.on()
            else:
                self._red.off()

    def close(self) -> None:
        for device in (self._green, self._red, self._buzzer):
            if device is not None:
                device.close()


class FeedbackFanout:
    """One door's feedback: its own GPIO :class:`Feedback` (``local``, may be None) plus the
    sinks of the readers serving the door, added and removed as those readers start and stop.

    A sink added while an alarm or a lockdown is on is told at once, so a reader that comes back
    shows the door's state.  A failing sink is logged and skipped: one reader's fault never
    silences the others.  ``close()`` closes the local feedback only (the readers own theirs).
    """

    def __init__(self, local: Feedback | None = None) -> None:
        self.local = local
        self._sinks: list[FeedbackSink] = []
        self._alarm = False
        self._lockdown = False

    @property
    def alarm_active(self) -> bool:
        return self._alarm

    def add(self, sink: FeedbackSink) -> None:
        self._sinks.append(sink)
        if self._alarm:
            self._call(sink, "alarm", True)
        if self._lockdown:
            self._call(sink, "lockdown", True)

    def remove(self, sink: FeedbackSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def _all(self, method: str, *args: bool) -> None:
        for sink in [self.local, *self._sinks]:
            if sink is not None:
                self._call(sink, method, *args)

    @staticmethod
    def _call(sink: FeedbackSink, method: str, *args: bool) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception:  # one reader's fault must not stop the door's other feedback
            log.exception("feedback %s failed on %r", method, sink)

    def unlocked(self, active: bool) -> None:
        self._all("unlocked", active)

    def granted(self) -> None:
        self._all("granted")

    def denied(self) -> None:
        self._all("denied")

    def alarm(self, active: bool) -> None:
        self._alarm = active
        self._all("alarm", active)

    def lockdown(self, active: bool) -> None:
        self._lockdown = active
        self._all("lockdown", active)

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None
