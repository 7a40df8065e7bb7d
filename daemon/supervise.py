"""Keep one part of the gate running: restart it after a failure, give up when it keeps failing.

A dead camera must never stop the card readers and a dead broker must never stop the doors, so each
part (a reader, the camera, the uplink ...) runs under :func:`supervise` inside the root task group.
A failure becomes one ``part.fault`` event, the part is restarted after a jittered, capped backoff,
and once it has stayed up for ``stable_seconds`` one ``part.restored`` event says it is back.  A
part that fails ``max_failures`` times within ``failure_window_seconds`` is beyond self-repair:
:class:`PartGaveUpError` propagates, the task group cancels everything (relays return to idle in
their ``finally`` blocks) and systemd restarts the whole unit (``Restart=always``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from daemon.events import Emit, Event
from protocol.backoff import backoff_seconds

log = logging.getLogger(__name__)

Factory = Callable[[], Awaitable[None]]

INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 60.0
STABLE_SECONDS = 5.0


class PartGaveUpError(Exception):
    """A part failed too often: the process should stop so that systemd restarts it."""

    def __init__(self, name: str, failures: int, window_seconds: float) -> None:
        super().__init__(
            f"part {name} failed {failures} times within {window_seconds:g} s; giving up"
        )
        self.name = name


@dataclass
class PartState:
    """What the status view and the watchdog know about one supervised part."""

    name: str
    running: bool = False
    failed: bool = False
    failures: int = 0
    last_error: str | None = None
    restarts: int = 0
    since: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, object]:
        state = "failed" if self.failed else ("running" if self.running else "stopped")
        out: dict[str, object] = {"state": state, "restarts": self.restarts}
        if self.last_error is not None:
            out["last_error"] = self.last_error
        return out


async def supervise(
    name: str,
    factory: Factory,
    *,
    emit: Emit,
    state: PartState | None = None,
    initial_backoff_seconds: float = INITIAL_BACKOFF_SECONDS,
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
    max_failures: int = MAX_FAILURES,
    failure_window_seconds: float = FAILURE_WINDOW_SECONDS,
    stable_seconds: float = STABLE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``factory()`` until it returns; restart it when it raises.

    Returns when the part returns normally (it has nothing more to do); raises
    :class:`PartGaveUpError` after too many failures; cancellation passes straight through.
    """
    part = state if state is not None else PartState(name)
    loop = asyncio.get_running_loop()
    failures: deque[float] = deque()
    attempt = 0

    def restored() -> None:
        nonlocal attempt
        attempt = 0
        part.failed = False
        part.last_error = None
        log.info("%s: back", name)
        emit(Event("part.restored", data={"part": name, "restarts": part.restarts}))

    while True:
        stable_timer = loop.call_later(stable_seconds, restored) if part.failed else None
        part.running = True
        try:
            await factory()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            return
        finally:
            part.running = False
            if stable_timer is not None:
                stable_timer.cancel()
        now = clock()
        failures.append(now)
        while failures and failures[0] <= now - failure_window_seconds:
            failures.popleft()
        part.failures += 1
        part.last_error = error
        if len(failures) >= max_failures:
            log.error("%s: failed %d times within %g s (%s); giving up so that the service "
                      "restarts", name, len(failures), failure_window_seconds, error)
            emit(Event("part.fault", reason="gave_up", data={"part": name, "error": error}))
            part.failed = True
            raise PartGaveUpError(name, len(failures), failure_window_seconds)
        attempt += 1
        delay = backoff_seconds(attempt, initial=initial_backoff_seconds, cap=max_backoff_seconds)
        if not part.failed:
            part.failed = True
            log.warning("%s: unavailable (%s); restarting in %.1f s", name, error, delay)
            emit(Event("part.fault", reason="error",
                       data={"part": name, "error": error, "restart_in_s": round(delay, 3)}))
        else:
            log.debug("%s: failed again (%s); restarting in %.1f s", name, error, delay)
        await asyncio.sleep(delay)
        part.restarts += 1
