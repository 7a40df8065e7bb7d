"""One canonical card number for every form an installer or a reader produces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.cards import CardNumberError, canonical_card, card_value


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("0012345678", "12345678"),  # printed on EM4100 cards (issue 16, finding 5)
        ("12345678", "12345678"),  # as a reader reports it
        (12345678, "12345678"),
        (" 0012345678 ", "12345678"),
        ("0", "0"),
        ("0000000000", "0"),
        ("0x00BC614E", "12345678"),
        ("0XBC614E", "12345678"),
        ("3A00B1C2D4", str(0x3A00B1C2D4)),  # hex tag id (letters: hex)
        ("3a00b1c2d4", str(0x3A00B1C2D4)),
        ("036,02193", str(36 << 16 | 2193)),  # printed Wiegand-26 facility,number
        ("36:2193", str(36 << 16 | 2193)),
        ("036/02193", str(36 << 16 | 2193)),
        ("188, 24910", str(188 << 16 | 24910)),
        # both printed forms of one EM4100 card: 0012345678 = 0x00BC614E -> 188,24910
        ("0012345678 188,24910", "12345678"),
    ],
)
def test_every_form_gives_one_value(written: str | int, canonical: str) -> None:
    assert canonical_card(written) == canonical
    assert canonical_card(canonical) == canonical  # idempotent


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("", "empty or overlong card number"),
        ("12-34", "'12-34' is not a card number: use decimal digits (0012345678), hex "
         "(0x00BC614E or 3A00B1C2D4), or facility,number (036,02193)"),
        ("256,1", "facility,number 256,1 does not fit Wiegand-26 (facility at most 255, number "
         "at most 65535)"),
        ("1,65536", "facility,number 1,65536 does not fit Wiegand-26 (facility at most 255, "
         "number at most 65535)"),
        ("0012345678 188,24911", "the two printed numbers disagree: 0012345678 is not "
         "facility,number 188,24911"),
        (-1, "a card number is never negative"),
        ("1" * 41, "card number too long"),
    ],
)
def test_no_card_number_is_refused_with_the_reason(written: str | int, message: str) -> None:
    with pytest.raises(CardNumberError) as caught:
        canonical_card(written)
    assert str(caught.value) == message


@given(st.integers(0, 10**15), st.integers(0, 6))
def test_leading_zeros_never_change_the_card(number: int, zeros: int) -> None:
    assert canonical_card("0" * zeros + str(number)) == str(number) == canonical_card(number)


@given(st.one_of(st.text(alphabet="0123456789", max_size=60),
                 st.text(alphabet="0123456789 ,x\u0661", max_size=60)))
def test_the_digits_shortcut_agrees_with_the_full_parse(text: str) -> None:
    """canonical_card reads plain digits without card_value: same card, or the same refusal."""
    try:
        full = str(card_value(text))
    except CardNumberError as exc:
        with pytest.raises(CardNumberError) as caught:
            canonical_card(text)
        assert str(caught.value) == str(exc)
    else:
        assert canonical_card(text) == full


@given(st.integers(0, 255), st.integers(0, 65535))
def test_facility_number_is_the_wiegand26_value(facility: int, number: int) -> None:
    assert card_value(f"{facility:03d},{number:05d}") == facility << 16 | number


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("1E3", "card number '1E3' looks like a spreadsheet turned it into a number (scientific "
         "notation or a fraction): format the column as text and copy the card number as "
         "printed; a hex tag id is written with 0x (0x1E3)"),
        ("1e3", "card number '1e3' looks like a spreadsheet turned it into a number (scientific "
         "notation or a fraction): format the column as text and copy the card number as "
         "printed; a hex tag id is written with 0x (0x1e3)"),
        ("1.23457E+11", "card number '1.23457E+11' looks like a spreadsheet turned it into a "
         "number (scientific notation or a fraction): format the column as text and copy the "
         "card number as printed"),
        ("1,2E+09", "card number '1,2E+09' looks like a spreadsheet turned it into a number "
         "(scientific notation or a fraction): format the column as text and copy the card "
         "number as printed"),
        ("12345678.0", "card number '12345678.0' looks like a spreadsheet turned it into a "
         "number (scientific notation or a fraction): format the column as text and copy the "
         "card number as printed"),
        ("0b101", "card number '0b101' is a binary literal, which no card prints: give the "
         "decimal or hex number as printed (a hex tag id with 0x: 0x0b101 if that is what it "
         "is)"),
        ("0B1101", "card number '0B1101' is a binary literal, which no card prints: give the "
         "decimal or hex number as printed (a hex tag id with 0x: 0x0B1101 if that is what it "
         "is)"),
        ("\u0661\u0662\u0663", "card number '\u0661\u0662\u0663' has characters other than "
         "ASCII digits, letters A-F and , : / (type the digits as printed, 0-9)"),
        ("\uff11\uff12\uff13", "card number '\uff11\uff12\uff13' has characters other than "
         "ASCII digits, letters A-F and , : / (type the digits as printed, 0-9)"),
        ("3\u0660,12", "card number '3\u0660,12' has characters other than ASCII digits, "
         "letters A-F and , : / (type the digits as printed, 0-9)"),
    ],
)
def test_ambiguous_forms_are_refused_never_read_as_another_card(written: str,
                                                                message: str) -> None:
    """Issue: "0b101" became 45313 (hex), "1E3" became 483, "١٢٣" became 123."""
    with pytest.raises(CardNumberError) as caught:
        canonical_card(written)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("0x1E3", "483"),  # scientific-looking hex is fine with its 0x
        ("0B12AC34D5", str(0x0B12AC34D5)),  # a hex tag id starting 0B is no binary literal
        ("00001E5F3A", str(0x1E5F3A)),
    ],
)
def test_unambiguous_hex_near_the_refused_shapes_still_reads(written: str,
                                                             canonical: str) -> None:
    assert canonical_card(written) == canonical


@given(st.text(alphabet=st.characters(min_codepoint=0x80, categories=["Nd"]), min_size=1,
               max_size=12))
def test_no_non_ascii_digit_string_is_ever_a_card(digits: str) -> None:
    with pytest.raises(CardNumberError):
        canonical_card(digits)
