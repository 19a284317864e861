"""Pages checked one by one in the browser, on a desk screen and on a phone: axe-core finds no
violation at all, and nothing scrolls sideways (see tests/test_browser.py for the set-up)."""

from __future__ import annotations

import pytest

from tests import test_browser
from tests.conftest import Clock, Patron, assert_no_patron_data
from tests.helpers.web import ADMIN
from tests.test_browser import Desk

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
server, browser_page = test_browser.server, test_browser.browser_page  # the same fixtures

WIDTHS = {"desk": (1280, 900), "phone": (375, 812)}


def make_history(service, clock: Clock, patrons: list[Patron]) -> None:
    """Twelve days of a branch's work, ending this morning with holds still on the shelf."""
    clock.advance(days=-12)
    item = 0
    for day in range(13):
        entries = []
        for _ in range(day % 4 + 1):
            item += 1
            entries.append(service.ready("MAIN", f"3901{item:06d}", patrons[item % 40].card))
        if day < 12:
            service.pickup(entries[0].code.display)
            if len(entries) > 2:
                service.cancel(entries[1].code.display)
        clock.advance(days=1)
    clock.advance(days=-1)
    service.ready("EAST", "3902000001", patrons[0].card)
    service.opt_out(patrons[item % 40].card)  # a move-to-desk task on the shelf page


def no_violations(desk: Desk, name: str) -> None:
    """Desk.check (serious and critical ones, and a screenshot), then none of any impact."""
    desk.check(name)
    result = desk.page.evaluate("async () => await axe.run(document)")
    assert [v["id"] for v in result["violations"]] == [], name


def sideways_scroll(desk: Desk) -> int:
    """How many pixels the page scrolls sideways (0: none)."""
    return desk.page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def test_shelf_and_numbers_on_a_desk_and_a_phone(
    browser_page, server, app, clock: Clock, patrons
) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    make_history(app.extensions["holdshelf"].service, clock, patrons)
    desk.sign_in(ADMIN)
    desk.assert_focus("branch-MAIN", "the branch page starts on the first branch")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # the first branch, chosen without the mouse

    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        for path in ("/shelf", "/numbers"):
            desk.go(path)
            name = f"pages-{path.strip('/')}-{width_name}"
            no_violations(desk, name)
            assert sideways_scroll(desk) == 0, f"{name} scrolls sideways"
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    charts = page.locator("svg.bars[role=img]")
    assert charts.count() == 8  # four per branch
    assert (
        "Ready per day at Central Library (MAIN)"
        in charts.first.locator("title").first.text_content()
    )
    assert page.locator("svg.meter[role=img]").count() == 2
    assert all(url.startswith(server) for url in page.requests), "only our own origin"
    assert_no_patron_data(page.content(), patrons)


# The inventory's scrolling box shows the whole table (its last column is not cut off).
FITS_ITS_BOX = "(() => { const box = document.querySelector('table.inventory').parentElement; \
return box.scrollWidth <= box.clientWidth; })()"


def test_the_privacy_audit_on_a_desk_a_phone_and_paper(
    browser_page, server, app, clock: Clock, patrons
) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    make_history(app.extensions["holdshelf"].service, clock, patrons)
    desk.sign_in(ADMIN)
    desk.assert_focus("branch-MAIN", "Enter below chooses the first branch once focus is there")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        desk.go("/admin/privacy")
        name = f"pages-privacy-{width_name}"
        no_violations(desk, name)
        assert sideways_scroll(desk) == 0, f"{name} scrolls sideways"
    page.set_viewport_size({"width": WIDTHS["desk"][0], "height": WIDTHS["desk"][1]})
    assert page.evaluate(FITS_ITS_BOX), "on a desk the inventory shows every column"
    page.get_by_label("Card number").fill(patrons[0].card)
    with page.expect_navigation():
        page.get_by_role("button", name="Look up").click()
    assert "Holds that have ended cannot be linked to anyone" in page.locator("main").inner_text()
    no_violations(desk, "pages-privacy-disclosure")
    page.emulate_media(media="print")  # on paper: no menus, no form, the inventory whole
    assert not page.locator("header.top").is_visible()
    assert not page.locator("form.scan").is_visible()
    assert page.locator("table.inventory").is_visible()
    assert page.evaluate(FITS_ITS_BOX), "on paper the inventory shows every column"
    page.screenshot(path=str(test_browser.OUTPUT / "pages-privacy-print.png"), full_page=True)
    page.emulate_media(media="screen")
    assert all(url.startswith(server) for url in page.requests), "only our own origin"
    assert_no_patron_data(page.content(), patrons)
