"""Events: the one record of everything that happens at the gate.

Components build an :class:`Event` and hand it to an ``emit`` callable; the journal gives it its
identity (UUIDv7 ``id``, per-gate gapless ``seq``, gate id, schema version) when it records it, so
nothing is published that was not recorded first.  Types are the dotted names of the MQTT contract
(``docs/mqtt.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class Priority(IntEnum):
    """Upload and eviction order: alarms first and never evicted, captures last, evicted first."""

    CAPTURE = 0
    ROUTINE = 1
    ACCESS = 2
    ALARM = 3


#: Event types that are alarms: fsynced, uplinked ahead of backlog, never evicted.
ALARM_TYPES = frozenset(
    {
        "door.forced",
        "door.held",
        "tamper",
        "access.duress",
        "reader.attack",
        "command.refused",
    }
)
#: Access decisions: fsynced by default, like alarms.
ACCESS_TYPES = frozenset({"access.granted", "access.denied"})

#: Credential kinds of the contract.
CREDENTIAL_KINDS = ("card", "face", "rex", "remote", "pin")


def now_ms() -> int:
    """UTC wall-clock time in milliseconds (events carry wall time; timers use monotonic time)."""
    return time.time_ns() // 1_000_000


def priority_of(event_type: str) -> Priority:
    """The priority class of an event type."""
    if event_type in ALARM_TYPES:
        return Priority.ALARM
    if event_type in ACCESS_TYPES:
        return Priority.ACCESS
    if event_type == "capture":
        return Priority.CAPTURE
    return Priority.ROUTINE


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, before the journal numbered it.

    ``data`` holds type-specific fields (JSON-serialisable).  ``person`` is a person id, never a
    name; ``credential_ref`` is the canonical (possibly keyed-hash) card reference, never a raw
    number when hashing is configured.
    """

    type: str
    door: str | None = None
    reader: str | None = None
    credential_kind: str | None = None
    credential_ref: str | None = None
    person: str | None = None
    reason: str | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    ts_ms: int = field(default_factory=now_ms)

    @property
    def priority(self) -> Priority:
        return priority_of(self.type)

    @property
    def is_alarm(self) -> bool:
        return self.type in ALARM_TYPES

    def to_dict(self) -> dict[str, Any]:
        """The event's own fields as a JSON-ready dict (the journal adds the identity fields)."""
        out: dict[str, Any] = {"type": self.type, "ts_ms": self.ts_ms}
        for key in ("door", "reader", "credential_kind", "credential_ref", "person", "reason"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.data:
            out["data"] = dict(self.data)
        return out


Emit = Callable[[Event], None]


class EventBus:
    """In-process fan-out of events to subscribers (journal, status view, CLI followers).

    Subscribers run synchronously in the emitting thread (the event loop); a subscriber that
    raises is logged and skipped, so one broken consumer never silences the others.
    """

    def __init__(self) -> None:
        self._subscribers: list[Emit] = []

    def subscribe(self, callback: Emit) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it again."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a consumer bug must not stop the door
                log.exception("event subscriber failed on %s", event.type)
