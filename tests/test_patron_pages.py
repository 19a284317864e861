"""Patrons' pages: find your hold, the privacy notice, the link from a notice; and the
translations behind them (English and Spanish)."""

from __future__ import annotations

import datetime as dt
import statistics
import time

import pytest

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.codes import ShelfCodec
from holdshelf.domain.links import make_token, read_token
from holdshelf.settings import load_settings
from holdshelf.web import create_app
from holdshelf.web.limits import FIND_LIMIT
from tests.conftest import assert_no_patron_data


def get(client, path: str, **kwargs):
    response = client.get(path, **kwargs)
    assert "Set-Cookie" not in response.headers, "patron pages set no cookies"
    return response


def unknown_code(service) -> str:
    codec = ShelfCodec(service.settings.hashids_salt, 6)
    taken = {e.code for e in service.shelf()}
    return next(c for n in range(500) if (c := codec.encode(n)) and c not in taken).display


# -- find your hold ------------------------------------------------------------------------------


def test_find_a_hold_on_the_shelf_or_at_the_desk(app, service, patrons) -> None:
    shelf = service.ready("MAIN", "I1", patrons[0].card)
    service.opt_out(patrons[1].card)
    desk = service.ready("MAIN", "I2", patrons[1].card)
    client = app.test_client()
    page = get(client, "/find").get_data(as_text=True)
    assert "Find your hold" in page and 'id="code"' in page
    found = get(client, f"/find?code={shelf.code.compact.lower()}").get_data(as_text=True)
    assert f"Section {shelf.section} of the hold shelf" in found
    assert "Please pick it up by Monday, November 30, 2026." in found
    assert "Your hold is ready at Central Library" in found
    at_desk = get(client, f"/find?code={desk.code.display}").get_data(as_text=True)
    assert "Ask at the desk." in at_desk
    assert "Section" not in at_desk.split("<main")[1]
    spanish = get(client, f"/find?code={shelf.code.display}&lang=es").get_data(as_text=True)
    assert f"Sección {shelf.section} del estante de reservas" in spanish
    assert "lunes, 30 de noviembre de 2026" in spanish
    assert '<html lang="es">' in spanish
    by_header = get(client, "/find", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert "Encuentre su reserva" in by_header.get_data(as_text=True)
    assert_no_patron_data(found + at_desk + spanish, patrons)


def test_unknown_ended_and_invalid_codes_look_the_same(app, service, patrons) -> None:
    ended = service.ready("MAIN", "I1", patrons[0].card)
    service.pickup(ended.code.display)
    client = app.test_client()
    answers = {
        kind: get(client, f"/find?code={code}")
        for kind, code in (
            ("unknown", unknown_code(service)),
            ("ended", ended.code.display),
            ("invalid", "HELLO1"),
            ("garbage", "%00%FF<script>"),
        )
    }
    assert {r.status_code for r in answers.values()} == {200}
    bodies = {kind: r.get_data(as_text=True) for kind, r in answers.items()}
    assert len(set(bodies.values())) == 1, "one answer for every kind of miss"
    assert "We could not find a hold with that code" in bodies["unknown"]


def test_misses_take_as_long_as_each_other(app, service, patrons) -> None:
    """A miss does the same work whether the code is unknown or not a code at all (one
    database query), so timing does not tell which codes could exist."""
    for n, patron in enumerate(patrons[:20]):
        service.ready("MAIN", f"I{n}", patron.card)

    codes = {"unknown": unknown_code(service), "invalid": "ZZZZZZ"}
    times: dict[str, list[float]] = {kind: [] for kind in codes}
    for _ in range(300):  # interleaved, so drift in the machine's load hits both alike
        for kind, code in codes.items():
            start = time.perf_counter()
            assert service.lookup(code) == []
            times[kind].append(time.perf_counter() - start)
    unknown, invalid = (statistics.median(times[kind]) for kind in codes)
    # Skipping the query for invalid codes would make them ten times faster.
    assert 0.5 < unknown / invalid < 2.0, (unknown, invalid)


def test_find_is_rate_limited_per_address(app, service) -> None:
    client = app.test_client()
    for _ in range(FIND_LIMIT):
        assert get(client, "/find?code=HELLO1").status_code == 200
    limited = get(client, "/find?code=HELLO1")
    assert limited.status_code == 429
    assert "Too many lookups from here" in limited.get_data(as_text=True)
    other = get(client, "/find?code=HELLO1", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200
    assert get(client, "/find").status_code == 200  # the empty form is not a lookup


# -- the privacy notice ------------------------------------------------------------------------


def test_privacy_notice_follows_the_configuration(app, service, clock) -> None:
    client = app.test_client()
    page = get(client, "/privacy").get_data(as_text=True)
    assert "the link between it and you is deleted at once" in page
    assert "not given to anyone else for 30 days" in page
    assert "kept 90 days" in page  # the audit log
    assert "Your card number itself is never stored" in page
    assert "no cookies, no analytics" in page
    assert "Ask at the desk of Central Library." in page
    assert "email address or mobile number" not in page  # no notices configured here
    assert "item's title" not in page and "barcode, so staff" not in page  # off by default
    changed = load_settings(
        service.settings.instance_dir,
        environ={
            "HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": "3",
            "HOLDSHELF_RETENTION__AUDIT_DAYS": "30",
            "HOLDSHELF_PRIVACY__CONTACT": "privacy@library.example.org",
            "HOLDSHELF_MAIL__HOST": "mail.library.example.org",
            "HOLDSHELF_MAIL__SENDER": "holds@library.example.org",
            "HOLDSHELF_SLIPS__SHOW_TITLE": "true",
            "HOLDSHELF_SLIPS__SHOW_ITEM_TAIL": "true",
            "HOLDSHELF_NOTICES__SHOW_TITLE": "true",
        },
    )
    other = create_app(Holdshelf(changed, clock=clock, engine=service.engine)).test_client()
    page = get(other, "/privacy").get_data(as_text=True)
    assert "the link between it and you is kept 3 days, then deleted" in page
    assert "kept 30 days" in page
    assert "Ask Central Library: privacy@library.example.org." in page
    assert "encrypted, only until the message has been accepted" in page
    assert "mail server (mail.library.example.org)" in page
    assert "title, to print it on the hold slip: kept with the slip" in page
    assert "title (shortened): anyone at the shelf can read it" in page
    assert "title, to name it in the message to you: encrypted" in page
    assert "last 4 characters of the item's barcode" in page
    spanish = get(other, "/privacy?lang=es").get_data(as_text=True)
    assert "se guarda 3 días y después se borra" in spanish


# -- the link from a notice --------------------------------------------------------------------


def token_for(service, card: str, valid_until: dt.date) -> str:
    key = service.settings.secret_key.encode()
    return make_token(service.pseudonym(card), key, valid_until)


def test_link_switches_both_ways(app, service, patrons) -> None:
    patron = patrons[0]
    token = token_for(service, patron.card, dt.date(2027, 1, 31))
    client = app.test_client()
    page = get(client, f"/p/{token}").get_data(as_text=True)
    assert "Open hold shelf" in page and "This is your choice now." in page
    done = client.post(f"/p/{token}", data={"choice": "desk"})
    assert done.status_code == 200 and "Set-Cookie" not in done.headers
    assert service.patron(patron.card).preference.value == "desk"
    back = client.post(f"/p/{token}?lang=es", data={"choice": "shelf"})
    assert "A partir de ahora sus reservas van al estante de autoservicio" in back.get_data(
        as_text=True
    )
    assert service.patron(patron.card).preference.value == "shelf"
    assert not service.patron(patron.card).chosen  # back to the default: nothing kept


def test_tampered_and_expired_links_are_refused_kindly(app, service, clock, patrons) -> None:
    card = patrons[0].card
    good = token_for(service, card, dt.date(2026, 12, 31))
    tampered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    client = app.test_client()
    for token in (tampered, "x", good + "A", good[:20]):
        refused = get(client, f"/p/{token}")
        assert refused.status_code == 400
        assert "This link is not valid" in refused.get_data(as_text=True)
        assert client.post(f"/p/{token}", data={"choice": "desk"}).status_code == 400
    old = token_for(service, card, dt.date(2026, 11, 22))  # the day before the clock's today
    expired = get(client, f"/p/{old}")
    assert expired.status_code == 410
    assert "This link has expired" in expired.get_data(as_text=True)
    assert client.post(f"/p/{old}", data={"choice": "desk"}).status_code == 410
    assert client.post(f"/p/{good}", data={"choice": "lobby"}).status_code == 400
    assert service.patron(card).preference.value == "shelf"  # nothing changed


def test_link_tokens_are_short_and_name_only_a_pseudonym(service, patrons) -> None:
    token = token_for(service, patrons[0].card, dt.date(2027, 1, 1))
    assert len(token) == 40
    assert patrons[0].card not in token
    key = service.settings.secret_key.encode()
    assert read_token(token, key, dt.date(2027, 1, 1)) == service.pseudonym(patrons[0].card)


# -- translations --------------------------------------------------------------------------------


def test_compiled_catalog_matches_its_source() -> None:
    from babel.messages.pofile import read_po

    from holdshelf.i18n import TRANSLATIONS_DIR, translations

    folder = TRANSLATIONS_DIR / "es" / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as source:
        catalog = read_po(source)
    compiled = translations("es")
    for message in catalog:
        if message.id:
            assert compiled.gettext(message.id) == message.string, message.id
    with (TRANSLATIONS_DIR / "messages.pot").open("rb") as template:
        expected = {m.id for m in read_po(template) if m.id}
    assert expected == {m.id for m in catalog if m.id}, "run pybabel update and translate"
    assert all(m.string for m in catalog if m.id), "every message is translated"


def test_spanish_slip(service, clock, patrons) -> None:
    from holdshelf.printers.slips import RenderedSlip

    from tests.helpers.escpos_parser import parse

    settings = load_settings(
        service.settings.instance_dir, environ={"HOLDSHELF_BRANCHES__MAIN__LANGUAGE": "es"}
    )
    from holdshelf.service import HoldService

    spanish = HoldService(settings, service.sessions, clock)
    spanish.opt_out(patrons[0].card)
    entry = spanish.ready("MAIN", "I1", patrons[0].card)
    branch, slip = spanish.slip(entry.code.display)
    lines = parse(RenderedSlip(slip, settings.printer_of(branch)).escpos).lines
    assert f"Sección {entry.section}" in lines
    assert "RECOGER HASTA EL" in lines
    assert "LUN 30 NOV 2026" in lines
    assert any(line.strip() == "EN EL MOSTRADOR" for line in lines)


@pytest.mark.parametrize("language", ["en", "es"])
def test_public_pages_in_each_language_are_complete(app, service, language) -> None:
    client = app.test_client()
    for path in ("/find", "/privacy", "/find?code=HELLO1"):
        page = get(client, f"{path}{'&' if '?' in path else '?'}lang={language}")
        assert page.status_code == 200
        assert f'<html lang="{language}">' in page.get_data(as_text=True)
