"""The page's languages: Simplified Chinese first, English second, from gettext catalogs.

Message ids are English (what ``pybabel extract`` finds in ``station/templates`` and the station's
Python modules, see ``make i18n``); ``zh_CN/LC_MESSAGES/messages.po`` translates them.  The ``.po``
file is the only form kept in the repository: it is compiled in memory with Babel when the page
starts, so a fresh checkout needs no build step.  English uses the message ids as they are.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DEFAULT_LANGUAGE = "zh_CN"
#: Language code -> its own name, in the order the switch shows them.
LANGUAGES = {"zh_CN": "中文", "en": "English"}
#: The ``lang`` attribute of ``<html>`` for each language.
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
DOMAIN = "messages"


class CatalogError(Exception):
    """A catalog that cannot be read; names the file."""


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The translations of ``language`` (a key of :data:`LANGUAGES`); English is the identity."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (one of {', '.join(LANGUAGES)})")
    if language == "en":
        return gettext.NullTranslations()
    po = resources.files(__name__).joinpath(language, "LC_MESSAGES", f"{DOMAIN}.po")
    try:
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=language)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{po}: {exc}") from exc
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def pick_language(cookie: str | None) -> str:
    """The language chosen with the page's switch (a cookie), else Chinese."""
    return cookie if cookie in LANGUAGES else DEFAULT_LANGUAGE
