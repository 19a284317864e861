"""After a realistic run, nothing in the database can tell who a finished hold belonged to.

Checked on the raw bytes of the SQLite file and its WAL, and on a pg_dump of PostgreSQL.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.pseudonyms import Pseudonymizer
from holdshelf.errors import ConfigError
from holdshelf.sealing import Sealer
from holdshelf.service import HoldService
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.storage.models import Hold, PatronPreference
from tests.conftest import (
    Clock,
    Patron,
    assert_no_patron_data,
    make_patrons,
    raw_database_bytes,
)


def realistic_run(service: HoldService, clock: Clock, patrons: list[Patron]) -> dict[str, set]:
    """Three weeks at two branches: hundreds of holds, opt-outs and back, pickups by code and
    by item, cancellations, moves to the desk, expiries and a purge. Returns the patrons and
    items whose holds are all over."""
    rng = random.Random(11)
    active: dict[str, tuple[str, str]] = {}  # code -> (item, card)
    counter = 0
    for _day in range(21):
        for _ in range(rng.randrange(10, 25)):
            counter += 1
            patron = rng.choice(patrons)
            item = f"3901{counter:08d}"
            entry = service.ready(rng.choice(["MAIN", "EAST"]), item, patron.card)
            active[f"{entry.branch}:{entry.code.display}"] = (item, patron.card)
        for key in rng.sample(sorted(active), k=min(len(active), rng.randrange(5, 20))):
            branch, code = key.split(":")
            item, _card = active.pop(key)
            roll = rng.random()
            if roll < 0.6:
                service.pickup(code, branch_id=branch)
            elif roll < 0.8:
                service.pickup(item=item)
            else:
                service.cancel(code, branch_id=branch)
        for patron in rng.sample(patrons, k=3):
            view = service.opt_out(patron.card)
            for hold in view.holds:
                if hold.move_to_desk and rng.random() < 0.7:
                    service.moved_to_desk(hold.code.display, hold.branch)
        for patron in rng.sample(patrons, k=2):
            service.opt_in(patron.card)
        clock.advance(days=1)
        for entry in service.expire():
            active.pop(f"{entry.branch}:{entry.code.display}")
    clock.advance(days=31)
    for entry in service.expire():
        active.pop(f"{entry.branch}:{entry.code.display}")
    service.purge()
    assert counter > 300
    assert active == {}
    return {"items": {f"3901{n:08d}" for n in range(1, counter + 1)}}


def ended_links(service: HoldService) -> list:
    with service._sessions() as session:
        return session.scalars(
            select(Hold).where(Hold.status != "ready", Hold.patron.is_not(None))
        ).all()


def test_no_row_links_an_ended_hold_to_a_pseudonym(
    service: HoldService, clock: Clock, patrons: list[Patron]
) -> None:
    realistic_run(service, clock, patrons)
    assert ended_links(service) == []
    with service._sessions() as session:
        assert session.scalars(select(Hold)).all() == []
        preferences = session.scalars(select(PatronPreference)).all()
    assert all(set(vars(p)) - {"_sa_instance_state"} == {"patron", "mode"} for p in preferences)


def test_database_bytes_hold_no_card_numbers_and_no_trace_of_ended_holds(
    service: HoldService, clock: Clock, patrons: list[Patron], tmp_path: Path
) -> None:
    finished = realistic_run(service, clock, patrons)
    with service._sessions() as session:
        chosen = set(session.scalars(select(PatronPreference.patron)))
    raw = raw_database_bytes(service)

    assert_no_patron_data(raw, patrons)
    # Every hold has ended: neither the pseudonym of a patron without a standing choice nor any
    # item barcode may remain, not even in free pages or the write-ahead log.
    pseudonym = Pseudonymizer(service.settings.pseudonym_key.encode())
    unchosen = [p for p in patrons if pseudonym(p.card) not in chosen]
    assert unchosen, "the run leaves some patrons without a standing choice"
    for patron in unchosen:
        assert pseudonym(patron.card).encode() not in raw
    for item in sorted(finished["items"]):
        assert item.encode() not in raw
    for value in chosen:  # the only pseudonyms kept are standing choices (opt-outs)
        assert value.encode() in raw


def test_log_records_carry_no_patron_data(
    service: HoldService, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    patrons = make_patrons(30, seed=3)
    caplog.set_level(logging.DEBUG, logger="holdshelf")
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # SQL echo, parameters hidden
    realistic_run(service, clock, patrons)
    assert caplog.records, "the run was logged"
    pseudonym = Pseudonymizer(service.settings.pseudonym_key.encode())
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "INSERT INTO holds" in text
    assert_no_patron_data(text, patrons)
    for patron in patrons:
        assert pseudonym(patron.card) not in text


def test_the_running_worker_keeps_retention_without_cron(service: HoldService, clock, patrons):
    """`serve` purges hourly: a library that never set up `holdshelf purge` in cron still
    forgets ended holds' links, rested codes and old sessions on time."""
    from holdshelf.settings import load_settings

    environ = {"HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": "2"}
    settings = load_settings(service.settings.instance_dir, environ=environ)
    kept = HoldService(settings, service.sessions, clock)
    worker = Holdshelf(settings, clock=clock, engine=service.engine).worker
    entry = kept.ready("MAIN", "I1", patrons[0].card)
    kept.pickup(entry.code.display)
    assert worker.housekeep_if_due() is not None  # the first pass: nothing due yet
    assert linked_holds(kept) == 1
    clock.advance(days=2)
    assert worker.housekeep_if_due() is not None  # an hour has passed
    assert linked_holds(kept) == 0
    assert worker.housekeep_if_due() is None  # not again within the hour
    clock.advance(minutes=61)
    assert worker.housekeep_if_due() is not None


def linked_holds(service: HoldService) -> int:
    with service.sessions() as session:
        return len(session.scalars(select(Hold).where(Hold.patron.is_not(None))).all())


def test_a_failed_purge_is_tried_again_soon_and_apart_from_the_queues(
    service: HoldService, clock, monkeypatch, caplog
) -> None:
    import threading

    from holdshelf.bootstrap import Holdshelf

    worker = Holdshelf(service.settings, clock=clock, engine=service.engine).worker
    purges: list[object] = []

    def database_away(*_: object) -> None:
        purges.append(clock.now)
        raise ConnectionError("database away")

    monkeypatch.setattr(worker, "_housekeeping", database_away)
    with pytest.raises(ConnectionError):
        worker.housekeep_if_due()
    assert worker.housekeep_if_due() is None  # not within the minute
    clock.advance(seconds=61)
    monkeypatch.undo()
    assert worker.housekeep_if_due() is not None  # a minute later, not an hour

    # A queue pass that keeps failing does not stop the purge in the running worker.
    monkeypatch.setattr(worker, "_housekeeping", lambda *_: purges.append("ran"))
    monkeypatch.setattr(worker, "run_once", lambda **_: 1 / 0)
    clock.advance(hours=2)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop, 0.01))
    thread.start()
    try:
        for _ in range(200):
            if "ran" in purges:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert "ran" in purges
    assert "worker pass failed: ZeroDivisionError" in caplog.text


def test_unexpected_errors_are_logged_without_their_message(service: HoldService, patrons):
    """A bug's message may quote what it choked on (the mail library quotes the address); the
    log line names the error and the place only. Statement parameters are hidden by the engine
    (hide_parameters) as well."""
    from sqlalchemy import text

    from holdshelf.errors import unexpected

    email = patrons[0].email
    with pytest.raises(Exception) as caught, service.sessions() as session:
        session.execute(text("SELECT nope FROM holds WHERE item_barcode = :v"), {"v": email})
    assert email not in str(caught.value)  # hide_parameters
    line = unexpected(caught.value)
    assert "(sqlite3." in line or "(psycopg." in line  # the driver's error class, for IT staff
    with pytest.raises(ValueError) as caught:
        raise ValueError(f"Invalid addr_spec; only {email!r} could be parsed")
    line = unexpected(caught.value)
    assert email not in line and line.startswith("ValueError at test_privacy.py:")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_checkpoint_waits_briefly_and_leaves_the_usual_busy_timeout(service: HoldService):
    """The hourly checkpoint waits at most 2 s for readers (desk writes queue behind it);
    the pooled connection it used goes back to the usual 30 s for everything else."""

    database.checkpoint(service.engine)
    with service.engine.connect() as connection:
        timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert timeout == database.SQLITE_BUSY_TIMEOUT_MS


# -- erased at once: nothing recoverable from the files right after the erasure -----------------

FERNET_TOKEN = re.compile(rb"gAAAAA[A-Za-z0-9_\-]{40,}={0,2}")


def decryptable_addresses(service: HoldService) -> list[str]:
    """Every Fernet token anywhere in the raw database files (free pages, the WAL) that the
    instance's data key still opens: the contacts an attacker with the disk could read."""
    sealer = Sealer(service.settings.data_key)
    found = set()
    for run in set(FERNET_TOKEN.findall(raw_database_bytes(service))):
        # A token may run straight into the next cell's bytes: try every length it could be.
        for length in range(len(run), 99, -1):
            try:
                found.add(sealer.unseal(run[:length].decode("ascii"))["to"])
                break
            except (ConfigError, KeyError, ValueError):
                continue
    return sorted(found)


def test_a_delivered_contact_cannot_be_decrypted_from_the_files(
    instance_dir: Path, clock: Clock, patrons: list[Patron]
) -> None:
    from tests.helpers.servers import Mailbox
    from tests.test_notices import SENDER, configure

    box = Mailbox().start()
    configure(
        instance_dir,
        f'[mail]\nhost = "127.0.0.1"\nport = {box.port}\nsecurity = "none"\nsender = "{SENDER}"\n',
    )
    instance = instance_dir
    settings = load_settings(instance, environ={})
    service = Holdshelf(settings, clock=clock).service
    worker = Holdshelf(settings, clock=clock, engine=service.engine).worker
    try:
        for n, patron in enumerate(patrons[:20]):
            service.ready("MAIN", f"I{n}", patron.card, email=patron.email)
        assert len(decryptable_addresses(service)) == 20  # queued: sealed, as they must be
        assert worker.run_once().notices.sent == 20
        assert decryptable_addresses(service) == []
        assert_no_patron_data(raw_database_bytes(service), patrons)
    finally:
        box.stop()
        service.engine.dispose()


def test_an_ended_holds_link_is_gone_from_the_files_at_once(
    service: HoldService, patrons: list[Patron]
) -> None:
    pseudonym = Pseudonymizer(service.settings.pseudonym_key.encode())
    for n, patron in enumerate(patrons[:10]):
        service.ready("MAIN", f"I{n}", patron.card)
    raw = raw_database_bytes(service)
    assert all(pseudonym(p.card).encode() in raw for p in patrons[:10])
    for n in range(5):
        service.pickup(item=f"I{n}")
    service.cancel(item="I5")
    raw = raw_database_bytes(service)  # no purge, no worker: right after the desk's scans
    for patron in patrons[:6]:
        assert pseudonym(patron.card).encode() not in raw
    for patron in patrons[6:10]:  # still waiting: still linked
        assert pseudonym(patron.card).encode() in raw
