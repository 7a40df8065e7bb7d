"""The station's broker connection, built from ``station.yaml`` (MQTT 5, optional TLS and login).

The receiver and the command tools both connect as the station; building the client in one place
keeps their TLS and login handling identical.  The client is :class:`protocol.mqtt.MqttClient`.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
from pathlib import Path

from protocol.mqtt import MqttClient
from protocol.mqtt import tls_context as _tls_context
from station.config import MqttConfig

#: Session kept by the broker after a disconnect, so QoS 1 messages wait for a reconnect.
SESSION_EXPIRY_SECONDS = 3600


def _password(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path is not None else None


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context of ``config.tls`` (None for plain TCP)."""
    if config.tls is None:
        return None
    return _tls_context(config.tls.ca_file, config.tls.cert_file, config.tls.key_file)


def client_id(config: MqttConfig, role: str) -> str:
    """The configured id, or one unique to this process (two receivers must never share one)."""
    if config.client_id:
        return f"{config.client_id}-{role}"
    return f"menjin-station-{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def make_client(
    config: MqttConfig, role: str, *, persistent: bool = False, manual_ack: bool = False
) -> MqttClient:
    """A client for ``config``; ``persistent`` keeps the session (and its queued messages);
    ``manual_ack`` acknowledges QoS 1 messages only on :meth:`~protocol.mqtt.MqttClient.ack`."""
    return MqttClient(
        config.host,
        config.port,
        client_id=client_id(config, role),
        username=config.username,
        password=_password(config.password_file),
        tls=tls_context(config),
        keepalive=config.keepalive_seconds,
        clean_start=not persistent,
        session_expiry_seconds=SESSION_EXPIRY_SECONDS if persistent else None,
        manual_ack=manual_ack,
    )
