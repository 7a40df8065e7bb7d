"""Everything a gate publishes, checked, stored once, or set aside: the receiver's inner loop.

:meth:`Ingest.handle` takes what arrived together from the broker (one batch of
:class:`protocol.mqtt.Message`) and returns once all of it is committed, so the receiver can
acknowledge the batch: events go in with one multi-row ``INSERT ... ON CONFLICT DO NOTHING``
(deduplication by event id), status, health, command results and portraits beside them.  An
``events`` message holds one event or a gate's pack of several (:mod:`protocol.packs`); an event
of a pack that breaks the contract is set aside alone, the others are stored.

Gates stand on the street and may be stolen or tampered with, so nothing a gate sends is trusted:
every payload is bounded (:mod:`protocol.bounded_json`: size, depth, number digits, UTF-8, finite
numbers) and checked against the contract (:mod:`station.messages`: types, names, a ``seq`` and a
time within a sane range of the station's clock) before it is stored or shown.  A message that
fails is counted, logged once per gate per minute, and set aside in the ``quarantine`` table for
an operator (``menjin station quarantine``); it never stops the station, retained or not.  A
gate's messages only ever change that gate's records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError

from protocol.events import PERSON_FORGOTTEN
from protocol.mqtt import Message
from protocol.packs import is_pack
from protocol.topics import TopicError, parse_topic
from station.messages import (
    MAX_TEXT_CHARS,
    SAFE_NAME,
    EventRow,
    MessageError,
    parse_event,
    parse_object,
    parse_pack,
    parse_status,
)
from station.store import Quarantined, Store, now_ms

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8"
#: A portrait larger than this is not a portrait.
MAX_PORTRAIT_BYTES = 4 * 1024 * 1024
DB_RETRY_SECONDS = 2.0
#: A gate's bad messages are logged at most once per this many milliseconds.
BAD_LOG_INTERVAL_MS = 60_000
RESULT_MAX_BYTES = 1024 * 1024
DEFAULT_BATCH_SIZE = 500
T = TypeVar("T")


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    portraits: int = 0
    rejected_by_gate: dict[str, int] = field(default_factory=dict)


@dataclass
class _Bad:
    """Bad messages of one gate since it was last logged."""

    logged_ms: int = 0
    unlogged: int = 0


class Ingest:
    """Validate, store and quarantine batches of messages; see the module docstring.

    ``on_result`` is called with (gate, result) for every stored command result (the receiver's
    gap repair reads ``resend`` answers there); ``on_event`` with every newly stored event other
    than ``person.forgotten`` (a gate's ``keys.request``); ``clock`` gives the station's time in ms.
    Events are committed ``batch_size`` to a transaction.
    """

    def __init__(
        self,
        store: Store,
        *,
        prefix: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        clock: Callable[[], int] = now_ms,
        on_result: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
        on_event: Callable[[EventRow], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.batch_size = batch_size
        self.stats = IngestStats()
        self.last_event_ms: dict[str, int] = {}
        self._clock = clock
        self._on_result = on_result
        self._on_event = on_event
        self._bad: dict[str, _Bad] = {}
        self._db_down = False

    async def db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call in a thread, waiting out an unreachable database.

        Nothing is acknowledged meanwhile, so the broker keeps what the gates send.
        """
        while True:
            try:
                result = await asyncio.to_thread(call, *args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if not self._db_down:
                    log.warning("station: database unavailable (%s); retrying every %s s",
                                exc.orig or exc, DB_RETRY_SECONDS)
                    self._db_down = True
                await asyncio.sleep(DB_RETRY_SECONDS)
                continue
            if self._db_down:
                log.info("station: database back")
                self._db_down = False
            return result

    # ------------------------------------------------------------------ one batch

    async def handle(self, messages: Sequence[Message]) -> None:
        """Check and store ``messages``; returns when everything is committed or set aside."""
        rows: list[EventRow] = []
        later: list[tuple[Message, str, str, str | None]] = []
        bad: list[Quarantined] = []
        now = self._clock()
        for message in messages:
            self.stats.received += 1
            gate: str | None = None
            try:
                try:
                    parsed = parse_topic(message.topic, self.prefix)
                except TopicError as exc:
                    raise MessageError(str(exc)) from None
                gate = parsed.gate
                if parsed.kind == "events" and is_pack(message.payload):
                    for item in parse_pack(message.payload, gate, now_ms=now):
                        if isinstance(item, EventRow):
                            rows.append(item)
                        else:  # one bad event of a pack is set aside alone
                            bad.append(self._reject(message, gate, str(item), item.seq,
                                                    part=item.part))
                elif parsed.kind == "events":
                    rows.append(parse_event(message.payload, gate, now_ms=now))
                elif parsed.kind in ("capture", "status", "health", "result"):
                    later.append((message, gate, parsed.kind, parsed.name))
                else:
                    raise MessageError(f"unexpected topic {message.topic!r}")
            except MessageError as exc:
                bad.append(self._reject(message, gate, str(exc), exc.seq))
        quarantined_before = len(bad)
        new: list[EventRow] = []
        for start in range(0, len(rows), self.batch_size):  # packs make a batch of many events
            new += await self.db(self._insert_batch, rows[start:start + self.batch_size], bad)
        refused = len(bad) - quarantined_before
        health: dict[str, dict[str, Any]] = {}  # a newer report replaces an older one
        for message, gate, kind, name in later:
            try:
                if kind == "health":
                    health[gate] = parse_object(message.payload, gate)
                else:
                    await self._other(message, gate, kind, name)
            except (MessageError, ValueError, DataError, IntegrityError) as exc:
                bad.append(self._reject(message, gate, str(exc), None))
        for gate, report in health.items():
            await self.db(self.store.set_health, gate, report)
            # its last_seq may reveal events lost after the newest one stored: look for gaps
            self.last_event_ms[gate] = self._clock()
        if bad:
            await self.db(self.store.add_quarantined, bad)
        self.stats.stored += len(new)
        self.stats.duplicates += len(rows) - len(new) - refused
        stored_ms = self._clock()
        self.last_event_ms.update((r.gate, stored_ms) for r in new)
        for row in new:
            if row.type == PERSON_FORGOTTEN:
                await self._forget(row)
            elif self._on_event is not None:
                await self._on_event(row)

    def _insert_batch(self, rows: list[EventRow], bad: list[Quarantined]) -> list[EventRow]:
        """Insert a batch; a row the database refuses is set aside alone, not with its batch."""
        try:
            return self.store.add_events(rows)
        except (IntegrityError, DataError) as exc:
            if len(rows) == 1:
                row = rows[0]
                bad.append(Quarantined(
                    topic=f"{self.prefix}/{row.gate}/events", gate=row.gate, seq=row.seq,
                    reason=f"refused by the database: {type(exc.orig).__name__}",
                    payload=repr(row).encode()))
                self._count_bad(row.gate, bad[-1].reason)
                return []
        return [new for row in rows for new in self._insert_batch([row], bad)]

    async def _other(self, message: Message, gate: str, kind: str, name: str | None) -> None:
        payload = message.payload
        if kind == "capture":
            await self._portrait(gate, name or "", payload, message)
        elif kind == "status":
            await self._status(gate, parse_status(payload, gate))
        else:
            result = parse_object(payload, gate, max_bytes=RESULT_MAX_BYTES)
            await self.db(self.store.record_result, gate, result)
            if self._on_result is not None:
                await self._on_result(gate, result)

    # ------------------------------------------------------------------ bad messages

    def _reject(self, message: Message, gate: str | None, reason: str,
                seq: int | None, *, part: bytes | None = None) -> Quarantined:
        """``part``: the one event of a pack at fault (what is set aside instead of the pack)."""
        self._count_bad(gate, reason)
        return Quarantined(topic=message.topic, reason=reason,
                           payload=message.payload if part is None else part, gate=gate, seq=seq)

    def _count_bad(self, gate: str | None, reason: str) -> None:
        """Count, and log once per gate per minute (a flood costs one line a minute)."""
        self.stats.rejected += 1
        key = gate or "?"
        self.stats.rejected_by_gate[key] = self.stats.rejected_by_gate.get(key, 0) + 1
        bad = self._bad.setdefault(key, _Bad())
        bad.unlogged += 1
        now = self._clock()
        if now - bad.logged_ms >= BAD_LOG_INTERVAL_MS:
            shown = reason if len(reason) <= MAX_TEXT_CHARS else reason[:MAX_TEXT_CHARS] + "..."
            log.warning("gate %s: %s message(s) set aside in quarantine (latest: %s); see "
                        "`menjin station quarantine`", key, bad.unlogged, shown)
            bad.logged_ms, bad.unlogged = now, 0

    # ------------------------------------------------------------------ kinds

    async def _portrait(self, gate: str, event_id: str, jpeg: bytes, message: Message) -> None:
        if not jpeg.startswith(JPEG_MAGIC) or len(jpeg) > MAX_PORTRAIT_BYTES:
            raise MessageError(f"capture payload is not a JPEG of at most {MAX_PORTRAIT_BYTES} "
                               "bytes")
        props = dict(message.user_properties)
        if props.get("event_id", event_id) != event_id or props.get("gate", gate) != gate:
            raise MessageError("capture user properties do not match its topic")
        text = props.get("ts_ms", "")
        if text:
            if not (text.isascii() and text.isdigit() and len(text) <= 15):
                raise MessageError(f"capture ts_ms {text[:40]!r} is not a number")
            ts_ms = int(text)
        else:
            ts_ms = self._clock()
        if await self.db(self.store.add_portrait, event_id=event_id, gate=gate, ts_ms=ts_ms,
                         jpeg=jpeg):
            self.stats.portraits += 1

    async def _status(self, gate: str, status: dict[str, Any]) -> None:
        previous = await self.db(self.store.set_status, gate, status)
        state = status.get("state")
        if state == previous:
            return
        if state == "offline":
            log.warning("gate %s: offline", gate)
        elif state == "online":
            basis = status.get("legal_basis")
            log.info("gate %s: online (version %s, portraits %s%s)", gate, status.get("version"),
                     status.get("portraits", "off"), f", legal basis: {basis}" if basis else "")

    async def _forget(self, row: EventRow) -> None:
        """The gate erased a person: erase that gate's copy here (never other gates')."""
        # the gate names the erased id in data.erase and already uses the pseudonym as person
        person = row.data.get("erase") or row.person
        pseudonym = row.data.get("pseudonym")
        if not isinstance(person, str) or len(person) > MAX_TEXT_CHARS:
            log.warning("gate %s: person.forgotten event %s names no person", row.gate, row.id)
            return
        if not (isinstance(pseudonym, str) and SAFE_NAME.match(pseudonym)):
            pseudonym = None  # the person's id goes; an unusable pseudonym is not stored
        count = await self.db(self.store.forget_person, row.gate, person, pseudonym)
        log.info("gate %s: a person was forgotten; %s of its stored events pseudonymised",
                 row.gate, count)
