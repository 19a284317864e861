"""Engines, sessions and schema migrations.

SQLite (the embedded default) runs in WAL mode with ``secure_delete`` so that deleted rows (an
ended hold's link to its patron) are overwritten, not left readable in free pages.

SQLite has one write lock for the whole database. A write transaction takes it at its start
(``BEGIN IMMEDIATE``), so it never fails with "database is locked" upgrading a read to a write
when another process wrote meanwhile. The threads of one process take turns (a lock each waits
on); the thread whose turn it is waits for SQLite's lock, trying every millisecond or two, while
another process writes (see _begin_writing). Work that only reads uses :func:`read_sessions`:
a plain deferred ``BEGIN``, which in WAL mode neither waits for a writer nor holds one up. On
PostgreSQL both are ordinary transactions.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.errors import ConfigError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# The newest migration. Checked on every start without loading Alembic (~0.15 s); a test keeps
# it equal to the migrations' head.
SCHEMA_REVISION = "ad46d57a8951"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# An import's inserts land at random places of several indexes (codes and pseudonyms are
# random), so each of its batches dirties more pages the bigger the tables grow. What each such
# page costs, kept down: each connection's page cache, filled only as pages are read (SQLite's
# 2 MiB held too little of the indexes of 50,000 holds); savepoints' journals in memory, not a
# temporary file written a page at a time; and the WAL folded into the database every 10,000
# pages written, not every 1,000, so a page that every batch dirties is copied once per fold,
# not once per batch (the folds after an erasure, which truncate the WAL, are unchanged).
SQLITE_CACHE_KIB = 32 * 1024
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_WAIT_MS = 2_000
# How often a waiting SQLite writer tries for the lock. SQLite's own busy handler sleeps up to
# 100 ms between tries, so a writer that commits and begins again within a few milliseconds (an
# import between its batches) kept a desk check-in waiting for as long as 30 s and more.
WRITE_POLL_SECONDS = 0.001
LONGEST_WRITE_POLL_SECONDS = 0.002
# The execution option of connections that only read (see read_sessions).
READ_ONLY = "holdshelf_read_only"
# Marks, in a pooled connection's info, the connection whose write transaction holds its
# process's writing turn (see _sqlite_engine).
HOLDS_WRITING_TURN = "holdshelf_writing_turn"


def make_engine(database_url: str) -> Engine:
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ConfigError("database_url is not a valid database URL") from None
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(database_url)
        # hide_parameters: an IntegrityError must not carry a pseudonym into a log.
        return create_engine(url, hide_parameters=True, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        if url.get_backend_name() == "postgresql":
            raise ConfigError(
                "PostgreSQL support is not installed: pip install 'holdshelf[postgres]'"
            ) from None
        raise ConfigError(f"unsupported database_url: {exc}") from None


def _sqlite_engine(database_url: str) -> Engine:
    engine = create_engine(
        database_url,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            f"busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "foreign_keys = ON",
            "secure_delete = ON",
            f"cache_size = -{SQLITE_CACHE_KIB}",  # negative: KiB, not pages
            "temp_store = MEMORY",
            f"wal_autocheckpoint = {SQLITE_AUTOCHECKPOINT_PAGES}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    # The threads of one process take turns to write: a writer waits here and is let in the
    # moment the one before it ends, where polling SQLite's lock (below) lost a millisecond or
    # two at every hand-over, and every thread polled at once. Only the thread holding the
    # turn polls for the lock, against the other processes' writers.
    writing_turn = threading.Lock()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        if connection.get_execution_options().get(READ_ONLY):
            driver.execute("BEGIN")  # deferred: sees the last commit, takes no lock
            return
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        if not writing_turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise _busy("BEGIN IMMEDIATE", sqlite3.OperationalError("database is locked"))
        try:
            _begin_writing(driver, deadline)
        except BaseException:
            writing_turn.release()
            raise
        connection.info[HOLDS_WRITING_TURN] = True

    def _end(driver: sqlite3.Connection, info: dict[str, Any], statement: str) -> None:
        """End the transaction here (SQLAlchemy's own COMMIT or ROLLBACK then finds none
        open) and give up the writing turn; a COMMIT that fails keeps the turn until the
        ROLLBACK that follows."""
        if not info.get(HOLDS_WRITING_TURN):
            return
        if driver.in_transaction:
            try:
                driver.execute(statement)
            except sqlite3.Error as exc:
                if statement == "COMMIT":
                    raise _busy(statement, exc) from None
        info.pop(HOLDS_WRITING_TURN)
        writing_turn.release()

    @event.listens_for(engine, "commit")
    def _commit(connection: Connection) -> None:
        _end(connection.connection.driver_connection, connection.info, "COMMIT")

    @event.listens_for(engine, "rollback")
    def _rollback(connection: Connection) -> None:
        _end(connection.connection.driver_connection, connection.info, "ROLLBACK")

    # A connection given back to the pool, closed or invalidated inside a write transaction
    # (no commit or rollback event) ends it and the turn too.
    def _give_back(dbapi_connection: sqlite3.Connection, record: Any) -> None:
        # Being closed or invalidated, its transaction ends with it if the ROLLBACK fails.
        if record is not None:
            with contextlib.suppress(sqlite3.Error):
                _end(dbapi_connection, record.info, "ROLLBACK")

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
        _give_back(dbapi_connection, connection_record)

    @event.listens_for(engine, "close")
    def _close(dbapi_connection: Any, connection_record: Any) -> None:
        _give_back(dbapi_connection, connection_record)

    @event.listens_for(engine, "invalidate")
    def _invalidate(dbapi_connection: Any, connection_record: Any, exception: Any) -> None:
        _give_back(dbapi_connection, connection_record)

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse_writes(
        connection: Connection,
        _cursor: Any,
        _statement: str,
        _params: Any,
        context: Any,
        _many: bool,
    ) -> None:
        # A deferred transaction that writes must upgrade to the write lock, which fails at once,
        # without waiting, whenever another process wrote since it began: a bug to catch here.
        writes = context is not None and (context.isinsert or context.isupdate or context.isdelete)
        if writes and connection.get_execution_options().get(READ_ONLY):
            raise ReadOnlyViolation("a read-only session wrote: use sessions.begin() to write")

    return engine


class ReadOnlyViolation(RuntimeError):
    """Code that writes ran in a session from :func:`read_sessions` (a bug)."""


def _busy(statement: str, exc: sqlite3.Error) -> DBAPIError:
    return DBAPIError.instance(statement, (), exc, sqlite3.Error)


def _begin_writing(driver: sqlite3.Connection, deadline: float) -> None:
    """``BEGIN IMMEDIATE``, trying every millisecond or two until ``deadline``, so a writer
    gets the lock in the short pause another process's import leaves between its batches."""
    poll = WRITE_POLL_SECONDS
    driver.execute("PRAGMA busy_timeout = 0")  # each try returns at once; we do the waiting
    try:
        while True:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise _busy("BEGIN IMMEDIATE", exc) from None
            time.sleep(poll)
            poll = min(poll * 2, LONGEST_WRITE_POLL_SECONDS)
    finally:
        driver.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def reading(engine: Engine) -> Engine:
    """The engine for work that only reads (see read_sessions)."""
    return engine.execution_options(**{READ_ONLY: True})


def read_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for work that only reads: lookups, lists, status pages, a worker's look for
    something due. On SQLite they begin deferred, so a read waits for no writer (an import, a
    check-in) and holds none up; writing through one raises :class:`ReadOnlyViolation`. They
    never flush: code that changes an object only to see whether it would (Accounts.session)
    finds the change in ``session.dirty`` and writes it in a transaction of ``sessions``."""
    return sessionmaker(reading(sessions.kw["bind"]), expire_on_commit=False, autoflush=False)


def transient(exc: DBAPIError) -> bool:
    """Whether trying the same transaction again may well succeed: SQLite's lock held past the
    busy timeout, or PostgreSQL's serialization failures, deadlocks and dropped connections."""
    return isinstance(exc, OperationalError) or exc.connection_invalidated


def dialect_insert(session: Session, model: type[Any]) -> Any:
    """An INSERT that supports ``on_conflict_do_update`` (upserts) on both databases."""
    dialect = session.get_bind().dialect.name
    return (sqlite.insert if dialect == "sqlite" else postgresql.insert)(model)


def serialise_on(session: Session, *keys: str) -> None:
    """Make transactions about the same ``keys`` (hex digests) run one after another, across
    threads and app servers, until this transaction ends: on PostgreSQL with advisory locks,
    taken in one order so two transactions never wait on each other. SQLite needs nothing:
    a write transaction there begins with the write lock (BEGIN IMMEDIATE), so call this in
    one (``sessions.begin()``), never in a read session."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        lock_id = int.from_bytes(bytes.fromhex(key[:16]), "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})


def checkpoint(engine: Engine, wait_ms: int = CHECKPOINT_WAIT_MS) -> bool:
    """Fold SQLite's write-ahead log into the database and truncate it, so page images of
    deleted rows do not linger in the WAL file (``secure_delete`` has zeroed them in the
    database itself). False if readers kept it from finishing within ``wait_ms``: the next
    one folds the rest. Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return True
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # TRUNCATE holds the write lock while it waits for readers: wait briefly (desk
        # check-ins queue behind it), and leave the rest to the next purge if readers linger.
        cursor.execute(f"PRAGMA busy_timeout = {wait_ms}")
        busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        raw.close()
    return not busy


def refresh_statistics(engine: Engine, tables: tuple[str, ...]) -> None:
    """After a bulk write, let PostgreSQL's planner see how big ``tables`` have grown. Until
    autovacuum gets to it (or for ever where it is switched off), plans cached when a table was
    nearly empty keep scanning it whole: a 10,000-row import slowed from 121 to 60 rows/s.
    Nothing to do on SQLite."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
            connection.commit()
    except DBAPIError as exc:  # only an optimisation: what was imported stays imported
        log.warning("ANALYZE after a bulk write failed (%s)", type(exc.orig).__name__)


# Alembic is imported only where the schema is touched: it costs every command ~0.15 s to load.
def _alembic_config(engine: Engine | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def upgrade_url(database_url: str) -> None:
    """Bring the schema of ``database_url`` to the newest revision, on an engine of its own
    that is closed after: no connection of a command's upgrade outlives it (a restore wants
    the database to itself)."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database whose schema is missing or not this code's."""
    try:
        with reading(engine).connect() as connection:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        if "alembic_version" in str(exc.orig):  # SQLite: no such table
            current = None
        else:
            reason = str(exc.orig).strip().splitlines()[0]
            raise ConfigError(f"cannot open the database: {reason}") from None
    except ProgrammingError:  # PostgreSQL: relation does not exist
        current = None
    if current is None:
        raise ConfigError("the database has no Holdshelf schema: run `holdshelf init`")
    if current != SCHEMA_REVISION:
        raise ConfigError("the database schema is out of date: run `holdshelf db upgrade`")


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def known_revisions() -> set[str]:
    """Every schema revision this code's migrations know (a backup of any of them upgrades)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config(None))
    return {script.revision for script in scripts.walk_revisions()}
