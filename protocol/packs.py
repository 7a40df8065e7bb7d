"""Event packs: a gate's backlog sent several events to one MQTT message.

After an outage a gate may hold thousands of undelivered events.  Sent one per message, each costs
a PUBLISH, a PUBACK and the station's decoding of both (in paho-mqtt some 45 µs of CPU per message
on a development machine, more than checking and storing the event), so the uplink sends the events
that were already waiting when it connected as **packs**: a JSON array of up to
:data:`MAX_PACK_EVENTS` event objects and :data:`MAX_PACK_BYTES` bytes on the same
``<prefix>/<gate>/events`` topic, acknowledged (and marked delivered) together.  An event recorded
while the gate is connected goes alone, as an object, the moment it is recorded.

A station tells the two apart by the payload's first character (``[`` or ``{``) and checks every
event of a pack as it checks a single one; a pack may hold events it already has (a pack re-sent
after a lost PUBACK), which deduplication by ``id`` drops.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

#: Events in one pack at most.
MAX_PACK_EVENTS = 100
#: Bytes of one pack at most (an event larger than this is sent alone).
MAX_PACK_BYTES = 256 * 1024

_PACK_START = re.compile(rb"[ \t\n\r]*\[")


def packs(payloads: Sequence[bytes]) -> Iterator[tuple[int, bytes]]:
    """Consecutive event payloads (JSON objects) as messages, in order: ``(events, payload)``.

    Each message holds as many events as :data:`MAX_PACK_EVENTS` and :data:`MAX_PACK_BYTES`
    allow; a message of one event is that event's own payload, not a pack of one.
    """
    start = 0
    while start < len(payloads):
        end, size = start + 1, len(payloads[start]) + 2  # the brackets
        while (end < len(payloads) and end - start < MAX_PACK_EVENTS
               and size + len(payloads[end]) + 1 <= MAX_PACK_BYTES):  # a comma before it
            size += len(payloads[end]) + 1
            end += 1
        if end - start == 1:
            yield 1, payloads[start]
        else:
            yield end - start, b"[" + b",".join(payloads[start:end]) + b"]"
        start = end


def is_pack(payload: bytes) -> bool:
    """Whether an ``events`` payload is a pack (a JSON array) rather than one event."""
    return _PACK_START.match(payload) is not None
