"""Door GPIO drivers on gpiozero MockFactory pins: factory choice, lock relay, inputs, feedback."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from drivers.feedback import Feedback, FeedbackFanout
from drivers.gpio import GpioBackendError, pin_factory
from drivers.inputs import DoorContact, ExitButton, SwitchInput, TamperSwitch
from drivers.lock import Lock

pytestmark = pytest.mark.timeout(30)

#: How long a test waits for a background blink pattern to finish before it gives up.
PATTERN_WAIT_SECONDS = 10.0


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.close()


def mock_pin(factory: MockFactory, number: int) -> MockPin:
    pin: MockPin = factory.pin(number)
    return pin


# ---------------------------------------------------------------------- pin factory
def test_mock_backend_gives_mock_pins() -> None:
    f = pin_factory("mock")
    try:
        assert isinstance(f, MockFactory)
    finally:
        f.close()


def test_unknown_backend_is_named_in_the_error() -> None:
    with pytest.raises(GpioBackendError,
                       match=r"unknown gpio backend 'pigpio' \(use one of lgpio, mock\)"):
        pin_factory("pigpio")
    with pytest.raises(GpioBackendError, match=r"unknown gpio backend 'rpigpio'"):
        pin_factory("rpigpio")


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None, reason="lgpio is installed")
def test_missing_lgpio_gives_the_install_hint() -> None:
    with pytest.raises(GpioBackendError, match="apt install python3-lgpio"):
        pin_factory("lgpio")


# ---------------------------------------------------------------------- lock relay
@pytest.mark.parametrize(
    ("fail_mode", "active_high", "idle_level", "relay_active_when_idle"),
    [
        ("secure", True, False, False),
        ("secure", False, True, False),
        ("safe", True, True, True),
        ("safe", False, False, True),
    ],
)
def test_lock_levels(factory: MockFactory, fail_mode: str, active_high: bool, idle_level: bool,
                     relay_active_when_idle: bool) -> None:
    lock = Lock(17, active_high=active_high, fail_mode=fail_mode, pin_factory=factory)
    pin = mock_pin(factory, 17)
    # Idle from the first level the pin ever drove: no glitch through the unlocked state.
    assert [s.state for s in pin.states[1:]] in ([], [idle_level])
    assert pin.state is idle_level
    assert lock.relay_active is relay_active_when_idle
    assert not lock.is_unlocked
    lock.unlock()
    assert pin.state is (not idle_level)
    assert lock.is_unlocked
    lock.lock()
    assert pin.state is idle_level
    lock.unlock()
    lock.close()
    assert pin.state is idle_level
    assert pin.function == "input"
    assert lock.relay_active is relay_active_when_idle


def test_lock_context_manager_relocks_on_exception(factory: MockFactory) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lock(4, pin_factory=factory) as lock:
        lock.unlock()
        raise RuntimeError("boom")
    assert mock_pin(factory, 4).state is False
    lock.lock()  # harmless after close
    lock.close()
    with pytest.raises(RuntimeError, match="lock is closed"):
        lock.unlock()


def test_lock_rejects_an_unknown_fail_mode(factory: MockFactory) -> None:
    with pytest.raises(ValueError, match="fail_mode must be one of secure, safe, not 'open'"):
        Lock(4, fail_mode="open", pin_factory=factory)


# ---------------------------------------------------------------------- inputs
@pytest.mark.parametrize(
    ("wiring", "level", "asserted"),
    [
        ("normally_open", True, False),  # switch open, pull-up holds the line high
        ("normally_open", False, True),
        ("normally_closed", False, False),  # closed circuit pulls the line low
        ("normally_closed", True, True),
    ],
)
def test_input_wiring(factory: MockFactory, wiring: str, level: bool, asserted: bool) -> None:
    button = SwitchInput(5, wiring=wiring, pin_factory=factory)
    pin = mock_pin(factory, 5)
    if level:
        pin.drive_high()
    else:
        pin.drive_low()
    assert button.asserted is asserted
    button.close()


def test_inputs_use_the_pull_up_and_the_debounce_time(factory: MockFactory) -> None:
    contact = DoorContact(6, debounce_ms=25, pin_factory=factory)
    assert mock_pin(factory, 6).pull == "up"
    assert mock_pin(factory, 6).bounce == pytest.approx(0.025)
    assert contact.wiring == "normally_closed"
    mock_pin(factory, 6).drive_low()
    assert not contact.is_open
    button = ExitButton(7, debounce_ms=0, pin_factory=factory)
    assert mock_pin(factory, 7).bounce is None
    assert not button.is_pressed  # normally-open, pull-up: released reads high
    contact.close()
    button.close()


def test_every_edge_is_reported(factory: MockFactory) -> None:
    tamper = TamperSwitch(8, wiring="normally_closed", pin_factory=factory)
    pin = mock_pin(factory, 8)
    pin.drive_low()
    edges: list[bool] = []
    tamper.when_changed = lambda: edges.append(tamper.is_tripped)
    for _ in range(3):  # a bouncing switch: the driver passes every edge on
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
    assert edges == [True, False] * 3 + [True]
    tamper.close()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"wiring": "open"}, "wiring must be one of normally_open, normally_closed, not 'open'"),
    ({"debounce_ms": -1}, "debounce_ms must be >= 0, not -1"),
])
def test_input_rejects_bad_settings(factory: MockFactory, kwargs: dict[str, object],
                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SwitchInput(9, pin_factory=factory, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- feedback
def wait_for_states(pin: MockPin, count: int) -> list[bool]:
    """The pin's level history once the background pattern has produced ``count`` levels."""
    deadline = time.monotonic() + PATTERN_WAIT_SECONDS
    while len(pin.states) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [s.state for s in pin.states]


GREEN, RED, BUZZER = 16, 20, 21  # no fixed pull resistors on these (GPIO2/3 have)


def test_denied_is_three_short_flashes_and_beeps(factory: MockFactory) -> None:
    feedback = Feedback(red=RED, buzzer=BUZZER, pin_factory=factory)
    feedback.denied()
    expected = [False, True, False, True, False, True, False]
    assert wait_for_states(mock_pin(factory, RED), 7) == expected
    assert wait_for_states(mock_pin(factory, BUZZER), 7) == expected
    feedback.close()


def test_granted_is_one_beep_and_green_shows_the_unlock(factory: MockFactory) -> None:
    feedback = Feedback(green=GREEN, buzzer=BUZZER, pin_factory=factory)
    feedback.granted()
    assert wait_for_states(mock_pin(factory, BUZZER), 3) == [False, True, False]
    feedback.unlocked(True)
    assert mock_pin(factory, GREEN).state
    feedback.unlocked(False)
    assert [s.state for s in mock_pin(factory, GREEN).states] == [False, True, False]
    feedback.close()


def test_alarm_is_continuous_until_cleared_and_not_silenced(factory: MockFactory) -> None:
    feedback = Feedback(green=GREEN, red=RED, buzzer=BUZZER, pin_factory=factory)
    feedback.alarm(True)
    feedback.denied()
    feedback.granted()
    assert mock_pin(factory, RED).state and mock_pin(factory, BUZZER).state
    assert feedback.alarm_active
    feedback.alarm(False)
    assert not mock_pin(factory, RED).state and not mock_pin(factory, BUZZER).state
    assert [s.state for s in mock_pin(factory, BUZZER).states] == [False, True, False]
    feedback.close()


def test_lockdown_is_red_steady_and_an_alarm_wins(factory: MockFactory) -> None:
    feedback = Feedback(red=RED, buzzer=BUZZER, pin_factory=factory)
    feedback.lockdown(True)
    assert mock_pin(factory, RED).state and not mock_pin(factory, BUZZER).state
    feedback.alarm(True)
    feedback.alarm(False)  # the alarm clears, the lockdown still shows
    assert mock_pin(factory, RED).state and not mock_pin(factory, BUZZER).state
    feedback.lockdown(False)
    assert not mock_pin(factory, RED).state
    feedback.close()


def test_fanout_drives_every_sink_and_tells_a_late_one_the_state(factory: MockFactory) -> None:
    door_leds = Feedback(green=GREEN, pin_factory=factory)
    reader_leds = Feedback(red=RED, buzzer=BUZZER, pin_factory=factory)
    fanout = FeedbackFanout(door_leds)
    fanout.unlocked(True)
    assert mock_pin(factory, GREEN).state
    fanout.alarm(True)  # e.g. door held open, before the reader came online
    fanout.add(reader_leds)
    assert mock_pin(factory, RED).state and mock_pin(factory, BUZZER).state
    fanout.alarm(False)
    assert not mock_pin(factory, RED).state
    fanout.remove(reader_leds)
    fanout.lockdown(True)
    assert not mock_pin(factory, RED).state  # a removed sink hears nothing more
    fanout.close()
    assert fanout.local is None
    reader_leds.close()
