"""A reader's PIN keypad: keys in (Wiegand 4/8-bit key frames, OSDP keypresses), PINs out.

Keys are collected per reader: digits fill the buffer, ``#`` ends the PIN, ``*`` clears it, and a
pause longer than ``timeout_s`` between two keys discards what was typed, so a half-typed PIN
left at the gate is never completed by the next person.  Pure and clock-driven (no I/O): the
daemon feeds it on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Pause between two keys after which the digits typed so far are discarded.
PIN_KEY_TIMEOUT_SECONDS = 10.0
#: Longest PIN accepted; more digits are someone leaning on the keypad.
PIN_MAX_DIGITS = 12
ENTER = "#"
CLEAR = "*"
DIGITS = frozenset("0123456789")


class PinBuffer:
    """Digits typed at one keypad until ``#``.

    ``key()`` returns the PIN when ``#`` ends a non-empty entry, else None.  Keys other than
    digits, ``#`` and ``*`` are ignored; an overlong entry is discarded whole.
    """

    def __init__(self, *, timeout_s: float = PIN_KEY_TIMEOUT_SECONDS,
                 max_digits: int = PIN_MAX_DIGITS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.max_digits = max_digits
        self._clock = clock
        self._digits: list[str] = []
        self._overlong = False
        self._last = 0.0

    @property
    def typing(self) -> bool:
        """True while digits wait for ``#`` (and have not timed out)."""
        return bool(self._digits) and self._clock() - self._last <= self.timeout_s

    def clear(self) -> None:
        self._digits.clear()
        self._overlong = False

    def key(self, key: str) -> str | None:
        now = self._clock()
        if now - self._last > self.timeout_s:
            self.clear()
        self._last = now
        if key == CLEAR:
            self.clear()
        elif key == ENTER:
            pin = "" if self._overlong else "".join(self._digits)
            self.clear()
            return pin or None
        elif key in DIGITS:
            if len(self._digits) >= self.max_digits:
                self._overlong = True
            else:
                self._digits.append(key)
        return None
