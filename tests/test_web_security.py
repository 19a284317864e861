"""The security baseline, checked over every route of the app rather than a chosen few."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import func, select

from holdshelf.bootstrap import Holdshelf
from holdshelf.storage.models import (
    AuditEntry,
    DailyCount,
    Hold,
    PatronPreference,
    PrintJob,
    ShelfCodeClaim,
    StaffUser,
)
from tests.conftest import assert_no_patron_data
from tests.helpers.web import ADMIN, choose_pickup, csrf_token, look_up_patron, post, sign_in

EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z]+:)?//""", re.I)
PUBLIC = {
    "auth.login",
    "static",
    "public.find",
    "public.privacy",
    "public.link",
    "public.link_post",
    "ops.healthz",  # monitoring: a load balancer and a scraper ask without signing in
    "ops.metrics",  # (loopback, or the metrics token: tests/test_operations.py)
}
# Patrons' links carry a signed token in the URL instead of a CSRF token (no cookies there).
TOKEN_PROTECTED = {"public.link_post"}


def is_api(endpoint: str) -> bool:
    """The ILS's API and the print agents' authenticate with bearer tokens, not sessions: no
    cookies, no CSRF."""
    return endpoint.startswith(("api.", "agents."))


def routes(app, method: str) -> list[tuple[str, str]]:
    """(endpoint, path) of every route answering ``method``, with sample arguments."""
    found = []
    for rule in app.url_map.iter_rules():
        if method in rule.methods:
            path = (
                rule.rule.replace("<code>", "K7Q-4MX")
                .replace("<path:filename>", "style.css")
                .replace("<token>", "not-a-token")
            )
            found.append((rule.endpoint, path))
    return sorted(found)


def snapshot(app) -> tuple[int, ...]:
    service = app.extensions["holdshelf"].service
    with service.sessions() as session:
        counts = [
            session.scalar(select(func.count()).select_from(model))
            for model in (Hold, ShelfCodeClaim, PatronPreference, PrintJob, AuditEntry, StaffUser)
        ]
        total = session.scalar(select(func.coalesce(func.sum(DailyCount.count), 0)))
        statuses = tuple(session.scalars(select(PrintJob.status).order_by(PrintJob.id)))
        modes = tuple(session.scalars(select(Hold.mode).order_by(Hold.id)))
    return (*counts, total, statuses, modes)


@pytest.fixture
def admin(app):
    client = app.test_client()
    sign_in(client, ADMIN)
    post(client, "/branch", {"branch": "MAIN"})
    return client


@pytest.fixture
def busy(app, patrons):
    """Some holds, one on the move-to-desk list, so pages have something to show."""
    service = app.extensions["holdshelf"].service
    entries = [service.ready("MAIN", f"I{n}", p.card) for n, p in enumerate(patrons[:4])]
    service.opt_out(patrons[0].card)
    return entries


@pytest.fixture
def link_token(app, patrons) -> str:
    """A genuine link token, as a notice to patrons[0] would carry."""
    from holdshelf.notice_worker import opt_out_link

    service = app.extensions["holdshelf"].service
    link = opt_out_link(service.settings, service.pseudonym(patrons[0].card), service.today())
    return link.rsplit("/", 1)[1]


def test_the_app_has_the_routes_we_check(app) -> None:
    posts = {endpoint for endpoint, _ in routes(app, "POST")}
    assert posts >= {
        "auth.login",
        "auth.logout",
        "desk.checkin_post",
        "desk.pickup_post",
        "desk.patron_choice",
        "desk.clear_post",
        "admin.print_test",
        "admin.unlock",
    }
    assert len(routes(app, "GET")) >= 12


def test_every_post_rejects_a_missing_csrf_token(app, admin, busy) -> None:
    before = snapshot(app)
    for endpoint, path in routes(app, "POST"):
        if is_api(endpoint):  # a signed-in browser's cookie is worth nothing to the API
            refused = admin.post(path, json={"item_barcode": "X", "patron_card": "1"})
            assert refused.status_code == 401, endpoint
            assert refused.mimetype == "application/problem+json"
            continue
        if endpoint in TOKEN_PROTECTED:
            refused = admin.post(path.replace("<token>", "forged-token"), data={"choice": "desk"})
            assert refused.status_code == 400, endpoint
            assert "This link is not valid" in refused.get_data(as_text=True)
            continue
        response = admin.post(
            path,
            data={
                "code": busy[0].code.display,
                "item": "X",
                "card": "123",
                "choice": "desk",
                "printer": "preview",
            },
        )
        assert response.status_code == 400, endpoint
        assert "This form has expired" in response.get_data(as_text=True), endpoint
    assert snapshot(app) == before
    stale = admin.post("/checkin", data={"item": "X", "card": "1", "csrf_token": "forged"})
    assert stale.status_code == 400


def test_no_get_changes_state(app, admin, busy, link_token) -> None:
    code = busy[1].code.display
    api_token = app.extensions["holdshelf"].integrations.create_token("reader", [])
    before = snapshot(app)
    for endpoint, path in routes(app, "GET"):
        headers = {"Authorization": f"Bearer {api_token}"} if is_api(endpoint) else {}
        path = path.replace("K7Q-4MX", code).replace("not-a-token", link_token)
        response = admin.get(path, headers=headers)
        # /healthz says 503 here: no worker runs in this test
        unhealthy = (503,) if endpoint == "ops.healthz" else ()
        assert response.status_code in (200, 302, 404, *unhealthy), endpoint
    assert snapshot(app) == before


def test_every_staff_page_redirects_anonymous_visitors(app) -> None:
    anonymous = app.test_client()
    for endpoint, path in routes(app, "GET"):
        if endpoint in PUBLIC or endpoint == "api.openapi":
            continue
        response = anonymous.get(path)
        if is_api(endpoint):
            assert response.status_code == 401, endpoint
            continue
        assert response.status_code == 302, endpoint
        assert response.headers["Location"].startswith("/login"), endpoint
    token = csrf_token(anonymous)  # even with a valid token, a POST needs a sign-in
    for endpoint, path in routes(app, "POST"):
        if endpoint in PUBLIC | {"auth.logout"}:
            continue
        response = anonymous.post(path, data={"csrf_token": token})
        assert response.status_code == (401 if is_api(endpoint) else 302), endpoint


def test_security_headers_on_every_response(app, admin, busy) -> None:
    for endpoint, path in routes(app, "GET"):
        response = admin.get(path.replace("K7Q-4MX", busy[1].code.display))
        headers = response.headers
        assert "default-src 'self'" in headers["Content-Security-Policy"], endpoint
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], endpoint
        assert headers["X-Content-Type-Options"] == "nosniff", endpoint
        # Staff forms need a same-site Referer over HTTPS (CSRF); patrons' pages send none.
        public = endpoint.startswith("public.")
        policy = "no-referrer" if public else "same-origin"
        assert headers["Referrer-Policy"] == policy, endpoint
        if response.status_code == 200 and response.mimetype == "text/html":  # the page agrees
            assert f'<meta name="referrer" content="{policy}">' in response.text, endpoint
        if endpoint != "static":
            assert headers["Cache-Control"] == "no-store", endpoint


def test_cookies_are_httponly_lax_and_secure_in_production(app, service, clock) -> None:
    from holdshelf.settings import load_settings
    from holdshelf.web import create_app

    cookie = app.test_client().get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # the demo instance is development: plain http on localhost
    production = load_settings(
        service.settings.instance_dir, environ={"HOLDSHELF_ENVIRONMENT": "production"}
    )
    secure_app = create_app(Holdshelf(production, clock=clock, engine=service.engine))
    cookie = secure_app.test_client().get("/login").headers["Set-Cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_nothing_is_loaded_from_another_origin(app, admin, busy) -> None:
    pages = [
        admin.get(path.replace("K7Q-4MX", busy[1].code.display)).get_data(as_text=True)
        for endpoint, path in routes(app, "GET")
        if endpoint != "desk.slip_preview"
    ]
    pages += [app.test_client().get("/login").get_data(as_text=True)]
    for page in pages:
        assert not EXTERNAL.search(page)
        assert "@import" not in page and "url(" not in page
    for asset in ("style.css", "desk.js"):
        text = admin.get(f"/static/{asset}").get_data(as_text=True)
        assert "http" not in text and "//" not in text.replace("// ", "")


def test_friendly_error_pages(app, admin, monkeypatch) -> None:
    missing = admin.get("/no/such/page")
    assert missing.status_code == 404
    assert "There is no such page" in missing.get_data(as_text=True)
    assert admin.put("/checkin").status_code == 405
    huge = admin.post("/checkin", data={"item": "x" * 100_000, "csrf_token": "t"})
    assert huge.status_code == 413
    assert "more data than a form may send" in huge.get_data(as_text=True)
    service = app.extensions["holdshelf"].service
    monkeypatch.setattr(service, "shelf_page", lambda *_, **__: 1 / 0)
    broken = admin.get("/shelf")
    assert broken.status_code == 500
    body = broken.get_data(as_text=True)
    assert "Something went wrong on our side" in body
    assert "Traceback" not in body and "ZeroDivisionError" not in body


def test_card_numbers_in_no_response_and_no_log_record(app, admin, patrons, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = []
    for n, patron in enumerate(patrons[:6]):
        for response in (
            post(admin, "/checkin", {"item": f"I{n}", "card": patron.card}),
            post(admin, "/checkin", {"item": f"I{n}", "card": patron.card}),  # a conflict
            post(admin, "/patron", {"card": patron.card}),
            choose_pickup(admin, *look_up_patron(admin, patron.card), "desk"),
            post(admin, "/patron", {"card": patron.card + "\x00"}),  # refused input
        ):
            bodies.append(response.get_data(as_text=True))
    for endpoint, path in routes(app, "GET"):
        if endpoint != "desk.slip_preview":
            bodies.append(admin.get(path).get_data(as_text=True))
    assert_no_patron_data("\n".join(bodies), patrons)
    records = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert_no_patron_data(records, patrons)
