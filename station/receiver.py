"""The station's receiving end: everything the gates publish, stored once.

Receivers subscribe with MQTT 5 shared subscriptions (``$share/<group>/...``), so any number of
them split the messages of many gates on one broker or cluster; deduplication by event id in the
store makes at-least-once delivery (and a gate re-sending after a lost PUBACK) harmless.  Each
QoS 1 message is acknowledged only after it is committed (paho's manual acks), so a receiver that
dies mid-batch loses nothing the broker still holds for it.

Status is subscribed to without sharing: brokers never send retained messages on shared
subscriptions (MQTT 5, 4.8.2), and every receiver should know which gates are online.  Events are
inserted in batches from a worker thread (SQLite or PostgreSQL writes never block the loop);
missing ``seq`` ranges are looked up in the database every few seconds and reported once when they
appear and once when they are filled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from protocol.backoff import Backoff
from protocol.events import PERSON_FORGOTTEN
from protocol.mqtt import QOS_AT_LEAST_ONCE, Message, MqttClient, MqttError
from protocol.topics import TopicError, parse_topic, station_subscriptions
from station.config import FACE_FILING_THRESHOLD_PERSONS, StationConfig
from station.keyservice import REQUEST_EVENT
from station.messages import EventRow, MessageError, parse_event, parse_object
from station.mqtt import make_client
from station.store import Range, Store, now_ms

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8"
DEFAULT_GAP_CHECK_SECONDS = 5.0
#: Events younger than this are not yet counted for gaps: another receiver may hold the rest.
DEFAULT_SETTLE_MS = 2_000
INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
DB_RETRY_SECONDS = 2.0
T = TypeVar("T")


def gap_changes(before: list[Range], after: list[Range]) -> tuple[list[Range], list[Range]]:
    """(ranges newly missing, ranges reported before that are now complete).

    A missing range inside one reported before is the same gap being re-sent, not a new one: it is
    reported filled once, as it was reported, when nothing of it is missing any more.
    """

    def overlaps(a: Range, ranges: list[Range]) -> bool:
        return any(a[0] <= b[1] and b[0] <= a[1] for b in ranges)

    new = [r for r in after if not any(b[0] <= r[0] and r[1] <= b[1] for b in before)]
    filled = [r for r in before if not overlaps(r, after)]
    return new, filled


@dataclass
class _Pending:
    """A message waiting for its commit, with what is needed to acknowledge it."""

    client: MqttClient
    message: Message
    row: EventRow | None = None


@dataclass
class ReceiverStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    portraits: int = 0
    open_gaps: dict[str, list[Range]] = field(default_factory=dict)


class Receiver:
    """Subscribes, validates, stores and acknowledges; ``run()`` until cancelled."""

    def __init__(
        self,
        config: StationConfig,
        store: Store,
        *,
        gap_check_seconds: float = DEFAULT_GAP_CHECK_SECONDS,
        settle_ms: int = DEFAULT_SETTLE_MS,
        client_factory: Callable[[], MqttClient] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.prefix = config.mqtt.prefix
        self.batch_size = config.database.batch_size
        self.gap_check_seconds = gap_check_seconds
        self.settle_ms = settle_ms
        self.stats = ReceiverStats()
        self.subscribed = asyncio.Event()
        self._client_factory = client_factory or (
            lambda: make_client(config.mqtt, "receiver", persistent=bool(config.mqtt.client_id),
                                manual_ack=True)
        )
        self._events: asyncio.Queue[_Pending] = asyncio.Queue()
        self._last_event_ms: dict[str, int] = {}
        self._db_down = False
        self._checked_before_ms = 0
        self._face_warned = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._store_events(), name="station:store-events")
            tasks.create_task(self._watch_gaps(), name="station:gaps")
            tasks.create_task(self._receive(), name="station:receive")

    async def _receive(self) -> None:
        backoff = Backoff(INITIAL_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
        broker = f"{self.config.mqtt.host}:{self.config.mqtt.port}"
        unavailable = False
        while True:
            try:
                async with self._client_factory() as client:  # acks after commit, not on arrival
                    for topic in station_subscriptions(self.prefix, self.config.mqtt.share_group):
                        await client.subscribe(topic, qos=QOS_AT_LEAST_ONCE)
                    log.info("station receiver %s broker %s subscribed",
                             "back on" if unavailable else "connected to", broker)
                    unavailable = False
                    backoff.reset()
                    self.subscribed.set()
                    async for batch in client.batches():
                        for message in batch:
                            await self._dispatch(client, message)
            except MqttError as exc:
                self.subscribed.clear()
                if not unavailable:
                    log.warning("station receiver: broker %s unavailable (%s); retrying",
                                broker, exc)
                unavailable = True
                await asyncio.sleep(backoff.next())

    async def _db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
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

    def _insert_batch(self, rows: list[EventRow]) -> list[EventRow]:
        """Insert a batch; a row the database refuses is dropped alone, not with its batch."""
        try:
            return self.store.add_events(rows)
        except (IntegrityError, DataError):
            if len(rows) == 1:
                log.warning("station: gate %s event %s refused by the database; dropped",
                            rows[0].gate, rows[0].id)
                self.stats.rejected += 1
                return []
        return [new for row in rows for new in self._insert_batch([row])]

    @staticmethod
    def _ack(pending: _Pending) -> None:
        pending.client.ack(pending.message)

    async def _dispatch(self, client: MqttClient, message: Message) -> None:
        topic = message.topic
        payload = message.payload
        pending = _Pending(client, message)
        self.stats.received += 1
        try:
            try:
                parsed = parse_topic(topic, self.prefix)
            except TopicError as exc:
                raise MessageError(str(exc)) from None
            gate = parsed.gate
            if parsed.kind == "events":
                pending.row = parse_event(payload, gate)
                self._events.put_nowait(pending)
                return  # acknowledged by the writer after its commit
            if parsed.kind == "capture":
                await self._portrait(gate, parsed.name or "", payload, message)
            elif parsed.kind == "status":
                await self._status(gate, parse_object(payload, gate))
            elif parsed.kind == "health":
                await self._db(self.store.set_health, gate, parse_object(payload, gate))
            elif parsed.kind == "result":
                await self._result(gate, parse_object(payload, gate))
            else:
                raise MessageError(f"unexpected topic {topic!r}")
        except MessageError as exc:
            self.stats.rejected += 1
            log.warning("station: rejected message on %s: %s", topic, exc)
        self._ack(pending)

    async def _portrait(self, gate: str, event_id: str, jpeg: bytes, message: Message) -> None:
        if not jpeg.startswith(JPEG_MAGIC):
            raise MessageError("capture payload is not a JPEG")
        props = dict(message.user_properties)
        if props.get("event_id", event_id) != event_id or props.get("gate", gate) != gate:
            raise MessageError("capture user properties do not match its topic")
        try:
            ts_ms = int(props.get("ts_ms", now_ms()))
        except ValueError:
            raise MessageError(f"capture ts_ms {props.get('ts_ms')!r} is not a number") from None
        if await self._db(
            self.store.add_portrait, event_id=event_id, gate=gate, ts_ms=ts_ms, jpeg=jpeg
        ):
            self.stats.portraits += 1

    async def _status(self, gate: str, status: dict[str, Any]) -> None:
        previous = await self._db(self.store.set_status, gate, status)
        state = status.get("state")
        if state == previous:
            return
        if state == "offline":
            log.warning("gate %s: offline", gate)
        elif state == "online":
            basis = status.get("legal_basis")
            log.info("gate %s: online (version %s, portraits %s%s)", gate, status.get("version"),
                     status.get("portraits", "off"), f", legal basis: {basis}" if basis else "")

    async def _result(self, gate: str, result: dict[str, Any]) -> None:
        await self._db(self.store.record_result, gate, result)
        if result.get("ok") is True and result.get("name") == "enrol":
            await self._check_face_persons()

    async def _check_face_persons(self) -> None:
        count = await self._db(self.store.face_person_count)
        warn_at = self.config.face_persons_warn_at
        if count >= warn_at and not self._face_warned:
            log.warning(
                "station: %s persons are enrolled for face entry across all gates; filing with "
                "the cyberspace administration is required at %s", count,
                FACE_FILING_THRESHOLD_PERSONS)
        self._face_warned = count >= warn_at

    async def _store_events(self) -> None:
        await self._check_face_persons()
        while True:
            batch = [await self._events.get()]
            while len(batch) < self.batch_size and not self._events.empty():
                batch.append(self._events.get_nowait())
            rows = [p.row for p in batch if p.row is not None]
            new = await self._db(self._insert_batch, rows)
            for pending in batch:
                self._ack(pending)
            self.stats.stored += len(new)
            self.stats.duplicates += len(rows) - len(new)
            stored_ms = now_ms()
            self._last_event_ms.update((r.gate, stored_ms) for r in new)
            for row in new:
                if row.type == PERSON_FORGOTTEN:
                    await self._forget(row)
                elif row.type == REQUEST_EVENT:
                    self._background(self._unwrap_for(row), name=f"station:unwrap:{row.gate}")

    def _background(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _unwrap_for(self, row: EventRow) -> None:
        """A gate booted with keys.provider station: send it its face key (signed, sealed)."""
        from station.commands import CommandError, send_command, signing_key
        from station.keyservice import UNWRAP_COMMAND, KeyServiceError, answer, load_kek

        if self.config.key_encryption_key is None:
            log.error("gate %s asks for its face key, but station.yaml has no "
                      "key_encryption_key", row.gate)
            return
        try:
            args = answer(load_kek(self.config.key_encryption_key), row.gate, row.data)
            result = await send_command(self.config, row.gate, UNWRAP_COMMAND, args,
                                        key=signing_key(self.config.signing_key))
        except (KeyServiceError, CommandError, OSError, ValueError) as exc:
            log.error("gate %s: face key not sent: %s", row.gate, exc)
            return
        log.info("gate %s: face key sent (%s)", row.gate, "ok" if result.get("ok") else result)

    async def _forget(self, row: EventRow) -> None:
        # the gate names the erased id in data.erase and already uses the pseudonym as person
        person = row.data.get("erase") or row.person
        pseudonym = row.data.get("pseudonym")
        if not isinstance(person, str):
            log.warning("gate %s: person.forgotten event %s names no person", row.gate, row.id)
            return
        count = await self._db(
            self.store.forget_person, row.gate, person,
            pseudonym if isinstance(pseudonym, str) else None,
        )
        log.info("gate %s: a person was forgotten; %s stored events pseudonymised", row.gate, count)

    async def check_gaps(self) -> None:
        """Look up missing ranges of gates with unexamined events; report appearances and fills.

        A gate is examined while it has events received after the previous check's settle
        cutoff, and while it has open gaps, so a gap hidden behind settling events is still found
        after its gate went quiet.
        """
        settled = now_ms() - self.settle_ms
        gates = {g for g, seen in self._last_event_ms.items() if seen > self._checked_before_ms}
        gates |= set(self.stats.open_gaps)
        self._checked_before_ms = settled
        for gate in sorted(gates):
            try:
                after = await asyncio.to_thread(self.store.gaps, gate, settled_before_ms=settled)
            except SQLAlchemyError as exc:  # only a report: the next round tries again
                log.debug("station: gap check of gate %s failed: %s", gate, exc)
                self._last_event_ms[gate] = now_ms()
                continue
            new, filled = gap_changes(self.stats.open_gaps.get(gate, []), after)
            for low, high in new:
                log.warning("gate %s: missing seq %s-%s (%s events); waiting for the gate to "
                            "re-send them", gate, low, high, high - low + 1)
            for low, high in filled:
                log.info("gate %s: gap seq %s-%s filled", gate, low, high)
            if after:
                # keep the ranges as reported, so their fill is reported as they were
                self.stats.open_gaps[gate] = [r for r in self.stats.open_gaps.get(gate, [])
                                              if r not in filled] + new
            else:
                self.stats.open_gaps.pop(gate, None)

    async def _watch_gaps(self) -> None:
        while True:
            await asyncio.sleep(self.gap_check_seconds)
            await self.check_gaps()
