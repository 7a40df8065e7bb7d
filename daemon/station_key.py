"""The ``station`` key provider's exchange: ask the station to unwrap the face key, take it back.

At boot the gate holds only ``keys/station.wrapped``: its data key sealed under a key-encryption
key that never leaves the station.  It makes a fresh X25519 key pair (in memory only) and emits a
``keys.request`` event carrying the wrapped blob and the public half; the event travels like any
other (journal, uplink, at least once).  The station unwraps the blob, seals the data key to that
public key (X25519 → HKDF-SHA256 → AES-256-GCM, bound to the gate id) and answers with the signed
``unwrap`` command, so the answer is both authentic (Ed25519 envelope, nonce, expiry: see
:mod:`daemon.commands`) and readable by this boot of this gate only.  Until then face entry waits
(the vision part reports ``face key not available``); cards never need this key.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from daemon.events import Emit, Event
from daemon.keys import KEY_BYTES, KeyProviderError, StationProvider, unseal

log = logging.getLogger(__name__)

REQUEST_EVENT = "keys.request"
UNWRAP_COMMAND = "unwrap"


def transport_key(shared: bytes, gate: str) -> bytes:
    """The AES key of one unwrap answer (same derivation on both ends)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=b"menjin/station-unwrap/v1/" + gate.encode()).derive(shared)


def raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class StationKeyExchange:
    """One boot's request for the face key, and the handler of the station's answer."""

    def __init__(self, provider: StationProvider, *, gate: str, emit: Emit,
                 unlocked: Callable[[], Awaitable[None]]) -> None:
        self._provider = provider
        self._gate = gate
        self._emit = emit
        self._unlocked = unlocked  # start face entry once the key is here
        self._private = X25519PrivateKey.generate()

    @property
    def public(self) -> str:
        return base64.b64encode(raw_public(self._private.public_key())).decode()

    def request(self) -> None:
        """Emit the ``keys.request`` event (once per boot; the journal delivers it)."""
        blob = self._provider.wrapped_blob()
        self._emit(Event(REQUEST_EVENT, data={"gate_public": self.public,
                                              "wrapped": base64.b64encode(blob).decode()}))
        log.info("keys: face key requested from the station; face entry waits for it")

    async def unwrap(self, args: dict[str, Any]) -> dict[str, Any]:
        """The signed ``unwrap`` command: ``{"gate_public", "station_public", "sealed"}`` (base64).

        Raises ValueError (an ``ok: false`` result) for an answer to another request or one that
        does not decrypt.
        """
        if args.get("gate_public") != self.public:
            raise ValueError("unwrap: answers another request (an earlier boot?)")
        try:
            station_public = X25519PublicKey.from_public_bytes(
                base64.b64decode(str(args.get("station_public", "")), validate=True))
            sealed = base64.b64decode(str(args.get("sealed", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"unwrap: malformed answer ({exc})") from None
        key = transport_key(self._private.exchange(station_public), self._gate)
        try:
            data_key = unseal(key, sealed, b"menjin unwrap " + self._gate.encode())
            self._provider.offer(data_key)
        except KeyProviderError as exc:
            raise ValueError(f"unwrap: {exc}") from None
        log.info("keys: face key received from the station (held in memory only)")
        await self._unlocked()
        return {"unwrapped": True}
