"""The one-scan check-in in a real browser, with a SIP2 ILS (see tests/test_browser.py for the
set-up): the clerk scans only the item, the pysip2-built ILS process (tests/peers/sip2_ils.py)
says whose hold it fills, and the slip reaches a fake network printer (a TM-T88V on MAIN).

The ILS sends the patron's card, name, email and phone, the title and a previous borrower;
only the card may be used, and none of it may reach a page or the slip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_browser, test_printing
from tests.helpers.fake_printer import FakePrinter
from tests.peers import sip2_ils as sip
from tests.test_browser import Desk
from tests.test_browser_desk import start
from tests.test_delivery_faults import slips, wait_until
from tests.test_ils_sip2 import Peer, _start_peer
from tests.test_notices import configure
from tests.test_printing import add_printer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# The same browser, server and worker, and the same fake TM-T88V as tests/test_printing.py.
server, browser_page, printer = (
    test_browser.server,
    test_browser.browser_page,
    test_printing.printer,
)


class Ils:
    """The SIP2 ILS process, which a test may stop (as an ILS going down)."""

    def __init__(self, folder: Path) -> None:
        self._running = _start_peer(folder)
        self.peer: Peer = next(self._running)

    def stop(self) -> None:
        self._running.close()  # terminates the process: connections are refused from now on


@pytest.fixture
def ils(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ils]:
    process = Ils(tmp_path_factory.mktemp("sip2-browser"))
    yield process
    process.stop()


@pytest.fixture
def instance_dir(instance_dir: Path, ils: Ils, printer: FakePrinter) -> Path:
    """MAIN is the ILS's MAIN, EAST its WEST, each with its own SIP account, all in the TOML."""
    add_printer(
        instance_dir,
        "MAIN",
        f'type = "network"\nhost = "127.0.0.1"\nport = {printer.port}\nprofile = "TM-T88V"\n'
        "connect_timeout = 1\nsend_timeout = 2",
    )
    configure(
        instance_dir,
        f'[ils]\nkind = "sip2"\nhost = "127.0.0.1"\nport = {ils.peer.port}\n'
        'institution = "MAIN"\ntimeout = 2\n',
    )
    config = instance_dir / "holdshelf.toml"
    config.write_text(
        config.read_text()
        .replace(
            "[branches.MAIN]\n",
            '[branches.MAIN]\nils_login = "hs-main"\nils_password = "main-secret"\n',
        )
        .replace(
            "[branches.EAST]\n",
            '[branches.EAST]\nils_location = "WEST"\nils_login = "hs-west"\n'
            'ils_password = "west-secret"\n',
        )
    )
    return instance_dir


def assert_nothing_the_ils_sent(text: str | bytes) -> None:
    """Fail if the patron's card, name or contacts, the title or the previous borrower, as the
    ILS sent them, occur in ``text``."""
    haystack = text if isinstance(text, bytes) else text.encode("utf-8")
    for secret in sip.SECRETS:
        assert secret.encode("utf-8") not in haystack, "what the ILS sent reached the output"


def wait_for_printed(desk: Desk) -> None:
    """The page follows its slip without a reload until the printer said it printed."""
    desk.page.wait_for_function(
        "document.getElementById('slip-status').textContent.trim() === 'printed'",
        timeout=10000,
    )
    assert desk.page.locator("#slip-status").get_attribute("class") == "slip-printed"


def test_one_scan_check_in_over_sip2(browser_page, server, app, printer: FakePrinter, ils) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    holdshelf = app.extensions["holdshelf"]
    service, prints = holdshelf.service, holdshelf.worker.prints
    start(desk)
    assert page.url.endswith("/checkin")
    assert "the ILS says whose hold it fills" in page.locator(".hint").inner_text()
    assert page.locator("#card").count() == 0, "with an ILS the item is all the clerk scans"
    desk.assert_focus("item", "the cursor waits in the item field")
    desk.check("sip2-01-check-in")

    # 1. An item the ILS has a hold waiting for here: ready, with the ILS's pickup-by date.
    desk.submit("HOLD-MAIN-CM")
    code = page.locator("#result-title .code").inner_text()
    assert page.locator("#result-title").text_content() == f"Ready: {code}"
    (entry,) = service.shelf("MAIN")
    assert entry.code.display == code
    assert "Sat 05 Dec 2026" in page.locator(".result").inner_text()  # the ILS's CM
    assert page.locator("#ils-message").inner_text() == "The ILS says: Hold waiting"
    assert len(service.patron(sip.CARD).holds) == 1  # the card the ILS named
    wait_until(lambda: printer.printed(code) == 1, timeout=10)
    wait_for_printed(desk)
    (slip,) = slips(printer, code)
    assert code in slip.lines and slip.qr_payloads == [code]
    assert "PICK UP BY" in slip.lines and "SAT 5 DEC 2026" in slip.lines
    assert "Central Library" in slip.lines
    for data in [*printer.slips, *printer.connections]:  # the slip as it went over the wire
        assert_nothing_the_ils_sent(data)
    desk.assert_focus("item", "the cursor is back for the next item")
    desk.check("sip2-02-ready")
    assert_nothing_the_ils_sent(page.content())

    # 2. An item for a hold picked up at another library: where it goes, and no slip.
    desk.submit("HOLD-WEST")
    transit = page.locator("#ils-transit")
    assert transit.inner_text() == "In transit: no slip here. Send this item to Eastside Branch."
    assert transit.locator("strong").inner_text() == "Eastside Branch"
    assert page.locator("#result-title").count() == 0
    assert page.locator("#card").count() == 0
    desk.check("sip2-03-transit")
    assert_nothing_the_ils_sent(page.content())

    # 3. An item that fills no hold: back to the shelf.
    desk.submit("PLAIN")
    no_hold = page.locator("#ils-no-hold")
    assert no_hold.inner_text() == "No hold for this item: it goes back to the shelf."
    assert page.locator("#ils-transit").count() == 0
    assert page.locator("#result-title").count() == 0
    desk.check("sip2-04-no-hold")
    assert_nothing_the_ils_sent(page.content())
    assert [e.code.display for e in service.shelf()] == [code]
    assert len(prints.jobs(include_finished=True)) == 1, "neither scan queued a slip"
    assert printer.printed(code) == 1 and len(printer.slips) == 1

    # 4. The ILS goes down: the card field appears, and the card makes the hold ready.
    ils.stop()
    desk.submit("HOLD-MAIN")
    down = page.locator("#ils-down").inner_text()
    assert down.endswith(": scan the patron's card instead.")
    assert "could not be reached" in down
    desk.assert_focus("card", "the cursor waits for the patron's card")
    assert page.locator("#item").input_value() == "HOLD-MAIN"  # the item is kept
    assert "only because the ILS cannot be reached" in page.locator("label[for=card]").inner_text()
    desk.check("sip2-05-ils-down")
    assert_nothing_the_ils_sent(page.content())
    desk.submit(sip.CARD)  # the patron's card, scanned by the clerk
    second = page.locator("#result-title .code").inner_text()
    assert page.locator("#result-title").text_content() == f"Ready: {second}"
    assert second != code
    assert page.locator("#ils-down").count() == 0 and page.locator("#card").count() == 0
    assert len(service.patron(sip.CARD).holds) == 2
    wait_until(lambda: printer.printed(second) == 1, timeout=10)
    wait_for_printed(desk)
    desk.check("sip2-06-ready-with-the-card")
    assert_nothing_the_ils_sent(page.content())
    for data in [*printer.slips, *printer.connections]:
        assert_nothing_the_ils_sent(data)
    assert all(url.startswith(server) for url in page.requests), "only our own origin"
    assert len(desk.checked) == 6
