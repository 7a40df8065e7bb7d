"""Card-scanning lockout: a reader flooded with refused cards stops answering unknown ones.

Someone trying card numbers one after another (a cloner sweeping a range) shows up as many denied
reads at one reader in a short time.  More than ``max_denied`` denials within ``window_seconds``
raise ``reader.attack`` once and, for ``cooldown_seconds``, that reader's *unknown* cards are
ignored (no decision, no feedback to learn from); cards the store knows keep being decided as
usual, so residents are never locked out by an attacker.  Pure logic with the clock as a parameter.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class _ReaderState:
    denials: deque[float] = field(default_factory=deque)
    locked_until: float = float("-inf")
    ignored: int = 0


class Lockout:
    """Per-reader sliding-window counter of denied reads (monotonic seconds)."""

    def __init__(
        self, *, max_denied: int = 5, window_seconds: float = 50, cooldown_seconds: float = 300
    ) -> None:
        self.max_denied = max_denied
        self.window_seconds = window_seconds
        self.cooldown_seconds = cooldown_seconds
        self._readers: dict[str, _ReaderState] = {}

    def _state(self, reader: str) -> _ReaderState:
        return self._readers.setdefault(reader, _ReaderState())

    def locked(self, reader: str, now: float) -> bool:
        """True while ``reader`` is cooling down after an attack."""
        return now < self._state(reader).locked_until

    def active(self, now: float) -> dict[str, tuple[float, int]]:
        """Readers cooling down now: ``{reader: (seconds left, unknown cards ignored so far)}``."""
        return {reader: (state.locked_until - now, state.ignored)
                for reader, state in self._readers.items() if now < state.locked_until}

    def seconds_left(self, reader: str, now: float) -> float:
        """Seconds until ``reader``'s cooldown ends (0 when it is not locked)."""
        return max(0.0, self._state(reader).locked_until - now)

    def ignored(self, reader: str) -> int:
        """Unknown cards ignored during ``reader``'s current or last cooldown."""
        return self._state(reader).ignored

    def ignore(self, reader: str) -> int:
        """Count an unknown card ignored during the cooldown; returns the running count."""
        state = self._state(reader)
        state.ignored += 1
        return state.ignored

    def denied(self, reader: str, now: float) -> bool:
        """Record a denied read; True exactly when this read starts an attack lockout."""
        state = self._state(reader)
        window = state.denials
        window.append(now)
        while window and window[0] <= now - self.window_seconds:
            window.popleft()
        if len(window) > self.max_denied and not self.locked(reader, now):
            state.locked_until = now + self.cooldown_seconds
            state.ignored = 0
            window.clear()
            return True
        return False
