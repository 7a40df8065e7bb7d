"""Events: the model both sides share, the dotted type names and the schema version.

A component builds an :class:`Event` and hands it to an ``emit`` callable; the gate's journal gives
it its identity (UUIDv7 ``id``, per-gate gapless ``seq``, gate id, schema version) when it records
it.  Type names are those of the MQTT contract (``docs/mqtt.md``, ``docs/schemas/event.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any

#: Version of every JSON payload of the contract (``"v"``).
SCHEMA_VERSION = 1

#: Every event type of the contract (the ``type`` enum of ``docs/schemas/event.json``).
EVENT_TYPES = frozenset(
    {
        "access.granted", "access.denied", "access.duress",
        "door.unlocked", "door.locked", "door.opened", "door.closed", "door.forced", "door.held",
        "door.held.cleared", "tamper", "tamper.cleared",
        "reader.fault", "reader.restored", "reader.attack", "reader.lockout_started",
        "reader.lockout_ended", "camera.fault", "camera.restored",
        "vision.fault", "vision.restored",
        "capture", "journal.dropped", "command.accepted", "command.refused", "person.forgotten",
        "part.fault", "part.restored", "config.reloaded", "config.rejected", "audit",
        "audit.repaired", "journal.recovered", "store.recovered", "door.mode", "gate.restarted",
        "clock.behind", "clock.corrected", "keys.request",
    }
)
#: Event types that are alarms: fsynced, uplinked ahead of backlog, never evicted, highlighted.
#: The start-up damage reports are among them: once per start at most, and the one trace of a
#: torn audit log or a lost journal or resident store, so no quota may evict them unsent.  Part
#: faults (``part.fault``, ``vision.fault``, ...) are not: a part restarted forever repeats them,
#: and unevictable fsynced rows would fill the disk; the station raises alarms for them itself
#: (``station/alarms.py``).
ALARM_TYPES = frozenset(
    {"door.forced", "door.held", "tamper", "access.duress", "reader.attack", "command.refused",
     "journal.recovered", "store.recovered", "audit.repaired"}
)
#: Access decisions: fsynced by default, like alarms.
ACCESS_TYPES = frozenset({"access.granted", "access.denied"})
#: The event a gate emits after an erasure; the station erases its own copy on it.
PERSON_FORGOTTEN = "person.forgotten"
#: Credential kinds of the contract.
CREDENTIAL_KINDS = ("card", "face", "rex", "remote", "pin")
#: Optional string fields of an event, in the order they are serialised.
OPTIONAL_EVENT_FIELDS = ("door", "reader", "credential_kind", "credential_ref", "person", "reason")


def now_ms() -> int:
    """UTC wall-clock time in milliseconds (events carry wall time; timers use monotonic time)."""
    return time.time_ns() // 1_000_000


class Priority(IntEnum):
    """Upload and eviction order: alarms first and never evicted, captures last, evicted first."""

    CAPTURE = 0
    ROUTINE = 1
    ACCESS = 2
    ALARM = 3


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
        for key in OPTIONAL_EVENT_FIELDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.data:
            out["data"] = dict(self.data)
        return out


Emit = Callable[[Event], None]
