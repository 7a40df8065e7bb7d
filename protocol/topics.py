"""MQTT topic names of the contract: ``<prefix>/<gate>/<kind>``, built and parsed in one place.

| kind | topic |
|---|---|
| status | ``<prefix>/<gate>/status`` (retained, Last Will) |
| events | ``<prefix>/<gate>/events`` |
| health | ``<prefix>/<gate>/health`` |
| capture | ``<prefix>/<gate>/captures/<event id>`` |
| command | ``<prefix>/<gate>/cmd/<name>`` |
| result | ``<prefix>/<gate>/cmd/<name>/result`` |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: Gate ids and event ids become folder and file names at the station: no separators, no
#: leading dot, at most 64 characters.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")

TopicKind = Literal["status", "events", "health", "capture", "command", "result"]


class TopicError(ValueError):
    """A topic outside the contract; the text names it."""


@dataclass(frozen=True, slots=True)
class GateTopics:
    """The topics of one gate under ``prefix``."""

    prefix: str
    gate: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.gate}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def commands(self) -> str:
        """The filter a gate subscribes to for its commands (results included, see parse)."""
        return f"{self.base}/cmd/#"

    def capture(self, event_id: str) -> str:
        return f"{self.base}/captures/{event_id}"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def result(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/result"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: the gate, the kind, and the event id (capture) or command name."""

    gate: str
    kind: TopicKind
    name: str | None = None


def parse_topic(topic: str, prefix: str) -> Topic:
    """Parse ``topic`` under ``prefix``; raises :class:`TopicError` for anything else.

    The gate id and a capture's event id must match :data:`SAFE_NAME`; a command name must be one
    non-empty level.
    """
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != prefix or not SAFE_NAME.match(parts[1]):
        raise TopicError(f"topic {topic!r} is not <{prefix}>/<gate>/...")
    gate, rest = parts[1], parts[2:]
    if len(rest) == 1 and rest[0] in ("status", "events", "health"):
        return Topic(gate, rest[0])  # type: ignore[arg-type]
    if len(rest) == 2 and rest[0] == "captures":
        if not SAFE_NAME.match(rest[1]):
            raise TopicError(f"capture topic names an unsafe event id {rest[1]!r}")
        return Topic(gate, "capture", rest[1])
    if rest[0] == "cmd" and len(rest) in (2, 3) and rest[1]:
        if len(rest) == 2:
            return Topic(gate, "command", rest[1])
        if rest[2] == "result":
            return Topic(gate, "result", rest[1])
    raise TopicError(f"unexpected topic {topic!r}")


def station_subscriptions(prefix: str, group: str) -> list[str]:
    """The topic filters of one station receiver.

    Everything but status is a shared subscription (``$share/<group>/...``) so receivers split the
    load; status is not, because brokers never send retained messages on shared subscriptions
    (MQTT 5, 4.8.2) and every receiver should know which gates are online.
    """
    shared = f"$share/{group}/{prefix}/+"
    return [
        f"{shared}/events",
        f"{shared}/captures/+",
        f"{shared}/health",
        f"{shared}/cmd/+/result",
        f"{prefix}/+/status",
    ]
