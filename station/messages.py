"""What the gates publish, checked before anything is stored.

The contract (schema version, alarm types, topic names, JSON limits) comes from :mod:`protocol`.
A malformed message is rejected with a reason and never reaches the database: one broken gate must
not poison the store or stop the receiver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol.bounded_json import PayloadError, loads_object
from protocol.events import ALARM_TYPES, OPTIONAL_EVENT_FIELDS, PERSON_FORGOTTEN, SCHEMA_VERSION
from protocol.topics import SAFE_NAME

__all__ = ["PERSON_FORGOTTEN", "SAFE_NAME", "EventRow", "MessageError", "parse_event",
           "parse_object"]

MAX_TEXT_CHARS = 256


class MessageError(ValueError):
    """A message that does not follow the contract; the text says which field."""


def _text(obj: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise MessageError(f"{key!r} is missing")
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS or "\x00" in value:
        raise MessageError(f"{key!r} must be a string of at most {MAX_TEXT_CHARS} characters")
    return value


def _int(obj: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MessageError(f"{key!r} must be an integer >= {minimum}")
    return value


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        return loads_object(payload)
    except PayloadError as exc:
        raise MessageError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event as stored: the contract's fields plus whether it is an alarm."""

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

    @property
    def alarm(self) -> bool:
        return self.type in ALARM_TYPES


def parse_event(payload: bytes, gate: str) -> EventRow:
    """Check one ``<prefix>/<gate>/events`` payload; the event must name the topic's gate."""
    obj = _json_object(payload)
    if obj.get("v") != SCHEMA_VERSION:
        raise MessageError(f"unsupported schema version {obj.get('v')!r}")
    event_id = _text(obj, "id", required=True)
    if event_id is None or not SAFE_NAME.match(event_id):
        raise MessageError("'id' must be a UUID-like identifier")
    if obj.get("gate") != gate:
        raise MessageError(f"event names gate {obj.get('gate')!r} on the topic of gate {gate!r}")
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise MessageError("'data' must be a JSON object")
    optional = {key: _text(obj, key, required=False) for key in OPTIONAL_EVENT_FIELDS}
    return EventRow(
        id=event_id,
        gate=gate,
        seq=_int(obj, "seq", minimum=1),
        ts_ms=_int(obj, "ts_ms", minimum=0),
        type=_text(obj, "type", required=True) or "",
        data=data,
        **optional,
    )


def parse_object(payload: bytes, gate: str) -> dict[str, Any]:
    """A status, health or command-result payload: a JSON object for the topic's gate."""
    obj = _json_object(payload)
    if obj.get("gate") != gate:
        raise MessageError(f"message names gate {obj.get('gate')!r} on the topic of gate {gate!r}")
    return obj
