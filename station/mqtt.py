"""The station's broker connection, built from ``station.yaml`` (MQTT 5, optional TLS and login).

The receiver and the command tools both connect as the station; building the client in one place
keeps their TLS and login handling identical.  The client is :class:`protocol.mqtt.MqttClient`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import ssl
from pathlib import Path

from protocol.mqtt import MqttClient
from protocol.mqtt import tls_context as _tls_context
from station.config import MqttConfig


def _password(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8").strip() if path is not None else None


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context of ``config.tls`` (None for plain TCP)."""
    if config.tls is None:
        return None
    return _tls_context(config.tls.ca_file, config.tls.cert_file, config.tls.key_file)


def client_id(config: MqttConfig, role: str) -> str:
    """The configured id, or one unique to this process (two command senders never collide)."""
    if config.client_id:
        return f"{config.client_id}-{role}"
    return f"menjin-station-{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def receiver_client_id(config: MqttConfig, index: int) -> str:
    """The stable client id of receiver ``index`` (0, 1, ... on one host).

    The broker keeps a persistent session under this id, so it must be the same after a restart
    and different for every receiver: ``<client_id>-receiver-<index>`` when ``mqtt.client_id`` is
    set, else derived from the host name, the broker and the topic prefix and share group
    (``menjin-station-<host>-<8 hex>-r<index>``), which a restart does not change.
    """
    if config.client_id:
        return f"{config.client_id}-receiver-{index}"
    what = f"{config.host}:{config.port}/{config.prefix}/{config.share_group}".encode()
    digest = hashlib.sha256(what).hexdigest()[:8]
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-_")[:32]
    return f"menjin-station-{host}-{digest}-r{index}"


def make_client(
    config: MqttConfig, role: str, *, persistent: bool = False, manual_ack: bool = False,
    client_id_override: str | None = None,
) -> MqttClient:
    """A client for ``config``; ``persistent`` keeps the session (and its queued messages) for
    ``mqtt.session_expiry_seconds`` after a disconnect (MQTT 5 clean start off);
    ``manual_ack`` acknowledges QoS 1 messages only on :meth:`~protocol.mqtt.MqttClient.ack`."""
    return MqttClient(
        config.host,
        config.port,
        client_id=client_id_override or client_id(config, role),
        username=config.username,
        password=_password(config.password_file),
        tls=tls_context(config),
        keepalive=config.keepalive_seconds,
        clean_start=not persistent,
        session_expiry_seconds=config.session_expiry_seconds if persistent else None,
        manual_ack=manual_ack,
    )
