"""The desk in a real browser: Debian's chromium driven by Playwright, against the app served by
waitress on loopback, with the print worker running as `holdshelf serve` runs it.

Needs the `chromium` package (found on PATH, never downloaded) and axe-core from npm
(`npm ci`). Missing either skips these tests, unless HOLDSHELF_TEST_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from holdshelf.accounts import SignInRefused
from tests.conftest import Clock, assert_no_patron_data
from tests.helpers.web import ADMIN, STAFF

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
OUTPUT = Path(os.environ.get("HOLDSHELF_TEST_OUTPUT", ROOT / "test-output")) / "screenshots"
REQUIRE = os.environ.get("HOLDSHELF_TEST_REQUIRE_BROWSER") == "1"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",  # no calls home: the network is closed here
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _missing() -> str | None:
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    if not AXE.exists():
        return "axe-core is not installed (npm ci)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install '.[test]')"
    return None


@pytest.fixture
def server(app) -> Iterator[str]:
    """The app on waitress, on a free loopback port, with its print worker thread."""
    import waitress

    desk = app.extensions["holdshelf"]
    httpd = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    stop = threading.Event()

    def serve() -> None:
        try:
            httpd.run()
        except OSError:  # its sockets closed under its select() at teardown: the end, not a fault
            if not stop.is_set():
                raise

    threads = [
        threading.Thread(target=serve, daemon=True),
        threading.Thread(target=desk.worker.run_forever, args=(stop, 0.2), daemon=True),
    ]
    for thread in threads:
        thread.start()
    yield f"http://127.0.0.1:{httpd.effective_port}"
    stop.set()
    httpd.close()
    for thread in threads:
        thread.join(timeout=30)


@pytest.fixture
def browser_page(server: str):
    reason = _missing()
    if reason:
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=CHROMIUM_FLAGS
        )
        # axe is injected as a script: the app's CSP (rightly) forbids that, so only the test
        # context bypasses it.
        context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.requests = []  # type: ignore[attr-defined]
        page.on("request", lambda request: page.requests.append(request.url))
        yield page
        context.close()
        browser.close()


class Desk:
    """Steps a clerk takes, with an accessibility check and a screenshot of every page."""

    def __init__(self, page, base: str) -> None:
        self.page = page
        self.base = base
        self.checked: list[str] = []
        OUTPUT.mkdir(parents=True, exist_ok=True)

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def check(self, name: str) -> None:
        """axe-core finds no violation at all (of any impact); a screenshot for the record."""
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate("async () => await axe.run(document)")
        violations = [
            f"{v['id']} ({v['impact']}): {v['help']} ({len(v['nodes'])} nodes)"
            for v in result["violations"]
        ]
        assert violations == [], f"{name}: {violations}"
        self.page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)
        self.checked.append(name)

    def scan(self, text: str) -> None:
        """A barcode scanner: types into the focused field, then presses Enter."""
        self.wait_for_field()
        self.page.keyboard.type(text)
        self.page.keyboard.press("Enter")

    def wait_for_field(self) -> None:
        """A person waits for the page; a test must too, or it types before autofocus lands."""
        self.page.wait_for_function(
            "document.activeElement && document.activeElement.tagName === 'INPUT'",
            timeout=5000,
        )

    def assert_focus(self, element_id: str, why: str) -> None:
        """The cursor is in this field (waiting briefly: autofocus lands after the load)."""
        from playwright.sync_api import expect

        expect(self.page.locator(f"#{element_id}"), why).to_be_focused(timeout=3000)

    def sign_in(self, account: tuple[str, str]) -> None:
        self.go("/login")
        self.assert_focus("name", "the sign-in page waits for the account name")
        self.page.keyboard.type(account[0])
        self.page.keyboard.press("Tab")
        self.page.keyboard.type(account[1])
        with self.page.expect_navigation():
            self.page.keyboard.press("Enter")

    def submit(self, text: str) -> None:
        """A scan that sends the form: wait for the page it brings."""
        self.wait_for_field()
        self.page.keyboard.type(text)
        with self.page.expect_navigation():
            self.page.keyboard.press("Enter")


def test_a_morning_at_the_desk(browser_page, server, app, clock: Clock, patrons) -> None:
    page, desk = browser_page, Desk(browser_page, server)
    service = app.extensions["holdshelf"].service
    anna, ben, carla = patrons[0], patrons[1], patrons[2]
    service.opt_out(carla.card)  # Carla chose staff pickup some time ago

    desk.go("/login")
    desk.check("01-sign-in")
    desk.sign_in(ADMIN)
    assert "Which branch" in page.content()
    desk.check("02-branch")
    page.get_by_label("Central Library (MAIN)").check()
    page.get_by_role("button", name="Work at this branch").click()

    # Check in three holds with the keyboard alone: scan item, scan card, and again.
    codes: dict[str, str] = {}
    for n, patron in enumerate((anna, ben, carla)):
        desk.assert_focus("item", "the cursor waits in the item field")
        desk.scan(f"3901000000{n}")
        desk.assert_focus("card", "Enter moved the cursor to the card field")
        desk.submit(patron.card)
        codes[patron.card] = page.locator("#result-title .code").inner_text()
    result = page.locator(".result").inner_text()
    assert "Behind the desk" in result  # Carla's
    preview = page.locator("img.slip")
    page.wait_for_function("() => document.querySelector('img.slip').naturalWidth > 0")
    assert preview.get_attribute("alt").startswith(f"Slip for {codes[carla.card]}")
    for _ in range(50):  # the worker prints within a moment
        if "printed" in page.locator(".result").inner_text():
            break
        time.sleep(0.1)
        page.reload()
    assert "printed" in page.locator(".result").inner_text()
    desk.check("03-check-in")

    desk.scan("3901000000" + "0")  # the same item again: a plain-words error, focus kept
    desk.submit(ben.card)
    assert "already on the hold shelf" in page.locator(".problem").inner_text()
    desk.assert_focus("item", "after an error the cursor is back in the item field")
    desk.check("04-check-in-error")

    desk.go("/shelf")
    shelf = page.locator("main").inner_text()
    assert "2 on the open shelf, 1 behind the desk" in shelf
    desk.check("05-shelf")

    desk.go("/pickup")
    desk.submit(codes[anna.card])
    assert f"{codes[anna.card]} picked up" in page.locator(".messages").inner_text()
    desk.check("06-pickup")

    desk.go("/patron")
    desk.check("07-patron-scan")
    desk.submit(ben.card)
    assert codes[ben.card] in page.locator("main").inner_text()
    desk.check("08-patron")
    page.get_by_role("button", name="Switch to desk pickup").click()
    assert "Their holds to move from the open shelf to the desk: 1." in page.content()

    desk.go("/shelf")
    move = page.get_by_role("button", name=f"Moved {codes[ben.card]} to the desk")
    desk.check("09-move-to-desk-task")
    move.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "0 on the open shelf, 2 behind the desk" in page.locator("main").inner_text()

    desk.go("/numbers")
    desk.check("10-numbers")
    desk.go("/admin/printers")
    desk.check("11-printers")
    with pytest.raises(SignInRefused):  # a colleague mistypes a password at another desk
        app.extensions["holdshelf"].accounts.sign_in(STAFF[0], "not it", "192.0.2.9")
    desk.go("/admin/accounts")
    desk.check("11b-staff-accounts")
    with page.expect_navigation():
        page.get_by_role("button", name=f"Unlock {STAFF[0]}").click()
    assert f"{STAFF[0]} may sign in again" in page.locator("main").inner_text()
    desk.go("/admin/audit")
    assert "looked up a patron" in page.locator("main").inner_text()
    desk.check("12-audit")

    clock.advance(days=9)  # a week later: both remaining holds are overdue
    desk.sign_in(ADMIN)
    page.get_by_label("Central Library (MAIN)").check()
    page.get_by_role("button", name="Work at this branch").click()
    desk.go("/clear")
    assert "2 to pull" in page.content()
    desk.check("13-clear-shelf")
    page.get_by_label(codes[ben.card], exact=False).check()
    page.locator("#scan").fill(codes[carla.card])
    page.get_by_role("button", name="End the pulled holds as expired").click()
    assert "Nothing is past its pickup-by date" in page.content()
    desk.go("/no-such-page")
    desk.check("14-error")

    # The patrons' pages: find a hold by its code, the privacy notice, in both languages.
    desk.go("/find")
    desk.submit(codes[anna.card])  # picked up earlier: the same answer as an unknown code
    assert "could not find a hold" in page.locator("main").inner_text()
    desk.check("15-find")
    desk.go("/privacy?lang=es")
    assert "Aviso de privacidad" in page.content()
    desk.check("16-privacy-es")

    assert all(url.startswith(server) for url in page.requests), "only our own origin"
    assert len(desk.checked) == 17
    assert_no_patron_data(page.content(), patrons)
