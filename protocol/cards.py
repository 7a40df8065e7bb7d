"""The one canonical form of a card number, shared by the gate, its readers and the station.

Installers copy card numbers from many places: the 10-digit decimal printed on EM4100 cards
(``0012345678``), the Wiegand-26 ``facility,number`` pair printed next to it (``188,24910``), a hex
tag id from a reader's label (``3A00B1C2D4``) or a spreadsheet that dropped the leading zeros.
Readers report the card's data bits as a number.  Every one of them goes through
:func:`canonical_card` before it is stored, compared, revoked or synchronised, so one card is one
value everywhere: the decimal digits of the card's number, without leading zeros.

Pure functions, no I/O.
"""

from __future__ import annotations

import re

#: Longest card number accepted, in decimal digits (a 128-bit Wiegand frame has 39).
MAX_CARD_DIGITS = 40
#: Wiegand-26: the facility code sits above a 16-bit card number.
W26_NUMBER_BITS = 16
W26_MAX_FACILITY = 255
W26_MAX_NUMBER = 65535
#: The decimal printed on EM4100 cards is the low 32 bits of the tag.
EM4100_PRINTED_BITS = 32

# ASCII only (re.ASCII): int() also reads other scripts' digits ("١٢٣" is 123), which no card
# label and no reader produces; such text is refused, never silently turned into a card.
_DECIMAL = re.compile(r"[0-9]+", re.ASCII)
_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)", re.ASCII)
_FACILITY_NUMBER = re.compile(r"([0-9]{1,3})\s*[,:/]\s*([0-9]{1,5})", re.ASCII)
_PRINTED_EM4100 = re.compile(r"([0-9]{10})\s+([0-9]{1,3}\s*[,:/]\s*[0-9]{1,5})", re.ASCII)
#: What a spreadsheet makes of a long card number: scientific notation (``1E3``,
#: ``1.23457E+11``, ``1,2E+09``) or a decimal fraction (``12345678.0``).  Read as hex (``1E3``
#: has a letter A-F) or rounded, it would silently become another card.
_SPREADSHEET = re.compile(r"[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+|[0-9]+\.[0-9]*", re.ASCII)
#: A binary literal (``0b101``): no card prints one, and read as hex it is another card.
_BINARY = re.compile(r"0[bB][01]+", re.ASCII)


class CardNumberError(ValueError):
    """Text that is no card number; the message says which forms are accepted."""


def _facility_number(facility: str, number: str) -> int:
    f, n = int(facility), int(number)
    if f > W26_MAX_FACILITY or n > W26_MAX_NUMBER:
        raise CardNumberError(f"facility,number {f},{n} does not fit Wiegand-26 (facility at "
                              f"most {W26_MAX_FACILITY}, number at most {W26_MAX_NUMBER})")
    return (f << W26_NUMBER_BITS) | n


def card_value(card: str | int) -> int:
    """The number of a card written in any accepted form.

    Forms: an int; ASCII decimal digits with or without leading zeros (``0012345678``); hex with
    a ``0x`` prefix or at least one letter A-F (``3A00B1C2D4``; digits alone are always decimal);
    the Wiegand-26 printed pair ``facility,number`` (also ``:`` or ``/``: ``036,02193``); the two
    printed forms of an EM4100 card together (``0012345678 188,24910``), which must agree.
    Raises :class:`CardNumberError` for anything else, and for the ambiguous forms that would
    otherwise silently become another card: digits of other scripts (``١٢٣``), spreadsheet
    numbers (``1E3``, ``1.23457E+11``, ``12345678.0``; a hex tag id of that shape needs its
    ``0x``) and binary literals (``0b101``).
    """
    if isinstance(card, bool) or not isinstance(card, (int, str)):
        raise CardNumberError(f"a card number is text or an integer, not {type(card).__name__}")
    if isinstance(card, int):
        if card < 0:
            raise CardNumberError("a card number is never negative")
        return card
    text = card.strip()
    if not text or len(text) > MAX_CARD_DIGITS + 10:
        raise CardNumberError("empty or overlong card number")
    if not text.isascii():
        raise CardNumberError(f"card number {text!r} has characters other than ASCII digits, "
                              "letters A-F and , : / (type the digits as printed, 0-9)")
    if _SPREADSHEET.fullmatch(text):
        hint = (f"; a hex tag id is written with 0x (0x{text})" if _HEX.fullmatch(text) else "")
        raise CardNumberError(f"card number {text!r} looks like a spreadsheet turned it into a "
                              "number (scientific notation or a fraction): format the column "
                              f"as text and copy the card number as printed{hint}")
    if _BINARY.fullmatch(text):
        raise CardNumberError(f"card number {text!r} is a binary literal, which no card prints: "
                              "give the decimal or hex number as printed (a hex tag id with 0x: "
                              f"0x{text} if that is what it is)")
    if _DECIMAL.fullmatch(text):
        if len(text.lstrip("0")) > MAX_CARD_DIGITS:
            raise CardNumberError("card number too long")
        return int(text)
    if match := _FACILITY_NUMBER.fullmatch(text):
        return _facility_number(match.group(1), match.group(2))
    if match := _PRINTED_EM4100.fullmatch(text):
        value = int(match.group(1))
        pair = _FACILITY_NUMBER.fullmatch(match.group(2))
        assert pair is not None  # the outer pattern holds the same pair pattern
        w26 = _facility_number(pair.group(1), pair.group(2))
        if value >> EM4100_PRINTED_BITS or value & 0xFFFFFF != w26:
            raise CardNumberError(f"the two printed numbers disagree: {match.group(1)} is not "
                                  f"facility,number {match.group(2)}")
        return value
    hex_match = _HEX.fullmatch(text)
    if hex_match and (text[:2] in ("0x", "0X") or any(c.isalpha() for c in text)):
        return int(hex_match.group(1), 16)
    raise CardNumberError(
        f"{text!r} is not a card number: use decimal digits (0012345678), hex (0x00BC614E or "
        "3A00B1C2D4), or facility,number (036,02193)")


def canonical_card(card: str | int) -> str:
    """The canonical string of a card: its number in decimal without leading zeros.

    ``canonical_card("0012345678") == canonical_card(12345678) == "12345678"``;
    ``canonical_card("036,02193") == str(36 << 16 | 2193)``.  Idempotent.  Raises
    :class:`CardNumberError` (a ValueError) for text that is no card number.
    """
    # What readers send: plain ASCII digits, short enough for card_value to accept as they are.
    # Every card presented goes through here, so skip its checks and the int round trip.
    if type(card) is str and len(card) <= MAX_CARD_DIGITS and card.isascii() and card.isdigit():
        return card.lstrip("0") or "0"
    return str(card_value(card))
