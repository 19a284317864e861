"""What a clerk does with one hold at the desk: reprint, move to the desk, change the date,
cancel, see and resend its notice; the printer banner; plain-words misses; the email flow."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from holdshelf.storage.models import Hold, Notice, PrintJob
from tests.conftest import Clock, assert_no_patron_data, codabar, raw_database_bytes
from tests.helpers.servers import Mailbox, free_port
from tests.helpers.web import post, sign_in
from tests.test_notices import SENDER, configure
from tests.test_printing import add_printer
from tests.test_web import check_in, ready_code

ITEM = codabar("3901000012345")


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture
def dead_port() -> int:
    return free_port()  # nothing listens: the printer refuses the connection


@pytest.fixture
def instance_dir(instance_dir: Path, mailbox: Mailbox, dead_port: int) -> Path:
    configure(
        instance_dir,
        f'[mail]\nhost = "127.0.0.1"\nport = {mailbox.port}\nsecurity = "none"\n'
        f'sender = "{SENDER}"\ntimeout = 5\n',
    )
    add_printer(
        instance_dir,
        "EAST",
        f'type = "network"\nhost = "127.0.0.1"\nport = {dead_port}\nconnect_timeout = 1\n'
        "verify_status = false",
    )
    return instance_dir


def jobs(app) -> list[tuple[str, str]]:
    with app.extensions["holdshelf"].service.sessions() as session:
        return [(job.code, job.kind) for job in session.scalars(select(PrintJob).order_by("id"))]


def hold_row(app, code: str) -> Hold:
    with app.extensions["holdshelf"].service.sessions() as session:
        return session.scalars(select(Hold).where(Hold.code == code.replace("-", ""))).one()


def page(client, path: str) -> str:
    return client.get(path).get_data(as_text=True)


def at_east(client) -> None:
    assert post(client, "/branch", {"branch": "EAST"}).status_code == 302


# -- printing trouble --------------------------------------------------------------------------


def test_the_check_in_result_follows_the_slip_and_every_page_warns(app, client, clock) -> None:
    at_east(client)
    code = ready_code(check_in(client, "I1", "21010001"))
    result = page(client, f"/checkin?code={code}")
    assert 'data-poll="/status?code=' in result  # the page's script asks again
    status = client.get(f"/status?code={code}").get_json()
    assert status["slip"] == {
        "state": "queued",
        "text": "waiting for the printer",
        "settled": False,
    }
    assert status["banner"] == ""
    app.extensions["holdshelf"].worker.run_once()  # the printer refuses the connection
    status = client.get(f"/status?code={code}").get_json()
    assert status["slip"]["state"] == "retrying" and not status["slip"]["settled"]
    assert "not printed yet" in status["slip"]["text"] and "refused" in status["slip"]["text"]
    assert "Slips are not printing at this desk" in status["banner"]
    for path in ("/checkin", "/pickup", "/shelf", "/clear", "/patron", "/numbers"):
        assert "Slips are not printing at this desk" in page(client, path), path
    # MAIN's printer is fine: its desks see no banner.
    post(client, "/branch", {"branch": "MAIN"})
    assert "Slips are not printing" not in page(client, "/checkin")


def test_a_slip_nobody_sends_warns_after_a_minute(client, clock) -> None:
    ready_code(check_in(client, "I1", "21010001"))  # MAIN: preview printer, no worker runs
    assert "Slips are waiting to print" not in page(client, "/shelf")
    clock.advance(seconds=61)
    assert "The print worker may not be running" in page(client, "/shelf")


# -- reprint, move to the desk, new date, cancel ------------------------------------------------


def test_staff_reprint_from_check_in_shelf_and_pickup(app, client, mailbox) -> None:
    mailbox.start()
    code = ready_code(check_in(client, "I1", "21010001", email="anna@example.org"))
    worker = app.extensions["holdshelf"].worker
    worker.run_once()
    back = post(client, "/reprint", {"code": code, "back": "checkin"}, f"/checkin?code={code}")
    assert back.headers["Location"] == f"/checkin?code={code}"
    assert "is printing again" in page(client, back.headers["Location"])
    post(client, "/reprint", {"code": code, "back": "shelf"}, "/shelf")
    post(client, "/reprint", {"scan": "I1", "back": "pickup"}, "/pickup")  # by the item
    assert [kind for _, kind in jobs(app)] == ["slip", "reprint", "reprint", "reprint"]
    worker.run_once()
    assert len(mailbox.messages) == 1  # a reprint never sends another notice


def test_moving_to_the_desk_prints_a_desk_slip(app, client) -> None:
    service = app.extensions["holdshelf"].service
    code = ready_code(check_in(client, "I1", "21010001"))
    service.opt_out("21010001")
    moved = post(client, "/shelf/moved", {"code": code}, "/shelf")
    assert "new slip with the desk band is printing" in page(client, moved.headers["Location"])
    assert jobs(app)[-1] == (code.replace("-", ""), "reprint")
    with service.sessions() as session:
        payload = json.loads(session.scalars(select(PrintJob.payload).order_by("id")).all()[-1])
    assert payload["desk"] is True


def test_change_the_pickup_by_date(app, client, clock: Clock) -> None:
    code = ready_code(check_in(client, "I1", "21010001"))
    hold_page = page(client, f"/holds/{code}")
    assert 'type="date"' in hold_page
    later = (clock.now + dt.timedelta(days=20)).date()
    changed = post(client, f"/holds/{code}/pickup-by", {"pickup_by": later.isoformat()})
    assert "its new slip is printing" in page(client, changed.headers["Location"])
    assert hold_row(app, code).pickup_by == later
    assert jobs(app)[-1][1] == "reprint"
    past = post(client, f"/holds/{code}/pickup-by", {"pickup_by": "2020-01-01"}, f"/holds/{code}")
    assert "is in the past" in page(client, past.headers["Location"])
    nonsense = post(client, f"/holds/{code}/pickup-by", {"pickup_by": "soon"}, f"/holds/{code}")
    assert "must be a date as YYYY-MM-DD" in page(client, nonsense.headers["Location"])
    assert hold_row(app, code).pickup_by == later


def test_cancel_asks_first(app, client) -> None:
    code = ready_code(check_in(client, "I1", "21010001"))
    confirm = page(client, f"/holds/{code}/cancel")
    assert f'Cancel hold <span class="code">{code}</span>?' in confirm
    assert hold_row(app, code).status == "ready"  # looking at the question changes nothing
    done = post(client, f"/holds/{code}/cancel", {}, f"/holds/{code}/cancel")
    assert "is cancelled" in page(client, done.headers["Location"])
    assert app.extensions["holdshelf"].service.shelf("MAIN") == []
    again = post(client, f"/holds/{code}/cancel", {}, "/shelf")
    assert "has already ended" in page(client, again.headers["Location"])


# -- the hold shelf page ---------------------------------------------------------------------


def test_the_shelf_flags_late_holds_and_dates_carry_their_year(app, client, clock) -> None:
    service = app.extensions["holdshelf"].service
    late = service.ready("MAIN", "I1", "21010001").code.display
    next_year = service.ready("MAIN", "I2", "21010002", dt.date(2027, 1, 4)).code.display
    clock.advance(days=9)
    sign_in(client)  # a new shift
    post(client, "/branch", {"branch": "MAIN"})
    shelf = page(client, "/shelf")
    row = re.search(rf"<tr class=\"overdue\">.*?{late}.*?</tr>", shelf, re.S)
    assert row and "past pickup-by" in row.group(0)
    assert "Mon 04 Jan 2027" in shelf  # not this year: with the year
    assert "1 past their pickup-by date" in shelf
    assert next_year in shelf
    pull_list = page(client, "/clear/list")
    assert late in pull_list and next_year not in pull_list
    assert "data-print" in pull_list


def test_the_shelf_shows_each_notice_and_a_failing_one_can_be_resent(app, client, mailbox):
    code = ready_code(check_in(client, "I1", "21010001", email="anna@example.org"))
    none_code = ready_code(check_in(client, "I2", "21010002"))
    assert "email waiting" in page(client, "/shelf")
    worker = app.extensions["holdshelf"].worker
    worker.run_once()  # the mail server is down: a temporary failure
    shelf = page(client, "/shelf")
    assert "email retrying" in shelf
    assert re.search(rf"{none_code}</a></td>.*?<td>none</td>", shelf, re.S)
    hold_page = page(client, f"/holds/{code}")
    assert "Resend the notice now" in hold_page and "anna@example.org" not in hold_page
    mailbox.start()
    resent = post(client, f"/holds/{code}/notice", {}, f"/holds/{code}")
    assert "being sent again" in page(client, resent.headers["Location"])
    worker.run_once()  # due now, not at its backoff
    assert len(mailbox.messages) == 1
    assert "email sent" in page(client, "/shelf")
    refused = post(client, f"/holds/{code}/notice", {}, f"/holds/{code}")
    assert "its contact is no longer held" in page(client, refused.headers["Location"])


# -- what a scan was ---------------------------------------------------------------------------


@pytest.mark.barcode_rules
def test_misses_say_what_was_scanned(app, client, patrons) -> None:
    service = app.extensions["holdshelf"].service
    east = service.ready("EAST", ITEM, patrons[0].card)
    other_item = codabar("3901000099999")

    def answer(path: str, scan: str) -> str:
        """The page after a scan: Pickup answers at once, Clear shelf after its redirect."""
        response = post(client, path, {"scan": scan}, path)
        body = page(client, path) if response.status_code == 302 else response.get_data(True)
        return html.unescape(body)

    for path in ("/pickup", "/clear"):
        assert f"no hold on the shelf for item {other_item}" in answer(path, other_item), path
        elsewhere = answer(path, east.code.display)
        at_east = f"{east.code.display} is a hold at Eastside Branch (EAST), not at this branch"
        assert at_east in elsewhere, path
        card = answer(path, patrons[1].card)
        assert "this is a patron's card, not a slip or an item" in card, path
        assert_no_patron_data(card, patrons)
    item_at_east = post(client, "/pickup", {"scan": ITEM}).get_data(as_text=True)
    assert f"{east.code.display} is a hold at Eastside Branch (EAST)" in item_at_east


def test_find_past_its_date_says_ask_at_the_desk_and_names_the_branch(app, clock) -> None:
    service = app.extensions["holdshelf"].service
    entry = service.ready("EAST", "I1", "21010001")
    patron = app.test_client()
    found = page(patron, f"/find?code={entry.code.display}")
    assert '<p class="brand">Eastside Branch</p>' in found
    assert "Section" in found and "Ask at the desk." not in found
    clock.advance(days=8)
    late = page(patron, f"/find?code={entry.code.display}")
    assert "Ask at the desk." in late and "has passed" in late
    assert "Section " + entry.section + " of the hold shelf" not in late


# -- the email keyboard flow -------------------------------------------------------------------


def test_a_refused_email_keeps_item_and_card_but_never_shows_the_card(app, client, patrons):
    card = patrons[0].card
    refused = post(client, "/checkin", {"item": "I1", "card": card, "email": "anna@@example"})
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert 'value="I1"' in body
    assert "autofocus" in body.split('id="email"')[1].split(">")[0]
    assert "kept from your scan" in body
    assert_no_patron_data(body, patrons)  # the card is sealed in the form, never in clear
    kept = re.search(r'name="card_kept" value="([^"]+)"', body).group(1)
    made = post(client, "/checkin", {"item": "I1", "card": "", "card_kept": kept, "email": ""})
    code = ready_code(made)
    assert app.extensions["holdshelf"].service.patron(card).holds[0].code.display == code
    with app.extensions["holdshelf"].service.sessions() as session:
        assert session.scalars(select(Notice)).all() == []
    assert_no_patron_data(raw_database_bytes(app.extensions["holdshelf"].service), patrons)


def test_a_forged_kept_card_is_asked_for_again(client) -> None:
    refused = post(client, "/checkin", {"item": "I1", "card": "21010001", "email": "x@@y"})
    kept = re.search(r'name="card_kept" value="([^"]+)"', refused.get_data(as_text=True)).group(1)
    for token in ("gAAAA-not-a-token", kept[:-4] + "AAAA"):
        again = post(client, "/checkin", {"item": "I1", "card": "", "card_kept": token})
        assert again.status_code == 422
        assert "scan the patron's card again" in html.unescape(again.get_data(as_text=True))


# -- found by review ---------------------------------------------------------------------------


def test_a_swapped_scan_is_not_put_back_when_the_email_is_refused(app, client, patrons) -> None:
    service = app.extensions["holdshelf"].service
    service.ready("MAIN", "I1", patrons[0].card)  # Anna is known: she has a hold
    for fields in (
        {"item": patrons[0].card, "card": "21010002", "email": "nope@@x"},
        {"item": patrons[0].card, "card": "2101\x000002"},
    ):
        refused = post(client, "/checkin", fields)
        assert refused.status_code == 422
        assert_no_patron_data(refused.get_data(as_text=True), patrons)


def test_a_kept_card_works_for_its_own_desk_only(app, client) -> None:
    from tests.helpers.web import STAFF

    refused = post(client, "/checkin", {"item": "I1", "card": "21010001", "email": "x@@y"})
    kept = re.search(r'name="card_kept" value="([^"]+)"', refused.get_data(as_text=True)).group(1)
    other = app.test_client()
    sign_in(other, STAFF)
    post(other, "/branch", {"branch": "MAIN"})
    replayed = post(other, "/checkin", {"item": "I1", "card": "", "card_kept": kept})
    assert "scan the patron's card again" in html.unescape(replayed.get_data(as_text=True))
    assert ready_code(post(client, "/checkin", {"item": "I1", "card": "", "card_kept": kept}))


def test_a_missing_favicon_does_not_end_the_patron_focus(client, app, patrons) -> None:
    from tests.helpers.web import look_up_patron
    from tests.test_web import focused_patrons

    _, location = look_up_patron(client, patrons[0].card)
    assert client.get("/favicon.ico").status_code == 404
    assert "What the library holds" in page(client, location)
    assert focused_patrons(app) != [None]


def test_staff_are_not_sent_back_to_an_admin_page(client) -> None:
    code = ready_code(check_in(client, "I1", "21010001"))
    back = post(client, "/reprint", {"scan": code, "back": "printers"}, "/shelf")
    assert back.headers["Location"] == "/shelf"


def test_a_notice_state_stays_while_its_hold_waits(app, client, mailbox, clock) -> None:
    mailbox.start()
    service = app.extensions["holdshelf"].service
    code = ready_code(check_in(client, "I1", "21010001", email="anna@example.org"))
    app.extensions["holdshelf"].worker.run_once()
    clock.advance(days=3)
    service.purge()
    assert [
        n.state
        for n in app.extensions["holdshelf"].worker.notices.of_branch("MAIN")[code.replace("-", "")]
    ] == ["sent"]
    service.pickup(code)
    clock.advance(days=2)
    service.purge()
    assert app.extensions["holdshelf"].worker.notices.of_branch("MAIN") == {}


def test_the_pull_list_and_the_clear_page_share_one_order(app, client, clock) -> None:
    service = app.extensions["holdshelf"].service
    service.opt_out("21010001")
    desk_code = service.ready("MAIN", "I1", "21010001").code.display
    shelf_codes = sorted(service.ready("MAIN", f"I{n}", f"2101000{n}").code.display for n in (2, 3))
    clock.advance(days=8)
    assert [e.code.display for e in service.overdue("MAIN")] == [*shelf_codes, desk_code]


def test_too_early_to_pull_names_the_year_when_it_is_not_this_year(app, clock) -> None:
    service = app.extensions["holdshelf"].service
    entry = service.ready("MAIN", "I1", "21010001", dt.date(2027, 1, 4))
    with pytest.raises(Exception, match="can still be picked up until Mon 04 Jan 2027"):
        service.expire_hold(entry.code.display, "MAIN")
