"""Card + PIN at one reader: the card that waits for its PIN, and the keypad's PIN buffer.

A door with ``pin_required`` answers a known card with ``second_factor_required`` (awaiting
``pin``); the card then waits here for ``multi_factor_seconds`` while the resident types the PIN
and ``#``.  A PIN with no card waiting is dropped without an event: key presses are never
credentials on their own (a salted PIN hash cannot tell who typed it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from drivers.keypad import PinBuffer

log = logging.getLogger(__name__)


class PinEntry:
    """One reader's keypad: ``card_waiting`` after the card, ``key`` for every key pressed."""

    def __init__(self, name: str, *, card_window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.card_window_s = card_window_s
        self._clock = clock
        self.buffer = PinBuffer(clock=clock)
        self._card: str | None = None
        self._card_at = 0.0

    def card_waiting(self, card: str) -> None:
        """``card`` was presented and its door wants the PIN: keys typed before it are void."""
        self._card, self._card_at = card, self._clock()
        self.buffer.clear()

    def key(self, key: str) -> tuple[str, str] | None:
        """Feed one key; ``(card, pin)`` when ``#`` completes a PIN for a waiting card."""
        pin = self.buffer.key(key)
        if pin is None:
            return None
        card, self._card = self._card, None
        if card is None or self._clock() - self._card_at > self.card_window_s:
            log.debug("reader %s: PIN entered without a card waiting; dropped", self.name)
            return None
        return card, pin
