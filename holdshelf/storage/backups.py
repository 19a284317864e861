"""Backing up and restoring the SQLite database (`holdshelf backup`, `holdshelf restore`).

A backup is ``VACUUM INTO`` a new file: a consistent copy of the last commit, taken while the
server runs, that is written afresh row by row, so no erased value (a deleted link, an erased
contact) and no page of the write-ahead log comes along; ``secure_delete`` has zeroed them in
the live file already. The copy says when it was taken (an ``instance_events`` row), which is
what a restore weighs against the retention window for hold links: a backup still holds the
links of holds that have ended since, and restoring it would bring them back.

PostgreSQL is backed up with its own tools (README: pg_dump).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from holdshelf.errors import ConfigError, InvalidInput
from holdshelf.storage.models import BACKED_UP, Hold, InstanceEvent

SQLITE_HEADER = b"SQLite format 3\x00"
HOLDSHELF_TABLES = ("alembic_version", "holds", "shelf_codes", "instance_events")
# The restore's allowance beyond retention.ended_hold_days: the hourly purge deletes due links
# up to an hour late, so a backup of the last hour brings back no more than the server keeps.
RESTORE_GRACE = dt.timedelta(hours=1)
LOCK_WAIT_SECONDS = 1.0  # for a moment's reader to finish, not for a running server
IN_USE = (
    "another process has the database open: stop `holdshelf serve` and `holdshelf worker` "
    "(and any import), then restore"
)
POSTGRES_RECIPE = (
    "this instance's database is PostgreSQL: back it up with pg_dump and restore with "
    "pg_restore (README: Backup and restore)"
)


@dataclass(frozen=True)
class BackupInfo:
    """What a backup file is, as a restore checks it."""

    path: Path
    revision: str
    taken_at: dt.datetime | None  # None: not made by `holdshelf backup`
    active_holds: int
    size: int


def sqlite_file(engine: Engine) -> Path:
    """The database file of an SQLite engine; a one-line error for PostgreSQL."""
    if engine.dialect.name != "sqlite":
        raise InvalidInput(POSTGRES_RECIPE)
    database = engine.url.database
    if not database or database == ":memory:":
        raise InvalidInput("an in-memory database cannot be backed up")
    return Path(database).resolve()


def back_up(engine: Engine, target: Path, taken_at: dt.datetime) -> BackupInfo:
    """A consistent copy of the live database at ``target`` (which must not exist), readable
    only by its owner, carrying ``taken_at``. Written beside ``target`` first and renamed, so a
    copy cut short is never mistaken for a backup."""
    source = sqlite_file(engine)
    target = target.resolve()
    if target == source:
        raise InvalidInput("a backup cannot overwrite the database it copies")
    if target.exists():
        raise InvalidInput(f"{target} exists: give a new file name")
    if not target.parent.is_dir():
        raise InvalidInput(f"{target.parent} is not a folder")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        # Made empty and the owner's alone (pseudonyms, sealed contacts) before a byte is in it.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        _vacuum_into(engine, partial)
        _stamp(partial, taken_at)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return inspect(target)


def _vacuum_into(engine: Engine, target: Path) -> None:
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM INTO ?", (str(target),))
    except sqlite3.Error as exc:
        raise InvalidInput(f"cannot write {target.name}: {exc}") from None
    finally:
        raw.close()


def _stamp(path: Path, taken_at: dt.datetime) -> None:
    """Write when the copy was taken into the copy itself (it is in rollback-journal mode:
    VACUUM INTO writes no WAL, and this leaves none behind)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session, session.begin():
            session.merge(InstanceEvent(event=BACKED_UP, at=taken_at))
    finally:
        engine.dispose()


def inspect(path: Path) -> BackupInfo:
    """Check that ``path`` is a sound Holdshelf database; what it holds. One-line errors."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}")
    with path.open("rb") as file:
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise InvalidInput(f"{path} is not an SQLite database")
    with _read_only(path) as connection:
        try:
            checked = connection.execute("PRAGMA integrity_check").fetchall()
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise InvalidInput(f"{path} cannot be read as a database: {exc}") from None
        if checked != [("ok",)]:
            raise InvalidInput(f"{path} fails SQLite's integrity check: {checked[0][0]}")
        missing = [name for name in HOLDSHELF_TABLES[:3] if name not in tables]
        if missing:
            raise InvalidInput(f"{path} is not a Holdshelf database (no {missing[0]} table)")
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    if revision is None:
        raise InvalidInput(f"{path} has no schema revision")
    taken_at, active = _contents(path, "instance_events" in tables)
    return BackupInfo(path, revision[0], taken_at, active, path.stat().st_size)


@contextlib.contextmanager
def _read_only(path: Path):  # type: ignore[no-untyped-def]
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield connection
    finally:
        connection.close()


def _contents(path: Path, has_events: bool) -> tuple[dt.datetime | None, int]:
    engine = create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    )
    try:
        with Session(engine) as session:
            active = session.scalar(
                select(func.count()).select_from(Hold).where(Hold.status == "ready")
            )
            taken = session.get(InstanceEvent, BACKED_UP) if has_events else None
            return (taken.at if taken else None), active or 0
    finally:
        engine.dispose()


def check_revision(revision: str, head: str, known: set[str]) -> bool:
    """Whether a backup's schema needs upgrading after the restore (raises when this code
    cannot work with it: a backup of a newer Holdshelf)."""
    if revision == head:
        return False
    if revision not in known:
        raise InvalidInput(
            f"the backup's schema ({revision}) is not one this Holdshelf knows: it was made by "
            "a newer version; restore it with that version"
        )
    return True


def too_old(info: BackupInfo, now: dt.datetime, retention_days: int) -> str | None:
    """Why restoring this backup would bring back links to patrons that the instance has since
    deleted (None when it would not: it is within the retention window for hold links)."""
    if info.taken_at is None:
        return "the file does not say when it was taken (it was not made by holdshelf backup)"
    window = dt.timedelta(days=retention_days) + RESTORE_GRACE
    if now - info.taken_at <= window:
        return None
    return (
        f"the backup was taken {info.taken_at:%Y-%m-%d %H:%M} UTC, longer ago than the "
        f"retention window for hold links ({retention_days} days, retention.ended_hold_days)"
    )


def restore(source: Path, engine: Engine) -> None:
    """Copy the backup over the instance's database, page by page through SQLite's backup
    API (every page of the old file is overwritten or cut off, and its WAL folded away),
    holding the database alone: refused while any other process has it open."""
    target = sqlite_file(engine)
    engine.dispose()  # this process's pooled connections must not outlive the old contents
    with _read_only(source) as backup:
        live = sqlite3.connect(target, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
        try:
            _hold_alone(live)
            live.execute("PRAGMA secure_delete = ON")
            backup.backup(live)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot restore into {target}: {exc}") from None
        finally:
            live.close()  # lets go of the lock
    live = sqlite3.connect(target, isolation_level=None)
    try:
        live.execute("PRAGMA journal_mode = WAL")
        live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        live.close()


def _hold_alone(live: sqlite3.Connection) -> None:
    """Take the database's lock for good (exclusive locking mode keeps it after the commit):
    it cannot be had while another connection, of any process, has the database open (a
    server's idle pooled connections too, in WAL mode), and nobody can open it meanwhile."""
    live.execute("PRAGMA locking_mode = EXCLUSIVE")
    try:
        live.execute("BEGIN EXCLUSIVE")
        live.execute("SELECT count(*) FROM sqlite_master").fetchone()
        live.execute("COMMIT")
    except sqlite3.OperationalError:
        raise InvalidInput(IN_USE) from None
