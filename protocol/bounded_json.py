"""JSON from the network, bounded before it is decoded.

Every payload that arrives over MQTT goes through :func:`loads_bounded`.  Limits are checked on
the raw bytes first, in one linear scan driven by regular expressions (C speed even for a
megabyte of base64): size, valid UTF-8, nesting depth, digits of every number, no escape that
decodes to a lone UTF-16 surrogate (``"\\ud800"``), no ``NaN``/``Infinity`` or number that
overflows to infinity.  Only then is the text decoded, with duplicate object keys refused.  Any
violation raises :class:`PayloadError`, so a hostile message costs one refusal and nothing else
(Python's decoder would otherwise recurse on deep nesting, spend quadratic time on huge integers,
and hand lone surrogates to code that cannot encode them).
"""

from __future__ import annotations

import json
import math
import re
import string
from typing import Any

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 32
#: Digits of a number's integer and fraction parts; 20 holds any 64-bit integer.
DEFAULT_MAX_NUMBER_DIGITS = 20

_TOKEN = re.compile(
    rb"(?P<open>[\[{])|(?P<close>[\]}])"
    rb"|(?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    rb"|(?P<word>[A-Za-z_]+)",
    re.DOTALL,
)
_STRING = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
#: Cheap pre-test: only a payload with something like a surrogate escape gets the exact check.
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_WORDS = frozenset({b"true", b"false", b"null"})
#: For the check at a glance: digits to ``0``, a fraction's or exponent's mark to ``.`` ...
_NUMBER_MARKS = bytes.maketrans(b"123456789eE", b"000000000..")
#: ... so that ``0.`` is a digit followed by a fraction or exponent, and this a long number.
_LONG_NUMBER = b"0" * (DEFAULT_MAX_NUMBER_DIGITS + 1)
#: Every byte but the letters that JSON's words (and ``NaN``, ``Infinity``) are made of.
_NOT_LETTERS = bytes(sorted(set(range(256)) - set((string.ascii_letters + "_").encode())))
#: A bracket pair with no bracket inside: removed level by level to measure nesting in C.
_INNERMOST = re.compile(rb"[\[{][^\[\]{}]*[\]}]")
_HIGH_SURROGATES = range(0xD800, 0xDC00)
_LOW_SURROGATES = range(0xDC00, 0xE000)


class PayloadError(ValueError):
    """Bytes that are not acceptable JSON under the limits; the text says which limit."""


def _check_escapes(string: bytes) -> None:
    """Refuse ``\\uXXXX`` escapes that leave a UTF-16 surrogate unpaired."""
    pending_high = False
    last_end = -1
    for match in _ESCAPE.finditer(string):
        hex_digits = match.group(1)
        code = int(hex_digits, 16) if hex_digits is not None else -1
        adjacent = match.start() == last_end
        if pending_high and not (adjacent and code in _LOW_SURROGATES):
            raise PayloadError("string holds a lone UTF-16 surrogate escape")
        if code in _LOW_SURROGATES and not pending_high:
            raise PayloadError("string holds a lone UTF-16 surrogate escape")
        pending_high = code in _HIGH_SURROGATES
        last_end = match.end()
    if pending_high:
        raise PayloadError("string holds a lone UTF-16 surrogate escape")


def _check_number(token: bytes, max_digits: int) -> None:
    if len(token) <= max_digits and b"e" not in token and b"E" not in token:
        return  # the common case: too short to break a limit, and finite without an exponent
    mantissa = token.lstrip(b"-").split(b"e")[0].split(b"E")[0]
    if len(mantissa.replace(b".", b"")) > max_digits:
        raise PayloadError(f"number with more than {max_digits} digits")
    if (b"." in token or b"e" in token or b"E" in token) and not math.isfinite(float(token)):
        raise PayloadError("number is not finite")


def _nested_within(skeleton: bytes, max_depth: int) -> bool:
    """Whether the brackets of ``skeleton`` surely nest at most ``max_depth`` deep.

    Fewer opening brackets than that cannot nest deeper.  Otherwise each pass removes every
    innermost pair, so a pair nested ``h`` levels deep goes in pass ``h``; a bracket left after
    ``max_depth`` passes is deeper or unpaired (the tokeniser in :func:`check_bounds` says which).
    """
    if skeleton.count(b"{") + skeleton.count(b"[") <= max_depth:
        return True
    for _ in range(max_depth):
        skeleton, removed = _INNERMOST.subn(b"", skeleton)
        if not removed:
            break
    return not any(bracket in skeleton for bracket in (b"[", b"]", b"{", b"}"))


def check_bounds(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_digits: int = DEFAULT_MAX_NUMBER_DIGITS,
) -> str:
    """Raise :class:`PayloadError` unless ``data`` stays within every limit (see the module);
    returns the decoded text."""
    if len(data) > max_bytes:
        raise PayloadError(f"{len(data)} bytes > {max_bytes}")
    try:
        text = data.decode("utf-8")  # strict: also refuses encoded surrogates and overlong forms
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not valid UTF-8 at byte {exc.start}") from None
    # Strings (most of the bytes) are set aside in C; what is left is structure, numbers and
    # words, a few dozen tokens for an event.  A space keeps two tokens from joining.
    parts = data.split(b'"') if b"\\" not in data else []
    if len(parts) % 2:  # no escapes and balanced quotes: every other part is a string
        skeleton = b" ".join(parts[::2])
    else:
        if _SURROGATE_HINT.search(data):
            for string in _STRING.finditer(data):
                if b"\\u" in string.group(1):
                    _check_escapes(string.group(1))
        skeleton = _STRING.sub(b" ", data)
    # At a glance, with bytes methods and regular expressions only (what nearly every event and
    # pack takes): only integers short enough, no letters but those of true, false and null
    # (whatever else they spell the decoder refuses; NaN and Infinity are not made of them),
    # brackets nested within the limit.  Anything else is tokenised below, which names the limit
    # broken.
    marks = skeleton.translate(_NUMBER_MARKS)
    if (max_number_digits >= DEFAULT_MAX_NUMBER_DIGITS
            and _LONG_NUMBER not in marks and b"0." not in marks
            and not skeleton.replace(b"true", b"").replace(b"false", b"").replace(b"null", b"")
            .translate(None, _NOT_LETTERS)
            and _nested_within(skeleton, max_depth)):
        return text
    depth = 0
    for match in _TOKEN.finditer(skeleton):
        kind = match.lastgroup
        if kind == "open":
            depth += 1
            if depth > max_depth:
                raise PayloadError(f"nested deeper than {max_depth} levels")
        elif kind == "close":
            depth -= 1
        elif kind == "number":
            _check_number(match.group(), max_number_digits)
        elif kind == "word" and match.group() not in _WORDS:
            raise PayloadError(f"not JSON: unexpected word {match.group()[:20]!r}")
    return text


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise PayloadError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


#: One decoder for every call (``json.loads`` with a hook would build a new one each time).
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def loads_bounded(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_digits: int = DEFAULT_MAX_NUMBER_DIGITS,
) -> Any:
    """Decode ``data`` after :func:`check_bounds`; raises :class:`PayloadError` on any fault."""
    text = check_bounds(data, max_bytes=max_bytes, max_depth=max_depth,
                        max_number_digits=max_number_digits)
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not JSON ({exc})") from None


def loads_object(data: bytes, **limits: int) -> dict[str, Any]:
    """:func:`loads_bounded` for payloads that must be a JSON object."""
    obj = loads_bounded(data, **limits)
    if not isinstance(obj, dict):
        raise PayloadError("not a JSON object")
    return obj
