"""Invisible characters from gates made visible, and CSV cells a spreadsheet keeps as text."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from station.display import shown, spreadsheet_cell, visible


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("门\u202e1号", "门[U+202E]1号"),  # RIGHT-TO-LEFT OVERRIDE: would read 门号1
        ("\u202a\u202b\u202c\u202d", "[U+202A][U+202B][U+202C][U+202D]"),
        ("\u2066a\u2067b\u2068c\u2069", "[U+2066]a[U+2067]b[U+2068]c[U+2069]"),
        ("\u200ex\u200f\u061c", "[U+200E]x[U+200F][U+061C]"),
        ("王\u200b芳", "王[U+200B]芳"),  # zero width: two names that look alike
        ("\x1b[31mred", "[U+001B][31mred"),  # a terminal escape
        ("\x85\x9b", "[U+0085][U+009B]"),  # C1 controls
        ("\ufeffBOM", "[U+FEFF]BOM"),
        ("tag\U000e0041", "tag[U+E0041]"),  # outside the BMP
        ("\ud800", "[U+D800]"),  # a lone surrogate, which no page can encode
        ("a\tb\nc\rd", "a\tb\nc\rd"),  # ordinary whitespace stays
        ("北门 \u0628\u0627\u0628", "北门 \u0628\u0627\u0628"),  # letters of any script stay
    ],
)
def test_invisible_characters_become_visible(text: str, expected: str) -> None:
    assert visible(text) == expected


@given(st.text())
def test_nothing_invisible_is_left(text: str) -> None:
    assert not [c for c in visible(text) if unicodedata.category(c) in ("Cc", "Cf", "Cs")
                and c not in "\t\n\r"]


def test_markup_stays_markup_and_other_values_pass() -> None:
    escaped = Markup("<b>门\u202e1号</b>")
    assert shown(escaped) == Markup("<b>门[U+202E]1号</b>")
    assert isinstance(shown(escaped), Markup)
    assert (shown(7), shown(None)) == (7, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x","1号门")', '\'=HYPERLINK("http://x","1号门")'),
        ("+86 138", "'+86 138"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\u202e=1", "[U+202E]=1"),  # made visible first: no longer a formula
        ("王芳", "王芳"),
        ("2026-09-21 22:13:31", "2026-09-21 22:13:31"),
        (-5, -5),  # a number is a number
    ],
)
def test_spreadsheet_cells_are_text(value: object, expected: object) -> None:
    assert spreadsheet_cell(value) == expected
