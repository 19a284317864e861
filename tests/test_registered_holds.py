"""Holds an ILS pushes ahead of the item (POST /api/v1/holds with "print": "on-scan"): nothing
prints and no notice goes until the clerk scans the item, which needs no card; one not
scanned in time shows on the desk as waiting for its slip."""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from holdshelf.bootstrap import Holdshelf
from holdshelf.errors import ConfigError
from holdshelf.settings import Settings, load_settings
from holdshelf.storage.models import Hold, Notice, PrintJob
from tests.conftest import Clock, assert_no_patron_data, raw_database_bytes
from tests.helpers.servers import Mailbox
from tests.helpers.web import post
from tests.peers import koha_api as k
from tests.peers.koha_api import KohaApi
from tests.test_checkin_ils import koha_environment
from tests.test_notices import configure

ITEM = "39010001234567"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def instance_dir(instance_dir: Path, mailbox: Mailbox) -> Path:
    configure(
        instance_dir,
        f'[mail]\nhost = "127.0.0.1"\nport = {mailbox.port}\nsecurity = "none"\n'
        'sender = "Central Library <holds@library.example.org>"\n',
    )
    return instance_dir


@pytest.fixture
def settings(instance_dir: Path) -> Settings:
    return load_settings(instance_dir, environ={"HOLDSHELF_SLIPS__SHOW_TITLE": "true"})


@pytest.fixture
def api(app):
    token = app.extensions["holdshelf"].integrations.create_token("ils", [])
    client = app.test_client()

    def push(body: dict, **headers: str):
        return client.post(
            "/api/v1/holds", json=body, headers={"Authorization": f"Bearer {token}", **headers}
        )

    return push


def registration(patron, item: str = ITEM, branch: str = "MAIN", **extra) -> dict:
    return {
        "item_barcode": item,
        "patron_card": patron.card,
        "branch": branch,
        "email": patron.email,
        "title": "The Remains of the Day",
        "print": "on-scan",
        **extra,
    }


def outbox(root: Holdshelf) -> tuple[list[PrintJob], list[Notice]]:
    with root.sessions() as session:
        return list(session.scalars(select(PrintJob))), list(session.scalars(select(Notice)))


def scan(client, item: str = ITEM, **fields: str):
    return post(client, "/checkin", {"item": item, "card": "", **fields})


# -- the API ------------------------------------------------------------------------------------


def test_a_registered_hold_waits_for_its_scan_without_slip_or_notice(api, root, patrons):
    created = api(registration(patrons[0]))
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["awaiting_scan"] is True
    assert body["print_status"] == "waiting for the item's scan at the desk"
    assert outbox(root) == ([], [])
    # the contact and the title wait sealed with the hold, never in clear
    assert_no_patron_data(raw_database_bytes(root.service), patrons)
    assert b"Remains of the Day" not in raw_database_bytes(root.service)
    again = api(registration(patrons[0]))  # the ILS pushes again: the same hold
    assert again.status_code == 200 and again.get_json()["code"] == body["code"]
    listed = root.service.shelf("MAIN")
    assert [(e.code.display, e.awaits_scan) for e in listed] == [(body["code"], True)]


def test_print_now_is_the_default_and_a_bad_choice_is_a_problem(api, root, patrons):
    made = api(registration(patrons[0], print="now"))
    assert made.status_code == 201 and made.get_json()["awaiting_scan"] is False
    jobs, notices = outbox(root)
    assert len(jobs) == 1 and len(notices) == 1
    wrong = api(registration(patrons[1], item="I2", print="later"))
    assert wrong.status_code == 400 and wrong.mimetype == "application/problem+json"
    assert "print" in wrong.get_json()["detail"]


# -- the scan -----------------------------------------------------------------------------------


def test_the_scan_alone_prints_the_slip_and_sends_the_notice(
    api, app, client, root, patrons, mailbox, caplog
):
    caplog.set_level(logging.DEBUG)
    code = api(registration(patrons[0])).get_json()["code"]
    page = client.get("/checkin").get_data(as_text=True)
    assert "needs no card" in page  # the card field is optional while holds are registered
    assert "required" not in page.split('id="card"')[1].split(">")[0]
    scanned = scan(client)
    assert scanned.status_code == 302 and scanned.headers["Location"].endswith(f"code={code}")
    jobs, notices = outbox(root)
    assert [(j.kind, j.code) for j in jobs] == [("slip", code.replace("-", ""))]
    assert "Remains of the Day" in jobs[0].payload  # the library shows titles on slips
    assert [n.channel for n in notices] == ["email"]
    assert root.service.find(code, "MAIN").awaits_scan is False
    root.worker.run_once()
    ((recipients, message),) = mailbox.messages
    assert recipients == [patrons[0].email]
    assert code in message.get_body(("plain",)).get_content()
    rescanned = scan(client)  # a second scan is no second slip: it asks for the card
    assert rescanned.status_code == 422
    assert len(outbox(root)[0]) == 1
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("holdshelf")]
    assert ours and not any("Traceback" in line for line in ours)
    assert_no_patron_data("\n".join(ours), patrons)  # the mail server's own log names them


def test_an_item_registered_for_another_branch_is_sent_there(api, client, root, patrons):
    api(registration(patrons[0], branch="EAST"))
    page = scan(client)  # the clerk at MAIN
    assert page.status_code == 200
    text = html.unescape(page.get_data(as_text=True))
    assert 'id="ils-transit"' in text and root.settings.branch("EAST").name in text
    assert outbox(root) == ([], [])
    assert root.service.shelf("EAST")[0].awaits_scan


def test_contacts_typed_at_the_scan_are_added(api, client, root, patrons):
    body = registration(patrons[0])
    del body["email"]
    api(body)
    assert scan(client, email=patrons[0].email).status_code == 302
    (notice,) = outbox(root)[1]
    assert notice.channel == "email" and patrons[0].email not in (notice.sealed or "")


def test_a_reprint_is_the_scan_too(api, root, patrons):
    code = api(registration(patrons[0])).get_json()["code"]
    root.service.reprint(code, "MAIN")
    jobs, notices = outbox(root)
    assert [j.kind for j in jobs] == ["slip"] and len(notices) == 1
    root.service.reprint(code, "MAIN")  # now an ordinary reprint, without a notice
    jobs, notices = outbox(root)
    assert [j.kind for j in jobs] == ["slip", "reprint"] and len(notices) == 1


def test_the_cli_scan_needs_no_card(cli, clock, patrons):
    cli.fails("ready", "--branch", "MAIN", "--item", ITEM, message="give --patron")
    parts = Holdshelf(load_settings(cli.instance, environ={}), clock=clock)
    try:
        request = parts.service.hold_request("MAIN", ITEM, patrons[0].card)
        entry = parts.service.ready_request(request, on_scan=True)
        made = cli.ok("ready", "--branch", "MAIN", "--item", ITEM, "--json")
        assert json.loads(made.out)["code"] == entry.code.display
        assert json.loads(made.out)["awaiting_scan"] is False
        assert [j.kind for j in outbox(parts)[0]] == ["slip"]
        east = parts.service.hold_request("EAST", "I2", patrons[1].card)
        parts.service.ready_request(east, on_scan=True)
    finally:
        parts.close()
    cli.fails(
        "ready", "--branch", "MAIN", "--item", "I2", message="send the item to Eastside Branch"
    )


def test_a_hold_ended_before_its_scan_takes_its_sealed_contacts_with_it(
    instance_dir, clock, patrons
):
    kept = load_settings(instance_dir, environ={"HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": "7"})
    parts = Holdshelf(kept, clock=clock)
    try:
        service = parts.service
        entry = service.ready_request(
            service.hold_request("MAIN", ITEM, patrons[0].card, email=patrons[0].email),
            on_scan=True,
        )
        service.cancel(entry.code.display, branch_id="MAIN")
        with parts.sessions() as session:
            (hold,) = session.scalars(select(Hold))
            assert hold.status == "cancelled" and hold.on_scan is None
        assert service.print_registered("MAIN", ITEM) is None
        assert outbox(parts) == ([], [])
    finally:
        parts.close()


# -- waiting for its slip -----------------------------------------------------------------------


def test_a_hold_not_scanned_in_time_shows_as_waiting_for_its_slip(
    api, client, clock: Clock, patrons
):
    api(registration(patrons[0]))
    page = client.get("/checkin").get_data(as_text=True)
    assert 'id="awaiting-slips"' not in page  # within the 30 minutes: nothing to say yet
    shelf = client.get("/shelf").get_data(as_text=True)
    assert 'id="awaiting-scan"' in shelf and ITEM in shelf
    assert "waiting for its slip" not in shelf
    assert 'id="on-shelf"' not in shelf  # not on the shelf until scanned
    clock.advance(minutes=31)
    page = html.unescape(client.get("/checkin").get_data(as_text=True))
    assert 'id="awaiting-slips"' in page and "1 hold is waiting for its slip" in page
    assert f"Item {ITEM}" in page.replace("<strong>", "").replace("</strong>", "")
    assert "waiting for its slip" in client.get("/shelf").get_data(as_text=True)
    assert_no_patron_data(page, patrons)
    assert scan(client).status_code == 302
    assert 'id="awaiting-slips"' not in client.get("/checkin").get_data(as_text=True)


def test_the_time_is_configurable_and_checked(instance_dir):
    settings = load_settings(instance_dir, environ={"HOLDSHELF_ILS__SCAN_WITHIN_MINUTES": "5"})
    assert settings.ils.scan_within.total_seconds() == 300
    with pytest.raises(ConfigError, match=r"ils\.scan_within_minutes must be"):
        load_settings(instance_dir, environ={"HOLDSHELF_ILS__SCAN_WITHIN_MINUTES": "0"})


# -- with an ILS connection ---------------------------------------------------------------------


@pytest.fixture
def koha() -> Iterator[KohaApi]:
    peer = k.library().start()
    yield peer
    peer.stop()


def test_a_registered_hold_is_not_asked_of_the_ils(instance_dir, clock, koha, patrons):
    parts = Holdshelf(load_settings(instance_dir, environ=koha_environment(koha)), clock=clock)
    try:
        service = parts.service
        request = service.hold_request("MAIN", k.WAITING_HERE, patrons[0].card)
        entry = service.ready_request(request, on_scan=True)
        outcome = parts.checkin.scan("MAIN", k.WAITING_HERE)
        assert outcome.entry.code == entry.code and not outcome.entry.awaits_scan
        assert koha.count("GET", "/api/v1/holds") == 0  # Holdshelf knew the hold already
        assert len(outbox(parts)[0]) == 1
    finally:
        parts.close()


def test_two_scans_at_once_print_one_slip(root, patrons):
    service = root.service
    for n in range(5):
        request = service.hold_request("MAIN", f"I{n}", patrons[n].card, email=patrons[n].email)
        service.ready_request(request, on_scan=True)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def scan_all() -> None:
        try:
            for n in range(5):
                barrier.wait()
                service.print_registered("MAIN", f"I{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scan_all) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    jobs, notices = outbox(root)
    assert sorted(j.code for j in jobs) == sorted({j.code for j in jobs}) and len(jobs) == 5
    assert len(notices) == 5


def test_the_api_takes_the_ils_s_code_for_a_branch(instance_dir, clock, patrons):
    from holdshelf.web import create_app

    coded = load_settings(instance_dir, environ={"HOLDSHELF_BRANCHES__EAST__ILS_LOCATION": "ESB"})
    parts = Holdshelf(coded, clock=clock)
    try:
        token = parts.integrations.create_token("koha", [])
        client = create_app(parts).test_client()
        headers = {"Authorization": f"Bearer {token}"}
        made = client.post(
            "/api/v1/holds", json=registration(patrons[0], branch="ESB"), headers=headers
        )
        assert made.status_code == 201 and made.get_json()["branch"] == "EAST"
        unknown = client.post(
            "/api/v1/holds", json=registration(patrons[1], branch="XYZ"), headers=headers
        )
        assert unknown.status_code == 400 and unknown.get_json()["field"] == "branch"
    finally:
        parts.close()
