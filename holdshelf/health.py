"""What operations watch: the workers' heartbeats, the queues' ages, the figures behind
``GET /healthz`` and ``GET /metrics``, and the ILS calls that failed.

Everything here is counts, ages, branch ids and printer names (configuration): never a shelf
code, a barcode, a card, a pseudonym or anything else about a patron.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from holdshelf.clock import Clock
from holdshelf.errors import unexpected
from holdshelf.storage.database import read_sessions
from holdshelf.storage.models import Delivery, Hold, Notice, PrintJob, WorkerHeartbeat

if TYPE_CHECKING:
    from holdshelf.ils.answers import Connector
    from holdshelf.print_worker import PrinterTrouble
    from holdshelf.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = dt.timedelta(seconds=5)
# A worker whose last beat is older than this is taken for dead: several beats missed.
HEARTBEAT_STALE = dt.timedelta(seconds=30)
# Rows of workers that died without saying so are removed by the next beat after this long.
HEARTBEAT_FORGET = dt.timedelta(hours=1)
QUEUES = {"print": PrintJob, "notice": Notice}


def worker_name() -> str:
    """A worker, as the heartbeat table names it: host, process id, and a few random
    characters (two workers in one process, as tests run them, each have their row)."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{secrets.token_hex(2)}"


class Heartbeat:
    """This process's row in ``worker_heartbeats``, renewed every HEARTBEAT_EVERY."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, name: str | None = None
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.name = name or worker_name()
        self._started = clock()

    def beat(self) -> None:
        """One UPDATE (an INSERT the first time); now and then, the rows of dead workers go."""
        now = self._clock()
        with self._sessions.begin() as session:
            renewed = session.execute(
                update(WorkerHeartbeat).where(WorkerHeartbeat.name == self.name).values(beat_at=now)
            ).rowcount
            if not renewed:
                session.execute(
                    delete(WorkerHeartbeat).where(WorkerHeartbeat.beat_at < now - HEARTBEAT_FORGET)
                )
                session.add(WorkerHeartbeat(name=self.name, started_at=self._started, beat_at=now))

    def forget(self) -> None:
        """A worker stopping cleanly says so: /healthz need not wait for its beat to age."""
        with self._sessions.begin() as session:
            session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == self.name))

    def run(self, stop: threading.Event) -> None:
        """Beat until ``stop`` is set, then forget; a database away for a moment is logged and
        the next beat tried as usual."""
        while True:
            try:
                self.beat()
            except SQLAlchemyError as exc:
                log.warning("worker heartbeat failed: %s", unexpected(exc))
            if stop.wait(HEARTBEAT_EVERY.total_seconds()):
                break
        try:
            self.forget()
        except SQLAlchemyError as exc:
            log.warning("worker heartbeat not removed: %s", unexpected(exc))

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="heartbeat", daemon=True)
        thread.start()
        return thread


# -- ILS calls ------------------------------------------------------------------------------


class IlsCalls:
    """ILS calls made and failed in this process, per operation (thread-safe)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, operation: str, *, failed: bool) -> None:
        with self._lock:
            self.calls[operation] += 1
            if failed:
                self.errors[operation] += 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self.calls), dict(self.errors)


ILS_OPERATIONS = ("trapped_hold", "hold_state", "check")
ILS_CALLS = IlsCalls()  # the process's: /metrics reads it


class CountedConnector:
    """A connector whose calls are counted in ``calls``; an IlsUnavailable counts as an error
    (an answer that the hold is not there, or a patron not found, is no error)."""

    def __init__(self, connector: Connector, calls: IlsCalls = ILS_CALLS) -> None:
        self._connector = connector
        self._calls = calls

    def _counted(self, operation: str, *args: Any) -> Any:
        from holdshelf.ils.answers import IlsUnavailable

        try:
            answer = getattr(self._connector, operation)(*args)
        except IlsUnavailable:
            self._calls.count(operation, failed=True)
            raise
        self._calls.count(operation, failed=False)
        return answer

    def trapped_hold(self, *args: Any) -> Any:
        return self._counted("trapped_hold", *args)

    def hold_state(self, *args: Any) -> Any:
        return self._counted("hold_state", *args)

    def check(self, *args: Any) -> Any:
        return self._counted("check", *args)

    def close(self) -> None:
        self._connector.close()

    def __getattr__(self, name: str) -> Any:  # what a connector offers beyond the protocol
        return getattr(self._connector, name)


# -- health ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    database: bool
    workers: int  # workers whose heartbeat is fresh
    oldest_slip_seconds: float | None  # None: no slip waiting (or the database is away)
    oldest_notice_seconds: float | None
    problem: str = ""  # why the database could not be read, for the log (no secret in it)

    @property
    def worker_alive(self) -> bool:
        return self.workers > 0

    @property
    def healthy(self) -> bool:
        return self.database and self.worker_alive

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "database": self.database,
            "worker_alive": self.worker_alive,
            "workers": self.workers,
            "oldest_queued_slip_seconds": self.oldest_slip_seconds,
            "oldest_queued_notice_seconds": self.oldest_notice_seconds,
        }


def health(sessions: sessionmaker[Session], clock: Clock) -> Health:
    """Three small reads; a database that cannot answer makes an unhealthy report, not an
    exception."""
    now = clock()
    try:
        with read_sessions(sessions)() as session:
            session.execute(text("SELECT 1"))
            workers = live_workers(session, now)
            oldest = {name: oldest_queued(session, model, now) for name, model in QUEUES.items()}
    except SQLAlchemyError as exc:
        return Health(False, 0, None, None, problem=unexpected(exc))
    return Health(True, workers, oldest["print"], oldest["notice"])


def live_workers(session: Session, now: dt.datetime) -> int:
    return (
        session.scalar(select(func.count()).where(WorkerHeartbeat.beat_at >= now - HEARTBEAT_STALE))
        or 0
    )


def oldest_queued(session: Session, model: Any, now: dt.datetime) -> float | None:
    """Seconds the oldest queued row of ``model`` has waited, or None if none waits."""
    created = session.scalar(
        select(func.min(model.created_at)).where(model.status == Delivery.QUEUED)
    )
    if created is None:
        return None
    if created.tzinfo is None:  # func.min bypasses the column type on SQLite
        created = created.replace(tzinfo=dt.UTC)
    return max(0.0, (now - created).total_seconds())


# -- metrics --------------------------------------------------------------------------------


@dataclass
class Metric:
    """One metric family in the Prometheus text exposition format."""

    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            inner = ",".join(f'{key}="{_escape(label)}"' for key, label in labels.items())
            selector = f"{{{inner}}}" if inner else ""
            yield f"{self.name}{selector} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def render(metrics: Iterable[Metric]) -> str:
    return "".join(f"{line}\n" for metric in metrics for line in metric.lines())


def metrics(
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: Clock,
    trouble: Callable[[str], PrinterTrouble | None],
    calls: IlsCalls = ILS_CALLS,
) -> list[Metric]:
    """Every metric /metrics serves. Raises SQLAlchemyError when the database cannot answer."""
    now = clock()
    up = Metric("holdshelf_database_up", "gauge", "Whether the database answered.")
    with read_sessions(sessions)() as session:
        families = [
            _holds(session),
            *_queues(session, settings, now),
            _workers(session, now),
        ]
    up.add(1)
    return [up, *families, *_printers(settings, trouble), *_ils(calls)]


def _holds(session: Session) -> Metric:
    holds = Metric(
        "holdshelf_holds",
        "gauge",
        "Holds stored, by branch, state and pickup mode (an ended hold's row is kept only "
        "within [retention] ended_hold_days).",
    )
    rows = session.execute(
        select(Hold.branch, Hold.status, Hold.mode, func.count()).group_by(
            Hold.branch, Hold.status, Hold.mode
        )
    )
    for branch, status, mode, count in sorted(rows):
        holds.add(count, branch=branch, state=status, mode=mode)
    return holds


def _queues(session: Session, settings: Settings, now: dt.datetime) -> list[Metric]:
    depth = Metric("holdshelf_queue_depth", "gauge", "Slips and notices waiting, per branch.")
    oldest = Metric(
        "holdshelf_queue_oldest_seconds",
        "gauge",
        "Age of the oldest waiting slip or notice per branch (0: none waiting).",
    )
    for queue, model in QUEUES.items():
        rows = session.execute(
            select(model.branch, func.count(), func.min(model.created_at))
            .where(model.status == Delivery.QUEUED)
            .group_by(model.branch)
        )
        found = {branch: (count, created) for branch, count, created in rows}
        for branch in sorted(set(settings.branches) | set(found)):
            count, created = found.get(branch, (0, None))
            depth.add(count, queue=queue, branch=branch)
            oldest.add(_age(created, now), queue=queue, branch=branch)
    return [depth, oldest]


def _age(created: dt.datetime | None, now: dt.datetime) -> float:
    if created is None:
        return 0.0
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return max(0.0, (now - created).total_seconds())


def _workers(session: Session, now: dt.datetime) -> Metric:
    workers = Metric(
        "holdshelf_workers_alive", "gauge", "Workers whose heartbeat is fresh (any process)."
    )
    workers.add(live_workers(session, now))
    return workers


def _printers(
    settings: Settings, trouble_of: Callable[[str], PrinterTrouble | None]
) -> list[Metric]:
    """As the desk's printer banner judges each branch's printer (``trouble_of``): from the
    queue, or a print agent's last report, not by asking the printers (a scrape stays quick)."""
    up = Metric(
        "holdshelf_printer_ok",
        "gauge",
        "1 unless the branch's printer failed a slip or a slip waited over a minute.",
    )
    troubled = Metric(
        "holdshelf_printer_troubled_slips", "gauge", "Slips failed or waiting over a minute."
    )
    for branch in settings.branches.values():
        trouble = trouble_of(branch.id)
        printer = settings.printers[branch.printer]
        labels = {"branch": branch.id, "printer": printer.name, "type": printer.type}
        up.add(0 if trouble else 1, **labels)
        troubled.add(trouble.waiting if trouble else 0, **labels)
    return [up, troubled]


def _ils(calls: IlsCalls) -> list[Metric]:
    made, failed = calls.snapshot()
    total = Metric("holdshelf_ils_calls_total", "counter", "ILS calls made by this process.")
    errors = Metric(
        "holdshelf_ils_errors_total", "counter", "ILS calls that failed in this process."
    )
    for operation in ILS_OPERATIONS:
        total.add(made.get(operation, 0), operation=operation)
        errors.add(failed.get(operation, 0), operation=operation)
    return [total, errors]
