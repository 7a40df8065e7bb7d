"""The door state machine on MockFactory pins, one transition at a time (virtual clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from daemon.config import ContactSection, InputSection, Wiring
from daemon.door import DoorController
from daemon.events import Event
from daemon.simulate import SimulatedBoard
from drivers.inputs import DoorContact, ExitButton
from drivers.lock import Lock
from tests.daemon.door_rig import (
    BUZZER_PIN,
    GREEN_PIN,
    LOCK_PIN,
    RED_PIN,
    DoorRig,
    make_rig,
)

pytestmark = pytest.mark.timeout(30)

#: How long a real-time (simulate mode) test waits for the door to react before it fails.
WAIT_SECONDS = 10.0


@pytest.fixture
def rig() -> Iterator[DoorRig]:
    r = make_rig()
    yield r
    r.close()


def reasons(rig: DoorRig, event_type: str) -> list[str | None]:
    return [e.reason for e in rig.events if e.type == event_type]


# ---------------------------------------------------------------------- relay levels
@pytest.mark.parametrize(
    ("fail_mode", "active_high", "idle_high", "unlocked_high"),
    [
        ("secure", True, False, True),  # strike: energised = unlocked
        ("secure", False, True, False),
        ("safe", True, True, False),  # maglock: energised = locked
        ("safe", False, False, True),
    ],
)
def test_relay_levels_idle_unlocked_and_after_stop(
    fail_mode: str, active_high: bool, idle_high: bool, unlocked_high: bool
) -> None:
    rig = make_rig(fail_mode=fail_mode, active_high=active_high)
    try:
        assert rig.relay_pin_high() is idle_high
        assert rig.door.grant("card") is None
        assert rig.relay_pin_high() is unlocked_high
        assert rig.door.status()["state"] == "unlocked"
        rig.door.close()  # SIGTERM while unlocked
        assert rig.relay_pin_high() is idle_high
        assert rig.events[-1] == Event("door.locked", door="front", reason="stopped",
                                       ts_ms=rig.events[-1].ts_ms)
    finally:
        rig.close()


def test_grant_unlocks_for_the_pulse_then_relocks(rig: DoorRig) -> None:
    assert rig.door.grant("card", person="p1") is None
    unlocked = rig.events[0]
    assert (unlocked.type, unlocked.reason, unlocked.person, unlocked.credential_kind) == (
        "door.unlocked", "grant", "p1", "card")
    assert unlocked.data["seconds"] == 5.0
    rig.loop.advance(4.9)
    assert rig.lock.is_unlocked
    rig.loop.advance(0.1)
    assert not rig.lock.is_unlocked
    assert rig.types() == ["door.unlocked", "door.locked"]
    assert reasons(rig, "door.locked") == ["timeout"]


def test_extending_an_unlock_keeps_one_timer(rig: DoorRig) -> None:
    rig.door.grant("card")
    rig.loop.advance(3)
    rig.door.grant("face")
    live = [t for t in rig.loop.timers if not t.cancelled()]
    assert [t.when() for t in live] == [rig.loop.now + 5]
    rig.loop.advance(4.9)  # 7.9 s after the first grant: past its end, inside the second
    assert rig.lock.is_unlocked
    rig.loop.advance(0.1)
    assert not rig.lock.is_unlocked
    assert rig.types() == ["door.unlocked", "door.locked"]


def test_a_shorter_unlock_does_not_cut_a_longer_one(rig: DoorRig) -> None:
    rig.door.grant("remote", seconds=20)
    rig.loop.advance(1)
    rig.door.grant("card", seconds=2)
    rig.loop.advance(10)
    assert rig.lock.is_unlocked


@pytest.mark.parametrize(("relock_on_close", "locked_after_close"), [(True, True), (False, False)])
def test_relock_on_close(relock_on_close: bool, locked_after_close: bool) -> None:
    rig = make_rig(relock_on_close=relock_on_close)
    try:
        rig.door.grant("card")
        rig.loop.advance(1)
        rig.open_door()
        rig.loop.advance(1)
        rig.close_door()
        assert (not rig.lock.is_unlocked) is locked_after_close
        assert rig.types()[:3] == ["door.unlocked", "door.opened", "door.closed"]
        assert rig.count("door.forced") == 0
        rig.loop.advance(5)
        assert not rig.lock.is_unlocked
        assert rig.count("door.locked") == 1
    finally:
        rig.close()


# ---------------------------------------------------------------------- forced, bounce
@pytest.mark.parametrize(("debounce_ms", "bounce"), [(0, 0), (0, 4), (30, 0), (30, 6)])
def test_forced_opening_is_one_alarm_even_with_bounce(debounce_ms: int, bounce: int) -> None:
    rig = make_rig(debounce_ms=debounce_ms)
    try:
        rig.open_door(bounce=bounce)
        assert rig.types() == ["door.opened", "door.forced"]
        assert rig.door.status()["alarms"] == ["forced"]
        rig.loop.advance(1)
        rig.close_door(bounce=bounce)
        assert rig.types() == ["door.opened", "door.forced", "door.closed"]
        assert rig.door.status()["alarms"] == []
        assert not rig.lock.is_unlocked
    finally:
        rig.close()


def test_a_glitch_shorter_than_the_debounce_time_is_no_opening() -> None:
    rig = make_rig(debounce_ms=30)
    try:
        rig.set_input(27, "normally_closed", True)
        rig.set_input(27, "normally_closed", False)
        rig.loop.settle()
        rig.loop.advance(1)
        assert rig.events == []
        assert rig.door.status()["contact"] == "closed"
    finally:
        rig.close()


@pytest.mark.parametrize("wiring", ["normally_open", "normally_closed"])
def test_contact_wiring(wiring: str) -> None:
    rig = make_rig(contact_wiring=wiring)
    try:
        assert rig.door.status()["contact"] == "closed"
        rig.open_door()
        assert rig.door.status()["contact"] == "open"
        assert rig.count("door.forced") == 1
    finally:
        rig.close()


@pytest.mark.parametrize(("open_after_s", "forced"), [(4.999, False), (5.0, False), (5.001, True)])
def test_door_opened_at_the_relock_instant(open_after_s: float, forced: bool) -> None:
    rig = make_rig()
    try:
        rig.door.grant("card")
        rig.loop.advance(open_after_s)
        rig.open_door()
        rig.loop.advance(1)
        assert rig.count("door.forced") == int(forced)
        assert not rig.lock.is_unlocked  # the pulse ended on time either way
    finally:
        rig.close()


# ---------------------------------------------------------------------- exit button
def test_exit_press_unlocks_and_suppresses_forced(rig: DoorRig) -> None:
    rig.press_exit()
    assert rig.lock.is_unlocked
    rig.open_door()
    assert rig.types() == ["access.granted", "door.unlocked", "door.opened"]
    assert (rig.events[0].credential_kind, rig.events[0].reason) == ("rex", "exit")
    assert (rig.events[1].credential_kind, rig.events[1].reason) == ("rex", "exit")
    rig.close_door()
    assert rig.count("door.forced") == 0


def test_exit_press_during_a_grant_extends_without_stacking(rig: DoorRig) -> None:
    rig.door.grant("card")
    rig.loop.advance(4)
    rig.press_exit()
    assert rig.count("door.unlocked") == 1
    assert len([t for t in rig.loop.timers if not t.cancelled()]) == 1
    rig.loop.advance(4.5)  # 8.5 s after the grant, 4.5 s after the press
    assert rig.lock.is_unlocked
    rig.open_door()
    assert rig.count("door.forced") == 0
    rig.loop.advance(0.5)
    assert not rig.lock.is_unlocked


def test_holding_the_exit_button_is_one_press(rig: DoorRig) -> None:
    rig.set_input(22, "normally_open", True)
    rig.loop.settle()
    rig.set_input(22, "normally_open", True)
    rig.loop.settle()
    assert rig.door.status()["exit_button"] == "pressed"
    assert rig.count("access.granted") == 1


# ---------------------------------------------------------------------- held open
def test_held_open_alarm_reminders_and_clear(rig: DoorRig) -> None:
    rig.door.grant("card")
    rig.open_door()
    rig.loop.advance(29.9)
    assert rig.count("door.held") == 0
    rig.loop.advance(0.1)
    assert reasons(rig, "door.held") == ["held_open"]
    assert rig.door.status()["alarms"] == ["held"]
    rig.loop.advance(125)
    assert reasons(rig, "door.held") == ["held_open", "reminder", "reminder"]
    assert [e.data["reminder"] for e in rig.events if e.reason == "reminder"] == [1, 2]
    rig.close_door()
    assert rig.types()[-2:] == ["door.held.cleared", "door.closed"]
    rig.loop.advance(200)
    assert rig.count("door.held") == 3
    assert rig.door.status()["alarms"] == []


def test_closing_before_the_limit_raises_nothing(rig: DoorRig) -> None:
    rig.door.grant("card")
    rig.open_door()
    rig.loop.advance(29)
    rig.close_door()
    rig.loop.advance(100)
    assert rig.count("door.held") == 0
    assert rig.count("door.held.cleared") == 0


def test_power_on_with_the_door_open() -> None:
    rig = make_rig(door_open_at_start=True)
    try:
        assert rig.types() == ["door.opened"]
        assert rig.events[0].reason == "power_on"
        assert not rig.lock.is_unlocked
        assert rig.door.status()["state"] == "open"
        rig.loop.advance(30)
        assert reasons(rig, "door.held") == ["held_open"]
        rig.close_door()
        assert rig.count("door.forced") == 0
        assert rig.types()[-2:] == ["door.held.cleared", "door.closed"]
    finally:
        rig.close()


# ---------------------------------------------------------------------- modes
def test_hold_open_mode(rig: DoorRig) -> None:
    rig.door.set_mode("hold_open")
    assert rig.lock.is_unlocked
    rig.open_door()
    rig.loop.advance(500)
    assert rig.count("door.forced") == 0 and rig.count("door.held") == 0
    rig.door.set_mode("normal")
    assert not rig.lock.is_unlocked
    assert [e.data.get("mode") for e in rig.events if e.type.startswith("door.")
            and e.reason == "mode"] == ["hold_open", "normal"]
    rig.loop.advance(30)  # still open: the held limit counts from the end of hold-open
    assert reasons(rig, "door.held") == ["held_open"]


def test_entering_hold_open_clears_a_held_alarm(rig: DoorRig) -> None:
    rig.open_door()
    rig.loop.advance(31)
    rig.door.set_mode("hold_open")
    assert rig.door.status()["alarms"] == ["forced"]
    assert rig.count("door.held.cleared") == 1
    rig.loop.advance(200)
    assert rig.count("door.held") == 1


def test_lockdown_refuses_grants_but_not_remote_or_exit(rig: DoorRig) -> None:
    rig.door.grant("card")
    rig.door.set_mode("lockdown")
    assert not rig.lock.is_unlocked  # an unlock in progress ends at once
    assert rig.door.grant("card") == "lockdown"
    assert rig.door.grant("face", person="p1") == "lockdown"
    assert not rig.lock.is_unlocked
    assert rig.door.grant("remote", seconds=3) is None
    assert rig.lock.is_unlocked
    rig.loop.advance(3)
    rig.press_exit()
    assert rig.lock.is_unlocked
    assert reasons(rig, "door.unlocked") == ["grant", "remote", "exit"]


def test_lockdown_on_a_door_that_is_no_egress_route() -> None:
    rig = make_rig(egress=False)
    try:
        rig.press_exit()  # normal mode: the button works
        assert rig.lock.is_unlocked
        rig.loop.advance(6)
        rig.door.set_mode("lockdown")
        rig.press_exit()
        assert not rig.lock.is_unlocked
        denied = [e for e in rig.events if e.type == "access.denied"]
        assert [(e.credential_kind, e.reason) for e in denied] == [("rex", "lockdown")]
        rig.open_door()
        assert rig.count("door.forced") == 1
    finally:
        rig.close()


@pytest.mark.parametrize("seconds", [0, -1, 301, float("inf"), float("nan")])
def test_a_pulse_must_end(rig: DoorRig, seconds: float) -> None:
    with pytest.raises(ValueError, match=r"unlock seconds must be > 0 and <= 300, not"):
        rig.door.grant("remote", seconds=seconds)
    assert not rig.lock.is_unlocked
    assert rig.events == []


def test_unknown_mode_is_refused(rig: DoorRig) -> None:
    with pytest.raises(ValueError, match="door mode must be one of normal, hold_open, lockdown"):
        rig.door.set_mode("party")
    assert rig.door.mode == "normal"


# ---------------------------------------------------------------------- interlock
def test_interlock_between_two_doors() -> None:
    doors: dict[str, DoorController] = {}
    inner = make_rig(interlock=lambda: not doors["outer"].secured)
    outer = make_rig(interlock=lambda: not doors["inner"].secured)
    doors.update(inner=inner.door, outer=outer.door)
    try:
        assert outer.door.grant("card") is None
        assert inner.door.grant("card") == "interlock"  # outer unlocked
        outer.open_door()
        outer.loop.advance(5)  # pulse over, outer still open
        assert inner.door.grant("card") == "interlock"
        inner.press_exit()
        assert not inner.lock.is_unlocked
        assert [e.reason for e in inner.events if e.type == "access.denied"] == ["interlock"]
        outer.close_door()
        assert inner.door.grant("card") is None
        assert outer.door.grant("card") == "interlock"
    finally:
        inner.close()
        outer.close()


# ---------------------------------------------------------------------- tamper, feedback
def test_tamper_and_clear(rig: DoorRig) -> None:
    rig.set_tamper(True)
    assert rig.types() == ["tamper"]
    assert rig.door.status()["alarms"] == ["tamper"]
    rig.set_tamper(True)
    rig.set_tamper(False)
    assert rig.types() == ["tamper", "tamper.cleared"]
    assert rig.door.status()["tamper"] == "ok"


def test_tamper_open_at_power_on() -> None:
    rig = make_rig(tamper_at_start=True)
    try:
        assert [(e.type, e.reason) for e in rig.events] == [("tamper", "power_on")]
    finally:
        rig.close()


def test_green_follows_the_lock_and_alarm_feedback_the_alarms() -> None:
    rig = make_rig(feedback=True)
    try:
        rig.door.grant("card")
        assert rig.pin(GREEN_PIN).state
        rig.loop.advance(6)
        assert not rig.pin(GREEN_PIN).state
        rig.open_door()
        assert rig.pin(RED_PIN).state and rig.pin(BUZZER_PIN).state
        rig.close_door()
        assert not rig.pin(RED_PIN).state and not rig.pin(BUZZER_PIN).state
    finally:
        rig.close()


# ---------------------------------------------------------------------- failures, stop
def test_an_error_in_the_logic_leaves_the_relay_idle() -> None:
    def emit(event: Event) -> None:
        if event.type == "door.unlocked":
            raise RuntimeError("journal full")

    rig = make_rig()
    try:
        rig.door._emit = emit  # a consumer that fails in the middle of a transition
        rig.press_exit()
        assert not rig.lock.is_unlocked
        assert not rig.relay_pin_high()
    finally:
        rig.close()


def test_stopped_door_refuses_and_ignores_inputs(rig: DoorRig) -> None:
    rig.door.set_mode("hold_open")
    rig.door.close()
    assert not rig.relay_pin_high()
    assert rig.door.grant("card") == "stopped"
    assert rig.pin(LOCK_PIN).function == "input"  # released


def test_status_shape(rig: DoorRig) -> None:
    rig.door.grant("card")
    rig.open_door()
    assert rig.door.status() == {
        "state": "open", "mode": "normal", "relay_active": True, "relay": "energised",
        "lock": "unlocked", "contact": "open", "exit_button": "released", "tamper": "ok",
        "alarms": [],
    }


async def test_run_closes_the_door_on_cancel() -> None:
    factory = MockFactory()
    lock = Lock(LOCK_PIN, pin_factory=factory)
    door = DoorController("front", lock=lock, emit=lambda e: None)
    door.set_mode("hold_open")
    task = asyncio.create_task(door.run())
    await asyncio.sleep(0)
    assert lock.is_unlocked
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not lock.is_unlocked
    assert not factory.pin(LOCK_PIN).state
    factory.close()


# ---------------------------------------------------------------------- simulate mode
async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_simulated_inputs_reach_the_door_through_the_mock_pins() -> None:
    """`menjin sim press/door` act on the SimulatedBoard's pins; the door sees real edges."""
    board = SimulatedBoard()
    contact_section = ContactSection(pin=27, wiring=Wiring.NORMALLY_CLOSED, debounce_ms=10)
    exit_section = InputSection(pin=22, wiring=Wiring.NORMALLY_OPEN, debounce_ms=10)
    board.set_input(contact_section, False)  # the door is shut before the daemon starts
    events: list[Event] = []
    factory = board.pin_factory
    door = DoorController(
        "front", lock=Lock(17, pin_factory=factory),
        contact=DoorContact(27, wiring=contact_section.wiring, debounce_ms=10,
                            pin_factory=factory),
        exit_button=ExitButton(22, wiring=exit_section.wiring, debounce_ms=10,
                               pin_factory=factory),
        emit=events.append,
    )
    try:
        assert events == []  # shut at start-up: no power-on opening
        await board.press(exit_section)
        await wait_for(lambda: door.status()["lock"] == "unlocked", "the exit unlock")
        board.set_input(contact_section, True)
        await wait_for(lambda: door.is_open, "the opening")
        board.set_input(contact_section, False)
        await wait_for(lambda: not door.is_open, "the closing")
        assert [e.type for e in events] == ["access.granted", "door.unlocked", "door.opened",
                                            "door.closed", "door.locked"]
    finally:
        door.close()
        board.close()
