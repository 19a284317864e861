"""Composing "your hold is ready" notices: email (plain text and HTML) and text messages.

A notice says what a slip says (branch, code, section, pickup-by date, shelf or desk) plus how
to pick up and a link to keep future holds behind the desk. Nothing else: no name, no card
number, no title unless the library switches titles on. Text comes from templates in the
branch's language.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from functools import cache
from unicodedata import combining

import jinja2

from holdshelf.domain.codes import ShelfCode
from holdshelf.i18n import long_day, short_day, translations, translator
from holdshelf.resources import resource_dir

SMS_LIMIT = 160  # characters of the GSM 7-bit alphabet in one text message
SMS_TEMPLATES = ("sms.txt", "sms_short.txt")  # the first that fits in SMS_LIMIT
# One character outside this alphabet (an "á", say) would send the whole message as UCS-2,
# where the limit is 70: such characters are simplified instead.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = "^{}\\[~]|€"  # two characters each


@dataclass(frozen=True)
class NoticeContent:
    branch_name: str
    code: ShelfCode
    pickup_by: dt.date
    desk: bool
    link: str
    language: str = "en"
    title: str | None = None

    def values(self) -> dict[str, object]:
        return {
            "branch": self.branch_name,
            "code": self.code.display,
            "section": self.code.section,
            "day": long_day(self.pickup_by, self.language),
            "short_day": short_day(self.pickup_by, self.language),
            "desk": self.desk,
            "link": self.link,
            "title": self.title,
            "language": self.language,
        }


@cache
def _environment(language: str) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates") / "notices"),
        extensions=["jinja2.ext.i18n"],
        autoescape=jinja2.select_autoescape(["html"]),
    )
    environment.policies["ext.i18n.trimmed"] = True  # as the messages are extracted (babel.cfg)
    environment.install_gettext_translations(translations(language), newstyle=True)
    return environment


def render(template: str, content: NoticeContent) -> str:
    return _environment(content.language).get_template(template).render(content.values()).strip()


def sender_domain(sender: str) -> str:
    return sender.rsplit("@", 1)[-1].strip("> ")


def email_message(
    content: NoticeContent, sender: str, to: str, message_id: str | None = None
) -> EmailMessage:
    """``message_id``: the notice's own, the same on every attempt (see notice_worker)."""
    _ = translator(content.language)
    message = EmailMessage()
    message["Subject"] = _("Your hold is ready: %(code)s", code=content.code.display)
    message["From"] = sender
    message["To"] = Address(addr_spec=to)
    message["Message-ID"] = message_id or make_msgid(domain=sender_domain(sender))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render("ready.txt", content))
    message.add_alternative(render("ready.html", content), subtype="html")
    return message


def gsm7(text: str) -> str:
    """``text`` in the GSM 7-bit alphabet: accents dropped where needed, else "?"."""
    out = []
    for char in text:
        if char in GSM_BASIC or char in GSM_EXTENDED:
            out.append(char)
            continue
        plain = "".join(c for c in unicodedata.normalize("NFKD", char) if not combining(c))
        out.append(plain if plain and all(c in GSM_BASIC for c in plain) else "?")
    return "".join(out)


def gsm7_length(text: str) -> int:
    return sum(2 if char in GSM_EXTENDED else 1 for char in text)


class MessageTooLong(ValueError):
    """No wording fits in one text message (see longest_sms)."""


def _sms(template: str, content: NoticeContent) -> str:
    return gsm7(" ".join(render(template, content).split()))


def sms_text(content: NoticeContent) -> str:
    """The message in one GSM-7 text message: the shorter wording when the long one is too
    long (long branch names)."""
    for template in SMS_TEMPLATES:
        text = _sms(template, content)
        if gsm7_length(text) <= SMS_LIMIT:
            return text
    raise MessageTooLong(f"a text message would be longer than {SMS_LIMIT} characters")


def longest_sms(language: str, code_length: int, link: str) -> int:
    """The longest message the shorter wording makes for any day, shelf or desk, with codes
    of ``code_length`` and a link as long as ``link``: checked when the worker starts, so no
    notice is queued that can never be sent."""
    code = ShelfCode("W" * code_length)
    first = dt.date(2026, 1, 25)  # every weekday of every month, two-digit days
    days = [
        first.replace(month=month) + dt.timedelta(days=n)
        for month in range(1, 13)
        for n in range(7)
    ]
    return max(
        gsm7_length(_sms(SMS_TEMPLATES[-1], NoticeContent("", code, day, desk, link, language)))
        for day in days
        for desk in (False, True)
    )


def sms_email(
    content: NoticeContent, sender: str, number: str, domain: str, message_id: str | None = None
) -> EmailMessage:
    """A text message through an email-to-SMS gateway: NUMBER@domain, the text as the body."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(addr_spec=f"{number.lstrip('+')}@{domain}")
    if message_id:
        message["Message-ID"] = message_id
    message.set_content(sms_text(content))
    return message
