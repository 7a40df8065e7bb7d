"""The lock relay: one gpiozero output whose idle level is decided by the kind of lock.

Two words are kept apart on purpose, because confusing them is how a gate ends up open:

- *relay active* means the relay coil is energised, i.e. the GPIO pin is at its active level
  (high when ``active_high=True``, low when ``active_high=False``);
- *unlocked* means the door can be pushed open.

How they relate is the lock's ``fail_mode``:

- ``"secure"`` (electric strike, the default): relay active = unlocked.  Idle (locked) = relay
  released, so the door stays locked when the board loses power.
- ``"safe"`` (magnetic lock, fire exits): relay active = locked.  Idle (locked) = relay energised,
  and unlocking releases it, so the door opens when the board loses power.

"Idle" is always the locked state.  The pin is put there in the constructor, before any other part
of the daemon can run, and :meth:`Lock.close` puts it there again before it releases the pin.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Final

from gpiozero import Factory, OutputDevice

log = logging.getLogger(__name__)

FAIL_MODES: Final = ("secure", "safe")


class Lock:
    """A lock relay on one GPIO pin.

    ``Lock(17, active_high=True, fail_mode="secure", pin_factory=None)``.  It has no timer of its
    own: how long a door stays unlocked is the door controller's decision.
    """

    def __init__(
        self,
        pin: int | str,
        *,
        active_high: bool = True,
        fail_mode: str = "secure",
        pin_factory: Factory | None = None,
    ) -> None:
        if fail_mode not in FAIL_MODES:
            raise ValueError(f"fail_mode must be one of {', '.join(FAIL_MODES)}, not {fail_mode!r}")
        self.fail_mode = fail_mode
        #: Relay coil state that holds the door locked (energised for a maglock).
        self._active_when_locked = fail_mode == "safe"
        # initial_value drives the pin as it is claimed: the relay is idle before anything else.
        self._device = OutputDevice(
            pin,
            active_high=active_high,
            initial_value=self._active_when_locked,
            pin_factory=pin_factory,
        )
        self._closed = False

    @property
    def pin(self) -> object:
        """The gpiozero pin (a ``MockPin`` in simulate mode and tests)."""
        return self._device.pin

    @property
    def relay_active(self) -> bool:
        """True while the relay coil is energised (pin at its active level).

        After :meth:`close` this is the idle state the relay was left in.
        """
        if self._closed:
            return self._active_when_locked
        return bool(self._device.value)

    @property
    def is_unlocked(self) -> bool:
        """True while the door can be pushed open."""
        return self.relay_active != self._active_when_locked

    def unlock(self) -> None:
        """Release the door (energise a strike, de-energise a maglock)."""
        if self._closed:
            raise RuntimeError("lock is closed")
        if self._active_when_locked:
            self._device.off()
        else:
            self._device.on()

    def lock(self) -> None:
        """Return to idle (locked).  Safe to call at any time, also after :meth:`close`."""
        if self._closed:
            return
        if self._active_when_locked:
            self._device.on()
        else:
            self._device.off()

    def close(self) -> None:
        """Lock, then release the pin (the relay then shows its power-loss behaviour)."""
        if self._closed:
            return
        try:
            self.lock()
        finally:
            self._closed = True
            self._device.close()

    def __enter__(self) -> Lock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
