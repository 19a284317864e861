"""One scan at check-in: the ILS (here a loopback Koha that answers as Koha's definitions say)
names the hold's patron, and the desk, the use case and the privacy rules follow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from holdshelf.bootstrap import Holdshelf
from holdshelf.errors import ConfigError, InvalidInput
from holdshelf.ils.answers import IlsUnavailable
from holdshelf.settings import Settings, load_settings
from holdshelf.workflow.checkin import NothingTrapped, SendElsewhere, Shelved
from tests.conftest import raw_database_bytes
from tests.helpers.web import post
from tests.peers import koha_api as k
from tests.peers.koha_api import CLIENT_ID, CLIENT_SECRET, KohaApi
from tests.peers.people import ADA, leaked


@pytest.fixture
def koha() -> Iterator[KohaApi]:
    peer = k.library().start()
    yield peer
    peer.stop()
    assert peer.violations == [], "the peer answered what Koha's definitions do not allow"


def koha_environment(koha: KohaApi) -> dict[str, str]:
    return {
        "HOLDSHELF_ILS__KIND": "koha",
        "HOLDSHELF_ILS__BASE_URL": koha.url,
        "HOLDSHELF_ILS__CLIENT_ID": CLIENT_ID,
        "HOLDSHELF_ILS__CLIENT_SECRET": CLIENT_SECRET,
        "HOLDSHELF_ILS__TIMEOUT": "2",
    }


@pytest.fixture
def settings(instance_dir: Path, koha: KohaApi) -> Settings:
    """The test instance, connected to the loopback Koha (MAIN and EAST are Koha's codes)."""
    return load_settings(instance_dir, environ=koha_environment(koha))


def test_an_item_alone_makes_its_waiting_hold_ready_with_koha_s_card_and_date(root: Holdshelf):
    outcome = root.checkin.scan("MAIN", k.WAITING_HERE)
    assert isinstance(outcome, Shelved)
    assert outcome.entry.pickup_by == dt.date(2026, 12, 4)  # Koha's expiration_date
    assert len(root.service.patron(ADA.card).holds) == 1  # the card Koha named
    again = root.checkin.scan("MAIN", k.WAITING_HERE)  # a second scan is the same hold
    assert isinstance(again, Shelved) and again.entry.code == outcome.entry.code


def test_an_item_for_another_library_is_sent_there_without_a_code(root: Holdshelf):
    outcome = root.checkin.scan("MAIN", k.IN_TRANSIT)
    assert outcome == SendElsewhere(destination=root.settings.branch("EAST").name)
    assert root.service.shelf("MAIN") == []


def test_an_item_without_a_hold_goes_back(root: Holdshelf):
    assert isinstance(root.checkin.scan("MAIN", k.NO_HOLDS), NothingTrapped)
    assert root.service.shelf("MAIN") == []


def test_a_card_in_the_item_field_is_never_sent_to_the_ils(root: Holdshelf, koha: KohaApi):
    root.service.ready("MAIN", "I1", ADA.card)  # now a known patron's card
    with pytest.raises(InvalidInput, match="patron's card"):
        root.checkin.scan("MAIN", ADA.card)
    assert koha.count("GET", "/api/v1/items") == 0


def test_an_unknown_pickup_location_is_said_not_guessed(instance_dir: Path, koha: KohaApi):
    renamed = {
        "HOLDSHELF_BRANCHES__MAIN__ILS_LOCATION": "CENTRAL",
        "HOLDSHELF_BRANCHES__EAST__ILS_LOCATION": "EASTSIDE",
    }
    parts = Holdshelf(load_settings(instance_dir, environ=koha_environment(koha) | renamed))
    try:
        with pytest.raises(InvalidInput, match="names pickup location 'MAIN', which is no"):
            parts.checkin.scan("MAIN", k.WAITING_HERE)
        # a transit to a library Holdshelf does not know is named by the ILS's code
        assert parts.checkin.scan("MAIN", k.IN_TRANSIT) == SendElsewhere(destination="EAST")
        assert parts.service.shelf("MAIN") == []
    finally:
        parts.close()


def test_an_ils_that_does_not_answer_is_one_line(root: Holdshelf, koha: KohaApi):
    koha.status = 503
    with pytest.raises(IlsUnavailable) as caught:
        root.checkin.scan("MAIN", k.WAITING_HERE)
    assert "503" in str(caught.value) and "\n" not in str(caught.value)


def test_kinds_name_what_they_need(instance_dir: Path):
    with pytest.raises(ConfigError, match=r'ils\.base_url is needed when ils\.kind = "koha"'):
        load_settings(instance_dir, environ={"HOLDSHELF_ILS__KIND": "koha"})
    sip = {"HOLDSHELF_ILS__KIND": "sip2", "HOLDSHELF_ILS__HOST": "127.0.0.1"}
    with pytest.raises(ConfigError, match=r"ils\.institution is needed"):
        load_settings(instance_dir, environ=sip)
    sip["HOLDSHELF_ILS__INSTITUTION"] = "MAIN"
    with pytest.raises(ConfigError, match=r"branches\.MAIN: ils_login and ils_password"):
        load_settings(instance_dir, environ=sip)
    with pytest.raises(ConfigError, match="branches MAIN and EAST have the same ils_location"):
        load_settings(instance_dir, environ={"HOLDSHELF_BRANCHES__EAST__ILS_LOCATION": "main"})
    with pytest.raises(ConfigError, match=r"ils\.kind must be one of none, sip2, koha, folio"):
        load_settings(instance_dir, environ={"HOLDSHELF_ILS__KIND": "sierra"})


# -- the desk ------------------------------------------------------------------------------


def test_the_desk_asks_only_for_the_item_and_prints(client, root: Holdshelf):
    page = client.get("/checkin").get_data(as_text=True)
    assert 'id="card"' not in page and "the ILS says whose hold" in page
    response = post(client, "/checkin", {"item": k.WAITING_HERE}, page="/checkin")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    (entry,) = root.service.shelf("MAIN")
    assert entry.code.display in page and "Ready:" in page
    assert leaked(page) == []
    again = post(client, "/checkin", {"item": k.WAITING_HERE}, page="/checkin")
    assert "Scanned again: this hold is ready already" in again.get_data(as_text=True)
    assert len(root.service.shelf("MAIN")) == 1


def test_the_desk_says_where_a_transit_goes_and_when_there_is_no_hold(client):
    page = post(client, "/checkin", {"item": k.IN_TRANSIT}, page="/checkin").get_data(as_text=True)
    assert "Send this item to <strong>Eastside Branch</strong>" in page
    page = post(client, "/checkin", {"item": k.NO_HOLDS}, page="/checkin").get_data(as_text=True)
    assert "No hold for this item: it goes back to the shelf." in page


def test_with_the_ils_down_the_desk_asks_for_the_card_and_it_works(client, root, koha):
    koha.status = 500
    page = post(client, "/checkin", {"item": k.WAITING_HERE}, page="/checkin").get_data(
        as_text=True
    )
    assert 'id="card"' in page and "scan the patron's card instead" in page
    assert f'value="{k.WAITING_HERE}"' in page  # the item stays in its field
    response = post(client, "/checkin", {"item": k.WAITING_HERE, "card": ADA.card}, "/checkin")
    assert response.status_code == 302
    assert len(root.service.shelf("MAIN")) == 1


def test_nothing_koha_sends_beyond_the_card_is_kept_or_logged(client, root, caplog):
    caplog.set_level("DEBUG")
    for item in (k.WAITING_HERE, k.IN_TRANSIT, k.NO_HOLDS, k.NO_EXPIRY):
        page = post(client, "/checkin", {"item": item}, page="/checkin").get_data(as_text=True)
        assert leaked(page) == []
    assert leaked(caplog.text) == []
    stored = raw_database_bytes(root.service)
    for secret in ADA.secrets:
        assert secret.encode() not in stored


# -- the command line ----------------------------------------------------------------------


def test_ready_without_a_card_asks_the_ils(cli, koha: KohaApi, monkeypatch, caplog):
    caplog.set_level("DEBUG")
    for name, value in koha_environment(koha).items():
        monkeypatch.setenv(name, value)
    made = cli.ok("ready", "--branch", "MAIN", "--item", k.WAITING_HERE, "--json").json
    assert made["pickup_by"] == "2026-12-04" and made["branch"] == "MAIN"
    cli.fails("ready", "--branch", "MAIN", "--item", k.IN_TRANSIT, message="send the item to")
    cli.fails("ready", "--branch", "MAIN", "--item", k.NO_HOLDS, message="no hold for this item")
    checked = cli.ok("ils", "check")
    assert checked.out.splitlines()[0].startswith("MAIN: ") and "EAST: " in checked.out
    koha.status = 503
    cli.fails("ready", "--branch", "MAIN", "--item", k.NO_EXPIRY, message="Koha answered 503")
    assert leaked(caplog.text + "".join(cli.outputs)) == []


def test_without_an_ils_ready_needs_the_card(cli):
    cli.fails("ready", "--branch", "MAIN", "--item", "I1", message="give --patron")
    cli.fails("ils", "check", message="no ILS is configured")


def test_ils_check_says_which_branch_fails(cli, koha: KohaApi, monkeypatch):
    for name, value in (koha_environment(koha) | {"HOLDSHELF_ILS__CLIENT_SECRET": "x"}).items():
        monkeypatch.setenv(name, value)
    result = cli("ils", "check", "--branch", "MAIN")  # a report on stdout, the verdict on stderr
    assert result.code == 1 and "1 of 1 branches cannot reach the ILS" in result.err
    assert result.out.startswith("MAIN: FAILED: ") and len(result.out.splitlines()) == 1


# -- SIP2: one scan at the desk against the SIP2 ILS process -------------------------------


@pytest.fixture
def sip2_desk(tmp_path_factory, instance_dir: Path, clock):
    """A desk whose ILS is the pysip2-built SIP2 server (tests/peers/sip2_ils.py): MAIN is
    its MAIN, EAST its WEST, each branch with its own SIP account."""
    from holdshelf.web import create_app
    from tests.helpers.web import STAFF, sign_in
    from tests.test_ils_sip2 import _start_peer, library_environment

    for peer in _start_peer(tmp_path_factory.mktemp("sip2-desk")):
        environ = library_environment(peer)
        parts = Holdshelf(load_settings(instance_dir, environ=environ), clock=clock)
        app = create_app(parts)
        parts.accounts.add_user(*STAFF, "staff")
        client = app.test_client()
        sign_in(client)
        post(client, "/branch", {"branch": "MAIN"})
        yield client, parts
        parts.close()


def test_one_scan_over_sip2_prints_and_keeps_nothing_the_ils_sent(sip2_desk, caplog):
    from tests.peers import sip2_ils as sip

    client, parts = sip2_desk
    caplog.set_level("DEBUG")
    page = post(client, "/checkin", {"item": "HOLD-MAIN-CM"}, page="/checkin").get_data(
        as_text=True
    )
    (entry,) = parts.service.shelf("MAIN")
    assert entry.code.display in page and entry.pickup_by == dt.date(2026, 12, 5)  # CM
    assert "The ILS says: Hold waiting" in page  # AF, for the clerk
    assert len(parts.service.patron(sip.CARD).holds) == 1  # CY became the pseudonym
    page = post(client, "/checkin", {"item": "HOLD-WEST"}, page="/checkin").get_data(as_text=True)
    assert "Send this item to <strong>Eastside Branch</strong>" in page
    page = post(client, "/checkin", {"item": "PLAIN"}, page="/checkin").get_data(as_text=True)
    assert "No hold for this item" in page
    stored = raw_database_bytes(parts.service)
    for secret in sip.SECRETS:
        assert secret not in page and secret not in caplog.text
        assert secret.encode() not in stored
