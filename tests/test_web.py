"""The circulation desk in the web app, through Flask's test client (real database, real
templates): check-in, pickup, shelf, clear shelf, patron desk, numbers, printers, audit."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import Clock, assert_no_patron_data
from tests.helpers.web import ADMIN, STAFF, choose_pickup, look_up_patron, post, sign_in

CODE = re.compile(r'class="code"(?: href="[^"]*")?>([0-9A-Z]{3}-[0-9A-Z]{3})<')


def check_in(client, item: str, card: str, **extra: str):
    return post(client, "/checkin", {"item": item, "card": card, **extra})


def ready_code(response) -> str:
    assert response.status_code == 302
    return response.headers["Location"].split("code=")[1]


def test_sign_in_and_choose_branch(app) -> None:
    client = app.test_client()
    assert client.get("/checkin").status_code == 302
    response = sign_in(client)
    assert response.headers["Location"] == "/checkin"
    assert client.get("/checkin").headers["Location"] == "/branch"  # two branches: choose
    page = client.get("/branch").get_data(as_text=True)
    assert "Central Library (MAIN)" in page and "Eastside Branch (EAST)" in page
    radios = re.findall(r'<input type="radio"[^>]*>', page)
    assert ["autofocus" in radio for radio in radios] == [True, False]  # the first, ready
    post(client, "/branch", {"branch": "EAST"})
    assert "Eastside Branch" in client.get("/checkin").get_data(as_text=True)


def test_check_in_shows_code_section_status_and_preview(client, patrons) -> None:
    response = check_in(client, "39010001234567", patrons[0].card)
    code = ready_code(response)
    page = client.get(f"/checkin?code={code}").get_data(as_text=True)
    assert f'<span class="code">{code}</span>' in page
    assert f'<dd class="big">{code[0]}</dd>' in page
    assert "On the open shelf" in page
    assert "waiting for the printer" in page
    assert "autofocus" in page.split('id="item"')[1].split(">")[0]  # ready for the next scan
    preview = client.get(f"/slips/{code}.png")
    assert preview.status_code == 200
    assert preview.mimetype == "image/png"
    assert preview.data[:4] == b"\x89PNG"
    assert client.get("/slips/ZZZZZZ.png").status_code == 404
    assert_no_patron_data(page, patrons)


def test_check_in_errors_are_plain_and_keep_focus(client, patrons) -> None:
    code = ready_code(check_in(client, "I1", patrons[0].card))
    again = check_in(client, "I1", patrons[1].card)
    assert again.status_code == 422
    page = again.get_data(as_text=True)
    assert f"item I1 is already on the hold shelf at MAIN (code {code})" in page
    assert "autofocus" in page.split('id="item"')[1].split(">")[0]
    bad_card = check_in(client, "I2", "\x07")
    assert bad_card.status_code == 422
    card_page = bad_card.get_data(as_text=True)
    assert "card number contains characters no barcode has" in card_page
    assert 'value="I2"' in card_page  # the item is kept, the card asked for again
    assert "autofocus" in card_page.split('id="card"')[1].split(">")[0]
    assert_no_patron_data(page + card_page, patrons)


def test_pickup_by_code_qr_or_item(client, patrons) -> None:
    first = ready_code(check_in(client, "I1", patrons[0].card))
    second = ready_code(check_in(client, "I2", patrons[1].card))
    check_in(client, "I3", patrons[2].card)
    done = post(client, "/pickup", {"scan": first.lower().replace("-", "")})  # typed
    assert done.status_code == 302
    assert f"{first} picked up" in client.get("/pickup").get_data(as_text=True)
    assert post(client, "/pickup", {"scan": second}).status_code == 302  # the QR's payload
    assert post(client, "/pickup", {"scan": "I3"}).status_code == 302  # the item barcode
    again = post(client, "/pickup", {"scan": first})
    assert again.status_code == 422
    assert "has already ended" in again.get_data(as_text=True)
    nothing = post(client, "/pickup", {"scan": "NOT-A-THING"})
    assert "no hold on the shelf for the item scanned" in nothing.get_data(as_text=True)


def test_shelf_lists_in_order_with_desk_apart(client, app, patrons) -> None:
    service = app.extensions["holdshelf"].service
    service.opt_out(patrons[0].card)
    codes = [ready_code(check_in(client, f"I{n}", p.card)) for n, p in enumerate(patrons[:5])]
    page = client.get("/shelf").get_data(as_text=True)
    assert "4 on the open shelf, 1 behind the desk" in page
    open_part, desk_part = page.split("Behind the desk</h2>")
    shelved = CODE.findall(open_part)
    assert shelved == sorted(codes[1:])
    assert CODE.findall(desk_part) == [codes[0]]
    assert_no_patron_data(page, patrons)


def test_opt_out_at_the_patron_desk_and_move_to_desk(client, app, patrons) -> None:
    patron = patrons[0]
    code = ready_code(check_in(client, "I1", patron.card))
    page, location = look_up_patron(client, patron.card)
    assert "Pickup: open shelf (the library's default)" in page
    assert f'<span class="code">{code}</span>' in page
    assert "staff hand them over after checking the library card" in page
    chosen = choose_pickup(client, page, location, "desk")
    assert chosen.status_code == 302
    page = client.get(chosen.headers["Location"]).get_data(as_text=True)
    assert "Their holds to move from the open shelf to the desk: 1." in page
    assert "to be moved to the desk" in page
    shelf = client.get("/shelf").get_data(as_text=True)
    assert f"Moved {code} to the desk" in shelf
    post(client, "/shelf/moved", {"code": code}, page="/shelf")
    shelf = client.get("/shelf").get_data(as_text=True)
    assert "Move to the desk" not in shelf
    assert f"{code} is now a desk hold" in shelf
    assert ready_code(check_in(client, "I2", patron.card))
    assert "Behind the desk" in client.get(
        f"/checkin?code={ready_code(check_in(client, 'I3', patron.card))}"
    ).get_data(as_text=True)
    post(client, "/patron/done", page=chosen.headers["Location"])
    assert 'id="card"' in client.get("/patron").get_data(as_text=True)
    for page_ in (page, shelf):
        assert_no_patron_data(page_, patrons)
    actions = [e.action for e in app.extensions["holdshelf"].accounts.audit_entries()]
    assert actions == ["set pickup to desk", "looked up a patron"]


def focused_patrons(app) -> list[str | None]:
    """The patron pseudonyms kept in the desk sessions' rows."""
    from sqlalchemy import select

    from holdshelf.storage.models import WebSession

    with app.extensions["holdshelf"].service.sessions() as session:
        return list(session.scalars(select(WebSession.patron)))


def test_patron_focus_ends_on_leaving_the_page(client, app, patrons) -> None:
    page, location = look_up_patron(client, patrons[0].card)
    assert "What the library holds" in page and 'id="card"' in page  # the next scan's field
    client.get("/shelf")  # the clerk goes elsewhere
    assert focused_patrons(app) == [None]
    for back in (location, "/patron"):  # the browser's Back, or the menu
        again = client.get(back).get_data(as_text=True)
        assert "What the library holds" not in again and 'id="card"' in again
    # Coming back from the menu within the five minutes also starts afresh.
    look_up_patron(client, patrons[0].card)
    assert "What the library holds" not in client.get("/patron").get_data(as_text=True)
    assert focused_patrons(app) == [None]


def test_a_new_scan_replaces_the_patron_in_focus(client, app, patrons) -> None:
    anna, ben = patrons[0], patrons[1]
    anna_code = ready_code(check_in(client, "I1", anna.card))
    ben_code = ready_code(check_in(client, "I2", ben.card))
    anna_page, anna_location = look_up_patron(client, anna.card)
    ben_page, _ = look_up_patron(client, ben.card)  # scanned on Anna's page
    assert ben_code in ben_page and anna_code not in ben_page
    # Anna's page, still open in another tab, cannot change Ben's choice.
    refused = choose_pickup(client, anna_page, anna_location, "desk")
    assert "no longer in focus" in client.get(refused.headers["Location"]).get_data(as_text=True)
    service = app.extensions["holdshelf"].service
    assert service.patron(ben.card).preference.value == "shelf"
    assert service.patron(anna.card).preference.value == "shelf"


def test_patron_focus_times_out(client, app, clock: Clock, patrons) -> None:
    page, location = look_up_patron(client, patrons[0].card)
    assert "What the library holds" in page
    assert focused_patrons(app) != [None]
    clock.advance(minutes=6)
    assert "What the library holds" not in client.get(location).get_data(as_text=True)
    assert focused_patrons(app) == [None]  # gone from the row, not only from the page
    refused = choose_pickup(client, page, location, "desk")
    assert refused.status_code == 302
    assert "no longer in focus" in client.get("/patron").get_data(as_text=True)


def test_clear_shelf(client, app, clock: Clock, patrons) -> None:
    codes = [ready_code(check_in(client, f"I{n}", p.card)) for n, p in enumerate(patrons[:3])]
    assert "Nothing is past its pickup-by date" in client.get("/clear").get_data(as_text=True)
    too_early = post(client, "/clear", {"scan": codes[0]})
    assert too_early.status_code == 302
    assert "can still be picked up until" in client.get("/clear").get_data(as_text=True)
    clock.advance(days=8)  # the desk's session has timed out meanwhile: sign in again
    sign_in(client)
    post(client, "/branch", {"branch": "MAIN"})
    page = client.get("/clear").get_data(as_text=True)
    assert "3 to pull" in page
    assert CODE.findall(page) == sorted(codes)
    post(client, "/clear", {"scan": codes[0], "code": [codes[1]]})
    page = client.get("/clear").get_data(as_text=True)
    assert "Ended as expired" in page
    assert CODE.findall(page) == [codes[2]]
    post(client, "/clear", {"scan": patrons[5].card})  # a card, scanned by mistake
    page = client.get("/clear").get_data(as_text=True)
    assert "no hold on the shelf for the item scanned" in page
    assert_no_patron_data(page, patrons)  # the scan is not echoed
    assert app.extensions["holdshelf"].service.shelf("MAIN")[0].code.display == codes[2]
    post(client, "/clear", {"scan": "I2"})  # the item's barcode instead of its slip
    page = client.get("/clear").get_data(as_text=True)
    assert f"Ended as expired: {codes[2]}" in page and CODE.findall(page) == []


def test_numbers_are_aggregates(client, patrons) -> None:
    for n, patron in enumerate(patrons[:4]):
        check_in(client, f"I{n}", patron.card)
    page = client.get("/numbers").get_data(as_text=True)
    assert "<td>2026-11-23</td><td>MAIN</td>\n      <td>4</td>" in page
    assert_no_patron_data(page, patrons)


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", page, re.DOTALL)]


def test_numbers_draws_the_days_and_the_code_space(client, app, clock: Clock, patrons) -> None:
    service = app.extensions["holdshelf"].service
    clock.advance(days=-2)
    for n, patron in enumerate(patrons[:3]):  # two days ago: 3 ready, 1 picked up
        entry = service.ready("MAIN", f"I{n}", patron.card)
    service.pickup(entry.code.display)
    clock.advance(days=2)
    service.ready("MAIN", "I9", patrons[9].card)  # today: 1 ready
    page = client.get("/numbers").get_data(as_text=True)
    assert " style=" not in page, "the CSP allows no style attributes"
    charts = svgs(page)
    assert [c.get("class") for c in charts] == ["bars"] * 4 + ["meter"] * 2  # EAST: no bars
    ready, picked_up = charts[0], charts[1]
    assert ready.findtext("title") == (
        "Ready per day at Central Library (MAIN), 24 Oct to 23 Nov: 4 in all, at most 3 a day"
    )
    heights = [float(bar.get("height")) for bar in ready.findall("rect")]
    assert len(heights) == 31  # the last 30 days and today
    assert heights[-3:] == pytest.approx([100, 0, 100 / 3], abs=0.01)  # 3, 0, 1 of at most 3
    assert sum(heights[:-3]) == 0
    assert [float(bar.get("height")) for bar in picked_up.findall("rect")][-3] == pytest.approx(
        100 / 3, abs=0.01
    )
    assert "Ready: 4, at most 3 a day" in page and "Expired: none" in page
    assert "No holds since 24 Oct." in page  # EAST: no charts of nothing
    assert "Shelf codes at Central Library (MAIN): 4 of about 35,075 codes in use" in page
    assert "raise its code_length" not in page
    assert not any("http" in ET.tostring(chart, encoding="unicode") for chart in charts)
    assert_no_patron_data(page, patrons)


def test_numbers_warns_of_a_crowded_code_space(client, app, monkeypatch) -> None:
    from holdshelf.service import BranchUsage

    crowded = [BranchUsage("MAIN", 20000, 30000, 35075), BranchUsage("EAST", 1, 10, 35075)]
    monkeypatch.setattr(app.extensions["holdshelf"].service, "usage", lambda: crowded)
    page = client.get("/numbers").get_data(as_text=True)
    assert '<p class="problem">MAIN has used more than 70% of its shelf codes' in page
    assert "EAST has used" not in page
    assert [r.get("class") for r in svgs(page)[-2].findall("rect")][1] == "fill crowded"


def test_admin_printers_and_audit(app, patrons) -> None:
    admin = app.test_client()
    sign_in(admin, ADMIN)
    post(admin, "/branch", {"branch": "MAIN"})
    code = ready_code(check_in(admin, "I1", patrons[0].card))
    page = admin.get("/admin/printers").get_data(as_text=True)
    assert "preview" in page and "online, paper ok" in page
    assert f"{code} (slip)" in page  # queued
    post(admin, "/admin/printers/test", {"printer": "preview"}, page="/admin/printers")
    assert "Test slip sent to preview" in admin.get("/admin/printers").get_data(as_text=True)
    app.extensions["holdshelf"].worker.run_once()
    assert "Every slip has been printed" in admin.get("/admin/printers").get_data(as_text=True)
    reprinted = post(admin, "/reprint", {"scan": code, "back": "printers"}, "/admin/printers")
    assert reprinted.headers["Location"] == "/admin/printers"
    assert f"{code} (reprint)" in admin.get("/admin/printers").get_data(as_text=True)
    post(admin, "/reprint", {"scan": "NOPE", "back": "printers"}, page="/admin/printers")
    assert "no hold on the shelf for the item scanned" in admin.get("/admin/printers").get_data(
        as_text=True
    )
    post(admin, "/patron", {"card": patrons[0].card})
    audit = admin.get("/admin/audit").get_data(as_text=True)
    assert "<td>ada</td><td>MAIN</td><td>looked up a patron</td>" in audit
    assert_no_patron_data(audit, patrons)


def test_staff_cannot_reach_admin_pages(client) -> None:
    for path in ("/admin/printers", "/admin/accounts", "/admin/audit"):
        response = client.get(path)
        assert response.status_code == 403
        assert "This page is for administrators" in response.get_data(as_text=True)


def test_sign_out_ends_the_session_for_good(app) -> None:
    client = app.test_client()
    sign_in(client)
    post(client, "/branch", {"branch": "MAIN"})
    cookie = client.get_cookie("holdshelf_session").value
    assert client.get("/shelf").status_code == 200
    post(client, "/logout", page="/shelf")
    assert client.get("/shelf").status_code == 302
    thief = app.test_client()
    thief.set_cookie("holdshelf_session", cookie)  # the cookie as it was before signing out
    response = thief.get("/shelf")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_sign_in_is_rate_limited(app) -> None:
    client = app.test_client()
    for _ in range(5):
        wrong = sign_in(client, (STAFF[0], "not the password"))
        assert wrong.status_code == 401
        assert "wrong account name or password" in wrong.get_data(as_text=True)
    blocked = sign_in(client, STAFF)
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"] == "900"
    assert "too many failed sign-ins for this account: try again in 15 minutes" in blocked.get_data(
        as_text=True
    )


def test_sessions_time_out(app, clock: Clock) -> None:
    client = app.test_client()
    sign_in(client)
    post(client, "/branch", {"branch": "MAIN"})
    clock.advance(hours=7, minutes=59)
    assert client.get("/shelf").status_code == 200
    clock.advance(hours=8, minutes=1)  # idle for more than 8 hours
    assert client.get("/shelf").status_code == 302


def test_no_open_redirect_after_sign_in(app) -> None:
    client = app.test_client()
    from tests.helpers.web import csrf_token

    token = csrf_token(client)
    for target, expected in (
        ("//evil.example/x", "/checkin"),
        ("/shelf", "/shelf"),
        ("https://evil.example", "/checkin"),
        ("/%09/evil.example", "/checkin"),  # a tab, dropped by browsers: "//evil.example"
        ("/%0A/evil.example", "/checkin"),  # a newline: must not reach a header
        ("/%5C/evil.example", "/checkin"),  # a backslash, read as a slash by browsers
        ("/shelf?branch=MAIN", "/shelf?branch=MAIN"),
    ):
        client.post("/logout", data={"csrf_token": csrf_token(client)})
        response = client.post(
            f"/login?next={target}",
            data={"name": STAFF[0], "password": STAFF[1], "csrf_token": csrf_token(client)},
        )
        assert response.headers["Location"] == expected, target
    assert token


def test_purge_forgets_expired_sessions_and_old_audit_entries(app, client, clock, patrons) -> None:
    accounts = app.extensions["holdshelf"].accounts
    post(client, "/patron", {"card": patrons[0].card})
    assert len(accounts.audit_entries()) == 1
    clock.advance(minutes=6)  # the desk walks away without opening another page
    assert focused_patrons(app) != [None]
    accounts.purge()
    assert focused_patrons(app) == [None]  # purge ends the focus in the session row
    clock.advance(days=89)
    assert accounts.purge() == 1  # the desk's session, idle for 89 days
    assert len(accounts.audit_entries()) == 1
    clock.advance(days=2)
    assert accounts.purge() == 1  # the audit entry, past retention.audit_days (90)
    assert accounts.audit_entries() == []


def test_a_big_shelf_shows_one_section_at_a_time_every_hold_once(
    client, app, patrons, monkeypatch
) -> None:
    """Past SHELF_WHOLE holds the shelf page shows one section (a page of it at a time), with
    every section's counts: walking the sections and their pages shows each hold once, and
    the move-to-desk tasks and the counts are the whole branch's on every page."""
    import html

    from holdshelf.web import desk as desk_views

    monkeypatch.setattr(desk_views, "SHELF_WHOLE", 4)
    monkeypatch.setattr(desk_views, "SHELF_PAGE", 2)
    service = app.extensions["holdshelf"].service
    entries = [service.ready("MAIN", f"S{n}", p.card) for n, p in enumerate(patrons[:14])]
    service.ready("EAST", "E1", patrons[14].card)  # another branch's: never shown here
    service.opt_out(patrons[0].card)  # its hold is to move to the desk
    sections = sorted({e.section for e in entries})
    assert len(sections) > 1, "the codes fall in several sections"
    first = client.get("/shelf").get_data(as_text=True)
    assert f'aria-current="page">Section {sections[0]}:' in first
    assert "14 on the open shelf, 0 behind the desk" in first
    seen: list[str] = []
    for section in sections:
        path = f"/shelf?section={section}"
        while path:
            page = client.get(path).get_data(as_text=True)
            assert "14 on the open shelf" in page
            assert f"Moved {entries[0].code.display} to the desk" in page
            tables = page.split("<h2>Open shelf</h2>", 1)[1]
            shown = CODE.findall(tables)
            assert shown and len(shown) <= 2 and {c[0] for c in shown} == {section}
            seen += shown
            more = re.search(r'<a href="([^"]+)">More of section', page)
            path = html.unescape(more.group(1)) if more else None
    assert sorted(seen) == sorted(e.code.display for e in entries)
    assert len(seen) == len(set(seen))
    counts = {s: sum(e.section == s for e in entries) for s in sections}
    for section, n in counts.items():
        assert f"Section {section}: {n}<" in first
    # a section no hold is in: the first one, not an error
    assert f'aria-current="page">Section {sections[0]}:' in client.get(
        "/shelf?section=%25"
    ).get_data(as_text=True)
