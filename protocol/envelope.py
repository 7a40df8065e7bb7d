"""The signed command envelope: the station signs, the gate verifies, a broker account alone never
opens a door.

An envelope is a JSON object ``{"v", "id", "name", "gate", "issued_at_ms", "expires_at_ms",
"nonce", "counter", "args", "sig"}``; ``sig`` is the base64 Ed25519 signature of
:func:`signed_bytes`, the RFC 8785 canonical JSON of the envelope without ``sig`` (the gate
re-canonicalises what it parsed, and the parser refuses repeated keys, so one set of bytes has
one meaning).  ``counter`` is the station's monotonic command counter: the gate remembers the
highest it accepted, so no clock change can make a captured command new again.  Binding
``gate`` and ``name`` into the signed bytes stops a command for one gate (or one action) from
being replayed against another.  Time, counter, nonce and replay checks need the gate's clock
and journal and stay with the gate (``daemon/commands.py``); everything that needs only the
bytes is here.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.bounded_json import PayloadError, loads_object
from protocol.canonical import CanonicalError, canonical_json

ENVELOPE_VERSION = 1
ENVELOPE_FIELDS = frozenset(
    {"v", "id", "name", "gate", "issued_at_ms", "expires_at_ms", "nonce", "counter", "args",
     "sig"}
)
COMMAND_NAMES = frozenset(
    {"open", "mode", "sync", "sync_part", "enrol", "remove", "forget", "config", "ping",
     "resend", "unwrap"}
)
#: At most this many events are queued again per ``resend`` command; the result says where to
#: continue.
RESEND_MAX_EVENTS = 10_000
NONCE_HEX_CHARS = 32
DEFAULT_TTL_S = 60
#: A gate refuses larger envelopes by default (an ``enrol`` with photos is the largest).
DEFAULT_MAX_ENVELOPE_BYTES = 1024 * 1024
_NONCE = re.compile(rf"^[0-9a-f]{{{NONCE_HEX_CHARS}}}$")
#: Field name → accepted JSON type (bool is refused where an integer is expected).
_FIELD_TYPES: dict[str, type] = {
    "v": int, "id": str, "name": str, "gate": str, "issued_at_ms": int, "expires_at_ms": int,
    "nonce": str, "counter": int, "args": dict, "sig": str,
}
#: Counters are positive integers with an exact JSON (IEEE double) form.
MAX_COUNTER = 2**53
#: Commands of one station may overtake each other (different topics): a counter up to this far
#: below the highest accepted one is still taken once.
COUNTER_WINDOW = 64


def counter_after(previous: int, now_ms: int) -> int:
    """The next command counter of a station: above ``previous`` and at least ``now_ms * 1000``.

    Seeding from the time lets a station that lost its database (or a tool without one) still
    issue counters above those used before; ``previous + 1`` keeps it increasing when the
    station's own clock goes back.
    """
    return max(previous + 1, now_ms * 1000)


class EnvelopeError(ValueError):
    """An envelope refused on its bytes alone; ``reason`` is the contract's short code
    (``oversized``, ``malformed``, ``unsigned``), ``detail`` is for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def signed_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: RFC 8785 JSON of the envelope without ``sig``.

    Raises :class:`~protocol.canonical.CanonicalError` for values without a canonical form.
    """
    return canonical_json({k: v for k, v in envelope.items() if k != "sig"})


def sign_envelope(envelope: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``envelope`` with its ``sig`` field set."""
    signed = {k: v for k, v in envelope.items() if k != "sig"}
    signed["sig"] = base64.b64encode(key.sign(signed_bytes(signed))).decode("ascii")
    return signed


def signature_valid(envelope: Mapping[str, Any], key: Ed25519PublicKey) -> bool:
    """True when ``sig`` is a valid signature of the envelope by ``key``; never raises."""
    sig = envelope.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        key.verify(base64.b64decode(sig, validate=True), signed_bytes(envelope))
    except (InvalidSignature, ValueError):  # CanonicalError and binascii.Error are ValueErrors
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
    counter: int | None = None,
) -> dict[str, Any]:
    """Build and sign a command envelope for ``gate``, valid ``ttl_s`` seconds from ``now_ms``.

    ``counter``: the station's next command counter (:func:`counter_after` of the last one it
    kept); None derives one from the time (tools without a database; two in the same
    microsecond would collide, so stations keep theirs).
    """
    issued = int(time.time() * 1000) if now_ms is None else now_ms
    envelope = {
        "v": ENVELOPE_VERSION,
        "id": str(uuid.uuid4()),
        "name": name,
        "gate": gate,
        "issued_at_ms": issued,
        "expires_at_ms": issued + int(ttl_s * 1000),
        "nonce": secrets.token_hex(NONCE_HEX_CHARS // 2),
        "counter": counter if counter is not None else counter_after(0, issued)
        + secrets.randbelow(1000),
        "args": dict(args),
    }
    return sign_envelope(envelope, key)


def parse_envelope(
    payload: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES
) -> dict[str, Any]:
    """Bounded decode and shape check of a command payload (signature not checked here).

    Raises :class:`EnvelopeError`: ``oversized`` over ``max_bytes``; ``unsigned`` without ``sig``;
    ``malformed`` for bytes outside the JSON limits of :mod:`protocol.bounded_json`, missing or
    extra fields, wrong types, another version, a nonce that is not 32 lowercase hex digits, or
    values without a canonical form.
    """
    if len(payload) > max_bytes:
        raise EnvelopeError("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        envelope = loads_object(payload, max_bytes=max_bytes)
    except PayloadError as exc:
        raise EnvelopeError("malformed", str(exc)) from None
    if "sig" not in envelope:
        raise EnvelopeError("unsigned", "no signature")
    missing = sorted(ENVELOPE_FIELDS - envelope.keys())
    extra = sorted(envelope.keys() - ENVELOPE_FIELDS)
    if missing or extra:
        raise EnvelopeError("malformed", f"missing fields {missing}, unexpected fields {extra}")
    for key, kind in _FIELD_TYPES.items():
        value = envelope[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise EnvelopeError("malformed", f"field {key!r} has the wrong type")
    if envelope["v"] != ENVELOPE_VERSION:
        raise EnvelopeError("malformed", f"unsupported envelope version {envelope['v']}")
    if not 1 <= envelope["counter"] <= MAX_COUNTER:
        raise EnvelopeError("malformed", f"counter must be 1 to {MAX_COUNTER}")
    if not _NONCE.match(envelope["nonce"]):
        raise EnvelopeError("malformed", f"nonce must be {NONCE_HEX_CHARS} lowercase hex digits")
    try:
        signed_bytes(envelope)
    except CanonicalError as exc:
        raise EnvelopeError("malformed", f"no canonical form: {exc}") from None
    return envelope


def station_key_id(key: Ed25519PublicKey) -> str:
    """A short id of a station key (16 hex digits of the SHA-256 of its raw 32 bytes): the gate
    keeps command counters per station key, so a new key starts a new counter."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def private_key_from_pem(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) bytes; ValueError for anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) bytes; ValueError otherwise."""
    try:
        key = serialization.load_pem_public_key(pem)
    except UnsupportedAlgorithm as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key
