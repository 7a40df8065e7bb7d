"""The station's receiving end: everything the gates publish, stored once, nothing lost.

**Sessions.** Every receiver connects with an MQTT 5 persistent session (clean start off, session
expiry ``mqtt.session_expiry_seconds``, 7 days by default) under a client id that survives a
restart (:func:`station.mqtt.receiver_client_id`: ``mqtt.client_id`` or the host, broker, prefix
and share group, plus the receiver's index).  While a receiver is stopped the broker queues the
QoS 1 messages of its subscriptions for it, and each message is acknowledged only after it is
committed (paho's manual acks), so a receiver that dies mid-batch loses nothing either.

**Scale-out.** Receivers subscribe with MQTT 5 shared subscriptions (``$share/<group>/...``), so
any number of them (distinct indexes) split the messages of many gates on one broker or cluster;
deduplication by event id in the store makes at-least-once delivery harmless.  Status is
subscribed to without sharing: brokers never send retained messages on shared subscriptions
(MQTT 5, 4.8.2), and every receiver should know which gates are online.

**Gap repair.** What a broker loses (a restart without persistence, an expired session, a queue
limit) shows as a gap in a gate's ``seq``.  Missing ranges are looked up in the database every few
seconds (all receivers write to one database), reported once when they appear and once when they
are filled, and the gate is asked for them with a signed ``resend`` command (again after
``resend_retry_seconds``, doubling up to an hour, while the gap stays open).  Ranges the gate no
longer holds come back in its answer and are recorded as lost, not waited for.

Checking, storing and quarantining a batch is :class:`station.ingest.Ingest`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import SQLAlchemyError

from protocol.backoff import Backoff
from protocol.envelope import new_command
from protocol.mqtt import QOS_AT_LEAST_ONCE, MqttClient, MqttError
from protocol.topics import GateTopics, station_subscriptions
from station.commands import load_private_key
from station.config import FACE_FILING_THRESHOLD_PERSONS, StationConfig
from station.ingest import Ingest, IngestStats
from station.keyservice import REQUEST_EVENT
from station.messages import EventRow
from station.mqtt import make_client, receiver_client_id
from station.store import Range, Store, now_ms

log = logging.getLogger(__name__)

DEFAULT_GAP_CHECK_SECONDS = 5.0
#: Events younger than this are not yet counted for gaps: another receiver may hold the rest.
DEFAULT_SETTLE_MS = 2_000
#: A gap still open this long after the gate was asked is asked for again (then doubling).
DEFAULT_RESEND_RETRY_SECONDS = 60.0
MAX_RESEND_RETRY_SECONDS = 3600.0
#: Ranges asked for per gate and round.
MAX_RANGES_PER_ASK = 20
INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


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


class Receiver:
    """Subscribes, validates, stores, acknowledges and repairs gaps; ``run()`` until cancelled.

    ``index`` tells receivers on one host apart (it is part of the persistent session's id);
    ``signing_key`` signs ``resend`` requests (default: the config's ``signing_key`` file, if
    present; without one, gaps are only reported).
    """

    def __init__(
        self,
        config: StationConfig,
        store: Store,
        *,
        index: int = 0,
        gap_check_seconds: float = DEFAULT_GAP_CHECK_SECONDS,
        settle_ms: int = DEFAULT_SETTLE_MS,
        resend_retry_seconds: float = DEFAULT_RESEND_RETRY_SECONDS,
        signing_key: Ed25519PrivateKey | None = None,
        client_factory: Callable[[], MqttClient] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.prefix = config.mqtt.prefix
        self.batch_size = config.database.batch_size
        self.gap_check_seconds = gap_check_seconds
        self.settle_ms = settle_ms
        self.resend_retry_seconds = resend_retry_seconds
        self.client_id = receiver_client_id(config.mqtt, index)
        self.ingest = Ingest(store, prefix=self.prefix, batch_size=self.batch_size,
                             on_result=self._result, on_event=self._event)
        self.open_gaps: dict[str, list[Range]] = {}
        self.resends_sent = 0
        self.subscribed = asyncio.Event()
        self._key = signing_key if signing_key is not None else self._load_key()
        self._client_factory = client_factory or (
            lambda: make_client(config.mqtt, "receiver", persistent=True, manual_ack=True,
                                client_id_override=self.client_id)
        )
        self._client: MqttClient | None = None
        self._checked_before_ms = 0
        self._face_warned = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_ask: dict[str, tuple[float, float]] = {}  # gate -> (monotonic due, delay)

    @property
    def stats(self) -> IngestStats:
        return self.ingest.stats

    def _load_key(self) -> Ed25519PrivateKey | None:
        try:
            return load_private_key(self.config.signing_key)
        except FileNotFoundError:  # `station run` has warned with all that does not work
            log.info("station receiver: no signing key %s; gaps are reported but the gates "
                     "cannot be asked to re-send them (menjin station keygen)",
                     self.config.signing_key)
        except ValueError as exc:
            log.warning("station receiver: signing key unusable (%s); gaps are only reported",
                        exc)
        return None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch_gaps(), name="station:gaps")
            tasks.create_task(self._receive(), name="station:receive")

    async def _receive(self) -> None:
        await self._check_face_persons()
        backoff = Backoff(INITIAL_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
        broker = f"{self.config.mqtt.host}:{self.config.mqtt.port}"
        unavailable = False
        while True:
            try:
                async with self._client_factory() as client:  # acks after commit, not on arrival
                    for topic in station_subscriptions(self.prefix, self.config.mqtt.share_group):
                        await client.subscribe(topic, qos=QOS_AT_LEAST_ONCE)
                    log.info("station receiver %s %s broker %s subscribed (session %s)",
                             client.client_id, "back on" if unavailable else "connected to",
                             broker, "resumed" if client.session_present else "new")
                    unavailable = False
                    backoff.reset()
                    self._client = client
                    self.subscribed.set()
                    async for batch in client.batches(self.batch_size):
                        await self.ingest.handle(batch)
                        for message in batch:  # in arrival order, after the commit
                            client.ack(message)
            except MqttError as exc:
                self.subscribed.clear()
                if not unavailable:
                    log.warning("station receiver: broker %s unavailable (%s); retrying",
                                broker, exc)
                unavailable = True
                await asyncio.sleep(backoff.next())
            finally:
                self._client = None

    async def _result(self, gate: str, result: dict[str, Any]) -> None:
        if result.get("ok") is True and result.get("name") == "enrol":
            await self._check_face_persons()
        elif result.get("name") == "resend":
            await self._resend_result(gate, result)

    async def _check_face_persons(self) -> None:
        count = await self.ingest.db(self.store.face_person_count)
        warn_at = self.config.face_persons_warn_at
        if count >= warn_at and not self._face_warned:
            log.warning(
                "station: %s persons are enrolled for face entry across all gates; filing with "
                "the cyberspace administration is required at %s", count,
                FACE_FILING_THRESHOLD_PERSONS)
        self._face_warned = count >= warn_at

    async def _event(self, row: EventRow) -> None:
        """A newly stored event: a gate booted with keys.provider station asks for its face key."""
        if row.type == REQUEST_EVENT:
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

    # ------------------------------------------------------------------ gaps

    async def check_gaps(self) -> None:
        """Look up missing ranges of gates with unexamined events; report appearances and fills,
        and ask the gates for what is missing.

        A gate is examined while it has events received after the previous check's settle
        cutoff, and while it has open gaps, so a gap hidden behind settling events is still found
        after its gate went quiet.
        """
        settled = now_ms() - self.settle_ms
        last = self.ingest.last_event_ms
        gates = {g for g, seen in last.items() if seen > self._checked_before_ms}
        gates |= set(self.open_gaps)
        self._checked_before_ms = settled
        for gate in sorted(gates):
            try:
                after = await asyncio.to_thread(self.store.gaps, gate, settled_before_ms=settled)
            except SQLAlchemyError as exc:  # only a report: the next round tries again
                log.debug("station: gap check of gate %s failed: %s", gate, exc)
                last[gate] = now_ms()
                continue
            new, filled = gap_changes(self.open_gaps.get(gate, []), after)
            for low, high in new:
                log.warning("gate %s: missing seq %s-%s (%s events); asking the gate to re-send "
                            "them", gate, low, high, high - low + 1)
            for low, high in filled:
                log.info("gate %s: gap seq %s-%s filled", gate, low, high)
            if after:
                # keep the ranges as reported, so their fill is reported as they were
                self.open_gaps[gate] = [r for r in self.open_gaps.get(gate, [])
                                        if r not in filled] + new
                await self._ask(gate, after, now=bool(new))
            else:
                self.open_gaps.pop(gate, None)
                self._next_ask.pop(gate, None)

    async def _ask(self, gate: str, ranges: list[Range], *, now: bool) -> None:
        """Send ``resend`` for ``ranges`` when due (at once for a new gap)."""
        due, delay = self._next_ask.get(gate, (0.0, self.resend_retry_seconds))
        clock = time.monotonic()
        if (clock < due and not now) or self._key is None or self._client is None:
            return
        for low, high in ranges[:MAX_RANGES_PER_ASK]:
            await self.send_resend(gate, low, high)
        self._next_ask[gate] = (clock + delay, min(delay * 2, MAX_RESEND_RETRY_SECONDS))

    async def send_resend(self, gate: str, low: int, high: int) -> None:
        """Publish a signed ``resend`` of ``low..high`` to ``gate`` (its answer arrives as a
        command result, handled by whichever receiver gets it)."""
        client, key = self._client, self._key
        if client is None or key is None:
            return
        counter = await self.ingest.db(self.store.next_command_counter)
        envelope = new_command("resend", gate, {"from": low, "to": high}, key,
                               ttl_s=self.config.command_ttl_seconds, counter=counter)
        await self.ingest.db(self.store.record_command, envelope)
        try:
            await client.publish(GateTopics(self.prefix, gate).command("resend"),
                                 json.dumps(envelope).encode(), qos=QOS_AT_LEAST_ONCE)
        except MqttError as exc:  # the gap stays open: asked again after the retry delay
            log.debug("station: resend request to gate %s not sent: %s", gate, exc)
            return
        self.resends_sent += 1

    async def _resend_result(self, gate: str, result: dict[str, Any]) -> None:
        """A gate's answer to ``resend``: record what it no longer holds, continue where it
        stopped.  Only answers to a ``resend`` the station sent to that gate count, so a gate
        cannot make the station send commands by answering what was never asked."""
        command_id = result.get("id")
        sent = (await self.ingest.db(self.store.command_result, command_id)
                if isinstance(command_id, str) else None)
        if sent is None or sent["gate"] != gate or sent["name"] != "resend":
            log.debug("gate %s: a resend result for no resend of ours; ignored", gate)
            return
        answer = result.get("result")
        if result.get("ok") is not True or not isinstance(answer, dict):
            log.warning("gate %s: refused to re-send events (%s)", gate,
                        str(result.get("reason"))[:80])
            return
        missing = answer.get("missing")
        lost = [(r[0], r[1]) for r in missing if _is_range(r)] if isinstance(missing, list) else []
        if lost:
            await self.ingest.db(self.store.record_lost, gate, lost)
            for low, high in lost:
                log.warning("gate %s: seq %s-%s no longer held by the gate (pruned); recorded "
                            "as lost", gate, low, high)
        follow, low, to = answer.get("next"), answer.get("from"), answer.get("to")
        if (isinstance(follow, int) and isinstance(low, int) and isinstance(to, int)
                and _is_seq(follow) and low < follow <= to):
            await self.send_resend(gate, follow, to)

    async def _watch_gaps(self) -> None:
        while True:
            await asyncio.sleep(self.gap_check_seconds)
            await self.check_gaps()


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**53


def _is_range(value: object) -> bool:
    return (isinstance(value, list) and len(value) == 2 and _is_seq(value[0])
            and _is_seq(value[1]) and value[0] <= value[1])
