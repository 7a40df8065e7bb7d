"""Secret key files of the gate: created once, readable only by the service user.

Keys that protect data at rest (face templates, pseudonyms, card hashes) live in small files in the
state directory.  A key is generated only when it does not exist yet; callers that already hold
data encrypted under a key must treat a missing key as an error instead (see the template store).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_BYTES = 32
KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """A key file that exists but cannot be used."""


def read_key(path: Path) -> bytes:
    """Read a key stored as raw bytes or as hex text."""
    data = path.read_bytes()
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == KEY_BYTES:
        return data
    raise KeyFileError(f"{path}: expected {KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex characters")


def load_or_create_key(path: Path) -> bytes:
    """Return the key in ``path``, creating a random one (mode 0600) when the file is absent."""
    if path.exists():
        return read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key
