"""Patron-facing language: message catalogs (Babel/gettext) and dates in the branch's language.

The web pages use these catalogs through Flask-Babel; slips and notices, composed in the worker
outside any request, use them directly. Adding a language is a catalog away:
``pybabel init -i holdshelf/translations/messages.pot -d holdshelf/translations -l fr``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.dates import format_date
from babel.support import NullTranslations, Translations

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DEFAULT_LANGUAGE = "en"


@cache
def translations(language: str) -> NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()  # the source text is English
    return Translations.load(str(TRANSLATIONS_DIR), [language], domain="messages")


def translator(language: str) -> Callable[..., str]:
    """``_`` for one language: ``_("Section %(section)s", section="K")``."""
    catalog = translations(language)

    def _(message: str, **values: object) -> str:
        text = catalog.gettext(message)
        return text % values if values else text

    return _


def long_day(day: dt.date, language: str) -> str:
    """ "Monday, November 30, 2026" / "lunes, 30 de noviembre de 2026"."""
    return format_date(day, format="full", locale=language)


def short_day(day: dt.date, language: str) -> str:
    """ "Mon 30 Nov" / "lun 30 nov": for text messages."""
    return format_date(day, format="EEE d MMM", locale=language)


def slip_day(day: dt.date, language: str) -> str:
    """ "MON 30 NOV 2026" / "LUN 30 NOV 2026": large on a slip."""
    return format_date(day, format="EEE d MMM y", locale=language).upper()
