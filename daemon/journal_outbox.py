"""What the uplink publishes next: the journal's newly committed events, kept in memory.

The uplink reads the journal in a loop.  Read from SQLite, each event it publishes is read back
moments after the writer thread committed it: a query per window, a row per event, the in-flight
and acknowledged events excluded by the query.  On a gate that keeps up with its broker that is
the costliest part of forwarding an event.  So once a read of the store finds every undelivered
event (fewer rows than it asked for), :class:`RecentOutbox` takes over: the writer thread adds
each committed event, the uplink takes them in order, alarms first, each once.  The store stays
the truth: whatever happens that the memory cannot follow (a new connection, a refused publish,
a ``resend``, an erasure, an eviction, more than ``capacity_bytes`` waiting) forgets it, and the
next read goes to SQLite again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from daemon.events import Priority

#: Bytes kept at most (payloads and a per-event allowance); beyond this (a broker that cannot
#: keep up with a burst) the uplink reads the store again.  16 MiB hold some 35,000 routine
#: events, a burst far beyond what a gate records while connected.
DEFAULT_CAPACITY_BYTES = 16 * 1024 * 1024
#: What one event costs in memory beyond its payload (the tuple, its id and numbers), roughly.
EVENT_OVERHEAD_BYTES = 250


class Pending(NamedTuple):
    """One undelivered event as the uplink publishes it (a named tuple: the uplink reads
    thousands a second, and a tuple is built several times faster than a frozen dataclass)."""

    seq: int
    id: str
    type: str
    ts_ms: int
    priority: Priority
    payload: bytes
    portrait: Path | None = None


class RecentOutbox:
    """Committed events not yet handed to the uplink, in ``seq`` order (thread-safe).

    The protocol, for one reader (the uplink, through :meth:`daemon.journal.Journal.take`):
    :meth:`arm` before reading the store, then :meth:`settle` with the last seq that read saw
    when it returned everything; from then on :meth:`take` serves from memory (None: read the
    store).
    The writer thread calls :meth:`add` after each commit; :meth:`forget` drops the memory, and
    so does more than ``capacity_bytes`` waiting.
    """

    def __init__(self, capacity_bytes: int = DEFAULT_CAPACITY_BYTES) -> None:
        self.capacity_bytes = capacity_bytes
        self._lock = threading.Lock()
        self._events: deque[Pending] | None = None  # None: not collecting
        self._bytes = 0
        self._alarms = 0
        self._ready = False  # the store holds nothing to send that is not here or handed out
        self._generation = 0  # bumped by forget(): a settle() from before it is void
        #: The highest seq the settling read of the store saw: the writer hands a commit over a
        #: moment after making it, so one that read saw may still arrive here after settle().
        self._seen = 0

    @property
    def serving(self) -> bool:
        """Whether :meth:`take` answers from memory (a hint for the journal's writer)."""
        return self._ready

    @property
    def collecting(self) -> bool:
        """Whether committed events are wanted (a hint: :meth:`add` checks again)."""
        return self._events is not None

    def arm(self) -> int:
        """Start collecting commits; returns the token for :meth:`settle`.  Call it before the
        read of the store, so that an event committed during the read is in one or both."""
        with self._lock:
            self._events, self._alarms, self._ready, self._bytes = deque(), 0, False, 0
            return self._generation

    def settle(self, token: int, seen: int) -> None:
        """The read of the store after :meth:`arm` returned every undelivered event it saw, and
        it saw the events up to seq ``seen``: those are handed out (or were not to be, being in
        flight or delivered), the later ones are served from memory from now on."""
        with self._lock:
            if token != self._generation or self._events is None:
                return  # forgotten meanwhile: the next read goes to the store
            if self._events and self._events[0].seq <= seen:
                self._events = deque(item for item in self._events if item.seq > seen)
                self._alarms = sum(item.priority is Priority.ALARM for item in self._events)
                self._bytes = sum(_size(item) for item in self._events)
            self._seen, self._ready = max(self._seen, seen), True

    def add(self, items: Iterable[Pending]) -> None:
        """Events just committed, in ``seq`` order (the writer thread, after the commit)."""
        with self._lock:
            events = self._events
            if events is None:
                return
            for item in items:
                if item.seq <= self._seen:
                    continue  # a read of the store handed it out already
                events.append(item)
                self._bytes += _size(item)
                if item.priority is Priority.ALARM:
                    self._alarms += 1
            if self._bytes > self.capacity_bytes:
                self._forget()

    def take(self, limit: int) -> list[Pending] | None:
        """Up to ``limit`` events to publish, alarms first, then by ``seq``; each is handed out
        once.  None when the memory cannot answer: read the store."""
        with self._lock:
            events = self._events
            if not self._ready or events is None:
                return None
            out: list[Pending] = []
            if self._alarms:  # alarms overtake the routine events ahead of them
                out = [item for item in events if item.priority is Priority.ALARM][:limit]
                taken = {item.seq for item in out}
                self._events = events = deque(item for item in events if item.seq not in taken)
                self._alarms -= len(out)
            while events and len(out) < limit:
                out.append(events.popleft())
            self._bytes -= sum(_size(item) for item in out)
            return out

    def forget(self) -> None:
        """Drop the memory: the next read goes to the store."""
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._events, self._alarms, self._ready, self._bytes = None, 0, False, 0
        self._generation += 1


def _size(item: Pending) -> int:
    return len(item.payload) + EVENT_OVERHEAD_BYTES
