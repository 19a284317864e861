"""How fast the worker takes up slips, beside bare baselines measured in the same run.

1. A hold made ready by another process (a CLI, an import, a second app server) to its slip's
   last byte at a network printer (tests/helpers/fake_printer.py, a fast TM-T88V), with the
   worker running as `serve` and `holdshelf worker` run it: woken across processes (PostgreSQL
   LISTEN/NOTIFY, SQLite's wake socket), then with that wake-up switched off (polling each
   second, as before it), beside the in-process wake (the ready and the wake in one process).
2. The worker draining an import's COUNT queued slips to that printer: slips per second over
   the first and the last 500, beside a bare loop (claim one row, send it, record it: no
   leases, phases or checks) over another COUNT in the same database.
3. While it drains them, a slip made at the desk: its wait from `ready` to its last byte.

Each figure and its bare ceiling are measured in three interleaved runs (worker, bare, worker,
bare, ...); run_all.py calls latency_figures and drain_figures.

Usage: python benchmarks/worker_speed.py [COUNT] [SAMPLES] [latency,drain]
(defaults: 5000 slips drained, 200 slips timed per wake-up, both parts)
PostgreSQL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test); a scratch
database is created and dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers
sys.path.insert(0, str(Path(__file__).parent))  # for common

from common import (
    INTERLEAVED_RUNS,
    Database,
    Figure,
    databases,
    demo_instance,
    interleaved,
    network_printer,
    show,
    temporary_folder,
    upgraded,
)
from holdshelf.printers.connections import Attempt, connect
from holdshelf.printers.slips import RenderedSlip
from sqlalchemy import select, text, update

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.slips import Slip
from holdshelf.print_worker import process_id
from holdshelf.settings import load_settings
from holdshelf.storage.models import PrintJob
from tests.helpers.fake_printer import FakePrinter

DRAIN_TIMEOUT = 900.0  # seconds: the slowest code measured drained 33 slips/s


@contextmanager
def instance(kind: Database, printer: FakePrinter) -> Iterator[Path]:
    """A demo instance printing MAIN's slips to ``printer``, on a fresh database of ``kind``;
    its URL in HOLDSHELF_DATABASE_URL too, for the writer processes."""
    with temporary_folder() as folder, kind.fresh() as url:
        path = demo_instance(folder, printer=network_printer(printer.port), barcode_rules=False)
        upgraded(path, url)
        if url is not None:
            os.environ["HOLDSHELF_DATABASE_URL"] = url
        try:
            yield path
        finally:
            os.environ.pop("HOLDSHELF_DATABASE_URL", None)


def make_root(path: Path, *, wake: bool = True) -> Holdshelf:
    """The instance's parts; without ``wake``, no wake-up across processes (polling only)."""
    root = Holdshelf(load_settings(path))
    if not wake and hasattr(Holdshelf, "wakeup"):
        from holdshelf.storage.wakeup import NO_WAKEUP

        root.__dict__["wakeup"] = NO_WAKEUP
    return root


@contextmanager
def running(root: Holdshelf, settle: float = 0.5) -> Iterator[float]:
    """The worker of ``root`` in a thread, polling each second as `serve` runs it, ``settle``
    seconds after it started (its first pass and listening under way); yields when it started."""
    stop = threading.Event()
    thread = threading.Thread(target=root.worker.run_forever, args=(stop,), daemon=True)
    started = time.perf_counter()
    thread.start()
    time.sleep(settle)
    try:
        yield started
    finally:
        stop.set()
        root.worker.wake()
        thread.join(timeout=60)


def percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, round(len(ordered) * share) - 1)] * 1000

    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms, p95 {at(0.95):6.1f} ms, "
        f"p99 {at(0.99):6.1f} ms, max {ordered[-1] * 1000:6.1f} ms"
    )


# -- 1. ready -> last byte ---------------------------------------------------------------------


def writer(path: Path) -> None:
    """Another process: for each line "PREFIX COUNT" it reads, COUNT holds made ready one at a
    time, at random moments; prints when each began, a JSON line (perf_counter is the system's
    monotonic clock, the same in every process)."""
    service = Holdshelf(load_settings(path)).service
    service.shelf("MAIN")  # connected and the schema checked: a running process, not a start
    print("ready", flush=True)
    for line in sys.stdin:
        prefix, count = line.split()
        started = []
        for n in range(int(count)):
            time.sleep(random.uniform(0.05, 0.15))
            started.append(time.perf_counter())
            service.ready("MAIN", f"3{prefix}{n:08d}", f"2{prefix}{n:08d}")
        print(json.dumps(started), flush=True)


class AnotherProcess:
    """A process of its own making holds ready on the instance, as a CLI, an import or a second
    app server does; started once, asked for rounds of readies."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--writer", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        if self._line() != "ready":
            raise RuntimeError("the writer process did not start")

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def latencies(self, printer: FakePrinter, prefix: str, count: int) -> list[float]:
        """``count`` readies there, each to its slip's last byte at ``printer``."""
        assert self.process.stdin is not None
        before = len(printer.connections)
        self.process.stdin.write(f"{prefix} {count}\n")
        self.process.stdin.flush()
        started = json.loads(self._line())
        printer.wait_for_connections(before + count, timeout=10)
        return [printer.last_byte_at[before + n] - start for n, start in enumerate(started)]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def in_this_process(root: Holdshelf, printer: FakePrinter, prefix: str, count: int) -> list[float]:
    latencies = []
    for n in range(count):
        time.sleep(random.uniform(0.05, 0.15))
        before = len(printer.connections)
        start = time.perf_counter()
        root.service.ready("MAIN", f"3{prefix}{n:08d}", f"2{prefix}{n:08d}")
        root.worker.wake()  # what the web app does after a check-in
        printer.wait_for_connections(before + 1)
        latencies.append(printer.last_byte_at[before] - start)
    return latencies


def percentile_ms(latencies: list[float], share: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * share) - 1))] * 1000


def latency_figures(
    kind: Database, samples: int, runs: int = INTERLEAVED_RUNS, *, polled: bool = False
) -> list[Figure]:
    """Another process's ready -> last byte (p50, p99), beside the in-process wake, ``runs``
    interleaved runs of ``samples`` slips each; ``polled``: once more with the wake-up across
    processes switched off (polling each second, as before it)."""
    printer = FakePrinter().start()
    prefixes = iter(range(10, 90))
    try:
        with instance(kind, printer) as path:
            other = AnotherProcess(path)
            root = make_root(path)
            try:
                with running(root):
                    # Not measured: the worker's first passes and listening, each side's first
                    # ready (on a busy machine they outlast running()'s half second).
                    other.latencies(printer, "90", 3)
                    in_this_process(root, printer, "91", 3)
                    woken, local = interleaved(
                        runs,
                        lambda: other.latencies(printer, str(next(prefixes)), samples),
                        lambda: in_this_process(root, printer, str(next(prefixes)), samples),
                    )
                root.close()
                if polled:
                    polled_root = make_root(path, wake=False)
                    with running(polled_root):
                        slow = other.latencies(printer, "99", max(20, samples // 4))
                    polled_root.close()
            finally:
                other.close()
    finally:
        printer.stop()
    found = [
        Figure.of(
            f"ready in another process -> last byte, {kind.label}: {name}",
            "ms",
            [percentile_ms(run, share) for run in woken],
            ceiling=[percentile_ms(run, share) for run in local],
            ceiling_name="in-process wake",
        )
        for name, share in (("p50", 0.5), ("p99", 0.99))
    ]
    if polled:
        found.append(
            Figure.of(
                f"the same, polling only (before the wake-up), {kind.label}: p99",
                "ms",
                [percentile_ms(slow, 0.99)],
                note=percentiles(slow),
            )
        )
    return found


# -- 2. and 3. an import's drain and a desk slip ----------------------------------------------


def queue_import(root: Holdshelf, prefix: str, count: int) -> None:
    service = root.service
    requests = [
        service.hold_request("MAIN", f"3{prefix}{n:08d}", f"2{prefix}{n:08d}") for n in range(count)
    ]
    outcomes = service.ready_many(requests)
    assert not any(outcome.error for outcome in outcomes), outcomes[:3]


def bare_loop(root: Holdshelf) -> None:
    """Claim the oldest queued row, send it, record it: what any outbox loop must do."""
    engine, printer = root.engine, root.settings.printer_of("MAIN")
    jobs = PrintJob.__table__
    # Through the claim index where there is one (a literal status, as the index says it)
    order = [jobs.c.priority, jobs.c.id] if "priority" in jobs.c else [jobs.c.id]
    while True:
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as connection:
            row = connection.execute(
                select(jobs.c.id, jobs.c.payload, jobs.c.attempts)
                .where(text("status = 'queued'"))
                .order_by(*order)
                .limit(1)
            ).first()
            if row is None:
                return
            lease = {"leased_until": now + dt.timedelta(minutes=2), "attempts": row.attempts + 1}
            connection.execute(update(jobs).where(jobs.c.id == row.id).values(**lease))
        rendered = RenderedSlip(Slip.from_payload(json.loads(row.payload)), printer)
        attempt = Attempt(process_id(row.id, row.attempts + 1))
        connect(printer, root.settings.instance_dir).send(rendered.escpos, attempt=attempt)
        with engine.begin() as connection:
            done = {"status": "sent", "finished_at": now, "leased_until": None}
            connection.execute(update(jobs).where(jobs.c.id == row.id).values(**done))


def rate_window(count: int) -> int:
    return max(1, min(500, count // 10))


def rates(times: list[float], start: float) -> dict[str, float]:
    """Slips per second over all, the first 500 and the last 500 (a tenth, when fewer)."""
    window = rate_window(len(times))
    return {
        "all": len(times) / (times[-1] - start),
        "first": window / (times[window - 1] - start),
        "last": window / (times[-1] - times[-1 - window]),
    }


def timed_drain(printer: FakePrinter, count: int, drain: Callable[[], None]) -> dict[str, float]:
    before = len(printer.connections)
    start = time.perf_counter()
    drain()
    printer.wait_for_connections(before + count, timeout=DRAIN_TIMEOUT)
    return rates(printer.last_byte_at[before : before + count], start)


def worker_drain(root: Holdshelf, printer: FakePrinter, count: int, tag: str) -> dict:
    """The worker's drain, timed from its start (as the bare loop's), with a desk slip made at
    1/5, 2/5 and 3/5 of the slips printed (1,000, 2,000 and 3,000 of 5,000); their waits in
    "desk"."""
    waits: list[float] = []
    before = len(printer.connections)
    with running(root, settle=0) as start:
        for n in (1, 2, 3):
            printer.wait_for_connections(before + count * n // 5, timeout=DRAIN_TIMEOUT)
            waits.append(desk_slip(root, printer, f"9{tag}{n}"))
        printer.wait_for_connections(before + count + len(waits), timeout=DRAIN_TIMEOUT)
    return rates(printer.last_byte_at[before : before + count], start) | {"desk": waits}


def desk_slip(root: Holdshelf, printer: FakePrinter, prefix: str) -> float:
    """A clerk's check-in during the drain: seconds from `ready` to its slip's last byte."""
    start = time.perf_counter()
    entry = root.service.ready("MAIN", f"3{prefix}00000000", f"2{prefix}00000000")
    root.worker.wake()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while printer.printed(entry.code.display) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    return time.perf_counter() - start


def drain_figures(kind: Database, count: int, runs: int = INTERLEAVED_RUNS) -> list[Figure]:
    """The worker draining an import's ``count`` slips beside the bare loop draining as many,
    interleaved (each behind the printed rows of the runs before, as in a day); the rates
    over all, the first and the last 500; a desk slip's wait during the worker's drains."""
    printer = FakePrinter().start()
    tags = iter(range(10, 100))

    def queued(drain: Callable[[Holdshelf, str], dict]) -> Callable[[], dict]:
        def run() -> dict:
            tag = str(next(tags))
            queue_import(root, tag, count)
            return drain(root, tag)

        return run

    try:
        with instance(kind, printer) as path:
            root = make_root(path)
            try:
                worker, bare = interleaved(
                    runs,
                    queued(lambda root, tag: worker_drain(root, printer, count, tag)),
                    queued(lambda root, _tag: timed_drain(printer, count, lambda: bare_loop(root))),
                )
            finally:
                root.close()
    finally:
        printer.stop()
    found = [
        Figure.of(
            f"worker drains {count:,} slips, {kind.label}: {label}",
            "slips/s",
            [run[part] for run in worker],
            ceiling=[run[part] for run in bare],
            ceiling_name="bare claim-send-record loop",
        )
        for part, label in (
            ("all", "all"),
            ("first", f"first {rate_window(count)}"),
            ("last", f"last {rate_window(count)}"),
        )
    ]
    flat = ", ".join(f"{run['last'] / run['first']:.2f}" for run in worker)
    found[-1] = replace(found[-1], note=f"the worker's last / first, run by run: {flat}")
    waits = [wait for run in worker for wait in run["desk"]]
    shown = ", ".join(f"{wait:.3f}" for wait in waits)
    found.append(
        Figure.of(
            f"a desk slip's wait during the drain, {kind.label}",
            "s",
            waits,
            note=f"ready -> last byte, three per drain: {shown}",
        )
    )
    return found


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    parts = sys.argv[3].split(",") if len(sys.argv) > 3 else ["latency", "drain"]
    for kind in databases(postgres=True):
        try:
            if "latency" in parts:
                show(latency_figures(kind, samples, polled=True))
            if "drain" in parts:
                show(drain_figures(kind, count))
        except RuntimeError as exc:
            print(f"{kind.label}: skipped ({exc})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(Path(sys.argv[2]))
    else:
        main()
