"""Canonical JSON (RFC 8785, JSON Canonicalization Scheme): the exact bytes that are signed.

Delegates to the ``rfc8785`` package.  For the objects of this contract (strings, integers up to
2**53, booleans, null, lists and objects) the bytes equal ``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` in UTF-8, the form signed before; floats are written
the ECMAScript way (``5.0`` → ``5``).
"""

from __future__ import annotations

from typing import Any

import rfc8785


class CanonicalError(ValueError):
    """A value that has no canonical JSON form (a float that is not finite, an integer beyond
    2**53 in magnitude, a non-string key, an unsupported type)."""


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 bytes of ``obj``; raises :class:`CanonicalError`."""
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CanonicalError(str(exc)) from None
