"""The station's broker connection, built from ``station.yaml`` (MQTT 5, optional TLS and login).

The receiver and the command tools both connect as the station; building the client in one place
keeps their TLS and login handling identical.  aiomqtt is pinned below 3 (its API changes there).
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from station.config import MqttConfig

#: Session kept by the broker after a disconnect, so QoS 1 messages wait for a reconnect.
SESSION_EXPIRY_SECONDS = 3600
#: Packets read per readable-socket callback before the event loop gets a turn again.
MAX_PACKETS_PER_READ = 1000


class StationClient(aiomqtt.Client):
    """aiomqtt's client, reading every packet already buffered when its socket is readable.

    Stock aiomqtt 2.5 lets paho read one packet per readable event, so a receiver spends an event
    loop turn per message; a station draining many gates' backlogs reads up to
    ``MAX_PACKETS_PER_READ`` at a time instead (about 1.5x the messages per second here).  It
    relies on paho's ``_packet_read``/``_loop_rc_handle`` exactly as ``loop_read`` uses them;
    aiomqtt is pinned below 3.
    """

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def read_available() -> None:
            try:
                for _ in range(MAX_PACKETS_PER_READ):
                    rc = client._packet_read()
                    if rc == paho.MQTT_ERR_AGAIN:
                        return
                    if rc != paho.MQTT_ERR_SUCCESS:
                        client._loop_rc_handle(rc)
                        return
            except Exception as exc:  # as in aiomqtt: a read error means the connection broke
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def start_misc_loop() -> None:
            self._misc_task = self._loop.create_task(self._misc_loop())

        # paho calls this from the executor thread that runs connect(): hand over to the loop
        self._loop.call_soon_threadsafe(self._loop.add_reader, sock.fileno(), read_available)
        self._loop.call_soon_threadsafe(start_misc_loop)

    async def batches(self) -> AsyncIterator[list[aiomqtt.Message]]:
        """Messages as they arrive, grouped: everything queued at once is one list.

        aiomqtt's iterator creates a task per message; under load a batch costs one.
        """
        async for first in self.messages:
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            yield batch


def _password(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path is not None else None


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(cafile=str(config.tls.ca_file))
    if config.tls.cert_file is not None:
        context.load_cert_chain(
            str(config.tls.cert_file),
            str(config.tls.key_file) if config.tls.key_file is not None else None,
        )
    return context


def client_id(config: MqttConfig, role: str) -> str:
    """The configured id, or one unique to this process (two receivers must never share one)."""
    if config.client_id:
        return f"{config.client_id}-{role}"
    return f"menjin-station-{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def make_client(config: MqttConfig, role: str, *, persistent: bool = False) -> StationClient:
    """A client for ``config``; ``persistent`` keeps the session (and its queued messages)."""
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    return StationClient(
        config.host,
        config.port,
        identifier=client_id(config, role),
        protocol=aiomqtt.ProtocolVersion.V5,
        username=config.username,
        password=_password(config.password_file),
        tls_context=tls_context(config),
        keepalive=config.keepalive_seconds,
        clean_start=not persistent,
        properties=properties,
    )
