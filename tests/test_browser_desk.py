"""The desk's Monday morning in a real browser (see tests/test_browser.py for the set-up): a
barcode scanner's swapped scans, the patron desk after walking away, a printer that refuses
connections, staff reprints, cancel and a new date, and the email keyboard flow.

The instance has the demo's barcode rules, a mail server configured (down: nothing is sent)
and, at EAST, a network printer on a port where nothing listens.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests import test_browser
from tests.conftest import Clock, Patron, assert_no_patron_data, codabar, raw_database_bytes
from tests.helpers.servers import free_port
from tests.helpers.web import STAFF
from tests.test_browser import Desk
from tests.test_notices import SENDER, configure
from tests.test_printing import add_printer

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.barcode_rules,
]
server, browser_page = test_browser.server, test_browser.browser_page  # the same fixtures

ITEMS = [codabar(f"390100001234{n}") for n in range(10)]


@pytest.fixture
def instance_dir(instance_dir: Path) -> Path:
    configure(
        instance_dir,
        f'[mail]\nhost = "127.0.0.1"\nport = {free_port()}\nsecurity = "none"\n'
        f'sender = "{SENDER}"\ntimeout = 2\n',
    )
    add_printer(
        instance_dir,
        "EAST",
        f'type = "network"\nhost = "127.0.0.1"\nport = {free_port()}\nconnect_timeout = 1\n'
        "verify_status = false",
    )
    return instance_dir


def start(desk: Desk, branch: str = "Central Library (MAIN)") -> None:
    desk.sign_in(STAFF)
    desk.page.get_by_label(branch).check()
    with desk.page.expect_navigation():
        desk.page.get_by_role("button", name="Work at this branch").click()


def problem(desk: Desk) -> str:
    return desk.page.locator(".problem").inner_text()


def test_swapped_scans_are_refused_and_the_card_is_never_stored(
    browser_page, server, app, patrons: list[Patron]
) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    start(desk)
    card = patrons[0].card
    desk.scan(card)  # the card, into the item field
    desk.assert_focus("email", "Enter after the item goes to the email field")
    desk.page.keyboard.press("Enter")  # no email for this patron
    desk.assert_focus("card", "an empty email field hands on to the card")
    desk.submit(ITEMS[0])  # and the item into the card field
    assert "this looks like a patron card, not an item barcode" in problem(desk)
    desk.assert_focus("item", "the cursor goes back to the field at fault")
    desk.check("desk-01-swapped-scan")
    assert_no_patron_data(page.content(), patrons)
    assert app.extensions["holdshelf"].service.shelf() == []
    assert_no_patron_data(raw_database_bytes(app.extensions["holdshelf"].service), patrons)


def test_the_email_keyboard_flow(browser_page, server, app, patrons: list[Patron]) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    start(desk)
    desk.scan(ITEMS[1])
    desk.assert_focus("email", "Enter after the item goes to the email field")
    desk.scan("anna@example")  # the browser takes it, the library's check does not
    desk.assert_focus("card", "Enter in the email field goes on to the card")
    desk.submit(patrons[1].card)
    assert "email" in problem(desk)
    desk.assert_focus("email", "a refused email puts the cursor in the email field")
    assert page.locator("#item").input_value() == ITEMS[1]
    assert "kept from your scan" in page.locator("label[for=card]").inner_text()
    assert_no_patron_data(page.content(), patrons)  # the kept card is sealed, not shown
    desk.check("desk-02-refused-email")
    desk.submit("anna@example.org")  # Enter sends the form: the card is kept
    code = page.locator("#result-title .code").inner_text()
    assert app.extensions["holdshelf"].service.patron(patrons[1].card).holds[0].code.display == code

    # The card scanned while the cursor sat in the email field goes where it belongs.
    desk.scan(ITEMS[2])
    desk.assert_focus("email", "Enter after the item goes to the email field")
    desk.submit(patrons[2].card)
    assert "Ready:" in page.locator("#result-title").inner_text()
    assert len(app.extensions["holdshelf"].service.patron(patrons[2].card).holds) == 1
    assert_no_patron_data(raw_database_bytes(app.extensions["holdshelf"].service), patrons)


def test_the_patron_desk_forgets_the_patron_on_leaving(
    browser_page, server, app, patrons: list[Patron]
) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    service = app.extensions["holdshelf"].service
    anna = service.ready("MAIN", ITEMS[3], patrons[3].card).code.display
    ben = service.ready("MAIN", ITEMS[4], patrons[4].card).code.display
    start(desk)
    desk.go("/patron")
    desk.submit(patrons[3].card)
    assert anna in page.locator("main").inner_text()
    desk.assert_focus("card", "the card field waits for the next patron")
    desk.check("desk-03-patron-in-focus")
    with page.expect_navigation():
        page.get_by_role("link", name="Hold shelf").click()
    page.go_back()
    assert anna not in page.locator("main").inner_text(), "Back shows no patron"
    with page.expect_navigation():
        page.get_by_role("link", name="Patron desk").click()
    assert anna not in page.locator("main").inner_text()
    desk.submit(patrons[3].card)
    desk.submit(patrons[4].card)  # the next patron, scanned on the first one's page
    text = page.locator("main").inner_text()
    assert ben in text and anna not in text
    page.get_by_role("button", name="Switch to desk pickup").click()
    assert service.patron(patrons[4].card).preference.value == "desk"
    assert service.patron(patrons[3].card).preference.value == "shelf"


def test_a_printer_refusing_connections_is_loud(
    browser_page, server, app, patrons: list[Patron]
) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    start(desk, "Eastside Branch (EAST)")
    desk.scan(ITEMS[5])
    page.keyboard.press("Enter")
    desk.submit(patrons[5].card)
    status = page.locator("#slip-status")
    # No reload: the page follows the slip and shows the printer's answer.
    page.wait_for_function(
        "document.getElementById('slip-status').textContent.includes('not printed yet')",
        timeout=8000,
    )
    assert "refused" in status.inner_text()
    page.wait_for_selector("#printer-banner .banner", timeout=5000)
    assert "Slips are not printing at this desk" in page.locator("#printer-banner").inner_text()
    desk.check("desk-04-printer-refusing")
    for path in ("/pickup", "/shelf", "/patron"):
        desk.go(path)
        assert "Slips are not printing" in page.locator("#printer-banner").inner_text(), path


def test_staff_reprint_change_the_date_and_cancel(
    browser_page, server, app, clock: Clock, patrons: list[Patron]
) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    start(desk)
    desk.scan(ITEMS[6])
    page.keyboard.press("Enter")
    desk.submit(patrons[6].card)
    code = page.locator("#result-title .code").inner_text()
    with page.expect_navigation():
        page.get_by_role("button", name=f"Reprint the slip of {code}").click()
    assert "is printing again" in page.locator(".messages").inner_text()

    desk.go("/shelf")
    with page.expect_navigation():
        page.get_by_role("button", name=f"Reprint the slip of {code}").click()
    assert "is printing again" in page.locator(".messages").inner_text()
    with page.expect_navigation():
        page.get_by_role("link", name=code).click()
    desk.check("desk-05-hold")
    later = clock.now.date() + dt.timedelta(days=20)
    page.get_by_label("New pickup-by date").fill(later.isoformat())
    with page.expect_navigation():
        page.get_by_role("button", name="Change the date and reprint").click()
    assert "its new slip is printing" in page.locator(".messages").inner_text()
    assert app.extensions["holdshelf"].service.find(code).pickup_by == later

    with page.expect_navigation():
        page.get_by_role("link", name=f"Cancel hold {code}").click()
    desk.check("desk-06-cancel-confirmation")
    assert app.extensions["holdshelf"].service.shelf("MAIN") != []
    with page.expect_navigation():
        page.get_by_role("button", name=f"Yes, cancel {code}").click()
    assert "is cancelled" in page.locator(".messages").inner_text()
    assert app.extensions["holdshelf"].service.shelf("MAIN") == []
    kinds = [
        job.kind for job in app.extensions["holdshelf"].worker.prints.jobs(include_finished=True)
    ]
    assert kinds == ["slip", "reprint", "reprint", "reprint"]
    desk.go("/clear/list")
    desk.check("desk-07-pull-list")
