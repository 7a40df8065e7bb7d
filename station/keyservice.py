"""The station's side of the gates' ``station`` key provider.

The station keeps one key-encryption key (``key_encryption_key``, 32 random bytes, on the
station's server, never on a gate).  ``menjin station keys wrap GATE`` makes a gate's data key and
seals it under that key, bound to the gate id: the resulting file goes to the gate
(``<state>/keys/station.wrapped``) and is useless on its own.  When a gate boots it sends a
``keys.request`` event; :func:`answer` unwraps the blob and seals the data key to the gate's
one-boot X25519 public key, which the station then sends as the signed ``unwrap`` command.
The algorithms mirror :mod:`daemon.station_key` (the two packages share no module).
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_BYTES = 32
NONCE_BYTES = 12
REQUEST_EVENT = "keys.request"
UNWRAP_COMMAND = "unwrap"


class KeyServiceError(Exception):
    """A request the station cannot answer (wrong gate, damaged blob, another station's key)."""


def _seal(key: bytes, plain: bytes, context: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plain, context)


def load_kek(path: Path) -> bytes:
    key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    if len(key) != KEY_BYTES:
        raise KeyServiceError(f"{path}: expected {2 * KEY_BYTES} hex characters")
    return key


def wrap_new_key(kek: bytes, gate: str) -> bytes:
    """A fresh data key for ``gate``, sealed under ``kek`` (the gate's ``station.wrapped``)."""
    return _seal(kek, secrets.token_bytes(KEY_BYTES), b"menjin station wrap " + gate.encode())


def answer(kek: bytes, gate: str, request: dict[str, Any]) -> dict[str, Any]:
    """The ``unwrap`` command's args for a ``keys.request`` event's data of ``gate``."""
    try:
        blob = base64.b64decode(str(request["wrapped"]), validate=True)
        gate_public = X25519PublicKey.from_public_bytes(
            base64.b64decode(str(request["gate_public"]), validate=True))
        data_key = AESGCM(kek).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                       b"menjin station wrap " + gate.encode())
    except (KeyError, ValueError, InvalidTag) as exc:
        raise KeyServiceError(f"gate {gate}: cannot unwrap its key ({type(exc).__name__}): was "
                              "its station.wrapped made for this gate by this station?") from None
    ephemeral = X25519PrivateKey.generate()
    transport = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                     info=b"menjin/station-unwrap/v1/" + gate.encode()).derive(
        ephemeral.exchange(gate_public))
    sealed = _seal(transport, data_key, b"menjin unwrap " + gate.encode())
    return {
        "gate_public": request["gate_public"],
        "station_public": base64.b64encode(
            ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode(),
        "sealed": base64.b64encode(sealed).decode(),
    }
