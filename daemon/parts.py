"""The gate's supervised parts: start, stop and match them to a config.

Every part (a door, a reader, vision, the uplink ...) runs as a named task of the root
``asyncio.TaskGroup`` under :func:`daemon.supervise.supervise`.  Parts have a criticality: doors
and card readers are critical (a door part that keeps failing escalates to a process exit, after
the relays went idle); every other part is restarted with backoff forever and reported, never by
exiting (:data:`CRITICAL_PREFIXES`).  :meth:`Parts.apply` starts,
stops and restarts parts so that they match the desired set (name → (config key, factory)):
only the parts whose config slice changed restart on a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.events import Emit
from daemon.supervise import MAX_FAILURES, PartState, supervise
from daemon.supervise import Factory as PartFactory

#: Parts whose repeated failure may stop the process (names start with one of these).
CRITICAL_PREFIXES = ("door:", "reader:")
#: A non-critical part is restarted for as long as the gate runs.
NEVER_GIVE_UP = sys.maxsize

#: name → (the config slice the part is built from, how to run it)
Desired = Mapping[str, tuple[object, PartFactory]]


@dataclass
class RunningPart:
    name: str
    key: object  # the config slice the part was built from; a reload compares it
    task: asyncio.Task[None]
    state: PartState


class Parts(Mapping[str, RunningPart]):
    """The running parts of one gate (name → :class:`RunningPart`)."""

    def __init__(self, *, emit: Emit, fixed: frozenset[str] = frozenset()) -> None:
        self._emit = emit
        self._fixed = fixed  # parts that live as long as the process, whatever a reload changes
        self._running: dict[str, RunningPart] = {}
        self._group: asyncio.TaskGroup | None = None

    def __getitem__(self, name: str) -> RunningPart:
        return self._running[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._running)

    def __len__(self) -> int:
        return len(self._running)

    def bind(self, group: asyncio.TaskGroup | None) -> None:
        """The task group new parts run in (None once it ended)."""
        self._group = group

    @property
    def running(self) -> bool:
        return self._group is not None

    def start(self, name: str, key: object, factory: PartFactory) -> None:
        assert self._group is not None
        state = PartState(name)
        limit = MAX_FAILURES if name.startswith(CRITICAL_PREFIXES) else NEVER_GIVE_UP
        task = self._group.create_task(
            supervise(name, factory, emit=self._emit, state=state, max_failures=limit), name=name
        )
        self._running[name] = RunningPart(name, key, task, state)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> None:
        """A one-off task in the root group (a reload), not supervised."""
        assert self._group is not None
        self._group.create_task(coro, name=name)

    async def stop(self, name: str) -> None:
        part = self._running.pop(name)
        part.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await part.task

    async def apply(self, desired: Desired) -> list[str]:
        """Start, stop and restart parts to match ``desired``; returns the changed names."""
        stale = [name for name, part in self._running.items() if name not in self._fixed
                 and (name not in desired or desired[name][0] != part.key)]
        for name in stale:
            await self.stop(name)
        started = []
        for name, (key, factory) in desired.items():
            if name not in self._running:
                self.start(name, key, factory)
                started.append(name)
        return sorted(set(stale) | set(started))

    def alive(self, prefix: str) -> bool:
        """True while every part whose name starts with ``prefix`` runs (and there is one)."""
        parts = [p for n, p in self._running.items() if n.startswith(prefix)]
        return bool(parts) and all(p.state.running for p in parts)
