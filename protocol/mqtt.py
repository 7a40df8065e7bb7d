"""The one asyncio MQTT 5 adapter of menjin, on paho-mqtt's public API only.

Both the gate's uplink and the station's receiver and command sender use :class:`MqttClient`;
nothing else imports paho-mqtt.  It drives paho the way paho documents for an external event loop:
the socket is registered with asyncio through ``socket()``, the ``on_socket_*`` callbacks,
``loop_read()``, ``loop_write()``, ``want_write()`` and ``loop_misc()``, and results arrive
through paho's public ``on_connect``/``on_publish``/``on_subscribe``/``on_message``/
``on_disconnect`` callbacks.  What it adds over a plain client:

- **PUBACK reason codes**: :meth:`MqttClient.publish_nowait` returns a future of the reason code,
  so a publish refused by a broker ACL (0x87 under MQTT 5) is never taken for delivered;
- **manual acknowledgement**: with ``manual_ack=True`` a QoS 1 message is acknowledged only when
  :meth:`MqttClient.ack` is called (after the station committed it);
- **batched reads**: every packet already buffered is read on one readable event, and
  :meth:`MqttClient.batches` hands over everything that arrived together as one list.

Connection failures, refusals and lost connections raise :class:`MqttError`; reconnecting is the
caller's business (with :mod:`protocol.backoff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

QOS_AT_MOST_ONCE = 0
QOS_AT_LEAST_ONCE = 1
#: Reason codes from 0x80 up are failures (MQTT 5, 2.4).
REASON_FAILURE = 0x80
#: Packets read per readable event at most, before other tasks get a turn.
MAX_PACKETS_PER_READ = 1000
MISC_LOOP_SECONDS = 1.0
CONNACK_TIMEOUT_SECONDS = 10.0
#: Seconds a clean disconnect may take before the socket is simply closed.
DISCONNECT_TIMEOUT_SECONDS = 2.0


class MqttError(Exception):
    """The broker could not be reached, refused us, or the connection was lost."""


class Message(NamedTuple):
    """One received PUBLISH: ``mid`` and ``qos`` are what :meth:`MqttClient.ack` needs.

    A named tuple: one is built per message received, and a tuple is built several times faster
    than a frozen dataclass.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will the broker publishes when the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = QOS_AT_LEAST_ONCE
    retain: bool = True


def reason_text(packet: str, code: int) -> str:
    """The MQTT 5 name of reason ``code`` in a ``packet`` ("PUBACK", "SUBACK", ...)."""
    try:
        return str(ReasonCode(getattr(PacketTypes, packet), identifier=code))
    except (AttributeError, KeyError, ValueError):
        return f"reason 0x{code:02x}"


def tls_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A verifying TLS client context: the broker's CA, optionally our certificate and key."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return context


def _code(reason: ReasonCode | int) -> int:
    return reason.value if isinstance(reason, ReasonCode) else int(reason)


class MqttClient:
    """An MQTT 5 connection for ``async with``; see the module docstring.

    ``session_expiry_seconds`` (with ``clean_start=False``) asks the broker to keep the session,
    and QoS 1 messages for it, across a disconnect.  ``max_inflight`` bounds unacknowledged
    outgoing QoS 1 publishes (paho queues the rest in order).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        will: Will | None = None,
        keepalive: int = 30,
        clean_start: bool = True,
        session_expiry_seconds: int | None = None,
        max_inflight: int = 20,
        manual_ack: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive = keepalive
        self.clean_start = clean_start
        self.session_expiry_seconds = session_expiry_seconds
        self.manual_ack = manual_ack
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv5)
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not None:
            client.tls_set_context(tls)
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        if logger is not None:
            client.enable_logger(logger)
        client.max_inflight_messages_set(max_inflight)
        client.manual_ack_set(manual_ack)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        self._paho = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._fd = -1
        self._writing = False
        self._flush_scheduled = False
        self._connected: asyncio.Future[bool] | None = None
        self._error: MqttError | None = None
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._publishes: dict[int, asyncio.Future[int]] = {}
        self._subscribes: dict[int, asyncio.Future[list[int]]] = {}
        self._inbox: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._activity = 0
        self._misc: asyncio.Task[None] | None = None
        #: Whether the broker still held a session for us at the last connect.
        self.session_present = False

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> MqttClient:
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._connected = loop.create_future()
        self._closed = loop.create_future()
        self._error, self._closing = None, False
        properties = None
        if self.session_expiry_seconds is not None:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry_seconds
        try:  # DNS, TCP and TLS handshakes block: in a thread
            await asyncio.to_thread(self._paho.connect, self.host, self.port, self.keepalive,
                                    clean_start=self.clean_start, properties=properties)
        except (OSError, ValueError) as exc:
            raise MqttError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        sock = self._paho.socket()
        if sock is None:
            raise MqttError(f"cannot connect to {self.host}:{self.port}: no socket")
        self._fd = sock.fileno()
        loop.add_reader(self._fd, self._readable)
        if self._paho.want_write():  # CONNECT was queued before the socket was ours to watch
            self._set_writing(True)
        self._misc = loop.create_task(self._misc_loop(), name="mqtt:misc")
        try:
            async with asyncio.timeout(CONNACK_TIMEOUT_SECONDS):
                self.session_present = await self._connected
        except BaseException as exc:
            await self._shutdown()
            if isinstance(exc, TimeoutError):
                raise MqttError(f"{self.host}:{self.port}: no CONNACK within "
                                f"{CONNACK_TIMEOUT_SECONDS:g} s") from None
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        assert self._closed is not None
        if self._error is None and self._paho.is_connected():
            self._closing = True
            self._paho.disconnect()
            with contextlib.suppress(TimeoutError, MqttError):
                async with asyncio.timeout(DISCONNECT_TIMEOUT_SECONDS):
                    await asyncio.shield(self._closed)
        self._lost(MqttError("connection closed"))
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None
        self._unregister()
        if self._paho.socket() is not None:  # broker unresponsive: send DISCONNECT and close
            with contextlib.suppress(OSError):
                self._paho.disconnect()
                self._paho.loop_write()

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(MISC_LOOP_SECONDS)
            self._paho.loop_misc()  # keepalive PINGREQ and its timeout

    # ------------------------------------------------------------------ socket plumbing

    def _readable(self) -> None:
        try:
            for _ in range(MAX_PACKETS_PER_READ):
                before = self._activity
                rc = self._paho.loop_read()
                if rc != paho.MQTT_ERR_SUCCESS:
                    self._lost(MqttError(f"connection lost: {paho.error_string(rc)}"))
                    return
                sock = self._paho.socket()
                pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
                if self._activity == before and not pending:
                    return
        except Exception as exc:  # a read error means the connection broke
            self._lost(MqttError(f"connection lost: {exc}"))

    def _writable(self) -> None:
        try:
            rc = self._paho.loop_write()
        except Exception as exc:
            self._lost(MqttError(f"connection lost: {exc}"))
            return
        if rc != paho.MQTT_ERR_SUCCESS:
            self._lost(MqttError(f"connection lost: {paho.error_string(rc)}"))
        elif not self._paho.want_write():
            self._set_writing(False)

    def _in_loop(self, callback: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            callback()
        else:  # paho calls from the thread that runs connect()
            self._loop.call_soon_threadsafe(callback)

    def _set_writing(self, on: bool) -> None:
        assert self._loop is not None
        if on and not self._writing and self._fd >= 0 and self._error is None:
            self._loop.add_writer(self._fd, self._writable)
            self._writing = True
        elif not on and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _unregister(self) -> None:
        if self._loop is not None and self._fd >= 0:
            self._set_writing(False)
            self._loop.remove_reader(self._fd)
            self._fd = -1

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # paho asks when a packet is queued on an idle socket.  On the loop thread the packets
        # queued in this turn of the loop are written at its end (_flush), as paho writes at
        # once without an external loop: registering a writer instead cost two epoll changes
        # and an extra turn of the loop per window of publishes.
        if threading.get_ident() != self._loop_thread:  # connect() runs in a thread
            self._in_loop(lambda: self._set_writing(True))
        elif not self._writing and not self._flush_scheduled:
            assert self._loop is not None
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write what was queued; wait for the socket only for what it could not take."""
        self._flush_scheduled = False
        if self._fd < 0 or self._error is not None:
            return
        self._writable()
        if self._error is None and self._paho.want_write():
            self._set_writing(True)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(lambda: self._set_writing(False))

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._unregister)

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Any) -> None:
        self._activity += 1
        assert self._connected is not None
        if self._connected.done():
            return
        if _code(reason) >= REASON_FAILURE:
            self._connected.set_exception(MqttError(f"broker refused the connection: {reason}"))
        else:
            self._connected.set_result(bool(getattr(flags, "session_present", False)))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        self._activity += 1
        self._lost(None if self._closing else MqttError(f"disconnected: {reason}"))

    def _lost(self, error: MqttError | None) -> None:
        """Fail everything that waits on this connection (None: our own clean disconnect)."""
        failure = error or MqttError("connection closed")
        if self._error is None:
            self._error = failure
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(failure)
        for futures in (self._publishes, self._subscribes):
            for future in futures.values():
                if not future.done():
                    future.set_exception(failure)
            futures.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(failure)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int,
                    reason: ReasonCode, properties: Any) -> None:
        self._activity += 1
        future = self._publishes.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(_code(reason))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        self._activity += 1
        future = self._subscribes.pop(mid, None)
        if future is not None and not future.done():
            future.set_result([_code(r) for r in reasons])

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._activity += 1
        props = message.properties
        self._inbox.append(Message(
            topic=message.topic, payload=bytes(message.payload), qos=message.qos,
            retain=bool(message.retain), mid=message.mid,
            content_type=getattr(props, "ContentType", None),
            user_properties=tuple(getattr(props, "UserProperty", None) or ()),
        ))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ------------------------------------------------------------------ API

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._loop is None:
            raise MqttError("not connected (use `async with`)")

    def publish_nowait(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = QOS_AT_LEAST_ONCE,
        retain: bool = False,
        content_type: str | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> asyncio.Future[int]:
        """Queue a publish now (calls go on the wire in call order); the future resolves to the
        PUBACK reason code (QoS 1) or 0 once written (QoS 0), or fails with :class:`MqttError`.
        """
        self._check()
        assert self._loop is not None
        properties = None
        if content_type is not None or user_properties:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if content_type is not None:
                properties.ContentType = content_type
            if user_properties:
                properties.UserProperty = list(user_properties)
        info = self._paho.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise MqttError(f"cannot publish on {topic}: {paho.error_string(info.rc)}")
        future: asyncio.Future[int] = self._loop.create_future()
        self._publishes[info.mid] = future
        return future

    async def publish(self, topic: str, payload: bytes, **options: Any) -> int:
        """:meth:`publish_nowait` and wait: the reason code (>= 0x80 is a refusal)."""
        return await self.publish_nowait(topic, payload, **options)

    async def subscribe(self, topic: str, *, qos: int = QOS_AT_LEAST_ONCE,
                        no_local: bool = False) -> list[int]:
        """Subscribe and wait for the SUBACK; its reason codes (>= 0x80 is a refusal)."""
        self._check()
        assert self._loop is not None
        rc, mid = self._paho.subscribe(topic, options=SubscribeOptions(qos=qos, noLocal=no_local))
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"cannot subscribe to {topic}: {paho.error_string(rc)}")
        future: asyncio.Future[list[int]] = self._loop.create_future()
        self._subscribes[mid] = future
        return await future

    def ack(self, message: Message) -> None:
        """Acknowledge ``message`` (``manual_ack`` clients); a no-op once disconnected."""
        if self.manual_ack and message.qos > 0 and self._error is None:
            self._paho.ack(message.mid, message.qos)

    async def _wait(self) -> None:
        if self._inbox:
            return
        self._check()
        assert self._loop is not None
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def batches(self, max_size: int = MAX_PACKETS_PER_READ) -> AsyncIterator[list[Message]]:
        """Messages as they arrive, grouped: what arrived together is one list (≤ ``max_size``).

        Raises :class:`MqttError` when the connection is lost (after what was already read).
        """
        while True:
            await self._wait()
            count = min(max_size, len(self._inbox))
            yield [self._inbox.popleft() for _ in range(count)]

    async def messages(self) -> AsyncIterator[Message]:
        """Messages one by one as they arrive; raises :class:`MqttError` when disconnected."""
        while True:
            await self._wait()
            yield self._inbox.popleft()
