"""Switch inputs of a door: contact, request-to-exit button, tamper switch.

Each is a gpiozero ``DigitalInputDevice`` with the internal pull-up, so an open switch reads high
and a closed one pulls the line low.  Installers wire switches either normally-open or
normally-closed; the driver hides that and reports what the switch *means* (``asserted``: door
open, button pressed, housing opened).  ``debounce_ms`` becomes gpiozero's ``bounce_time``.  Not
every pin factory honours it (``MockFactory`` ignores it), so the door controller re-reads the
level after the same time rather than trusting single edges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from gpiozero import DigitalInputDevice, Factory

log = logging.getLogger(__name__)

WIRINGS: Final = ("normally_open", "normally_closed")
MS_PER_SECOND: Final = 1000.0


class SwitchInput:
    """A switch on a GPIO input with pull-up and debounce.

    ``when_changed`` (no arguments) is called on every edge from gpiozero's own thread (or the
    thread that drives a ``MockPin``); callers bridge it to their event loop and read
    :attr:`asserted` there.
    """

    def __init__(
        self,
        pin: int | str,
        *,
        wiring: str = "normally_open",
        debounce_ms: int = 30,
        pin_factory: Factory | None = None,
    ) -> None:
        if wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {', '.join(WIRINGS)}, not {wiring!r}")
        if debounce_ms < 0:
            raise ValueError(f"debounce_ms must be >= 0, not {debounce_ms}")
        self.wiring = str(wiring)
        self.debounce_ms = debounce_ms
        self._normally_closed = wiring == "normally_closed"
        self.when_changed: Callable[[], None] | None = None
        self._device = DigitalInputDevice(
            pin,
            pull_up=True,
            bounce_time=debounce_ms / MS_PER_SECOND if debounce_ms else None,
            pin_factory=pin_factory,
        )
        self._device.when_activated = self._edge
        self._device.when_deactivated = self._edge

    @property
    def pin(self) -> object:
        """The gpiozero pin; simulate mode drives a ``MockPin`` through ``drive_low()/high()``."""
        return self._device.pin

    @property
    def asserted(self) -> bool:
        """True while the switch is in its "something happened" position."""
        # With the pull-up, gpiozero is active when the line is low, i.e. the switch is closed.
        return bool(self._device.is_active) != self._normally_closed

    def _edge(self) -> None:
        callback = self.when_changed
        if callback is not None:
            callback()

    def close(self) -> None:
        self.when_changed = None
        self._device.close()


class DoorContact(SwitchInput):
    """Door position contact; usually normally-closed (a cut wire then reads as an open door)."""

    def __init__(
        self,
        pin: int | str,
        *,
        wiring: str = "normally_closed",
        debounce_ms: int = 30,
        pin_factory: Factory | None = None,
    ) -> None:
        super().__init__(pin, wiring=wiring, debounce_ms=debounce_ms, pin_factory=pin_factory)

    @property
    def is_open(self) -> bool:
        return self.asserted


class ExitButton(SwitchInput):
    """Request-to-exit button on the secure side of the door."""

    @property
    def is_pressed(self) -> bool:
        return self.asserted


class TamperSwitch(SwitchInput):
    """Tamper switch of a reader or controller housing: asserted when the housing is opened."""

    @property
    def is_tripped(self) -> bool:
        return self.asserted
