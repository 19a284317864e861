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


def email_message(content: NoticeContent, sender: str, to: str) -> EmailMessage:
    _ = translator(content.language)
    message = EmailMessage()
    message["Subject"] = _("Your hold is ready: %(code)s", code=content.code.display)
    message["From"] = sender
    message["To"] = Address(addr_spec=to)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip("> "))
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


def sms_text(content: NoticeContent) -> str:
    """The message in one GSM-7 text message: the shorter wording when the long one is too
    long (long branch names)."""
    for template in SMS_TEMPLATES:
        text = gsm7(" ".join(render(template, content).split()))
        if gsm7_length(text) <= SMS_LIMIT:
            return text
    raise ValueError("a text message would be longer than 160 characters")


def sms_email(content: NoticeContent, sender: str, number: str, domain: str) -> EmailMessage:
    """A text message through an email-to-SMS gateway: NUMBER@domain, the text as the body."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(addr_spec=f"{number.lstrip('+')}@{domain}")
    message.set_content(sms_text(content))
    return message
