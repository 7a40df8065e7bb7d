"""Reconnect delays: doubling from ``initial`` up to ``cap``, with jitter, reset on success.

The one backoff of menjin, used by every reconnect loop (supervised parts, serial and OSDP
readers, cameras, the uplink, the station receiver).  It is pure arithmetic, so asyncio loops
``await asyncio.sleep(backoff.next())`` and threads ``stop.wait(backoff.next())`` alike; it sits
in :mod:`protocol` (no I/O, imports nothing of the project) so that drivers may use it too.
tenacity was considered: its model retries one call until it succeeds, while these loops run
forever, reset after a good session and report an outage once, which it would need bending for.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_seconds(
    attempt: int,
    *,
    initial: float,
    cap: float,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """Delay before retry number ``attempt`` (1-based): ``initial * 2**(attempt-1)``, at most
    ``cap``, then drawn between half and all of it.

    The jitter keeps parts that failed together (every serial reader after a USB hub reset, every
    gate after a broker restart) from retrying in lock-step.
    """
    delay = min(cap, initial * 2 ** min(max(0, attempt - 1), 64))
    return jitter(delay / 2, delay)


class Backoff:
    """Successive delays of one reconnect loop: :meth:`next` after a failure, :meth:`reset`
    after a success."""

    def __init__(
        self,
        initial: float,
        cap: float,
        *,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0
        self._jitter = jitter

    def next(self) -> float:
        """The delay before the next try, in seconds (one more failure counted)."""
        self.attempt += 1
        return backoff_seconds(self.attempt, initial=self.initial, cap=self.cap,
                               jitter=self._jitter)

    def reset(self) -> None:
        """Start again from ``initial`` (the connection worked)."""
        self.attempt = 0
