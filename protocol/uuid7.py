"""UUIDv7 event ids (RFC 9562): sortable by time, unique, and never going backwards.

Method 1 of RFC 9562 section 6.2: a 12-bit counter in ``rand_a`` orders ids created within one
millisecond.  When the clock stands still or jumps back, the generator keeps the last millisecond
and counts on, so ids stay monotonic whatever the wall clock does; ``floor`` (the newest id issued
before, e.g. read back from the journal at start) carries that guarantee across restarts.
"""

from __future__ import annotations

import threading
import uuid

from protocol.entropy import RandomBlocks

_MS_MASK = (1 << 48) - 1
_COUNTER_MAX = 0xFFF
#: A fresh millisecond starts its counter below 2**10, leaving room to count within it.
_COUNTER_SEED_BITS = 10
#: Random words drawn from the OS at once (one system call for this many ids, or fewer: a new
#: millisecond takes one more for its counter's seed).
_ENTROPY_IDS = 512
_WORD_BYTES = 8


def uuid7_parts(value: str) -> tuple[int, int]:
    """(unix milliseconds, 12-bit counter) of a UUIDv7 string; ValueError if it is not one."""
    parsed = uuid.UUID(value)
    if parsed.version != 7:
        raise ValueError(f"{value!r} is not a UUIDv7")
    return parsed.int >> 80, (parsed.int >> 64) & _COUNTER_MAX


class Uuid7:
    """A thread-safe generator of strictly increasing UUIDv7 strings.

    ``floor``: an id this generator must never go below or repeat (None: no floor).
    """

    def __init__(self, floor: str | None = None) -> None:
        self._lock = threading.Lock()
        self._last_ms, self._counter = uuid7_parts(floor) if floor is not None else (-1, 0)
        self._random = RandomBlocks(_ENTROPY_IDS * _WORD_BYTES)

    def _random_word(self) -> int:
        """64 random bits, with no system call per id (:mod:`protocol.entropy`)."""
        return int.from_bytes(self._random.take(_WORD_BYTES))

    def new(self, ms: int) -> str:
        """An id for wall-clock time ``ms`` (UTC milliseconds), greater than every earlier one."""
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
                if self._counter > _COUNTER_MAX:
                    ms += 1
                    self._counter = 0
            else:
                self._counter = self._random_word() >> (64 - _COUNTER_SEED_BITS)
            self._last_ms = ms
            value = ((ms & _MS_MASK) << 80 | 0x7 << 76 | self._counter << 64
                     | 0b10 << 62 | self._random_word() >> 2)
        # the canonical 8-4-4-4-12 form, without uuid.UUID's checks (the value is one by
        # construction)
        digits = f"{value:032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
