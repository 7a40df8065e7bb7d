"""Store-and-forward uplink: the journal's events to the station broker, commands back.

The uplink only reads the journal, so a dead network never costs an event: it publishes what
:meth:`~daemon.journal.Journal.take` hands it on ``<prefix>/<gate>/events`` with QoS 1, keeps a
bounded window of unacknowledged publishes in flight (throughput without unbounded memory), and
marks an event delivered only after its PUBACK.  Publishes go out in ``seq`` order, except that
alarms recorded during a backlog drain are taken ahead of older routine events.  Events that were
already waiting when the connection came up (the backlog of an outage) go in packs of up to 100
per message (:mod:`protocol.packs`); an event recorded while connected goes alone.  After any
failure it reconnects with capped exponential backoff and jitter.

The broker connection is MQTT 5 with TLS (CA, client certificate and key), a user name and a
password read from a file, and a retained Last Will ``offline`` on ``<prefix>/<gate>/status``;
``online`` (version, uptime, portrait policy and, for ``upload``, the legal basis) is published
retained on every connect.  A broker ACL that refuses this gate's topics is reported once and the
refused events stay in the journal; the uplink waits instead of retrying in a loop.

The MQTT connection is :class:`protocol.mqtt.MqttClient` (paho-mqtt's public API), which gives
each publish's PUBACK reason code; topics come from :class:`protocol.topics.GateTopics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.commands import CommandProcessor
from daemon.events import SCHEMA_VERSION, now_ms
from daemon.journal import Journal, PortraitPolicy
from daemon.journal_outbox import Pending
from protocol.backoff import backoff_seconds
from protocol.mqtt import (
    QOS_AT_LEAST_ONCE,
    QOS_AT_MOST_ONCE,
    REASON_FAILURE,
    MqttClient,
    MqttError,
    Will,
    reason_text,
    tls_context,
)
from protocol.packs import MAX_PACK_EVENTS, packs
from protocol.topics import GateTopics, TopicError, parse_topic

log = logging.getLogger(__name__)

#: How long a refused (ACL) publish pauses the event flow before it is tried again.
DEFAULT_DENIED_PAUSE_SECONDS = 300.0
DEFAULT_INITIAL_BACKOFF_SECONDS = 0.5
DEFAULT_MAX_BACKOFF_SECONDS = 60.0
KEEPALIVE_SECONDS = 30
#: Seconds allowed for the ``offline`` status on a clean shutdown.
OFFLINE_PUBLISH_TIMEOUT_SECONDS = 2.0
CPU_TEMP_FILE = Path("/sys/class/thermal/thermal_zone0/temp")
JPEG_CONTENT_TYPE = "image/jpeg"
#: Windows of messages handed to the MQTT client ahead of their PUBACKs (see ``_pump``).
READ_AHEAD = 2
#: Events handed to the MQTT client at most: while a backlog drains in packs, this keeps a read
#: of the journal (on the event loop) to about a millisecond.
HANDED_EVENTS_MAX = 2000


@dataclass
class UplinkState:
    """What the status view and health report know about the uplink."""

    connected: bool = False
    connects: int = 0
    published: int = 0
    denied: int = 0
    last_error: str | None = None


def _cpu_temp_c() -> float | None:
    try:
        return round(int(CPU_TEMP_FILE.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


class Uplink:
    """One gate's connection to the station broker (run it under ``supervise``)."""

    def __init__(
        self,
        journal: Journal,
        *,
        gate: str,
        host: str,
        site: str = "",
        port: int = 8883,
        prefix: str = "menjin",
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        username: str | None = None,
        password_file: Path | None = None,
        password_env: str | None = None,
        client_id: str | None = None,
        commands: CommandProcessor | None = None,
        portraits: PortraitPolicy = "off",
        legal_basis: str | None = None,
        health_seconds: float = 60.0,
        health_source: Callable[[], Mapping[str, Any]] | None = None,
        inflight: int = 32,
        version: str = __version__,
        initial_backoff_seconds: float = DEFAULT_INITIAL_BACKOFF_SECONDS,
        max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS,
        denied_pause_seconds: float = DEFAULT_DENIED_PAUSE_SECONDS,
    ) -> None:
        self.journal = journal
        self.gate = gate
        self.site = site
        self.host = host
        self.port = port
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.username = username
        self.password_file = password_file
        self.password_env = password_env
        self.client_id = client_id or f"menjin-{gate}"
        self.commands = commands
        self._retained_ignored = 0
        self.portraits = portraits
        self.legal_basis = legal_basis
        self.health_seconds = health_seconds
        self.health_source = health_source
        self.inflight = inflight
        self.version = version
        self.initial_backoff_seconds = initial_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.denied_pause_seconds = denied_pause_seconds
        self.state = UplinkState()
        self.prefix = prefix
        self.topics = GateTopics(prefix, gate)
        self.status_topic = self.topics.status
        self.events_topic = self.topics.events
        self.health_topic = self.topics.health
        self._started = time.monotonic()
        self._wake = asyncio.Event()
        self._denial_reported = False
        self._subscribe_denial_reported = False
        journal.add_listener(self._wake.set)

    # ------------------------------------------------------------------ payloads

    def status(self, state: str) -> dict[str, Any]:
        """The retained status message (``online``, or the ``offline`` Last Will)."""
        out: dict[str, Any] = {
            "v": SCHEMA_VERSION, "gate": self.gate, "state": state, "version": self.version,
            "uptime_s": int(time.monotonic() - self._started), "ts_ms": now_ms(),
            "portraits": self.portraits,
        }
        if self.site:
            out["site"] = self.site
        if self.portraits == "upload":
            out["legal_basis"] = self.legal_basis or ""
        return out

    def health(self) -> dict[str, Any]:
        """The periodic health report."""
        oldest = self.journal.oldest_undelivered_ms()
        now = now_ms()
        extra = dict(self.health_source()) if self.health_source is not None else {}
        try:
            disk_free: int | None = shutil.disk_usage(self.journal.path.parent).free
        except OSError:
            disk_free = None
        return {
            "v": SCHEMA_VERSION, "gate": self.gate, "ts_ms": now,
            "queue_depth": self.journal.queue_depth(),
            "last_seq": self.journal.last_seq,
            "oldest_undelivered_age_s": None if oldest is None else round((now - oldest) / 1000, 3),
            "readers": dict(extra.get("readers", {})),
            "camera": extra.get("camera", "absent"),
            "cpu_temp_c": _cpu_temp_c(),
            "disk_free_bytes": disk_free,
            # the station's gates view shows each door's state and mode, the clock's trust and
            # the vision process, and raises tamper and an untrusted clock
            **{key: extra[key] for key in ("doors", "tamper", "clock", "vision") if key in extra},
        }

    @staticmethod
    def _json(obj: Mapping[str, Any]) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def _client(self) -> MqttClient:
        tls = None
        if self.ca_file is not None:
            tls = tls_context(self.ca_file, self.cert_file, self.key_file)
        password = None  # read at every connect: a rotated password needs no restart
        if self.password_file is not None:
            password = self.password_file.read_text(encoding="utf-8").strip()
        elif self.password_env is not None:
            password = os.environ.get(self.password_env)
        return MqttClient(
            self.host, self.port, client_id=self.client_id, username=self.username,
            password=password, tls=tls,
            will=Will(self.status_topic, self._json(self.status("offline"))),
            keepalive=KEEPALIVE_SECONDS, max_inflight=self.inflight,
            logger=logging.getLogger(f"{__name__}.mqtt"),
        )

    # ------------------------------------------------------------------ connection

    async def run(self) -> None:
        """Stay connected until cancelled; on cancellation publish ``offline`` first."""
        attempt = 0
        while True:
            error: str | None = None
            connects = self.state.connects
            try:
                await self._session()
            except* MqttError as group:
                error = "; ".join(str(e) for e in group.exceptions)
            except* (OSError, ValueError) as group:  # password file unreadable, TLS files ...
                error = "; ".join(str(e) for e in group.exceptions)
            self.state.connected = False
            self.state.last_error = error
            attempt = 1 if self.state.connects > connects else attempt + 1
            delay = backoff_seconds(attempt, initial=self.initial_backoff_seconds,
                                    cap=self.max_backoff_seconds)
            if attempt == 1:
                log.warning("uplink: unavailable (%s:%d: %s); retrying in %.1f s",
                            self.host, self.port, error, delay)
            else:
                log.debug("uplink: still unavailable (%s); retrying in %.1f s", error, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        client = self._client()
        async with client:
            self.state.connected = True
            self.state.connects += 1
            backlog_seq = self.journal.last_seq  # what was recorded before goes in packs
            log.info("uplink: connected to %s:%d as %s", self.host, self.port, self.client_id)
            try:
                await client.publish(self.status_topic, self._json(self.status("online")),
                                     retain=True)
                await self._subscribe(client)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._pump(client, backlog_seq), name="uplink:events")
                    tasks.create_task(self._health_loop(client), name="uplink:health")
                    tasks.create_task(self._command_loop(client), name="uplink:commands")
            except asyncio.CancelledError:
                with contextlib.suppress(MqttError, TimeoutError):
                    await asyncio.wait_for(
                        client.publish(self.status_topic, self._json(self.status("offline")),
                                       retain=True),
                        OFFLINE_PUBLISH_TIMEOUT_SECONDS)
                raise

    async def _subscribe(self, client: MqttClient) -> None:
        if self.commands is None:
            return
        topic = self.topics.commands
        codes = await client.subscribe(topic, qos=QOS_AT_LEAST_ONCE, no_local=True)
        refused = [c for c in codes if c >= REASON_FAILURE]
        if refused and not self._subscribe_denial_reported:
            self._subscribe_denial_reported = True
            log.error("uplink: broker refused the subscription to %s (%s): station commands "
                      "cannot reach this gate; check the broker ACL", topic,
                      reason_text("SUBACK", refused[0]))

    # ------------------------------------------------------------------ events

    def _messages(self, items: list[Pending],
                  backlog_seq: int) -> list[tuple[list[Pending], bytes]]:
        """``items`` as they are published: (the events of one message, its payload).

        Runs of events recorded before this connection (``seq`` up to ``backlog_seq``) go in
        packs (:mod:`protocol.packs`); every other event goes alone, and so does one whose
        portrait is uploaded with it.
        """
        out: list[tuple[list[Pending], bytes]] = []
        run: list[Pending] = []
        for item in [*items, None]:
            if item is not None and item.seq <= backlog_seq and not self._with_portrait(item):
                run.append(item)
                continue
            start = 0
            for count, payload in packs([event.payload for event in run]):
                out.append((run[start:start + count], payload))
                start += count
            run = []
            if item is not None:
                out.append(([item], item.payload))
        return out

    def _with_portrait(self, item: Pending) -> bool:
        return self.portraits == "upload" and item.portrait is not None

    def _send(self, client: MqttClient, events: list[Pending],
              payload: bytes) -> list[asyncio.Future[int]]:
        futures = []
        item = events[0]
        if self._with_portrait(item) and item.portrait is not None:
            with contextlib.suppress(FileNotFoundError):  # evicted meanwhile: event only
                jpeg = self.journal.read_portrait(item.portrait)
                futures.append(client.publish_nowait(
                    self.topics.capture(item.id), jpeg, content_type=JPEG_CONTENT_TYPE,
                    user_properties=[("event_id", item.id), ("seq", str(item.seq)),
                                     ("gate", self.gate), ("ts_ms", str(item.ts_ms))]))
        futures.append(client.publish_nowait(self.events_topic, payload))
        return futures

    async def _pump(self, client: MqttClient, backlog_seq: int) -> None:
        """Publish pending events with at most ``inflight`` messages unacknowledged on the wire.

        Events recorded before the connection (``seq`` up to ``backlog_seq``) go in packs, the
        others one per message (see :meth:`_messages`).  Up to :data:`READ_AHEAD` windows of
        messages are handed to the MQTT client, which puts the next one on the wire the moment a
        PUBACK frees a place (paho queues the rest in order), and the journal is read again as
        soon as one window's worth has been acknowledged: the window never drains while events
        are pending.  Packs are read a thousand events or so at a time (:data:`HANDED_EVENTS_MAX`).
        """
        handed: deque[tuple[list[Pending], list[asyncio.Future[int]]]] = deque()
        acked: list[str] = []
        self.journal.rewind()  # what the last connection had in flight is sent again
        ahead = READ_AHEAD * self.inflight
        events = 0  # handed and not yet acknowledged
        backlog = True  # events up to backlog_seq may be pending: read enough to pack them
        while True:
            if len(handed) <= ahead - self.inflight and events <= HANDED_EVENTS_MAX // 2:
                self.journal.mark_delivered(acked)
                acked.clear()
                self._wake.clear()
                busy = {item.seq for group, _ in handed for item in group}
                room = ahead - len(handed)
                limit = min(room * MAX_PACK_EVENTS if backlog else room,
                            HANDED_EVENTS_MAX - events)
                items = self.journal.take(limit, exclude=busy)
                backlog = any(item.seq <= backlog_seq for item in items)
                messages = self._messages(items, backlog_seq)
                if len(messages) > room:  # the rest waits: taken again from the store
                    del messages[room:]
                    self.journal.rewind()
                for group, payload in messages:
                    handed.append((group, self._send(client, group, payload)))
                    events += len(group)
            if not handed:
                await self._wake.wait()
                continue
            group, futures = handed.popleft()
            events -= len(group)
            # One future per message unless a portrait goes with it: no gather for the common
            # case.
            codes = [await futures[0]] if len(futures) == 1 else await asyncio.gather(*futures)
            if max(codes) < REASON_FAILURE:
                acked.extend(item.id for item in group)
                self.state.published += len(group)
                if self._denial_reported:
                    self._denial_reported = False
                    log.info("uplink: broker accepts this gate's events again")
                continue
            await self._denied(group[0], max(codes), handed, acked)
            events = 0

    async def _denied(self, item: Pending, code: int,
                      handed: deque[tuple[list[Pending], list[asyncio.Future[int]]]],
                      acked: list[str]) -> None:
        """A refused publish (ACL): report once, keep the events, wait, then try again."""
        self.state.denied += 1
        if not self._denial_reported:
            self._denial_reported = True
            log.error("uplink: broker refused event seq %d on %s (reason 0x%02x, %s); it stays "
                      "in the journal; next try in %g s; check the broker ACL for this gate",
                      item.seq, self.events_topic, code, reason_text("PUBACK", code),
                      self.denied_pause_seconds)
        else:
            log.debug("uplink: event seq %d refused again (0x%02x)", item.seq, code)
        for events, futures in handed:  # the rest of the window: keep what was accepted
            if max(await asyncio.gather(*futures)) < REASON_FAILURE:
                acked.extend(other.id for other in events)
        handed.clear()
        self.journal.mark_delivered(acked)
        acked.clear()
        self.journal.rewind()  # the refused events are to be taken again
        await asyncio.sleep(self.denied_pause_seconds)

    # ------------------------------------------------------------------ health and commands

    async def _health_loop(self, client: MqttClient) -> None:
        while True:
            await client.publish(self.health_topic, self._json(self.health()),
                                 qos=QOS_AT_MOST_ONCE)
            await asyncio.sleep(self.health_seconds)

    def _command_name(self, topic: str) -> str | None:
        """``<prefix>/<gate>/cmd/<name>`` of this gate → name; None for results and the rest."""
        try:
            parsed = parse_topic(topic, self.prefix)
        except TopicError:
            return None
        return parsed.name if parsed.kind == "command" and parsed.gate == self.gate else None

    async def _command_loop(self, client: MqttClient) -> None:
        async for message in client.messages():
            name = self._command_name(message.topic)
            if name is None or self.commands is None:
                continue
            if message.retain:  # a command is for now: a retained one would replay each start
                self._retained_ignored += 1
                log.log(logging.WARNING if self._retained_ignored == 1 else logging.DEBUG,
                        "uplink: retained message on %s ignored (commands are never retained;"
                        " clear it on the broker)", message.topic[:200])
                continue
            outcome = await self.commands.process(name, message.payload)
            await client.publish(self.topics.result(name), self._json(outcome.result))
