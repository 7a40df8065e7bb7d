"""Signed commands from the station: verify, refuse or dispatch, and answer every one.

A broker account alone must never open a door, so every command on ``<prefix>/<gate>/cmd/<name>``
is an envelope signed by the station's Ed25519 key (codec in :mod:`protocol.envelope`).  This
module checks, cheapest first: size, bounded JSON and shape, name against the topic, gate id,
signature, validity window (with clock skew) and nonce (remembered in the journal until the
envelope expires, so a restart cannot make a replay look new).  A refusal becomes a
``command.refused`` alarm event with the reason and a result with ``ok: false``; an accepted
command a ``command.accepted`` event, the handler's answer and a result with ``ok: true``.
Handlers are registered by ``daemon/app.py`` (``open`` → door, ``sync`` → store,
``enrol``/``remove`` → gallery, ``forget`` → privacy, ``config`` → redacted config); ``ping``
is built in.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from daemon.events import SCHEMA_VERSION, Emit, Event, now_ms
from protocol.envelope import (
    COMMAND_NAMES,
    DEFAULT_MAX_ENVELOPE_BYTES,
    EnvelopeError,
    parse_envelope,
    signature_valid,
)

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Handlers = dict[str, Handler]

DEFAULT_MAX_BYTES = DEFAULT_MAX_ENVELOPE_BYTES
DEFAULT_MAX_SKEW_S = 300.0


class RefusedError(Exception):
    """A command that is not executed; ``reason`` is a short code, ``detail`` for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Outcome:
    """What happened to one command: the result message and where it goes."""

    name: str
    result: dict[str, Any]


async def ping(args: dict[str, Any]) -> dict[str, Any]:
    """Round-trip check from the station; answers with the gate's clock."""
    return {"pong": True, "gate_ts_ms": now_ms()}


REFUSED_ALARMS_PER_MINUTE = 10
#: A refusal alarm (and the log line) carries at most this much of anything the sender chose.
EXCERPT_CHARS = 120
#: A command id that is a UUID is kept as it is; anything else is reduced to an excerpt.
_COMMAND_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped excerpt of untrusted text: printable characters as they are, anything
    else (controls, lone surrogates, line breaks) as ``\\uXXXX`` escapes, at most ``limit``
    characters followed by ``…(+N chars)``.  The result is always encodable as UTF-8."""
    out: list[str] = []
    size = 0
    for index, char in enumerate(text):
        piece = char if char.isprintable() and not 0xD800 <= ord(char) <= 0xDFFF else \
            f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"
        if size + len(piece) > limit:
            return "".join(out) + f"…(+{len(text) - index} chars)"
        out.append(piece)
        size += len(piece)
    return "".join(out)


class CommandProcessor:
    """Verifies command envelopes for one gate and runs the registered handlers.

    ``remember_nonce(nonce, expires_at_ms) -> bool`` stores a nonce durably and says whether it
    was new (the journal's :meth:`~daemon.journal.Journal.remember_nonce`).
    """

    def __init__(
        self,
        *,
        gate: str,
        station_key: Ed25519PublicKey | None,
        remember_nonce: Callable[[str, int], bool],
        emit: Emit,
        handlers: Mapping[str, Handler] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.gate = gate
        self.station_key = station_key
        self.handlers: Handlers = {"ping": ping, **(handlers or {})}
        self._remember_nonce = remember_nonce
        self._emit = emit
        self.max_bytes = max_bytes
        self.max_skew_ms = int(max_skew_s * 1000)
        self._clock = clock
        self._refusal_times: deque[int] = deque()
        self._suppressed = 0

    async def process(self, topic_name: str, payload: bytes) -> Outcome:
        """Handle the payload that arrived on ``.../cmd/<topic_name>``; never raises."""
        envelope: dict[str, Any] | None = None
        try:
            envelope = self._parse(payload)
            self._verify(topic_name, envelope)
        except RefusedError as refusal:
            return self._refuse(topic_name, envelope, refusal)
        command_id = envelope["id"]
        self._emit(Event("command.accepted", credential_kind="remote",
                         data={"command": topic_name, "command_id": command_id}))
        log.info("command %s %s accepted", topic_name, command_id)
        handler = self.handlers.get(topic_name)
        if handler is None:
            return self._result(topic_name, command_id, ok=False, reason="unsupported",
                                result={"detail": f"this gate has no {topic_name!r} handler"})
        try:
            answer = await handler(dict(envelope["args"]))
        except Exception as exc:  # a failing handler gets a result, the gate keeps running
            log.exception("command %s %s failed", topic_name, command_id)
            return self._result(topic_name, command_id, ok=False, reason="failed",
                                result={"detail": f"{type(exc).__name__}: {exc}"})
        return self._result(topic_name, command_id, ok=True, reason="", result=answer)

    def _parse(self, payload: bytes) -> dict[str, Any]:
        try:
            return parse_envelope(payload, max_bytes=self.max_bytes)
        except EnvelopeError as exc:
            raise RefusedError(exc.reason, exc.detail) from None

    def _verify(self, topic_name: str, envelope: dict[str, Any]) -> None:
        if envelope["name"] != topic_name:
            raise RefusedError(
                "wrong_name", f"envelope names {envelope['name']!r}, topic {topic_name!r}")
        if envelope["name"] not in COMMAND_NAMES:
            raise RefusedError("unknown_command", f"{envelope['name']!r} is not a command")
        if envelope["gate"] != self.gate:
            raise RefusedError("wrong_gate", f"for gate {envelope['gate']!r}, not {self.gate!r}")
        if self.station_key is None:
            raise RefusedError("no_station_key", "no station public key configured on this gate")
        if not signature_valid(envelope, self.station_key):
            raise RefusedError("bad_signature", "signature does not verify with the station key")
        now = self._clock()
        if envelope["expires_at_ms"] < now:
            ago_s = (now - envelope["expires_at_ms"]) / 1000
            raise RefusedError("expired", f"expired {ago_s:.1f} s ago")
        if envelope["issued_at_ms"] > now + self.max_skew_ms:
            ahead_s = (envelope["issued_at_ms"] - now) / 1000
            raise RefusedError("future", f"issued {ahead_s:.1f} s in the future "
                               f"(allowed skew {self.max_skew_ms / 1000:g} s)")
        if envelope["expires_at_ms"] < envelope["issued_at_ms"]:
            raise RefusedError("malformed", "expires before it was issued")
        # Nonces are kept until expiry plus the skew: no later copy can pass the expiry check.
        keep_until_ms = envelope["expires_at_ms"] + self.max_skew_ms
        if not self._remember_nonce(envelope["nonce"], keep_until_ms):
            raise RefusedError("replayed", f"nonce {envelope['nonce']} was already used")

    def _refuse(self, name: str, envelope: dict[str, Any] | None, refusal: RefusedError) -> Outcome:
        # Everything here may be the sender's text (up to the size limit): only short escaped
        # excerpts go on to the journal, the log and the station.
        command_id = envelope.get("id") if envelope is not None else None
        if isinstance(command_id, str) and not _COMMAND_ID.match(command_id):
            command_id = excerpt(command_id, limit=64)
        command_id = command_id if isinstance(command_id, str) else None
        name, detail = excerpt(name, limit=64), excerpt(refusal.detail)
        refusal = RefusedError(refusal.reason, detail)
        if self._alarm_allowed():
            log.warning("command %s refused: %s", name, refusal)
            data: dict[str, Any] = {"command": name, "command_id": command_id,
                                    "detail": detail}
            if self._suppressed:
                data["suppressed"], self._suppressed = self._suppressed, 0
            self._emit(Event("command.refused", credential_kind="remote", reason=refusal.reason,
                             data=data))
        else:
            self._suppressed += 1
            log.debug("command %s refused (alarm suppressed, flood): %s", name, refusal)
        return self._result(name, command_id, ok=False, reason=refusal.reason,
                            result={"detail": refusal.detail})

    def _alarm_allowed(self) -> bool:
        """At most REFUSED_ALARMS_PER_MINUTE refusal alarms a minute.

        Alarms are never evicted from the journal, so anyone holding a broker account could
        otherwise fill the disk with garbage commands; the excess is counted and reported in the
        next alarm's ``suppressed`` field, and every command still gets its result message.
        """
        now = self._clock()
        while self._refusal_times and self._refusal_times[0] <= now - 60_000:
            self._refusal_times.popleft()
        if len(self._refusal_times) >= REFUSED_ALARMS_PER_MINUTE:
            return False
        self._refusal_times.append(now)
        return True

    def _result(self, name: str, command_id: str | None, *, ok: bool, reason: str,
                result: dict[str, Any]) -> Outcome:
        return Outcome(name, {"v": SCHEMA_VERSION, "id": command_id, "gate": self.gate,
                              "name": name, "ok": ok, "reason": reason, "result": result,
                              "ts_ms": self._clock()})
