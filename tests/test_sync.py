"""Holds end when the ILS says so: the sync asks a loopback Koha and FOLIO (answering as their
published definitions say) about every active hold, and ends those picked up, cancelled or
expired there; the link goes from the raw database, the code rests, the counts follow."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.holds import HoldStatus
from holdshelf.errors import ConfigError
from holdshelf.settings import load_settings
from holdshelf.storage.models import DailyCount, Hold, ShelfCodeClaim
from holdshelf.workflow import sync as sync_module
from tests.conftest import Clock, raw_database_bytes
from tests.peers import folio_api as f
from tests.peers import koha_api as k
from tests.peers.folio_api import PASSWORD, TENANT, USERNAME, FolioApi
from tests.peers.koha_api import KohaApi
from tests.peers.people import ADA, ALAN, leaked
from tests.test_checkin_ils import koha_environment


@pytest.fixture
def koha() -> Iterator[KohaApi]:
    peer = k.library().start()
    yield peer
    peer.stop()
    assert peer.violations == []


def connected(instance_dir: Path, clock: Clock, environ: dict[str, str]) -> Holdshelf:
    return Holdshelf(load_settings(instance_dir, environ=environ), clock=clock)


@pytest.fixture
def koha_root(instance_dir: Path, clock: Clock, koha: KohaApi) -> Iterator[Holdshelf]:
    parts = connected(instance_dir, clock, koha_environment(koha))
    yield parts
    parts.close()


def scanned(root: Holdshelf, item: str) -> str:
    """The hold made ready by the item's scan (the ILS names the patron); its code."""
    outcome = root.checkin.scan("MAIN", item)
    return outcome.entry.code.compact


def counted(root: Holdshelf, status: HoldStatus) -> int:
    with root.sessions() as session:
        rows = session.scalars(select(DailyCount).where(DailyCount.event == status.value))
        return sum(row.count for row in rows)


# -- Koha ---------------------------------------------------------------------------------------


def test_a_hold_still_waiting_in_koha_stays(koha_root):
    scanned(koha_root, k.WAITING_HERE)
    report = koha_root.sync.run()
    assert (report.checked, report.waiting, report.unchecked) == (1, 1, 0)
    assert len(koha_root.service.shelf("MAIN")) == 1


def test_a_checkout_at_the_self_check_ends_the_hold_and_its_link(koha_root, koha):
    code = scanned(koha_root, k.WAITING_HERE)
    pseudonym = koha_root.service._pseudonym(ADA.card)
    assert pseudonym.encode() in raw_database_bytes(koha_root.service)
    koha.check_out(101)
    report = koha_root.sync.run()
    assert report.ended[HoldStatus.PICKED_UP] == 1 and report.waiting == 0
    assert koha_root.service.shelf("MAIN") == []
    assert pseudonym.encode() not in raw_database_bytes(koha_root.service)
    with koha_root.sessions() as session:
        claim = session.get(ShelfCodeClaim, ("MAIN", code))
        assert claim is not None and claim.released_at is not None  # the code rests
    assert counted(koha_root, HoldStatus.PICKED_UP) == 1
    assert koha_root.sync.run().checked == 0  # nothing left to ask about


def test_a_cancel_in_koha_ends_the_hold_as_cancelled_or_past_its_date_as_expired(
    koha_root, koha, clock
):
    scanned(koha_root, k.WAITING_HERE)
    scanned(koha_root, k.NO_EXPIRY)
    koha.end_waiting_hold(101)
    assert koha_root.sync.run().ended[HoldStatus.CANCELLED] == 1
    koha.end_waiting_hold(107)
    clock.advance(days=30)  # past the pickup-by date: Koha's expiry job cancelled it
    assert koha_root.sync.run().ended[HoldStatus.EXPIRED] == 1
    assert counted(koha_root, HoldStatus.CANCELLED) == counted(koha_root, HoldStatus.EXPIRED) == 1


def test_an_ils_that_is_down_changes_nothing_and_says_so(koha_root, koha, caplog):
    scanned(koha_root, k.WAITING_HERE)
    scanned(koha_root, k.NO_EXPIRY)
    koha.check_out(101)
    koha.status = 503
    before = koha.count("GET", "/api/v1/items")
    report = koha_root.sync.run("MAIN")
    assert report.unchecked == 2 and report.checked == 0
    (problem,) = report.problems
    assert problem.startswith("MAIN: ") and "503" in problem and "\n" not in problem
    assert len(koha_root.service.shelf("MAIN")) == 2
    assert "2 could not be checked" in report.line()
    # the branch is left after its first failure, not asked (and waited for) per hold
    assert koha.count("GET", "/api/v1/items") == before + 1


def test_the_periodic_sync_leaves_holds_just_made(koha_root, koha, clock):
    scanned(koha_root, k.WAITING_HERE)
    koha.check_out(101)
    assert koha_root.sync.run(settle=True).checked == 0
    clock.advance(minutes=2)
    assert koha_root.sync.run(settle=True).ended[HoldStatus.PICKED_UP] == 1


def test_the_sync_paces_its_lookups(instance_dir, clock, koha, monkeypatch):
    slow = koha_environment(koha) | {"HOLDSHELF_ILS__SYNC_PER_SECOND": "4"}
    parts = connected(instance_dir, clock, slow)
    try:
        for item in (k.WAITING_HERE, k.NO_EXPIRY):
            scanned(parts, item)
        waits: list[float] = []
        monkeypatch.setattr(sync_module.time, "sleep", waits.append)
        parts.sync.run()
        assert len(waits) == 1 and 0.15 < waits[0] <= 0.25  # the second waits ~1/4 s
    finally:
        parts.close()


def test_nothing_the_ils_sends_is_logged(koha_root, koha, caplog):
    caplog.set_level(logging.DEBUG)
    scanned(koha_root, k.WAITING_HERE)
    koha.check_out(101)
    koha_root.sync.run()
    assert leaked(caplog.text) == []


def test_a_hold_that_changed_meanwhile_is_left(koha_root):
    scanned(koha_root, k.WAITING_HERE)
    service = koha_root.service
    (asked,) = service.active_holds("MAIN")
    service.pickup(item=k.WAITING_HERE, branch_id="MAIN")  # ended at the desk meanwhile
    service.ready("MAIN", k.WAITING_HERE, ALAN.card)  # and trapped for another patron
    assert service.end_in_ils([(asked, HoldStatus.CANCELLED)]) == []
    assert len(service.shelf("MAIN")) == 1


def test_sync_settings_are_checked(instance_dir):
    settings = load_settings(instance_dir, environ={"HOLDSHELF_ILS__SYNC_MINUTES": "0"})
    assert settings.ils.sync_every is None
    with pytest.raises(ConfigError, match=r"ils\.sync_per_second must be"):
        load_settings(instance_dir, environ={"HOLDSHELF_ILS__SYNC_PER_SECOND": "0"})


# -- the worker and the command line ------------------------------------------------------------


def test_the_worker_syncs_on_its_own(instance_dir, koha, monkeypatch):
    monkeypatch.setattr("holdshelf.worker.SYNC_FIRST_DELAY", dt.timedelta(0))
    parts = Holdshelf(load_settings(instance_dir, environ=koha_environment(koha)))
    stop = threading.Event()
    try:
        parts.checkin.scan("MAIN", k.WAITING_HERE)
        koha.check_out(101)
        with parts.sessions.begin() as session:  # made long enough ago for the periodic sync
            hold = session.scalars(select(Hold)).one()
            hold.ready_at -= dt.timedelta(minutes=5)
        running = threading.Thread(target=parts.worker.run_forever, args=(stop, 0.05))
        running.start()
        for _ in range(100):
            if not parts.service.shelf("MAIN"):
                break
            stop.wait(0.05)
        assert parts.service.shelf("MAIN") == []
    finally:
        stop.set()
        parts.worker.wake()
        running.join(timeout=10)
        parts.close()
    assert not running.is_alive()


def test_holdshelf_sync(cli, koha: KohaApi, monkeypatch, caplog):
    cli.fails("sync", message="no ILS is configured to sync with")
    for name, value in koha_environment(koha).items():
        monkeypatch.setenv(name, value)
    cli.ok("ready", "--branch", "MAIN", "--item", k.WAITING_HERE)
    koha.check_out(101)
    done = cli.ok("sync", "--branch", "MAIN", "--json").json
    assert done["ended"]["picked_up"] == 1 and done["unchecked"] == 0
    assert cli.ok("shelf", "--branch", "MAIN", "--json").json == []
    cli.ok("ready", "--branch", "MAIN", "--item", k.NO_EXPIRY)
    koha.status = 503
    failed = cli("sync")
    assert failed.code == 1 and "1 holds could not be checked" in failed.err
    assert "503" in failed.out and failed.err.count("\n") == 1
    assert leaked("".join(cli.outputs) + caplog.text) == []


# -- FOLIO --------------------------------------------------------------------------------------


@pytest.fixture
def folio() -> Iterator[FolioApi]:
    peer = f.library().start()
    yield peer
    peer.stop()
    assert peer.violations == []


@pytest.mark.parametrize(
    ("closed", "ended"),
    [
        ("Closed - Filled", HoldStatus.PICKED_UP),
        ("Closed - Pickup expired", HoldStatus.EXPIRED),
        ("Closed - Cancelled", HoldStatus.CANCELLED),
    ],
)
def test_folio_requests_closed_end_their_holds(instance_dir, clock, folio, closed, ended):
    environ = {
        "HOLDSHELF_ILS__KIND": "folio",
        "HOLDSHELF_ILS__OKAPI_URL": folio.url,
        "HOLDSHELF_ILS__TENANT": TENANT,
        "HOLDSHELF_ILS__USERNAME": USERNAME,
        "HOLDSHELF_ILS__PASSWORD": PASSWORD,
    }
    parts = connected(instance_dir, clock, environ)
    try:
        scanned(parts, f.WAITING_HERE)
        assert parts.sync.run().waiting == 1
        folio.close_request(f.WAITING_HERE, ADA, closed)
        assert parts.sync.run().ended[ended] == 1
        assert parts.service.shelf("MAIN") == []
    finally:
        parts.close()


def test_a_hold_registered_ahead_of_its_item_is_not_asked_about(koha_root, koha):
    service = koha_root.service
    request = service.hold_request("MAIN", k.WAITING_HERE, ADA.card)
    service.ready_request(request, on_scan=True)  # the ILS pushed it; the item is on its way
    koha.end_waiting_hold(101)  # what an item still in transit looks like to the sync
    assert koha_root.sync.run().checked == 0
    assert len(service.shelf("MAIN")) == 1


# -- SIP2: a self-check, a cancel and an expiry at the pysip2-built ILS process ---------------


@pytest.fixture
def sip2_root(tmp_path_factory, instance_dir: Path, clock: Clock) -> Iterator[tuple]:
    from tests.test_ils_sip2 import _start_peer, library_environment

    for peer in _start_peer(tmp_path_factory.mktemp("sip2-sync")):
        environ = library_environment(peer)
        parts = connected(instance_dir, clock, environ)
        yield parts, peer
        parts.close()


def test_sip2_pickups_cancels_and_expiry_end_holds_within_one_sync(sip2_root, clock, caplog):
    from tests.peers import sip2_ils as sip

    parts, peer = sip2_root
    caplog.set_level(logging.DEBUG)
    items = ["SYNC-OUT", "SYNC-BACK", "SYNC-OTHER", "SYNC-LATE", "SYNC-STAYS"]
    for item in items:
        peer.item(item, circulation="08", pickup="MAIN")
        assert parts.checkin.scan("MAIN", item).entry.branch == "MAIN"
    pseudonym = parts.service._pseudonym(sip.CARD)
    assert parts.sync.run().waiting == 5
    peer.item("SYNC-OUT", circulation="04", pickup=None)  # checked out at the self-check
    peer.item("SYNC-BACK", circulation="03", pickup=None)  # cancelled: back on the shelf
    peer.item("SYNC-OTHER", circulation="08", pickup="MAIN", card=sip.OTHER_CARD)  # re-trapped
    before = peer.stats()["requests"]
    report = parts.sync.run()
    assert report.ended == {HoldStatus.PICKED_UP: 1, HoldStatus.CANCELLED: 2}
    assert (report.waiting, report.unchecked) == (2, 0)
    after = peer.stats()["requests"]
    assert after.get("17", 0) - before.get("17", 0) == 5  # one item information per hold
    assert after.get("09", 0) == before.get("09", 0)  # and never a checkin
    peer.item("SYNC-LATE", circulation="09", pickup=None)  # the ILS's expiry job ran
    clock.advance(days=30)  # past the pickup-by date: "ended" counts as expired
    assert parts.sync.run().ended == {HoldStatus.EXPIRED: 1}
    assert len(parts.service.shelf("MAIN")) == 1
    assert pseudonym.encode() in raw_database_bytes(parts.service)  # SYNC-STAYS keeps its link
    peer.item("SYNC-STAYS", circulation="04", pickup=None)
    assert parts.sync.run().ended[HoldStatus.PICKED_UP] == 1
    assert pseudonym.encode() not in raw_database_bytes(parts.service)
    for secret in sip.SECRETS:
        assert secret not in caplog.text


def test_many_ended_holds_end_in_short_transactions(service, monkeypatch, patrons):
    from holdshelf.workflow import ending

    monkeypatch.setattr(ending, "ENDED_PER_TRANSACTION", 2)
    for n in range(5):
        service.ready("MAIN", f"I{n}", patrons[n].card)
    begun: list[int] = []
    real_begin = service.sessions.begin
    monkeypatch.setattr(service.sessions, "begin", lambda: begun.append(1) or real_begin())
    holds = service.active_holds("MAIN")
    assert service.end_in_ils([(h, HoldStatus.PICKED_UP) for h in holds]) == 5 * [
        HoldStatus.PICKED_UP
    ]
    assert len(begun) == 3 and service.shelf("MAIN") == []
