"""Waking the worker from any process the moment a slip or notice is queued.

A transaction that queues an outbox row (holdshelf.outbox) announces it, through session
events :func:`install` puts on the composition root's sessions, so no use case has to remember
to: on PostgreSQL with a ``NOTIFY`` in that very transaction, which the server delivers only if
it commits; on SQLite with a byte, after the commit, to the datagram socket of every worker of
that database (a folder beside the database file), and by a direct call to the workers of the
committing process. The worker listens (:meth:`Wakeup.listen`) and starts its next pass at once
instead of at its next poll.

Nothing depends on it. A wake-up lost (no worker running, a folder it may not write, the
LISTEN connection down for a moment) leaves the row to the worker's poll, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from holdshelf.errors import unexpected
from holdshelf.storage.models import OutboxMixin

log = logging.getLogger(__name__)

CHANNEL = "holdshelf_outbox"  # PostgreSQL's channels are per database: one name will do
QUEUED_KEY = "holdshelf_outbox_queued"  # in Session.info: this transaction queued a row
LISTEN_SECONDS = 0.5  # how often a listener looks whether it should stop
RECONNECT_SECONDS = 5.0  # after the LISTEN connection failed; the poll covers the gap
SOCKET_PATH_MAX = 107  # bytes in sockaddr_un's path, less its NUL (Linux: 108)
SOCKET_NAME_MAX = 20  # "<pid in hex>-<4 hex>.sock"


class Wakeup:
    """No wake-up across processes (a database without a folder, like in-memory SQLite): the
    worker finds rows by polling. Subclasses say how writers announce and workers hear."""

    def announce(self, session: Session) -> None:
        """In the committing transaction of ``session``, which queued a row."""

    def committed(self) -> None:
        """After a transaction that queued a row has committed."""

    def listen(self, wake: Callable[[], None], stop: threading.Event) -> threading.Thread | None:
        """Call ``wake`` whenever another process announces a row, until ``stop`` is set: a
        thread, or None where there is nothing to listen to."""
        return None


NO_WAKEUP = Wakeup()


def for_engine(engine: Engine) -> Wakeup:
    """The wake-up the database of ``engine`` offers."""
    if engine.dialect.name == "postgresql":
        return PostgresWakeup(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        path = Path(database).resolve()
        return SocketWakeup(path.with_name(f"{path.name}.wake"))
    return NO_WAKEUP


def install(sessions: sessionmaker[Session], wakeup: Wakeup) -> None:
    """Make every transaction of ``sessions`` that queues a slip or notice wake the workers."""
    event.listen(sessions, "after_flush", _note_queued)
    event.listen(sessions, "before_commit", lambda session: _before_commit(session, wakeup))
    event.listen(sessions, "after_commit", lambda session: _after_commit(session, wakeup))
    event.listen(sessions, "after_transaction_end", _forget)


def mark_queued(session: Session) -> None:
    """Announce rows made due by an UPDATE (a notice sent again now), which no flush sees."""
    session.info[QUEUED_KEY] = True


def _queues(objects: Any) -> bool:
    return any(isinstance(obj, OutboxMixin) for obj in objects)


def _note_queued(session: Session, _flush_context: Any) -> None:
    if _queues(session.new):  # still the flushed objects here (SQLAlchemy's after_flush)
        mark_queued(session)


def _before_commit(session: Session, wakeup: Wakeup) -> None:
    # Savepoints commit too (an import's rows): announce once, in the transaction itself. Rows
    # not flushed yet are flushed after this event, so they are looked for in session.new.
    if session.in_nested_transaction():
        return
    if session.info.get(QUEUED_KEY) or _queues(session.new):
        mark_queued(session)
        wakeup.announce(session)


def _after_commit(session: Session, wakeup: Wakeup) -> None:
    if not session.in_nested_transaction() and session.info.get(QUEUED_KEY):
        wakeup.committed()


def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the whole transaction, committed or rolled back
        session.info.pop(QUEUED_KEY, None)


class PostgresWakeup(Wakeup):
    """LISTEN/NOTIFY: a notification is sent with the commit that queued the row, never for a
    transaction rolled back, and to every listening worker (every app server's)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def announce(self, session: Session) -> None:
        session.connection().exec_driver_sql(f"NOTIFY {CHANNEL}")

    def listen(self, wake: Callable[[], None], stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(
            target=self._listen, args=(wake, stop), name="outbox-listen", daemon=True
        )
        thread.start()
        return thread

    def _listen(self, wake: Callable[[], None], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._listen_on_one_connection(wake, stop)
            except Exception as exc:  # the server restarting: poll until it is back
                log.warning("listening for queued slips failed: %s", unexpected(exc))
                stop.wait(RECONNECT_SECONDS)

    def _listen_on_one_connection(self, wake: Callable[[], None], stop: threading.Event) -> None:
        proxied = self._engine.raw_connection()
        driver = proxied.driver_connection
        proxied.detach()  # held for as long as the worker runs: not the pool's to hand out
        try:
            driver.autocommit = True  # LISTEN takes effect now, not at a commit
            driver.execute(f"LISTEN {CHANNEL}")
            wake()  # what was queued while nobody listened
            while not stop.is_set():
                for _notification in driver.notifies(timeout=LISTEN_SECONDS, stop_after=1):
                    wake()
        finally:
            proxied.close()


class SocketWakeup(Wakeup):
    """Unix datagram sockets in ``folder``, one per listening worker: a writer sends each a
    byte, never waiting (a socket whose queue is full already has a wake-up waiting), and
    removes those no worker has open any more (a worker killed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sender: socket.socket | None = None
        # The sockets this object listens on, with their wake-up: a commit in this process
        # wakes those directly, not through a datagram and the listener's thread (a sixth of
        # what an API request cost the server).
        self._here: dict[str, Callable[[], None]] = {}

    def committed(self) -> None:
        for wake in list(self._here.values()):
            wake()
        try:
            names = [
                name
                for name in os.listdir(self.folder)
                if name.endswith(".sock") and name not in self._here
            ]
            if not names:
                return
            with _addressable(self.folder) as address:
                for name in names:
                    self._poke(f"{address}/{name}", self.folder / name)
        except OSError:  # no worker has listened here yet, or the folder cannot be named
            return

    def _poke(self, address: str, path: Path) -> None:
        try:
            self._socket().sendto(b"!", address)
        except ConnectionRefusedError:  # nobody has it open: a worker that died
            with contextlib.suppress(OSError):
                path.unlink()
        except OSError:  # full (it will wake anyway), just removed, or not ours to write
            pass

    def listeners(self) -> int:
        """How many workers listen here now: a socket is live while its worker has it open
        (connecting to one nobody has open is refused). ``holdshelf restore`` asks."""
        try:
            names = [name for name in os.listdir(self.folder) if name.endswith(".sock")]
            if not names:
                return 0
            with _addressable(self.folder) as address:
                return sum(self._live(f"{address}/{name}") for name in names)
        except OSError:  # no worker has listened here yet
            return 0

    @staticmethod
    def _live(address: str) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(address)
        except OSError:  # refused (a worker that died) or removed meanwhile
            return False
        finally:
            probe.close()
        return True

    def _socket(self) -> socket.socket:
        if self._sender is None:
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            self._sender = sender
        return self._sender

    def listen(self, wake: Callable[[], None], stop: threading.Event) -> threading.Thread | None:
        bound = self._bind()
        if bound is None:
            return None
        self._here[bound[1].name] = wake
        thread = threading.Thread(
            target=self._receive, args=(*bound, wake, stop), name="outbox-listen", daemon=True
        )
        thread.start()
        return thread

    def _bind(self) -> tuple[socket.socket, Path] | None:
        # A random name: several workers (threads of one process too) each have their own.
        path = self.folder / f"{os.getpid():x}-{secrets.token_hex(2)}.sock"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            with _addressable(self.folder) as address:
                receiver.bind(f"{address}/{path.name}")
        except OSError as exc:
            receiver.close()
            log.warning("no wake-up socket in %s (%s): polling only", self.folder, exc)
            return None
        receiver.setblocking(False)
        return receiver, path

    def _receive(
        self, receiver: socket.socket, path: Path, wake: Callable[[], None], stop: threading.Event
    ) -> None:
        try:
            wake()  # what was queued before the socket was there
            while not stop.is_set():
                readable, _, _ = select.select([receiver], [], [], LISTEN_SECONDS)
                if readable:
                    _drain(receiver)  # an import's many commits: one pass takes all their rows
                    wake()
        finally:
            self._here.pop(path.name, None)
            receiver.close()
            with contextlib.suppress(OSError):
                path.unlink()


def _drain(receiver: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while True:
            receiver.recv(64)


@contextmanager
def _addressable(folder: Path) -> Iterator[str]:
    """How a socket address names ``folder``: its path or, where that is too long for one (an
    instance deep in a file system), Linux's /proc/self/fd link to it, while this lasts."""
    if len(os.fsencode(folder)) + 1 + SOCKET_NAME_MAX <= SOCKET_PATH_MAX:
        yield os.fspath(folder)
        return
    if not hasattr(os, "O_PATH"):
        raise OSError(f"the path of {folder} is too long for a socket")
    handle = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{handle}"
    finally:
        os.close(handle)
