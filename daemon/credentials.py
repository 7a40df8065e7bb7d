"""Key, certificate and password files named in the config, loaded the one way the daemon uses them.

``menjin check-config`` calls the same functions as the running gate, so a file it accepts is a
file the daemon can use (a station key that is not Ed25519 is found at the check, not ~6 s after
every start).  Each failure is a :class:`CredentialError` whose message says what is wrong and
what to do, without the path (the caller knows where the path was written).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from daemon.keys import CARD_SEALED_FILE, KeyProviderError, LocalKeys, load_local, provider

OSDP_KEY_BYTES = 16  # Secure Channel base key (SCBK), OSDP v2.2 §D.


class CredentialError(Exception):
    """A credential file that exists but cannot be used, or cannot be read."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CredentialError(f"file not found: {path} ({what})") from None
    except OSError as exc:
        raise CredentialError(
            f"cannot read {path}: {exc.strerror} (the service user must be able to read it)"
        ) from None


def load_station_key(path: Path) -> Ed25519PublicKey:
    """The station's command-verifying key: a PEM (SubjectPublicKeyInfo) Ed25519 public key."""
    data = _read(path, "copy station_key.pub.pem from the station: menjin station keygen")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError(
            f"{path} is not a PEM public key; copy station_key.pub.pem written by "
            "menjin station keygen"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise CredentialError(
            f"{path} holds a public key of type {type(key).__name__.removesuffix('PublicKey')}, "
            "not Ed25519; "
            "the station signs with Ed25519 (menjin station keygen)"
        )
    return key


def load_local_keys(kind: str, keys_dir: Path) -> LocalKeys | None:
    """The gate's boot keys (card hash, resident store, journal, pseudonyms) from provider
    ``kind`` (the ``keys:`` section), read as the daemon reads them
    (:func:`daemon.keys.load_local`): None before the first start, which creates them.
    """
    if not (keys_dir / CARD_SEALED_FILE).exists():
        return None
    try:
        return load_local(provider(kind, keys_dir), keys_dir, create=False)
    except (KeyProviderError, ValueError) as exc:
        raise CredentialError(
            f"{exc} (the keys in {keys_dir} do not open with provider {kind!r}: another board's "
            "copy, or a wrong keys.provider; restore the board's keys or re-enrol this gate)"
        ) from None


def load_osdp_key(path: Path) -> bytes:
    """An OSDP reader's Secure Channel base key: 32 hex characters (16 bytes)."""
    text = _read(path, "write the reader's 16-byte Secure Channel key there as 32 hex digits")
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != OSDP_KEY_BYTES:
        raise CredentialError(
            f"{path}: an OSDP Secure Channel key is {2 * OSDP_KEY_BYTES} hex digits "
            f"({OSDP_KEY_BYTES} bytes)"
        )
    return key


def read_password(path: Path) -> str:
    """An MQTT password file: UTF-8 text, surrounding whitespace removed, not empty."""
    data = _read(path, "write the broker password for this gate into it; chmod 600")
    try:
        password = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialError(f"{path} is not UTF-8 text") from None
    if not password:
        raise CredentialError(f"{path} is empty; write the broker password for this gate into it")
    return password


def tls_context(ca_file: Path, cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext:
    """A client TLS context verifying the broker with ``ca_file``, with the client certificate.

    The same loading calls paho-mqtt makes for the uplink (``load_verify_locations``,
    ``load_cert_chain``), so a certificate this refuses the uplink would refuse too.
    """
    _read(ca_file, "copy the CA certificate that signed the station broker's certificate")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (ssl.SSLError, ValueError):
        raise CredentialError(
            f"{ca_file} is not a PEM CA certificate (ask the station for its CA certificate)"
        ) from None
    if cert_file is not None:
        _read(cert_file, "copy this gate's client certificate")
        if key_file is not None:
            _read(key_file, "copy this gate's private key (chmod 600)")
        try:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        except (ssl.SSLError, ValueError) as exc:
            raise CredentialError(
                f"{cert_file} and {key_file} do not load as a client certificate and its "
                f"private key ({exc.reason or exc}); check that the key belongs to the "
                "certificate and is not encrypted"
                if isinstance(exc, ssl.SSLError)
                else f"{cert_file}: {exc}"
            ) from None
    return context
