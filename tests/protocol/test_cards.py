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
        ("12-34", "not a card number: use decimal digits (0012345678), hex (0x00BC614E or "
         "3A00B1C2D4), or facility,number (036,02193)"),
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


@given(st.integers(0, 255), st.integers(0, 65535))
def test_facility_number_is_the_wiegand26_value(facility: int, number: int) -> None:
    assert card_value(f"{facility:03d},{number:05d}") == facility << 16 | number
