"""`holdshelf backup` and `holdshelf restore` on real files: a consistent copy taken while the
database is in use, with nothing erased in its bytes; a restore that checks what it is given,
refuses while a worker uses the database, and will not bring back ended holds' links from a
backup older than the retention window unless told to.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from holdshelf.domain.pseudonyms import Pseudonymizer
from holdshelf.settings import load_settings
from holdshelf.storage import backups, database, wakeup
from holdshelf.storage.backups import BACKED_UP
from tests.conftest import Patron

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def pseudonym_of(cli, patron: Patron) -> bytes:
    key = load_settings(cli.instance, environ={}).pseudonym_key.encode()
    return Pseudonymizer(key)(patron.card).encode()


def ready(cli, item: str, patron: Patron, branch: str = "MAIN") -> dict:
    return cli.ok(
        "ready", "--branch", branch, "--item", item, "--patron", "-", "--json", stdin=patron.card
    ).json


def live_file(cli) -> Path:
    return cli.instance / "holdshelf.sqlite3"


def set_taken_at(backup: Path, when: str) -> None:
    """Age a backup: what a backup made `when` would say."""
    connection = sqlite3.connect(backup)
    with connection:
        connection.execute("UPDATE instance_events SET at = ? WHERE event = ?", (when, BACKED_UP))
    connection.close()


def active_items(path: Path) -> set[str]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT item_barcode FROM holds WHERE status = 'ready'")
        return {row[0] for row in rows}
    finally:
        connection.close()


@sqlite_only
def test_a_backup_is_a_consistent_copy_without_ended_links(cli, patrons, tmp_path) -> None:
    waiting, collected = patrons[0], patrons[1]
    ready(cli, "I1", waiting)
    ready(cli, "I2", collected)
    cli.ok("pickup", "--item", "I2")  # its link is deleted at once (retention 0)
    target = tmp_path / "backups" / "nightly.sqlite3"
    target.parent.mkdir()
    # A writer is in the middle of a transaction while a copy is taken (the server runs): the
    # copy is of the last commit, and it does not wait for the writer.
    writer = sqlite3.connect(live_file(cli), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE holds SET item_barcode = 'UNCOMMITTED' WHERE item_barcode = 'I1'")
    engine = database.make_engine(f"sqlite:///{live_file(cli)}")
    try:
        during = backups.back_up(engine, tmp_path / "during.sqlite3", dt.datetime.now(dt.UTC))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        engine.dispose()
    assert b"UNCOMMITTED" not in during.path.read_bytes()
    assert active_items(during.path) == {"I1"}
    done = cli.ok("backup", str(target))
    assert f"backed up to {target}" in done.out and "1 active holds" in done.out
    raw = target.read_bytes()
    assert pseudonym_of(cli, waiting) in raw, "an active hold's link is in the backup"
    assert pseudonym_of(cli, collected) not in raw, "an ended hold's link is not"
    assert b"I2" not in raw
    assert active_items(target) == {"I1"}
    assert target.stat().st_mode & 0o077 == 0, "readable by its owner alone"
    assert not list(target.parent.glob("*.partial")) and sorted(target.parent.iterdir()) == [target]
    connection = sqlite3.connect(target)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    connection.close()
    assert cli.ok("privacy-audit", "--json").json["last_backup"] is not None
    cli.fails("backup", str(target), message="exists: give a new file name")


@sqlite_only
def test_restore_puts_the_backup_back(cli, patrons, tmp_path) -> None:
    first = ready(cli, "I1", patrons[0])
    target = tmp_path / "b.sqlite3"
    cli.ok("backup", str(target))
    later = ready(cli, "I2", patrons[1])
    done = cli.ok("restore", str(target))
    assert "restored" in done.out and "1 active holds" in done.out
    assert active_items(live_file(cli)) == {"I1"}
    shelf = cli.ok("shelf").out
    assert first["code"] in shelf and later["code"] not in shelf
    assert cli.ok("privacy-audit", "--json").json["last_purge"] is not None  # purged at once


@sqlite_only
def test_restore_refuses_a_backup_older_than_the_link_retention(cli, patrons, tmp_path) -> None:
    ready(cli, "I1", patrons[0])
    target = tmp_path / "old.sqlite3"
    cli.ok("backup", str(target))
    cli.ok("pickup", "--item", "I1")  # ended since the backup: its link is gone
    set_taken_at(target, "2026-01-05 03:00:00.000000")
    refused = cli.fails("restore", str(target), message="--accept-resurrected-links")
    assert "2026-01-05 03:00 UTC" in refused.err and "retention window" in refused.err
    assert pseudonym_of(cli, patrons[0]) not in live_file(cli).read_bytes()
    assert active_items(live_file(cli)) == set()
    forced = cli.ok("restore", str(target), "--accept-resurrected-links")
    assert "holdshelf sync" in forced.out  # what it means, and what to do
    assert active_items(live_file(cli)) == {"I1"}


@sqlite_only
def test_a_file_not_made_by_backup_says_so(cli, tmp_path) -> None:
    target = tmp_path / "copy.sqlite3"
    cli.ok("backup", str(target))
    connection = sqlite3.connect(target)
    with connection:
        connection.execute("DELETE FROM instance_events")
    connection.close()
    cli.fails("restore", str(target), message="does not say when it was taken")


@sqlite_only
def test_restore_checks_what_it_is_given(cli, tmp_path) -> None:
    cli.fails("restore", str(tmp_path / "missing.sqlite3"), message="no such file")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n" * 20)
    cli.fails("restore", str(text_file), message="is not an SQLite database")
    other = tmp_path / "other.sqlite3"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE t (x)")
    connection.close()
    cli.fails("restore", str(other), message="is not a Holdshelf database")
    newer = tmp_path / "newer.sqlite3"
    cli.ok("backup", str(newer))
    connection = sqlite3.connect(newer)
    with connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    connection.close()
    cli.fails("restore", str(newer), message="made by a newer version")
    broken = tmp_path / "broken.sqlite3"
    cli.ok("backup", str(broken))
    raw = bytearray(broken.read_bytes())
    raw[4096 * 3 : 4096 * 3 + 512] = b"\xff" * 512  # a page of the tables, overwritten
    broken.write_bytes(bytes(raw))
    cli.fails("restore", str(broken), message="broken.sqlite3")


INSTANCE_EVENTS_REVISION = "47a1f235e8e8"  # the migration that made instance_events


def revision_before(revision: str) -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(database._alembic_config(None))
    before = script.get_revision(revision).down_revision
    assert isinstance(before, str)
    return before


@sqlite_only
def test_restore_upgrades_an_older_schema(cli, patrons, tmp_path) -> None:
    ready(cli, "I1", patrons[0])
    older = tmp_path / "older.sqlite3"
    cli.ok("backup", str(older))
    # As the revision before instance_events left it (every later migration undone too):
    # such a backup cannot say when it was taken.
    from alembic import command

    engine = database.make_engine(f"sqlite:///{older}")
    command.downgrade(database._alembic_config(engine), revision_before(INSTANCE_EVENTS_REVISION))
    engine.dispose()
    cli.fails("restore", str(older), message="does not say when it was taken")
    done = cli.ok("restore", str(older), "--accept-resurrected-links")
    assert "schema upgraded" in done.out
    assert active_items(live_file(cli)) == {"I1"}
    engine = database.make_engine(f"sqlite:///{live_file(cli)}")
    database.check_schema(engine)
    engine.dispose()


@sqlite_only
def test_restore_refuses_while_a_worker_uses_the_database(cli, tmp_path) -> None:
    target = tmp_path / "b.sqlite3"
    cli.ok("backup", str(target))
    engine = database.make_engine(f"sqlite:///{live_file(cli)}")
    heard, stop = threading.Event(), threading.Event()
    listener = wakeup.for_engine(engine).listen(heard.set, stop)
    assert listener is not None and heard.wait(5)
    try:
        cli.fails("restore", str(target), message="stop `holdshelf serve` and `holdshelf worker`")
    finally:
        stop.set()
        listener.join(5)
        engine.dispose()
    cli.ok("restore", str(target))


def test_postgresql_is_backed_up_with_pg_dump(cli, database_url, tmp_path) -> None:
    target = tmp_path / "b.sqlite3"
    if database_url.startswith("sqlite"):
        cli.ok("backup", str(target))
        return
    cli.fails("backup", str(target), message="pg_dump")
    cli.fails("restore", str(target), message="pg_restore")
    assert not target.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_readme_pg_dump_recipe_restores_without_ended_links(
    cli, database_url, patrons, tmp_path
) -> None:
    """The README's recipe, run: pg_dump's custom format, pg_restore into a fresh database,
    `db upgrade`; the dump holds the waiting hold's link and not the collected one's."""
    import subprocess
    import uuid

    from sqlalchemy import make_url, text

    from tests.conftest import _admin_engine

    ready(cli, "I1", patrons[0])
    ready(cli, "I2", patrons[1])
    cli.ok("pickup", "--item", "I2")
    url = make_url(database_url)
    libpq = f"postgresql://{url.username}@{url.host}:{url.port or 5432}"
    dump = tmp_path / "holdshelf.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={dump}", f"{libpq}/{url.database}"],
        check=True,
        timeout=120,
    )
    script = subprocess.run(
        ["pg_restore", "--file=-", str(dump)], check=True, capture_output=True, timeout=120
    ).stdout
    assert pseudonym_of(cli, patrons[0]) in script
    assert pseudonym_of(cli, patrons[1]) not in script
    fresh = f"holdshelf_restore_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{fresh}"'))
    try:
        restore = ["pg_restore", "--clean", "--if-exists", "--no-owner"]
        subprocess.run(
            [*restore, f"--dbname={libpq}/{fresh}", str(dump)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        engine = database.make_engine(url.set(database=fresh).render_as_string(False))
        database.upgrade(engine)
        database.check_schema(engine)
        with engine.connect() as connection:
            items = connection.execute(text("SELECT item_barcode FROM holds")).scalars().all()
        engine.dispose()
        assert items == ["I1"]
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)'))
        admin.dispose()


@sqlite_only
def test_restore_refuses_while_another_process_has_the_database_open(cli, tmp_path) -> None:
    """A server's idle pooled connection, as another process holds it: no restore under it."""
    import subprocess
    import sys

    target = tmp_path / "b.sqlite3"
    cli.ok("backup", str(target))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1])\n"
            "c.execute('SELECT count(*) FROM holds').fetchone()\n"
            "print('open', flush=True)\n"
            "time.sleep(60)\n",
            str(live_file(cli)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        cli.fails("restore", str(target), message="another process has the database open")
    finally:
        holder.kill()
        holder.wait(10)
    cli.ok("restore", str(target))
