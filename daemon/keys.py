"""The gate's keys: where their root comes from, and what each one protects.

A copied SD card must not yield a face template, a person id, a name or a card number, so no key
that protects them is stored on the card in a usable form.  Each comes from a *root key* that a
:class:`KeyProvider` obtains from somewhere else:

=========== ====================================================================================
provider    where the root key is
=========== ====================================================================================
``tpm2``    sealed by the board's TPM 2.0 with ``systemd-creds`` (``keys/root.cred`` is useless
            without that very TPM); systemd decrypts it into the unit's credential directory
            (a RAM file system) with ``LoadCredentialEncrypted=``, or we run
            ``systemd-creds decrypt`` ourselves.
``rpi-otp`` the Raspberry Pi 4/5 customer OTP *private key* (256 bits burnt into the SoC), read
            through the firmware mailbox with ``vcmailbox`` exactly as Raspberry Pi's
            ``rpi-otp-private-key`` does (tag ``0x00030081``, 8 rows).
``station`` a data key that the station wrapped for this gate (``keys/station.wrapped``); at
            boot the gate asks the station to unwrap it through the signed command channel and
            keeps it only in memory.  Cards need their keys before the network is up, so this
            provider protects the face keys only; ``keys.card_provider`` gives the rest.
``file``    ``keys/root.key`` beside the data: development only (``check-config`` warns).
=========== ====================================================================================

From the root, HKDF-SHA256 (RFC 5869) derives one key per purpose (:data:`PURPOSES`), so no key
is used for two things.  The card hash key is the exception: it is a *site* key (every gate of a
compound and the station must hash a card the same way, so the station can search by card), so
it is random, made once, and stored sealed under a key derived from the root
(``keys/card.sealed``); ``menjin keys card-key`` exports and imports it.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from daemon.files import private_dir, write_private
from protocol.entropy import RandomBlocks

KEY_BYTES = 32
NONCE_BYTES = 12
KEYS_DIR = "keys"
ROOT_FILE = "root.key"
TPM2_CREDENTIAL_FILE = "root.cred"
TPM2_CREDENTIAL_NAME = "menjin-root"
STATION_WRAPPED_FILE = "station.wrapped"
CARD_SEALED_FILE = "card.sealed"
#: The purposes a root key is split into (HKDF ``info``: ``menjin/<purpose>/v1``).
PURPOSES = ("templates", "pseudonyms", "store", "journal", "card-seal")
#: Firmware mailbox tag that reads the customer OTP private key (Raspberry Pi 4/5).
OTP_READ_TAG = "0x00030081"
OTP_ROWS = 8
#: ``vcmailbox`` answer header for a successful OTP read: size, response OK, tag, buffer sizes,
#: first row, row count (from ``rpi-otp-private-key``).
_OTP_HEADER = ["0x00000040", "0x80000000", "0x00030081", "0x00000028", "0x80000028",
               "0x00000000", "0x00000008"]
_HEX_WORD = re.compile(r"^0x[0-9a-fA-F]{8}$")
COMMAND_TIMEOUT_SECONDS = 30.0


class KeyProviderError(Exception):
    """A key cannot be obtained; the message says what to do on the board."""


class KeyUnavailableError(KeyProviderError):
    """The key is not there *yet* (station provider before the station answered)."""


class KeyProvider(Protocol):
    """Where a root key comes from: ``root_key`` returns 32 bytes or raises
    :class:`KeyProviderError`."""

    name: str

    def root_key(self) -> bytes: ...


# --------------------------------------------------------------------------- AEAD and HKDF
def derive(root: bytes, purpose: str) -> bytes:
    """The 32-byte key for ``purpose`` (one of :data:`PURPOSES`) under ``root``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=f"menjin/{purpose}/v1".encode()).derive(root)


#: GCM nonces drawn from the OS 256 at a time (:mod:`protocol.entropy`): the journal's writer
#: seals every event body.
_NONCES = RandomBlocks(NONCE_BYTES * 256)


def seal(key: bytes, plain: bytes, context: bytes) -> bytes:
    """``nonce || AES-256-GCM(plain)``, with ``context`` authenticated (never reuse a blob
    under another context).  The 96-bit nonce is random."""
    nonce = _NONCES.take(NONCE_BYTES)
    return nonce + _cipher(key).encrypt(nonce, plain, context)


@functools.lru_cache(maxsize=16)
def _cipher(key: bytes) -> AESGCM:
    """The AES-GCM cipher of ``key``, set up once: the journal seals every event body with
    the same key, and setting it up again each time cost more than the encryption."""
    return AESGCM(key)


def unseal(key: bytes, blob: bytes, context: bytes) -> bytes:
    """The plain bytes of :func:`seal`; :class:`KeyProviderError` for a wrong key or a damaged
    blob."""
    try:
        return _cipher(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
    except (InvalidTag, ValueError):
        raise KeyProviderError("cannot decrypt: wrong key or damaged data") from None


# --------------------------------------------------------------------------- providers
def _run(argv: list[str], *, stdin: bytes | None = None) -> bytes:
    tool = shutil.which(argv[0])
    if tool is None:
        raise KeyProviderError(f"{argv[0]} not found (see docs/privacy.md for the board steps)")
    try:
        done = subprocess.run([tool, *argv[1:]], input=stdin, capture_output=True, check=False,
                              timeout=COMMAND_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KeyProviderError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise KeyProviderError(f"{' '.join(argv[:2])} failed (exit {done.returncode}): "
                        f"{detail[-1] if detail else 'no message'}")
    return done.stdout


@dataclass
class FileProvider:
    """Development only: the root key is a file in the state directory, beside the data."""

    path: Path
    name: str = "file"

    def root_key(self) -> bytes:
        if not self.path.exists():
            write_private(self.path, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
        text = self.path.read_text(encoding="ascii").strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise KeyProviderError(f"{self.path}: expected {2 * KEY_BYTES} hex characters")
        return key


@dataclass
class Tpm2Provider:
    """The root key sealed by the TPM with ``systemd-creds --with-key=tpm2``.

    Under systemd with ``LoadCredentialEncrypted=menjin-root:<state>/keys/root.cred`` the
    service manager decrypts it into ``$CREDENTIALS_DIRECTORY`` (never on the SD card); the CLI
    and first run call ``systemd-creds`` directly (root, or a user allowed to use
    ``/dev/tpmrm0``).
    """

    credential: Path
    name: str = "tpm2"
    _key: bytes | None = field(default=None, repr=False)  # decrypted once per process

    def root_key(self) -> bytes:
        if self._key is None:
            self._key = self._unseal()
        return self._key

    def _unseal(self) -> bytes:
        loaded = os.environ.get("CREDENTIALS_DIRECTORY")
        if loaded and (Path(loaded) / TPM2_CREDENTIAL_NAME).is_file():
            return _exact((Path(loaded) / TPM2_CREDENTIAL_NAME).read_bytes(), "credential")
        if not self.credential.exists():
            private_dir(self.credential.parent)
            sealed = _run(["systemd-creds", "encrypt", "--with-key=tpm2",
                           f"--name={TPM2_CREDENTIAL_NAME}", "-", "-"],
                          stdin=secrets.token_bytes(KEY_BYTES))
            write_private(self.credential, sealed)
        return _exact(_run(["systemd-creds", "decrypt", f"--name={TPM2_CREDENTIAL_NAME}",
                            str(self.credential), "-"]), "systemd-creds decrypt")


@dataclass
class RpiOtpProvider:
    """The Raspberry Pi's customer OTP private key, through the firmware mailbox.

    Programmed once per board with ``rpi-otp-private-key -w $(openssl rand -hex 32)``; all
    zeros means it was never programmed.  Reading needs ``/dev/vcio`` (group ``video``).
    """

    name: str = "rpi-otp"
    _key: bytes | None = field(default=None, repr=False)  # read once per process

    def root_key(self) -> bytes:
        if self._key is None:
            self._key = self._read()
        return self._key

    def _read(self) -> bytes:
        out = _run(["vcmailbox", OTP_READ_TAG, "40", "40", "0", str(OTP_ROWS),
                    *["0"] * OTP_ROWS]).decode("ascii", errors="replace").split()
        if out[: len(_OTP_HEADER)] != _OTP_HEADER or len(out) < len(_OTP_HEADER) + OTP_ROWS:
            raise KeyProviderError("vcmailbox: the firmware did not return the OTP private key (a "
                            "Raspberry Pi 4/5 with current firmware is needed)")
        words = out[len(_OTP_HEADER): len(_OTP_HEADER) + OTP_ROWS]
        if not all(_HEX_WORD.match(w) for w in words):
            raise KeyProviderError("vcmailbox: unexpected answer")
        key = bytes.fromhex("".join(w[2:] for w in words))
        if key == bytes(KEY_BYTES):
            raise KeyProviderError("the OTP private key of this board is not programmed: "
                            "rpi-otp-private-key -w $(openssl rand -hex 32) (see docs/privacy.md)")
        return key


class StationProvider:
    """A data key wrapped by the station for this gate, unwrapped at boot, held in memory.

    :meth:`offer` installs the key the station sent (see :mod:`daemon.station_key`); until then
    :meth:`root_key` raises :class:`KeyUnavailableError` and face entry waits.
    """

    name = "station"

    def __init__(self, wrapped: Path) -> None:
        self.wrapped = wrapped
        self._key: bytes | None = None

    def wrapped_blob(self) -> bytes:
        try:
            return self.wrapped.read_bytes()
        except FileNotFoundError:
            raise KeyProviderError(f"{self.wrapped} is missing: install the file made by "
                            "`menjin station keys wrap` for this gate") from None

    def offer(self, key: bytes) -> None:
        self._key = _exact(key, "station key")

    def root_key(self) -> bytes:
        if self._key is None:
            raise KeyUnavailableError("waiting for the station to unwrap the face key")
        return self._key


def _exact(key: bytes, what: str) -> bytes:
    if len(key) != KEY_BYTES:
        raise KeyProviderError(f"{what}: expected a {KEY_BYTES}-byte key, got {len(key)} bytes")
    return key


def provider(kind: str, keys_dir: Path) -> KeyProvider:
    """The provider ``kind`` of the config, keeping its files in ``keys_dir``."""
    if kind == "file":
        return FileProvider(keys_dir / ROOT_FILE)
    if kind == "tpm2":
        return Tpm2Provider(keys_dir / TPM2_CREDENTIAL_FILE)
    if kind == "rpi-otp":
        return RpiOtpProvider()
    if kind == "station":
        return StationProvider(keys_dir / STATION_WRAPPED_FILE)
    raise ValueError(f"unknown key provider {kind!r}")


# --------------------------------------------------------------------------- the gate's keys
@dataclass(frozen=True)
class LocalKeys:
    """The keys cards and the record need at boot, without the network."""

    card: bytes  # the site's card hash key (HMAC-SHA256)
    store: bytes  # resident store: sealed rows, keyed person references
    journal: bytes  # event bodies at rest
    pseudonyms: bytes  # erased ids and audit targets


def card_key_b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def load_local(prov: KeyProvider, keys_dir: Path, *, create: bool = True) -> LocalKeys:
    """The local keys under ``prov``'s root; the site card key is made on first run."""
    root = prov.root_key()
    sealed = keys_dir / CARD_SEALED_FILE
    wrap = derive(root, "card-seal")
    if sealed.exists():
        card = unseal(wrap, sealed.read_bytes(), b"menjin card key")
    elif create:
        card = secrets.token_bytes(KEY_BYTES)
        write_private(sealed, seal(wrap, card, b"menjin card key"))
    else:
        raise KeyProviderError(f"{sealed} is missing (no card key on this gate yet)")
    return LocalKeys(card=card, store=derive(root, "store"), journal=derive(root, "journal"),
                     pseudonyms=derive(root, "pseudonyms"))


def import_card_key(prov: KeyProvider, keys_dir: Path, card: bytes) -> None:
    """Replace the site card key (from the station or the site's first gate)."""
    write_private(keys_dir / CARD_SEALED_FILE,
                  seal(derive(prov.root_key(), "card-seal"), _exact(card, "card key"),
                       b"menjin card key"))
