"""The messages between the door daemon and its vision process: one JSON object per line.

Both ends read with a bounded line length (:data:`MAX_MESSAGE_BYTES`), so a confused or hostile
peer costs a dropped connection, never the reader's memory.  Vision → daemon: ``hello``,
``ready``, ``health`` (also the heartbeat), ``camera``, ``observation``, ``capture``, ``fatal``,
``burst`` (the frames of a burst, or why there are none).
Daemon → vision: ``show`` (simulate mode: a photo for the synthetic camera), ``burst`` (capture
``frames`` camera frames spread over ``seconds`` for enrolment at the door).
"""

from __future__ import annotations

import json
from typing import Any

#: Longest line either side accepts: a portrait (256 px JPEG, base64) or a sim photo fits.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: The vision process reports its health this often; it is also the heartbeat.
HEALTH_SECONDS = 1.0
#: Most frames one enrolment burst may ask for (JPEG, base64: well under the line bound).
MAX_BURST_FRAMES = 12
#: Longest burst, in seconds.
MAX_BURST_SECONDS = 10.0
#: Longest text field (person id, reason, error) taken from the vision process.
MAX_TEXT = 512


class WireError(ValueError):
    """A message that breaks the format; the connection is dropped."""


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line of compact JSON (ASCII only: no encoding surprises)."""
    line = json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
    if len(line) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(line)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return line


def decode(line: bytes) -> dict[str, Any]:
    """A line → its message (a JSON object with a string ``type``); WireError otherwise."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"not a JSON line: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise WireError("not a message object with a 'type'")
    return message


def text(message: dict[str, Any], key: str) -> str | None:
    """An optional short string field of a message; WireError for anything else."""
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"{key}: a string of at most {MAX_TEXT} characters expected")
    return value


def count(message: dict[str, Any], key: str) -> int:
    """A non-negative integer field (0 when absent); WireError for anything else."""
    value = message.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise WireError(f"{key}: a non-negative integer expected")
    return value
