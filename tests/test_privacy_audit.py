"""For the privacy officer: `holdshelf privacy-audit`, its admin page, and "what can we
disclose?" lookups. The inventory is checked against the raw tables (counted with SQL here),
a record kept past its retention (injected) is a failure, and neither the audit nor a
disclosure lets a card, name, contact or title out, into the page, the logs or the database.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from holdshelf.bootstrap import Holdshelf
from holdshelf.privacy_audit import DISCLOSURE_ACTION, ENDED_HOLDS_UNLINKED
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.storage.models import (
    ApiToken,
    AuditEntry,
    Hold,
    IdempotencyRecord,
    Notice,
    PatronPreference,
    PrintJob,
    ShelfCodeClaim,
)
from tests.conftest import Patron, assert_no_patron_data, raw_database_bytes
from tests.helpers.web import ADMIN, post, sign_in

TITLE = "A Confederacy of Dunces"


def configure(instance: Path, toml: str, retention_days: int = 0) -> None:
    """Top-level tables before the branch tables, and the link retention wanted."""
    config = instance / "holdshelf.toml"
    body = config.read_text().replace(
        "ended_hold_days = 0", f"ended_hold_days = {retention_days}", 1
    )
    head, sep, tail = body.partition("\n[branches.")
    config.write_text(head + "\n" + toml + "\n" + sep + tail)


# A mail server nobody listens on: notices wait, their contacts sealed. Titles on slips.
SETUP = '[mail]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\nsender = "h@example.org"\n'
SETUP += "[slips]\nshow_title = true\n"


@pytest.fixture
def instance_dir(instance_dir: Path) -> Path:
    configure(instance_dir, SETUP, retention_days=3)
    return instance_dir


def some_holds(root: Holdshelf, patrons: list[Patron]) -> None:
    """Holds with notices and titles, one patron's standing choice, two ended holds kept
    linked (retention 3 days), a desk audit entry."""
    service = root.service
    for n, patron in enumerate(patrons[:6]):
        service.ready("MAIN", f"I{n}", patron.card, title=TITLE, email=patron.email)
    service.opt_out(patrons[7].card)
    service.pickup(item="I0")
    service.cancel(item="I1")
    root.accounts.audit_command_line("test entry")


def raw_counts(root: Holdshelf) -> dict[str, int]:
    """The same inventory, counted straight from the tables."""
    queries = {
        "active_hold_links": "SELECT count(*) FROM holds WHERE status = 'ready' "
        "AND patron IS NOT NULL",
        "ended_hold_links": "SELECT count(*) FROM holds WHERE status <> 'ready' "
        "AND patron IS NOT NULL",
        "sealed_notice_contacts": "SELECT count(*) FROM notices WHERE sealed IS NOT NULL",
        "sealed_on_scan": "SELECT count(*) FROM holds WHERE on_scan IS NOT NULL",
        "pickup_preferences": "SELECT count(*) FROM patron_preferences",
        "desk_patron_focus": "SELECT count(*) FROM web_sessions WHERE patron IS NOT NULL",
        "desk_audit_entries": "SELECT count(*) FROM audit_log",
        "api_request_fingerprints": "SELECT count(*) FROM idempotency_keys",
    }
    with root.engine.connect() as connection:
        counts = {key: connection.execute(text(sql)).scalar_one() for key, sql in queries.items()}
        payloads = connection.execute(text("SELECT payload FROM print_jobs")).scalars()
        counts["titles_in_print_jobs"] = sum(1 for p in payloads if json.loads(p).get("title"))
    return counts


def test_the_audit_counts_match_the_raw_database(root: Holdshelf, patrons) -> None:
    some_holds(root, patrons)
    report = root.privacy.report()
    counted = {kind.key: kind.count for kind in report.records}
    assert counted == raw_counts(root)
    # Each kind of record is there, so a wrong count would show.
    assert counted["active_hold_links"] == 4
    assert counted["ended_hold_links"] == 2
    assert counted["sealed_notice_contacts"] == 4  # the ended holds' contacts were erased
    assert counted["pickup_preferences"] == 1
    assert counted["titles_in_print_jobs"] == 6
    assert counted["desk_audit_entries"] == 1
    with root.engine.connect() as connection:
        oldest = connection.execute(
            select(Hold.ready_at).where(Hold.status == "ready").order_by(Hold.ready_at).limit(1)
        ).scalar_one()
    kinds = {kind.key: kind for kind in report.records}
    assert kinds["active_hold_links"].oldest == oldest
    assert report.failures == []
    assert "3 days" in kinds["ended_hold_links"].rule
    as_json = json.dumps(report.as_dict())
    assert_no_patron_data(as_json, patrons)
    assert TITLE not in as_json


def inject_old_link(url: str, days: int) -> None:
    """An ended hold still linked to a patron `days` after it ended: what a broken purge
    would leave behind."""
    engine = database.make_engine(url)
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with Session(engine) as session, session.begin():
        session.add(ShelfCodeClaim(branch="MAIN", code="OLD1", released_at=ended))
        session.flush()
        session.add(
            Hold(
                branch="MAIN",
                code="OLD1",
                item_barcode="I-OLD",
                patron="ab" * 16,
                mode="shelf",
                status="picked_up",
                pickup_by=ended.date(),
                ready_at=ended - dt.timedelta(days=2),
                ended_at=ended,
            )
        )
    engine.dispose()


def test_a_link_kept_past_retention_fails_the_audit_until_purged(cli, database_url) -> None:
    clean = cli.ok("privacy-audit")
    assert "Nothing is kept past its retention." in clean.out
    assert "Last purge: never recorded" in clean.out
    inject_old_link(database_url, days=2)  # retention 0: due at once, and two days late
    failing = cli("privacy-audit")
    assert failing.code == 1
    assert "[FAIL] Ended holds still linked to a patron pseudonym: 1" in failing.out
    assert "FAILURE: 1 ended holds still linked" in failing.out
    as_json = cli("privacy-audit", "--json")
    assert as_json.code == 1
    assert as_json.json["failures"] == [
        "1 ended holds still linked to a patron pseudonym kept past their retention"
    ]
    cli.ok("purge")
    after = cli.ok("privacy-audit", "--json").json
    assert after["failures"] == []
    assert after["last_purge"] is not None


def test_an_audit_entry_past_audit_days_is_a_failure(root: Holdshelf) -> None:
    with root.sessions.begin() as session:
        old = root.clock() - dt.timedelta(days=root.settings.audit_days + 1)
        session.add(AuditEntry(at=old, staff="ada", branch="MAIN", action="looked up a patron"))
    kinds = {kind.key: kind for kind in root.privacy.report().records}
    assert kinds["desk_audit_entries"].past_retention == 1
    assert kinds["desk_audit_entries"].oldest == old


def admin_client(app):
    client = app.test_client()
    assert sign_in(client, ADMIN).status_code == 302
    assert post(client, "/branch", {"branch": "MAIN"}).status_code == 302
    return client


def test_the_privacy_page_is_for_administrators_only(app, client) -> None:
    assert client.get("/admin/privacy").status_code == 403  # a signed-in clerk
    assert client.post("/admin/privacy/disclose", data={"card": "x"}).status_code in (400, 403)
    anonymous = app.test_client()
    response = anonymous.get("/admin/privacy")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = admin_client(app).get("/admin/privacy")
    assert page.status_code == 200
    assert "Privacy audit" in page.get_data(as_text=True)


def test_the_privacy_page_prints_the_inventory_and_leaks_nothing(app, root, patrons) -> None:
    some_holds(root, patrons)
    response = admin_client(app).get("/admin/privacy")
    page = response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "Nothing is kept past its retention." in page
    assert "Ended holds still linked to a patron pseudonym" in page
    assert "retention.audit_days" in page
    assert "http://" not in page and "https://" not in page  # nothing from another origin
    assert_no_patron_data(page, patrons)
    assert TITLE not in page
    css = app.test_client().get("/static/style.css").get_data(as_text=True)
    assert ".privacy-audit .scroll table" in css.rpartition("@media print")[2]


def audit_actions(root: Holdshelf) -> list[tuple[str, str]]:
    with root.engine.connect() as connection:
        rows = connection.execute(select(AuditEntry.staff, AuditEntry.action)).all()
    return [tuple(row) for row in rows]


def test_a_disclosure_at_the_page_is_audited_and_keeps_no_card(app, root, patrons, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    service = root.service
    patron = patrons[0]
    first = service.ready("MAIN", "I1", patron.card, title=TITLE, email=patron.email)
    second = service.ready("EAST", "I2", patron.card)
    service.ready("MAIN", "I3", patrons[1].card)  # another patron's hold is not shown
    service.ready("MAIN", "I4", patron.card)
    service.pickup(item="I4")  # ended, and kept linked for 3 days here
    client = admin_client(app)
    before = audit_actions(root)
    response = post(client, "/admin/privacy/disclose", {"card": patron.card}, "/admin/privacy")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert first.code.display in page and second.code.display in page
    assert "Notices waiting with a sealed contact</dt><dd>1" in page
    assert "pseudonym for 3 days" in page
    assert "1 such ended holds are linked to this patron now" in page
    assert audit_actions(root) == [*before, ("ada", DISCLOSURE_ACTION)]
    assert_no_patron_data(page, patrons)
    assert TITLE not in page
    log_text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert_no_patron_data(log_text, patrons)
    assert patron.card.encode() not in raw_database_bytes(service)


def test_a_disclosure_of_a_bad_card_is_a_friendly_page_and_not_audited(app, root) -> None:
    client = admin_client(app)
    before = audit_actions(root)
    response = post(client, "/admin/privacy/disclose", {"card": "   "}, "/admin/privacy")
    assert response.status_code == 422
    assert 'role="alert"' in response.get_data(as_text=True)
    assert audit_actions(root) == before


def test_disclosure_at_the_command_line_reads_stdin_and_is_audited(cli, patrons, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    patron = patrons[0]
    made = cli.ok(
        "ready", "--branch", "MAIN", "--item", "I1", "--patron", "-", "--json", stdin=patron.card
    ).json
    found = cli.ok("privacy-audit", "--disclose", "-", stdin=patron.card + "\n")
    assert made["code"] in found.out
    assert ENDED_HOLDS_UNLINKED in found.out
    as_json = cli.ok("privacy-audit", "--disclose", "-", "--json", stdin=patron.card).json
    assert [hold["code"] for hold in as_json["holds"]] == [made["code"]]
    assert as_json["statement"] == ENDED_HOLDS_UNLINKED
    # Never on the command line, where `ps` shows it: refused without echoing it.
    refused = cli.fails("privacy-audit", "--disclose", patron.card, message="standard input")
    assert patron.card not in refused.err
    cli.fails("privacy-audit", "--disclose", "-", stdin="\n", message="no card number")
    root = Holdshelf(load_settings(cli.instance, environ={}))
    try:
        entries = audit_actions(root)
        assert len(entries) == 2
        assert all(
            staff.startswith("command line") and action == DISCLOSURE_ACTION
            for staff, action in entries
        )
        assert patron.card.encode() not in raw_database_bytes(root.service)
    finally:
        root.close()
    assert_no_patron_data("\n".join(r.getMessage() for r in caplog.records), patrons)
    assert_no_patron_data("".join(cli.outputs), patrons)


def injected(root: Holdshelf, kind: str) -> None:
    """One record of ``kind`` kept past its rule, as a bug (or a stopped purge) would leave."""
    now = root.clock()
    long_ago = now - dt.timedelta(days=2)
    with root.sessions.begin() as session:
        if kind == "sealed_notice_contacts":  # a contact whose hold is no longer waiting
            session.add(
                Notice(
                    branch="MAIN",
                    code="GONE",
                    channel="email",
                    sealed="gAAAA-sealed",
                    created_at=long_ago,
                    next_attempt_at=now,
                )
            )
        elif kind == "pickup_preferences":  # a choice equal to the default is kept for no one
            session.add(PatronPreference(patron="cd" * 16, mode="shelf"))
        elif kind == "titles_in_print_jobs":  # printed two days ago, title still there
            payload = json.dumps({"code": "X", "title": "A title"})
            session.add(
                PrintJob(
                    branch="MAIN",
                    code="X",
                    kind="slip",
                    payload=payload,
                    status="sent",
                    created_at=long_ago,
                    next_attempt_at=long_ago,
                    finished_at=long_ago,
                )
            )
        elif kind == "api_request_fingerprints":
            token = ApiToken(name="ils", token_hash="ef" * 32, created_at=long_ago)
            session.add(token)
            session.flush()
            session.add(
                IdempotencyRecord(
                    token_id=token.id, key="k", fingerprint="01" * 32, created_at=long_ago
                )
            )


@pytest.mark.parametrize(
    "kind",
    [
        "sealed_notice_contacts",
        "pickup_preferences",
        "titles_in_print_jobs",
        "api_request_fingerprints",
    ],
)
def test_each_kind_kept_past_its_rule_is_a_failure(root: Holdshelf, kind: str) -> None:
    assert root.privacy.report().failures == []
    injected(root, kind)
    report = root.privacy.report()
    failing = [k.key for k in report.records if k.failure]
    assert failing == [kind]
    assert {k.key: k.past_retention for k in report.records}[kind] == 1


def test_the_hourly_purge_records_when_it_ran(root: Holdshelf, clock) -> None:
    assert root.privacy.report().last_purge is None
    root.worker.housekeep_if_due()  # what serve and worker do every hour
    assert root.privacy.report().last_purge == clock()
