"""What the gates publish, checked before anything is stored.

The contract (schema version, alarm types, topic names, JSON limits) comes from :mod:`protocol`.
A malformed message is rejected with a reason and never reaches the database: one broken gate must
not poison the store or stop the receiver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from protocol.bounded_json import DEFAULT_MAX_DEPTH, PayloadError, loads_bounded, loads_object
from protocol.events import ALARM_TYPES, OPTIONAL_EVENT_FIELDS, PERSON_FORGOTTEN, SCHEMA_VERSION
from protocol.packs import MAX_PACK_EVENTS
from protocol.topics import SAFE_NAME

__all__ = ["PERSON_FORGOTTEN", "SAFE_NAME", "EventRow", "MessageError", "parse_event",
           "parse_object", "parse_pack", "parse_status"]

MAX_TEXT_CHARS = 256
#: Largest ``seq`` accepted (JSON-safe integers; every database column holds it).
MAX_SEQ = 2**53
#: Event times before this (2020-01-01 UTC) are a gate clock that was never set.
EARLIEST_TS_MS = 1_577_836_800_000
#: Event times this far ahead of the station's clock are refused.
DEFAULT_MAX_FUTURE_MS = 86_400_000
#: Status, health and command results are small; events may carry an audit entry.
MAX_SMALL_PAYLOAD_BYTES = 64 * 1024
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class MessageError(ValueError):
    """A message that does not follow the contract; the text says which field.

    ``seq`` is the event's sequence number when it could be read before the fault, so a
    quarantined event still counts as received for gap detection; ``part`` is the event at fault
    when it is one of a pack (its JSON), None when the whole message is.
    """

    def __init__(self, message: str, *, seq: int | None = None,
                 part: bytes | None = None) -> None:
        super().__init__(message)
        self.seq = seq
        self.part = part


def _text(obj: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise MessageError(f"{key!r} is missing")
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS or "\x00" in value:
        raise MessageError(f"{key!r} must be a string of at most {MAX_TEXT_CHARS} characters")
    return value


def _int(obj: Mapping[str, Any], key: str, *, minimum: int, maximum: int = MAX_SEQ) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise MessageError(f"{key!r} must be an integer from {minimum} to {maximum}")
    return value


def _json_object(payload: bytes, max_bytes: int | None = None) -> dict[str, Any]:
    try:
        if max_bytes is not None:
            return loads_object(payload, max_bytes=max_bytes)
        return loads_object(payload)
    except PayloadError as exc:
        raise MessageError(str(exc)) from None


class EventRow(NamedTuple):
    """One event as stored: the contract's fields plus whether it is an alarm.

    A named tuple rather than a frozen dataclass: the station builds one per event received, and
    a tuple is built several times faster.
    """

    id: str
    gate: str
    seq: int
    ts_ms: int
    type: str
    door: str | None
    reader: str | None
    credential_kind: str | None
    credential_ref: str | None
    person: str | None
    reason: str | None
    data: dict[str, Any]
    #: whether the gate's clock was trusted when it recorded the event (absent: an older gate)
    time_trusted: bool = True

    @property
    def alarm(self) -> bool:
        return self.type in ALARM_TYPES


def parse_event(
    payload: bytes, gate: str, *, now_ms: int, max_future_ms: int = DEFAULT_MAX_FUTURE_MS
) -> EventRow:
    """Check one ``<prefix>/<gate>/events`` payload holding one event (see :func:`event_row`)."""
    return event_row(_json_object(payload), gate, now_ms=now_ms, max_future_ms=max_future_ms)


def parse_pack(
    payload: bytes, gate: str, *, now_ms: int, max_future_ms: int = DEFAULT_MAX_FUTURE_MS
) -> list[EventRow | MessageError]:
    """Check an ``events`` payload holding a pack (:mod:`protocol.packs`): each event's row, or
    the :class:`MessageError` (with its ``part``) of an event that breaks the contract.

    The whole payload is bounded before it is decoded, as any other (its events get the same
    nesting depth as a single one); a payload that is not a JSON array of 1 to
    :data:`~protocol.packs.MAX_PACK_EVENTS` events raises :class:`MessageError`.
    """
    try:
        items = loads_bounded(payload, max_depth=DEFAULT_MAX_DEPTH + 1)
    except PayloadError as exc:
        raise MessageError(str(exc)) from None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_PACK_EVENTS:
        raise MessageError(f"a pack must be a JSON array of 1 to {MAX_PACK_EVENTS} events")
    out: list[EventRow | MessageError] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise MessageError(f"event {index} of the pack is not a JSON object")
            out.append(event_row(item, gate, now_ms=now_ms, max_future_ms=max_future_ms))
        except MessageError as exc:
            out.append(MessageError(str(exc), seq=exc.seq, part=_ENCODE(item).encode()))
    return out


def event_row(
    obj: dict[str, Any], gate: str, *, now_ms: int, max_future_ms: int = DEFAULT_MAX_FUTURE_MS
) -> EventRow:
    """Check one decoded event; it must name the topic's gate and carry a time between
    :data:`EARLIEST_TS_MS` and ``now_ms + max_future_ms`` (station clock).
    """
    if obj.get("gate") != gate:
        raise MessageError(f"event names gate {obj.get('gate')!r} on the topic of gate {gate!r}")
    seq = _int(obj, "seq", minimum=1)
    try:
        if obj.get("v") != SCHEMA_VERSION:
            raise MessageError(f"unsupported schema version {obj.get('v')!r}")
        event_id = _text(obj, "id", required=True)
        if event_id is None or not SAFE_NAME.match(event_id):
            raise MessageError("'id' must be a UUID-like identifier")
        data = obj.get("data", {})
        if not isinstance(data, dict):
            raise MessageError("'data' must be a JSON object")
        door, reader, kind, ref, person, reason = (
            _text(obj, key, required=False) for key in OPTIONAL_EVENT_FIELDS)
        event_type = _text(obj, "type", required=True) or ""
        time_trusted = obj.get("time_trusted", True)
        if not isinstance(time_trusted, bool):
            raise MessageError("'time_trusted' must be true or false")
        ts_ms = _int(obj, "ts_ms", minimum=EARLIEST_TS_MS, maximum=now_ms + max_future_ms)
        return EventRow(event_id, gate, seq, ts_ms, event_type, door, reader, kind, ref, person,
                        reason, data, time_trusted)
    except MessageError as exc:
        raise MessageError(str(exc), seq=seq) from None


def parse_object(payload: bytes, gate: str, *,
                 max_bytes: int = MAX_SMALL_PAYLOAD_BYTES) -> dict[str, Any]:
    """A status, health or command-result payload: a JSON object for the topic's gate, at most
    ``max_bytes``; ``ts_ms``, when present, an integer like an event's."""
    obj = _json_object(payload, max_bytes)
    if obj.get("gate") != gate:
        raise MessageError(f"message names gate {obj.get('gate')!r} on the topic of gate {gate!r}")
    if "ts_ms" in obj:
        _int(obj, "ts_ms", minimum=0)
    return obj


def parse_status(payload: bytes, gate: str) -> dict[str, Any]:
    """A status payload: :func:`parse_object` with ``state`` ``online`` or ``offline``."""
    obj = parse_object(payload, gate)
    if obj.get("state") not in ("online", "offline"):
        raise MessageError(f"status 'state' must be 'online' or 'offline', not "
                           f"{str(obj.get('state'))[:40]!r}")
    for key in ("version", "portraits", "legal_basis"):
        _text(obj, key, required=False)
    return obj
