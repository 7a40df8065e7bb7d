"""PIN hashes as the contract carries them: salted scrypt, ``scrypt$N$r$p$salt_hex$hash_hex``.

A plain PIN never leaves the machine that read it from a file (the gate's ``menjin residents
import`` or the station's ``sync``): it is hashed there, and the gate stores and compares hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

#: scrypt cost of PIN hashes: 16 MiB and some tens of milliseconds on a Pi, per guess.
PIN_SCRYPT_N = 2**14
PIN_SCRYPT_R = 8
PIN_SCRYPT_P = 1
PIN_SALT_BYTES = 16
PIN_HASH_BYTES = 32
PIN_SCRYPT_MAXMEM = 64 * 1024 * 1024
#: A PIN as people type it on a keypad: ASCII digits only (``\d`` would take ``１２３４`` too,
#: whose hash no keypad can ever match); use ``fullmatch``.
PIN_PATTERN = re.compile(r"[0-9]{4,8}")


def hash_pin(pin: str) -> str:
    """A salted scrypt hash of a PIN: ``scrypt$N$r$p$salt_hex$hash_hex``."""
    salt = secrets.token_bytes(PIN_SALT_BYTES)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=PIN_SCRYPT_N, r=PIN_SCRYPT_R,
                            p=PIN_SCRYPT_P, maxmem=PIN_SCRYPT_MAXMEM, dklen=PIN_HASH_BYTES)
    return f"scrypt${PIN_SCRYPT_N}${PIN_SCRYPT_R}${PIN_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str | None) -> bool:
    """True when ``pin`` matches the stored hash (constant-time compare; False for a bad hash)."""
    if stored is None:
        return False
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                                p=int(p), maxmem=PIN_SCRYPT_MAXMEM, dklen=len(expected) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)
