"""The signed-command protocol between the station and its gates.

The station is the authority that issues commands, so the envelope format lives here; gates import
this module to verify what they receive (``daemon/commands.py``).  Only ``cryptography`` is needed,
so a gate installs no station dependencies for it.

An envelope is a JSON object ``{"v", "id", "name", "gate", "issued_at_ms", "expires_at_ms", "nonce",
"args", "sig"}``; ``sig`` is an Ed25519 signature over :func:`canonical_bytes` of the envelope
without ``sig``.  Binding ``gate`` and ``name`` into the signed bytes stops a command for one gate
(or one action) from being replayed against another.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PROTOCOL_VERSION = 1
ENVELOPE_FIELDS = frozenset(
    {"v", "id", "name", "gate", "issued_at_ms", "expires_at_ms", "nonce", "args", "sig"}
)
COMMAND_NAMES = frozenset(
    {"open", "mode", "sync", "enrol", "remove", "forget", "config", "ping", "unwrap"}
)
NONCE_HEX_CHARS = 32
DEFAULT_TTL_S = 60


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: the envelope without ``sig``, keys sorted, no whitespace."""
    body = {k: v for k, v in envelope.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_envelope(envelope: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return a copy of ``envelope`` with its ``sig`` field set."""
    signed = {k: v for k, v in envelope.items() if k != "sig"}
    signed["sig"] = base64.b64encode(key.sign(canonical_bytes(signed))).decode("ascii")
    return signed


def signature_valid(envelope: Mapping[str, Any], key: Ed25519PublicKey) -> bool:
    """True when ``sig`` is a valid signature of the envelope by ``key``."""
    sig = envelope.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        key.verify(base64.b64decode(sig, validate=True), canonical_bytes(envelope))
    except (InvalidSignature, ValueError):
        return False
    return True


def new_command(
    name: str,
    gate: str,
    args: Mapping[str, Any],
    key: Ed25519PrivateKey,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Build and sign a command envelope for ``gate``."""
    issued = int(time.time() * 1000) if now_ms is None else now_ms
    envelope = {
        "v": PROTOCOL_VERSION,
        "id": str(uuid.uuid4()),
        "name": name,
        "gate": gate,
        "issued_at_ms": issued,
        "expires_at_ms": issued + int(ttl_s * 1000),
        "nonce": secrets.token_hex(NONCE_HEX_CHARS // 2),
        "args": dict(args),
    }
    return sign_envelope(envelope, key)


def command_topic(prefix: str, gate: str, name: str) -> str:
    return f"{prefix}/{gate}/cmd/{name}"


def result_topic(prefix: str, gate: str, name: str) -> str:
    return f"{prefix}/{gate}/cmd/{name}/result"


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM (PKCS#8) Ed25519 private key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM (SubjectPublicKeyInfo) Ed25519 public key."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key
