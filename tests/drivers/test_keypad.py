"""The per-reader PIN buffer: '#' ends, '*' clears, a pause discards, overlong entries vanish."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.keypad import PinBuffer


class FakeClock:
    """A hand-moved monotonic clock (the only thing faked here)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def typed(keys: str, *, pause_after: int | None = None, pause_s: float = 0.0) -> list[str]:
    clock = FakeClock()
    buffer = PinBuffer(timeout_s=10.0, max_digits=6, clock=clock)
    pins = []
    for i, key in enumerate(keys):
        if pause_after is not None and i == pause_after:
            clock.now += pause_s
        pin = buffer.key(key)
        if pin is not None:
            pins.append(pin)
        clock.now += 0.5
    return pins


@pytest.mark.parametrize(
    ("keys", "pins"),
    [
        ("1234#", ["1234"]),
        ("12*34#", ["34"]),
        ("#", []),
        ("1234", []),
        ("1234#5678#", ["1234", "5678"]),
        ("1234567#", []),  # longer than 6 digits: discarded whole
        ("1234567#12#", ["12"]),
        ("12*#", []),
    ],
)
def test_key_sequences(keys: str, pins: list[str]) -> None:
    assert typed(keys) == pins


def test_a_pause_discards_the_digits_typed_before_it() -> None:
    assert typed("12345678#", pause_after=2, pause_s=30.0) == ["345678"]
    assert typed("1234#", pause_after=4, pause_s=30.0) == []  # '#' alone after the pause
    assert typed("1234#", pause_after=2, pause_s=5.0) == ["1234"]


@given(st.text(alphabet="0123456789*#", max_size=40))
def test_every_pin_is_digits_within_the_limit(keys: str) -> None:
    for pin in typed(keys):
        assert pin.isdigit() and 1 <= len(pin) <= 6
