"""The station's broker connection, built from ``station.yaml`` (MQTT 5, optional TLS and login).

The receiver and the command tools both connect as the station; building the client in one place
keeps their TLS and login handling identical.  aiomqtt is pinned below 3 (its API changes there).
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from station.config import MqttConfig

#: Session kept by the broker after a disconnect, so QoS 1 messages wait for a reconnect.
SESSION_EXPIRY_SECONDS = 3600


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


def make_client(config: MqttConfig, role: str, *, persistent: bool = False) -> aiomqtt.Client:
    """A client for ``config``; ``persistent`` keeps the session (and its queued messages)."""
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    return aiomqtt.Client(
        config.host,
        config.port,
        identifier=client_id(config, role),
        protocol=aiomqtt.ProtocolVersion.V5,
        username=config.username,
        password=_password(config.password_file),
        tls_context=tls_context(config),
        keepalive=config.keepalive_seconds,
        properties=properties,
    )
