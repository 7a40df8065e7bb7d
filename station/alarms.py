"""Alarms for the duty officer: raised from alarm events and from gate state, acknowledged once.

An alarm is a row with a deterministic id, so several station processes raising the same alarm
store it once: ``event:<event id>`` for an alarm event (forced or held door, tamper, reader attack,
duress, refused command, clock, journal and disk trouble, damaged files repaired at start-up, a
failed part: one open alarm per gate and fault type), ``gate.offline:<gate>:<status ms>`` for
each offline status, and ``<kind>:<gate>:<ms>`` for a health condition (low disk, untrusted clock,
journal fault, heat, tamper switch) that is not already raised and unacknowledged.  An operator
acknowledges an alarm once; who and when are kept with it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update

from protocol.events import ALARM_TYPES
from station.gatehealth import problems_of
from station.store import Store, now_ms

#: Event types that raise an alarm besides the contract's alarm types (which include the
#: start-up damage reports ``journal.recovered``, ``store.recovered``, ``audit.repaired``).
ALARM_EVENT_PREFIXES = ("clock.", "journal.", "disk.")
#: A part of the gate failed (it is restarted with backoff, maybe forever).  Not gate alarms
#: (see ``protocol.events.ALARM_TYPES``); here one open alarm per gate and type: while it is
#: unacknowledged, the repeats of a crash loop raise no new one.
FAULT_TYPES = frozenset({"part.fault", "vision.fault", "camera.fault", "reader.fault"})
#: Clock events that report good news, not trouble.
CLOCK_OK_TYPES = frozenset({"clock.trusted", "clock.synced"})
RECENT_ALARMS = 200


def is_alarm_event(event_type: str) -> bool:
    """True for event types that raise an alarm on the page."""
    if event_type in ALARM_TYPES or event_type in FAULT_TYPES:
        return True
    return event_type.startswith(ALARM_EVENT_PREFIXES) and event_type not in CLOCK_OK_TYPES


def alarm_event_clause(event_type: ColumnElement[str]) -> ColumnElement[bool]:
    """:func:`is_alarm_event` as SQL, for an event type column."""
    prefixed = or_(*(event_type.startswith(p) for p in ALARM_EVENT_PREFIXES))
    return or_(event_type.in_(sorted(ALARM_TYPES | FAULT_TYPES)),
               and_(prefixed, event_type.not_in(sorted(CLOCK_OK_TYPES))))


class Alarms:
    """The alarms table; every method blocks (call from a thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.table = store.t["alarms"]

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        self.store.insert_new("alarms", rows, "id")

    def raise_for_events(self, received_since_ms: int) -> None:
        """Raise an alarm for each alarm event received since then (idempotent, however many)."""
        e = self.store.t["events"]
        query = select(e.c.id, e.c.gate, e.c.door, e.c.type, e.c.ts_ms, e.c.reason).where(
            e.c.received_ms >= received_since_ms, alarm_event_clause(e.c.type))
        t = self.table
        with self.store.engine.connect() as conn:
            events = conn.execute(query.order_by(e.c.ts_ms, e.c.id)).all()
            # per gate and fault type: an open alarm (None) or when the last one was acknowledged
            seen: dict[tuple[str, str], int | None] = {}
            for a in conn.execute(select(t.c.gate, t.c.kind, t.c.ack_ms).where(
                    t.c.kind.in_(sorted(FAULT_TYPES)))):
                key = (a.gate, a.kind)
                if a.ack_ms is None or seen.get(key, 0) is None:
                    seen[key] = None
                else:
                    seen[key] = max(a.ack_ms, seen.get(key) or 0)
        rows = []
        for r in events:
            if r.type in FAULT_TYPES:
                key = (r.gate, r.type)
                if key in seen and (seen[key] is None or r.ts_ms <= (seen[key] or 0)):
                    continue  # the same fault again, or one the operator had already seen
                seen[key] = None
            rows.append({"id": f"event:{r.id}", "gate": r.gate, "door": r.door, "kind": r.type,
                         "event_id": r.id, "ts_ms": r.ts_ms, "detail": r.reason})
        self._insert(rows)

    def raise_for_gates(self) -> None:
        """Raise alarms for what the gates' state and health show now."""
        gates = self.store.t["gates"]
        t = self.table
        with self.store.engine.connect() as conn:
            views = conn.execute(select(gates.c.gate, gates.c.state, gates.c.status_ms,
                                        gates.c.health)).all()
            open_kinds = {(r.gate, r.kind) for r in conn.execute(
                select(t.c.gate, t.c.kind).where(t.c.ack_ms.is_(None), t.c.event_id.is_(None)))}
        rows = []
        now = now_ms()
        for gate in views:
            for kind in problems_of(gate.state, gate.health or {}):
                if kind == "gate.offline":
                    rows.append({"id": f"gate.offline:{gate.gate}:{gate.status_ms}",
                                 "gate": gate.gate, "kind": kind, "ts_ms": gate.status_ms or now})
                elif (gate.gate, kind) not in open_kinds:
                    rows.append({"id": f"{kind}:{gate.gate}:{now}", "gate": gate.gate,
                                 "kind": kind, "ts_ms": now})
        self._insert(rows)

    def recent(self, *, unacknowledged: bool = False, limit: int = RECENT_ALARMS
               ) -> list[dict[str, Any]]:
        """Newest first."""
        t = self.table
        query = select(t).order_by(t.c.ts_ms.desc(), t.c.id.desc()).limit(limit)
        if unacknowledged:
            query = query.where(t.c.ack_ms.is_(None))
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def acknowledge(self, alarm_id: str, user: str) -> bool:
        """Record who acknowledged and when; False when unknown or already acknowledged."""
        t = self.table
        with self.store.engine.begin() as conn:
            done = conn.execute(update(t).where(t.c.id == alarm_id, t.c.ack_ms.is_(None))
                                .values(ack_by=user, ack_ms=now_ms())).rowcount
        return bool(done)
