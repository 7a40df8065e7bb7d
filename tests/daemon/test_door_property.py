"""Random sequences of grants, exit presses, contact changes, mode changes and clock advances.

A small reference model follows the rules of the issue independently of the controller: the lock
may be open only inside an accepted grant/exit window or in hold-open mode; every opening outside
such a window is one ``door.forced``; every held-open episode is one ``door.held`` (reminders
aside).  The controller on MockFactory pins must agree with it after every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.daemon.door_rig import make_rig

UNLOCK_SECONDS = 2.0
#: Never a sum of the advance steps below, so a close never coincides with the held deadline.
HELD_OPEN_SECONDS = 3.1
REMINDER_SECONDS = 1.0
#: Binary-exact steps: the clock lands exactly on relock instants (the boundary case).
ADVANCE_STEPS = (0.25, 0.5, 1.0, 2.0, 5.0)

operations = st.one_of(
    st.tuples(st.just("grant"), st.sampled_from(["card", "face", "remote"])),
    st.tuples(st.just("exit"), st.none()),
    st.tuples(st.just("open"), st.integers(0, 3)),
    st.tuples(st.just("close"), st.integers(0, 3)),
    st.tuples(st.just("advance"), st.sampled_from(ADVANCE_STEPS)),
    st.tuples(st.just("mode"), st.sampled_from(["normal", "normal", "hold_open", "lockdown"])),
)


@dataclass
class Model:
    """What the rules say should have happened, kept apart from the controller's own state."""

    relock_on_close: bool
    egress: bool
    now: float
    mode: str = "normal"
    window_open: bool = False
    window_from: float = -math.inf
    window_until: float = -math.inf
    ended_early: bool = False
    door_open: bool = False
    held_start: float | None = None
    held_alarmed: bool = False
    forced: int = 0
    held: int = 0

    def unlock(self, seconds: float) -> None:
        if not self.window_open:
            self.window_open, self.window_from, self.window_until = True, self.now, -math.inf
        self.window_until = max(self.window_until, self.now + seconds)
        self.ended_early = False

    def end_window_early(self) -> None:
        if self.window_open:
            self.window_open, self.window_until, self.ended_early = False, self.now, True

    def grant(self, kind: str) -> bool:
        if self.mode == "lockdown" and kind != "remote":
            return False
        self.unlock(UNLOCK_SECONDS)
        return True

    def exit(self) -> None:
        if self.mode == "lockdown" and not self.egress:
            return
        self.unlock(UNLOCK_SECONDS)

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        if self.window_open and self.window_until <= target:
            self.window_open = False
        if (self.held_start is not None and not self.held_alarmed
                and self.held_start + HELD_OPEN_SECONDS <= target):
            self.held += 1
            self.held_alarmed = True
        self.now = target

    def open(self) -> None:
        if self.door_open:
            return
        inside = self.window_from <= self.now and (
            self.now < self.window_until if self.ended_early else self.now <= self.window_until)
        if self.mode != "hold_open" and not inside:
            self.forced += 1
        self.door_open = True
        self.held_start = self.now if self.mode != "hold_open" else None
        self.held_alarmed = False

    def close(self) -> None:
        if not self.door_open:
            return
        self.door_open = False
        self.held_start = None
        if self.relock_on_close:
            self.end_window_early()

    def set_mode(self, mode: str) -> None:
        previous, self.mode = self.mode, mode
        if mode == previous:
            return
        if mode == "lockdown":
            self.end_window_early()
        if mode == "hold_open":
            self.held_start = None
        elif previous == "hold_open" and self.door_open:
            self.held_start, self.held_alarmed = self.now, False

    @property
    def may_be_unlocked(self) -> bool:
        return self.mode == "hold_open" or self.window_open


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(operations, max_size=40),
    relock_on_close=st.booleans(),
    egress=st.booleans(),
    fail_mode=st.sampled_from(["secure", "safe"]),
    active_high=st.booleans(),
)
# The boundary case: the door pulled open at the very instant the pulse ends.
@example(steps=[("grant", "card"), ("advance", UNLOCK_SECONDS), ("open", 0)],
         relock_on_close=True, egress=True, fail_mode="secure", active_high=True)
def test_relay_and_alarms_follow_the_rules(
    steps: list[tuple[str, object]], relock_on_close: bool, egress: bool, fail_mode: str,
    active_high: bool,
) -> None:
    rig = make_rig(unlock_seconds=UNLOCK_SECONDS, held_open_seconds=HELD_OPEN_SECONDS,
                   held_reminder_seconds=REMINDER_SECONDS, relock_on_close=relock_on_close,
                   egress=egress, fail_mode=fail_mode, active_high=active_high)
    # Pin level while unlocked: strike energised (maglock released), inverted for active-low.
    unlocked_high = (fail_mode == "secure") == active_high
    model = Model(relock_on_close=relock_on_close, egress=egress, now=rig.loop.now)
    try:
        for op, arg in steps:
            if op == "grant":
                accepted = rig.door.grant(str(arg)) is None
                assert accepted is model.grant(str(arg))
            elif op == "exit":
                rig.press_exit()
                model.exit()
            elif op == "open":
                rig.open_door(bounce=int(str(arg)))
                model.open()
            elif op == "close":
                rig.close_door(bounce=int(str(arg)))
                model.close()
            elif op == "advance":
                rig.loop.advance(float(str(arg)))
                model.advance(float(str(arg)))
            else:
                rig.door.set_mode(str(arg))
                model.set_mode(str(arg))
            assert rig.lock.is_unlocked is model.may_be_unlocked, (op, arg)
            assert rig.relay_pin_high() is (rig.lock.is_unlocked == unlocked_high)
            assert rig.count("door.forced") == model.forced, (op, arg)
            assert rig.count("door.held", "held_open") == model.held, (op, arg)
            assert rig.count("door.opened") - rig.count("door.closed") == int(model.door_open)
        rig.door.close()
        assert rig.relay_pin_high() is not unlocked_high  # idle on the way out
    finally:
        rig.close()
