"""Text from gates made safe to show a person: on the page, in a CSV export, on a terminal.

A gate (or a card, a reader, a resident list) may send text with invisible control and format
characters.  A bidi override such as U+202E RIGHT-TO-LEFT OVERRIDE turns the door "门", U+202E,
"1号" into what reads "门号1"; zero-width characters make two different texts look alike, and
escape characters drive a terminal.  Each such character (Unicode categories Cc and Cf, and lone
surrogates, which nothing can show; tab, line feed and carriage return stay) is replaced by a
visible ``[U+202E]``, never dropped: the duty officer sees that something odd was sent, and what.

Only the display changes: the database and the JSON API keep the text as sent (the API's JSON
spells such a character ``\\u202e``, so nothing there is hidden either).
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from typing import Any

#: Whitespace a control category also holds, shown as is.
ORDINARY_WHITESPACE = "\t\n\r"
#: Invisible categories: control, format (bidi controls, zero-width, BOM), lone surrogates.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
#: Characters in a spreadsheet cell's first place that make it a formula (or, tab and carriage
#: return, that some programs skip before looking for one).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@functools.cache
def _table() -> dict[int, str]:
    """The str.translate table: about 2,300 code points, found once per process (a scan of all
    of Unicode, about 0.3 s: at the first use rather than at every import of the CLI)."""
    return {code: f"[U+{code:04X}]" for code in range(sys.maxunicode + 1)
            if unicodedata.category(chr(code)) in INVISIBLE_CATEGORIES
            and chr(code) not in ORDINARY_WHITESPACE}


def visible(text: str) -> str:
    """``text`` with each invisible character replaced by ``[U+XXXX]``.

    A :class:`markupsafe.Markup` stays Markup (its ``translate`` keeps the type, and the
    replacements hold no HTML-special character), so what was escaped stays escaped.
    """
    return text.translate(_table())


def shown(value: object) -> object:
    """The page's Jinja2 ``finalize``, applied to every ``{{ expression }}``: text made
    :func:`visible`, anything else (numbers, None) as given."""
    return visible(value) if isinstance(value, str) else value


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell for a spreadsheet: text made :func:`visible`, and text that a spreadsheet
    would run as a formula (``=HYPERLINK(...)``, ``+1``, ``-2+3``, ``@SUM``) prefixed with ``'``
    so that it is read as text (the OWASP advice on CSV injection); numbers as given."""
    if not isinstance(value, str):
        return value
    text = visible(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
