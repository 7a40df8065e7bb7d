"""One door's state machine: when the lock may open, and which alarms an opening raises.

Logic only: the hardware comes in as driver objects (:mod:`drivers.lock`, :mod:`drivers.inputs`,
:mod:`drivers.feedback`), time comes from the event loop (``loop.time()`` and ``loop.call_at``),
so tests run it on a loop with a virtual clock and MockFactory pins.

Safety by construction:

- The lock is released only inside an *unlock window* (an accepted grant, exit press or remote
  open, each a timed pulse) or in ``hold_open`` mode.  :meth:`DoorController._apply` is the one
  place that moves the relay, and it derives the wanted state from those two facts alone.
- A window has one relock timer; extending it replaces the timer instead of stacking another.
- :meth:`DoorController.close` (stop, reload, SIGTERM) and any error inside a callback return the
  relay to idle.

Inputs are judged by level, not by edges: an edge only (re)starts a settle timer of the input's
``debounce_ms``, after which the level is read once.  Contact bounce therefore gives one opening,
whatever the pin factory does with ``bounce_time``.  An opening counts as authorised when its
first edge lies inside the current or just-ended unlock window (bounds included), so a door
pulled open exactly as the relock timer fires is not reported as forced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Callable
from typing import Any, Final, ParamSpec, Protocol

from daemon.events import Emit, Event
from drivers.feedback import Feedback, FeedbackFanout
from drivers.inputs import DoorContact, ExitButton, SwitchInput, TamperSwitch

log = logging.getLogger(__name__)

P = ParamSpec("P")

NORMAL: Final = "normal"
HOLD_OPEN: Final = "hold_open"
LOCKDOWN: Final = "lockdown"
MODES: Final = (NORMAL, HOLD_OPEN, LOCKDOWN)

#: Unlock reasons that still work in lockdown (exit only on an egress route).
LOCKDOWN_REASONS: Final = frozenset({"remote", "exit"})
MS_PER_SECOND: Final = 1000.0
#: The longest pulse (the config's own limit); a door open for longer is hold_open's job.
MAX_UNLOCK_SECONDS: Final = 300.0


class LockRelay(Protocol):
    """What the controller needs of :class:`drivers.lock.Lock`."""

    @property
    def relay_active(self) -> bool: ...

    @property
    def is_unlocked(self) -> bool: ...

    def unlock(self) -> None: ...

    def lock(self) -> None: ...

    def close(self) -> None: ...


class DoorController:
    """The state machine of one door.

    Call from the event loop thread only; driver callbacks are bridged with
    ``loop.call_soon_threadsafe``.  ``interlock`` (sally ports) returns True while the other door
    is open or unlocked, which refuses every unlock of this one.  ``egress`` False means the exit
    button is refused in lockdown.
    """

    def __init__(
        self,
        door_id: str,
        *,
        lock: LockRelay,
        contact: DoorContact | None = None,
        exit_button: ExitButton | None = None,
        tamper: TamperSwitch | None = None,
        feedback: Feedback | FeedbackFanout | None = None,
        unlock_seconds: float = 5.0,
        relock_on_close: bool = True,
        held_open_seconds: float = 30.0,
        held_reminder_seconds: float = 60.0,
        egress: bool = True,
        emit: Emit,
        interlock: Callable[[], bool] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if unlock_seconds <= 0 or held_open_seconds <= 0 or held_reminder_seconds <= 0:
            raise ValueError("unlock_seconds, held_open_seconds and held_reminder_seconds must "
                             "be > 0")
        self.door_id = door_id
        self._lock = lock
        self._lock.lock()  # idle first, whatever state a previous owner left the pin in
        self._contact = contact
        self._exit = exit_button
        self._tamper = tamper
        self._feedback = feedback
        self._unlock_seconds = unlock_seconds
        self._relock_on_close = relock_on_close
        self._held_seconds = held_open_seconds
        self._reminder_seconds = held_reminder_seconds
        self._egress = egress
        self._emit = emit
        self._interlock = interlock
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._closed = False
        self._mode = NORMAL
        # The current (or last) unlock window, in loop time; the relay follows _window_open only.
        self._window_open = False
        self._window_from = -math.inf
        self._window_until = -math.inf
        self._relock_timer: asyncio.TimerHandle | None = None
        # The current opening.
        self._open = contact.is_open if contact is not None else False
        self._opened_at = self._loop.time()
        self._forced = False
        self._held = False
        self._held_timer: asyncio.TimerHandle | None = None
        self._reminders = 0
        self._pressed = exit_button.is_pressed if exit_button is not None else False
        self._tampered = tamper.is_tripped if tamper is not None else False
        self._settle_timers: dict[str, asyncio.TimerHandle] = {}
        self._first_edge: dict[str, float] = {}
        self._inputs: dict[str, SwitchInput] = {
            name: device
            for name, device in (("contact", contact), ("exit", exit_button), ("tamper", tamper))
            if device is not None
        }
        for name, device in self._inputs.items():
            device.when_changed = functools.partial(self._edge, name)
        self._power_on()

    # ------------------------------------------------------------------ public API
    @property
    def mode(self) -> str:
        return self._mode

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def secured(self) -> bool:
        """Closed and locked: what the other door of an interlock waits for."""
        return not self._open and not self._lock.is_unlocked

    def grant(
        self, credential_kind: str, person: str | None = None, seconds: float | None = None
    ) -> str | None:
        """An access decision said yes: unlock for a pulse and show it.

        Returns None when the door unlocked, else why not (``"lockdown"``: only a ``remote``
        credential opens a door in lockdown; ``"interlock"``; ``"stopped"``).
        """
        reason = "remote" if credential_kind == "remote" else "grant"
        refusal = self.unlock(reason, seconds, credential_kind=credential_kind, person=person)
        if self._feedback is not None:
            if refusal is None:
                self._feedback.granted()
            else:
                self._feedback.denied()
        return refusal

    def refusal(self, credential_kind: str) -> str | None:
        """Why :meth:`grant` for ``credential_kind`` would refuse now; None when it would open.

        Lets the passage record the decision (with the door's refusal) before the door moves.
        """
        return self._refusal("remote" if credential_kind == "remote" else "grant")

    def deny(self) -> None:
        """An access decision said no: feedback only, the lock does not move."""
        if self._feedback is not None:
            self._feedback.denied()

    def unlock(
        self,
        reason: str,
        seconds: float | None = None,
        *,
        credential_kind: str | None = None,
        person: str | None = None,
    ) -> str | None:
        """Open (or extend) an unlock window of ``seconds`` (default ``unlock_seconds``).

        Returns None when the window is open, else the refusal reason.  Extending keeps one
        relock timer, set to the later of the two ends.
        """
        refusal = self._refusal(reason)
        if refusal is not None:
            log.info("door %s: unlock (%s) refused: %s", self.door_id, reason, refusal)
            return refusal
        length = self._unlock_seconds if seconds is None else seconds
        if not 0 < length <= MAX_UNLOCK_SECONDS:  # also refuses NaN: a pulse must end
            raise ValueError(f"unlock seconds must be > 0 and <= {MAX_UNLOCK_SECONDS:g}, "
                             f"not {length}")
        now = self._loop.time()
        until = now + length
        if not self._window_open:
            self._window_open = True
            self._window_from = now
            self._window_until = -math.inf
        if until > self._window_until:
            self._window_until = until
            if self._relock_timer is not None:
                self._relock_timer.cancel()
            self._relock_timer = self._loop.call_at(until, self._safely(self._window_ended))
        self._apply(reason, credential_kind=credential_kind, person=person, seconds=length)
        return None

    def set_mode(self, mode: str) -> None:
        """normal, hold_open (unlocked, no held alarm) or lockdown (only remote and exit open)."""
        if mode not in MODES:
            raise ValueError(f"door mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == self._mode or self._closed:
            return
        previous, self._mode = self._mode, mode
        log.info("door %s: mode %s -> %s", self.door_id, previous, mode)
        if mode == LOCKDOWN:
            self._end_window()
        if mode == HOLD_OPEN:
            self._cancel_held()
            self._clear_held("hold_open")
        elif previous == HOLD_OPEN and self._open:
            self._start_held(self._loop.time())
        if self._feedback is not None:
            self._feedback.lockdown(mode == LOCKDOWN)
        self._apply("mode", data={"mode": mode})

    def status(self) -> dict[str, Any]:
        """The door as ``menjin status --json`` shows it."""
        if self._open:
            state = "open"
        elif self._lock.is_unlocked:
            state = "unlocked"
        else:
            state = "locked"
        return {
            "state": state,
            "mode": self._mode,
            "relay_active": self._lock.relay_active,
            "relay": "energised" if self._lock.relay_active else "released",
            "lock": "unlocked" if self._lock.is_unlocked else "locked",
            "contact": ("absent" if self._contact is None
                        else "open" if self._open else "closed"),
            "exit_button": ("absent" if self._exit is None
                            else "pressed" if self._pressed else "released"),
            "tamper": ("absent" if self._tamper is None
                       else "tripped" if self._tampered else "ok"),
            "alarms": self._alarms(),
        }

    async def run(self) -> None:
        """Serve until cancelled, then :meth:`close` (the door part's task body)."""
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        """Relay to idle, timers off, pins released.  Idempotent; first thing on SIGTERM."""
        if self._closed:
            return
        self._closed = True
        was_unlocked = self._lock.is_unlocked
        try:
            self._lock.lock()
        finally:
            for timer in (self._relock_timer, self._held_timer, *self._settle_timers.values()):
                if timer is not None:
                    timer.cancel()
            self._settle_timers.clear()
            self._window_open = False
            try:
                self._lock.close()
            finally:
                for device in self._inputs.values():
                    device.close()
                if self._feedback is not None:
                    self._feedback.close()
        if was_unlocked:
            self._emit(Event("door.locked", door=self.door_id, reason="stopped"))
        log.info("door %s: stopped, relay idle", self.door_id)

    # ------------------------------------------------------------------ relay
    def _refusal(self, reason: str) -> str | None:
        if self._closed:
            return "stopped"
        if self._mode == LOCKDOWN and (
            reason not in LOCKDOWN_REASONS or (reason == "exit" and not self._egress)
        ):
            return "lockdown"
        if self._interlock is not None and self._interlock():
            return "interlock"
        return None

    def _apply(self, reason: str, **fields: Any) -> None:
        """Move the relay to what the mode and the window allow; the only caller of unlock()."""
        want_unlocked = not self._closed and (self._mode == HOLD_OPEN or self._window_open)
        if want_unlocked == self._lock.is_unlocked:
            return
        data = dict(fields.pop("data", {}))
        seconds = fields.pop("seconds", None)
        if self._feedback is not None:
            self._feedback.unlocked(want_unlocked)
        if want_unlocked:
            self._lock.unlock()
            if seconds is not None and self._mode != HOLD_OPEN:
                data["seconds"] = seconds
            log.info("door %s: unlocked (%s)", self.door_id, reason)
            self._emit(Event("door.unlocked", door=self.door_id, reason=reason, data=data,
                             **fields))
        else:
            self._lock.lock()
            log.info("door %s: locked (%s)", self.door_id, reason)
            self._emit(Event("door.locked", door=self.door_id, reason=reason, data=data))

    def _window_ended(self) -> None:
        self._relock_timer = None
        self._window_open = False
        self._apply("timeout")

    def _end_window(self, reason: str | None = None) -> None:
        """Close the unlock window now (door closed again, lockdown)."""
        if not self._window_open:
            return
        if self._relock_timer is not None:
            self._relock_timer.cancel()
            self._relock_timer = None
        self._window_open = False
        # Ended early: an edge stamped before now still belongs to the window, one at now not.
        self._window_until = math.nextafter(self._loop.time(), -math.inf)
        if reason is not None:
            self._apply(reason)

    # ------------------------------------------------------------------ inputs
    def _edge(self, name: str) -> None:
        """gpiozero thread: stamp the edge and hand it to the loop."""
        if self._closed:
            return
        stamp = self._loop.time()
        with contextlib.suppress(RuntimeError):  # loop already closed: the daemon is stopping
            self._loop.call_soon_threadsafe(self._safely(self._on_edge), name, stamp)

    def _on_edge(self, name: str, stamp: float) -> None:
        if self._closed:
            return
        self._first_edge.setdefault(name, stamp)
        settle_seconds = self._inputs[name].debounce_ms / MS_PER_SECOND
        timer = self._settle_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if settle_seconds <= 0:
            self._settled(name)
        else:
            self._settle_timers[name] = self._loop.call_later(
                settle_seconds, self._safely(self._settled), name)

    def _settled(self, name: str) -> None:
        self._settle_timers.pop(name, None)
        stamp = self._first_edge.pop(name, self._loop.time())
        if name == "contact" and self._contact is not None:
            if self._contact.is_open != self._open:
                if self._contact.is_open:
                    self._door_opened(stamp)
                else:
                    self._door_closed()
        elif name == "exit" and self._exit is not None:
            pressed = self._exit.is_pressed
            if pressed and not self._pressed:
                self._pressed = True
                self._exit_pressed()
            self._pressed = pressed
        elif name == "tamper" and self._tamper is not None:
            self._tamper_changed(self._tamper.is_tripped)

    def _exit_pressed(self) -> None:
        """Request to exit: the decision is recorded before the relay moves, as for cards."""
        refusal = self._refusal("exit")
        if refusal is None:
            self._emit(Event("access.granted", door=self.door_id, credential_kind="rex",
                             reason="exit"))
            self.unlock("exit", credential_kind="rex")
        else:
            self._emit(Event("access.denied", door=self.door_id, credential_kind="rex",
                             reason=refusal))
            if self._feedback is not None:
                self._feedback.denied()

    def _door_opened(self, stamp: float) -> None:
        self._open = True
        self._opened_at = stamp
        authorised = self._mode == HOLD_OPEN or (
            self._window_from <= stamp <= self._window_until)
        self._forced = not authorised
        if authorised:
            self._emit(Event("door.opened", door=self.door_id))
        else:
            log.warning("door %s: forced open (contact opened while locked)", self.door_id)
            self._emit(Event("door.opened", door=self.door_id, reason="forced"))
            self._emit(Event("door.forced", door=self.door_id,
                             reason="opened without grant or exit"))
        if self._mode != HOLD_OPEN:
            self._start_held(stamp)
        self._update_alarm()

    def _door_closed(self) -> None:
        self._open = False
        self._forced = False
        self._cancel_held()
        self._clear_held("closed")
        open_ms = round((self._loop.time() - self._opened_at) * MS_PER_SECOND)
        self._emit(Event("door.closed", door=self.door_id, data={"open_ms": open_ms}))
        if self._relock_on_close:
            self._end_window("closed")
        self._update_alarm()

    # ------------------------------------------------------------------ held open
    def _start_held(self, since: float) -> None:
        self._cancel_held()
        self._reminders = 0
        self._held_timer = self._loop.call_at(since + self._held_seconds,
                                              self._safely(self._held_alarm))

    def _held_alarm(self) -> None:
        open_seconds = round(self._loop.time() - self._opened_at, 1)
        if not self._held:
            self._held = True
            log.warning("door %s: held open for %s s", self.door_id, open_seconds)
            self._emit(Event("door.held", door=self.door_id, reason="held_open",
                             data={"open_seconds": open_seconds}))
            self._update_alarm()
        else:
            self._reminders += 1
            self._emit(Event("door.held", door=self.door_id, reason="reminder",
                             data={"open_seconds": open_seconds, "reminder": self._reminders}))
        self._held_timer = self._loop.call_later(self._reminder_seconds,
                                                 self._safely(self._held_alarm))

    def _cancel_held(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    def _clear_held(self, reason: str) -> None:
        if self._held:
            self._held = False
            self._emit(Event("door.held.cleared", door=self.door_id, reason=reason))
            self._update_alarm()

    # ------------------------------------------------------------------ tamper, alarms
    def _tamper_changed(self, tripped: bool) -> None:
        if tripped == self._tampered:
            return
        self._tampered = tripped
        if tripped:
            log.warning("door %s: tamper switch opened", self.door_id)
            self._emit(Event("tamper", door=self.door_id, reason="housing opened"))
        else:
            log.info("door %s: tamper switch closed again", self.door_id)
            self._emit(Event("tamper.cleared", door=self.door_id))
        self._update_alarm()

    def _alarms(self) -> list[str]:
        alarms = []
        if self._forced and self._open:
            alarms.append("forced")
        if self._held:
            alarms.append("held")
        if self._tampered:
            alarms.append("tamper")
        return alarms

    def _update_alarm(self) -> None:
        if self._feedback is not None:
            self._feedback.alarm(bool(self._alarms()))

    def _power_on(self) -> None:
        """Inputs already asserted at start-up: report them, without guessing how they got so."""
        if self._open:
            log.warning("door %s: open at start-up", self.door_id)
            self._emit(Event("door.opened", door=self.door_id, reason="power_on"))
            self._start_held(self._opened_at)
        if self._tampered:
            log.warning("door %s: tamper switch open at start-up", self.door_id)
            self._emit(Event("tamper", door=self.door_id, reason="power_on"))
        self._update_alarm()

    def _safely(self, callback: Callable[P, None]) -> Callable[P, None]:
        """Wrap a loop callback: an error in the door logic leaves the relay idle, never open."""

        @functools.wraps(callback)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                callback(*args, **kwargs)
            except Exception:
                log.exception("door %s: error in the door logic; relocking", self.door_id)
                self._window_open = False
                self._lock.lock()

        return guarded
