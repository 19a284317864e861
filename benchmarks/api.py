"""Holds per second through POST /api/v1/holds, served by `holdshelf serve` (waitress) on
loopback with its print worker running, beside the ceiling measured in the same run: a bare
Flask endpoint doing one INSERT per request (benchmarks/bare_flask.py) under the same waitress
settings, on the same kind of database (each server started once on a fresh database, then
holdshelf, bare, holdshelf, bare, ...). The holdshelf server prints to a device-file
printer (ESC/POS bytes only, as a real printer gets them; /dev/null here); run alone, this
script also measures it with the demo's preview printer (which draws a PNG of every slip).

Then, in process (the Flask test client), what one new hold costs the database: statements
(what SQLAlchemy has the driver execute; BEGIN, COMMIT and ROLLBACK not among them),
transactions begun (and how many of them rolled back), the time in the driver's execute
against the request's wall time.

Usage: python benchmarks/api.py [HOLDS] [CLIENTS]   (default 2000 holds over 4 clients)
PostgreSQL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test); a scratch database is
created and dropped per server. Unreachable PostgreSQL is reported and skipped.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bare_flask import READY
from common import (
    FILE_PRINTER,
    INTERLEAVED_RUNS,
    Database,
    Figure,
    barcode,
    child_environment,
    databases,
    demo_instance,
    free_port,
    interleaved,
    serving,
    show,
    temporary_folder,
    upgraded,
)
from sqlalchemy import event

from holdshelf.bootstrap import Holdshelf
from holdshelf.web import create_app

BARE_FLASK = Path(__file__).with_name("bare_flask.py")
UNLIMITED = {"HOLDSHELF_API__REQUESTS_PER_MINUTE": "1000000"}  # the server, not the limit


def post_holds(port: int, token: str, holds: int, clients: int, run: int = 0) -> dict[str, float]:
    """``holds`` new holds over ``clients`` keep-alive connections: holds/s, latencies (ms);
    ``run`` (below 100) keeps each run's barcodes apart."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors: list[int] = []
    per_client = holds // clients

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for n in range(per_client):
            k = run * 10**10 + number * 10**8 + n
            body = json.dumps({"item_barcode": barcode("3", k), "patron_card": barcode("2", k)})
            start = time.perf_counter()
            connection.request("POST", "/api/v1/holds", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - start)
            if response.status != 201:
                errors.append(response.status)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    assert not errors, f"{len(errors)} requests failed: {Counter(errors)}"
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
    }


@contextmanager
def holdshelf_server(kind: Database, printer: str | None) -> Iterator[tuple[int, str]]:
    """`holdshelf serve` of a fresh instance (``printer``: MAIN's printer table, None: the
    demo's preview printer) on a fresh database: its port and an API token."""
    with temporary_folder() as folder, kind.fresh() as url:
        instance = demo_instance(folder, printer=printer)
        root = Holdshelf(upgraded(instance, url))
        token = root.integrations.create_token("bench", ["MAIN"])
        root.close()
        env = child_environment(**UNLIMITED, **({"HOLDSHELF_DATABASE_URL": url} if url else {}))
        port = free_port()
        command = [sys.executable, "-m", "holdshelf", "--instance", str(folder), "serve"]
        with serving([*command, "--port", str(port)], env, "serving at"):
            yield port, token


@contextmanager
def bare_server(kind: Database) -> Iterator[int]:
    """The bare Flask endpoint on a fresh database of the same kind: its port."""
    with temporary_folder() as folder, kind.fresh() as url:
        port = free_port()
        database_url = url or f"sqlite:///{folder / 'bare.sqlite3'}"
        command = [sys.executable, str(BARE_FLASK), database_url, str(port)]
        with serving(command, child_environment(), READY):
            yield port


def figures(
    kind: Database,
    holds: int,
    clients: int,
    runs: int = INTERLEAVED_RUNS,
    printer: str | None = FILE_PRINTER,
) -> list[Figure]:
    """POST /api/v1/holds holds/s beside the bare Flask endpoint's: both servers started once,
    then ``runs`` runs of ``holds`` new holds against each in turn."""
    numbers = iter(range(1, 100))
    with holdshelf_server(kind, printer) as (port, token), bare_server(kind) as bare_port:
        served, bare = interleaved(
            runs,
            lambda: post_holds(port, token, holds, clients, next(numbers)),
            lambda: post_holds(bare_port, "none", holds, clients, next(numbers)),
        )
    printed = "file printer" if printer else "preview printer"
    latencies = ", ".join(f"{run['median_ms']:.1f}/{run['p95_ms']:.1f}" for run in served)
    return [
        Figure.of(
            f"POST /api/v1/holds, {kind.label}, {clients} clients, {printed}",
            "holds/s",
            [run["rate"] for run in served],
            ceiling=[run["rate"] for run in bare],
            ceiling_name="bare Flask, one INSERT",
            note=f"median/p95 ms per request: {latencies}",
        )
    ]


# -- statements per request --------------------------------------------------------------------


class StatementCounter:
    """Statements, transactions begun and rolled back, and the time spent in the driver's
    execute, on an engine (and the read-only engines made from it)."""

    def __init__(self, engine: Any) -> None:
        self.counts: Counter[str] = Counter()
        self.database_seconds = 0.0
        self._started: list[float] = []
        event.listen(engine, "begin", lambda _connection: self.counts.update(["begin"]))
        event.listen(engine, "rollback", lambda _connection: self.counts.update(["rollback"]))
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self.counts["statement"] += 1
        self._started.append(time.perf_counter())

    def _after(self, *_args: Any) -> None:
        self.database_seconds += time.perf_counter() - self._started.pop()

    def take(self) -> tuple[Counter[str], float]:
        taken, seconds = self.counts, self.database_seconds
        self.counts, self.database_seconds = Counter(), 0.0
        return taken, seconds


def statement_figures(kind: Database, posts: int, runs: int = INTERLEAVED_RUNS) -> list[Figure]:
    """Per new hold over the API (in process, after a few to warm up): statements,
    transactions, rolled back ones, database ms and wall ms; ``runs`` runs of ``posts``."""
    per_run: list[dict[str, float]] = []
    with temporary_folder() as folder, kind.fresh() as url:
        root = Holdshelf(upgraded(demo_instance(folder), url, **UNLIMITED))
        try:
            token = root.integrations.create_token("bench", ["MAIN"])
            client = create_app(root).test_client()
            headers = {"Authorization": f"Bearer {token}"}
            counter = StatementCounter(root.engine)
            numbers = iter(range(10**9))

            def post() -> None:
                n = next(numbers)
                hold = {"item_barcode": barcode("3", n), "patron_card": barcode("2", n)}
                response = client.post("/api/v1/holds", json=hold, headers=headers)
                assert response.status_code == 201, response.get_data(as_text=True)

            for _ in range(5):
                post()
            for _ in range(runs):
                counter.take()
                start = time.perf_counter()
                for _ in range(posts):
                    post()
                wall = time.perf_counter() - start
                counts, database_seconds = counter.take()
                per_run.append(
                    {
                        "statements": counts["statement"] / posts,
                        "transactions": counts["begin"] / posts,
                        "rolled-back transactions": counts["rollback"] / posts,
                        "database time": database_seconds / posts * 1000,
                        "wall time": wall / posts * 1000,
                    }
                )
        finally:
            root.close()
    return [
        Figure.of(
            f"{name} per API POST, {kind.label}",
            "ms" if name.endswith(" time") else "",
            [run[name] for run in per_run],
        )
        for name in per_run[0]
    ]


def main() -> None:
    holds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    for kind in databases(postgres=True):
        try:
            show(figures(kind, holds, clients))
            if kind.label == "SQLite":
                show(figures(kind, holds, clients, printer=None))
            show(statement_figures(kind, 100))
        except RuntimeError as exc:
            print(f"{kind.label}: skipped ({exc})")


if __name__ == "__main__":
    main()
