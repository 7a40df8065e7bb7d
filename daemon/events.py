"""Events at the gate: the shared model (from :mod:`protocol.events`) and the in-process bus.

Components build an :class:`Event` and hand it to an ``emit`` callable; the journal gives it its
identity (UUIDv7 ``id``, per-gate gapless ``seq``, gate id, schema version) when it records it, so
nothing is published that was not recorded first.  Types are the dotted names of the MQTT contract
(``docs/mqtt.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from protocol.events import (
    ACCESS_TYPES,
    ALARM_TYPES,
    CREDENTIAL_KINDS,
    SCHEMA_VERSION,
    Emit,
    Event,
    Priority,
    now_ms,
    priority_of,
)

__all__ = [
    "ACCESS_TYPES", "ALARM_TYPES", "CREDENTIAL_KINDS", "SCHEMA_VERSION", "Emit", "Event",
    "EventBus", "Priority", "now_ms", "priority_of",
]

log = logging.getLogger(__name__)


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
