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
4. The statements and transactions each drain began per slip (a statement committing itself
   counts as a transaction): what a busy machine cannot blur.

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
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers
sys.path.insert(0, str(Path(__file__).parent))  # for scratch

from holdshelf.printers.connections import Attempt, connect
from holdshelf.printers.slips import RenderedSlip
from scratch import scratch_postgres
from sqlalchemy import Engine, event, select, text, update

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.slips import Slip
from holdshelf.instance import write_config
from holdshelf.print_worker import process_id
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.storage.models import PrintJob
from tests.helpers.fake_printer import FakePrinter

DRAIN_TIMEOUT = 900.0  # seconds: the slowest code measured drained 33 slips/s
DESK_AT = (1000, 2000, 3000)  # slips printed when a clerk makes a desk slip


@contextmanager
def instance(url: str | None, printer: FakePrinter) -> Iterator[Path]:
    """A demo instance printing MAIN's slips to ``printer``, on ``url`` (None: SQLite)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        write_config(path, demo=True)
        config = path / "holdshelf.toml"
        text = config.read_text().replace(
            "[branches.MAIN]\n", '[branches.MAIN]\nprinter = "desk"\n'
        )
        for key in ("card_pattern", "item_pattern", "check_digit"):  # made-up barcodes
            text = text.replace(f"\n{key} = ", f"\n# {key} = ")
        table = f'type = "network"\nhost = "127.0.0.1"\nport = {printer.port}\nprofile = "TM-T88V"'
        config.write_text(f"{text}\n[printers.desk]\n{table}\n")
        if url is not None:
            os.environ["HOLDSHELF_DATABASE_URL"] = url
        try:
            database.upgrade(database.make_engine(load_settings(path).database_url))
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
def running(root: Holdshelf) -> Iterator[None]:
    """The worker of ``root`` in a thread, polling each second as `serve` runs it."""
    stop = threading.Event()
    thread = threading.Thread(target=root.worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.5)  # its first pass (and listening) under way
    try:
        yield
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


def writer(path: Path, prefix: str, count: int) -> None:
    """Another process: COUNT holds made ready one at a time, at random moments; prints when
    each began (perf_counter is the system's monotonic clock, the same in every process)."""
    service = Holdshelf(load_settings(path)).service
    service.shelf("MAIN")  # connected and the schema checked: a running process, not a start
    started = []
    for n in range(count):
        time.sleep(random.uniform(0.05, 0.15))
        started.append(time.perf_counter())
        service.ready("MAIN", f"3{prefix}{n:08d}", f"2{prefix}{n:08d}")
    print(json.dumps(started))


def from_another_process(path: Path, printer: FakePrinter, prefix: str, count: int) -> list[float]:
    before = len(printer.connections)
    out = subprocess.run(
        [sys.executable, __file__, "--writer", str(path), prefix, str(count)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    ).stdout
    started = json.loads(out.strip().splitlines()[-1])
    printer.wait_for_connections(before + count, timeout=10)
    return [printer.last_byte_at[before + n] - start for n, start in enumerate(started)]


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


def ready_to_last_byte(label: str, url: str | None, samples: int) -> None:
    printer = FakePrinter().start()
    with instance(url, printer) as path:
        root = make_root(path)
        with running(root):
            woken = from_another_process(path, printer, "1", samples)
            local = in_this_process(root, printer, "2", samples)
        root.close()
        polled_root = make_root(path, wake=False)
        with running(polled_root):
            polled = from_another_process(path, printer, "3", max(20, samples // 4))
        polled_root.close()
    printer.stop()
    print(f"{label}: another process's ready -> last byte at the printer")
    print(f"  woken across processes:  {percentiles(woken)} ({len(woken)} slips)")
    print(f"  polling only (before):   {percentiles(polled)} ({len(polled)} slips)")
    print(f"  in-process wake (bare):  {percentiles(local)} ({len(local)} slips)")


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


def rates(times: list[float], start: float) -> tuple[float, float]:
    """Slips per second over the first 500 and the last 500."""
    window = min(500, len(times) - 1)
    first = window / (times[window - 1] - start)
    last = window / (times[-1] - times[-1 - window])
    return first, last


@contextmanager
def counting(engine: Engine) -> Iterator[Counter[str]]:
    """The transactions begun and statements run on ``engine`` (its option engines too)."""
    counts: Counter[str] = Counter()

    def began(_connection: object) -> None:
        counts["transactions"] += 1

    def executed(*_args: object) -> None:
        counts["statements"] += 1

    event.listen(engine, "begin", began)
    event.listen(engine, "before_cursor_execute", executed)
    try:
        yield counts
    finally:
        event.remove(engine, "begin", began)
        event.remove(engine, "before_cursor_execute", executed)


def per_slip(counts: Counter[str], count: int) -> str:
    return f"{counts['statements'] / count:.2f} / {counts['transactions'] / count:.2f}"


def timed_drain(printer: FakePrinter, count: int, drain: Callable[[], None]) -> tuple[float, float]:
    before = len(printer.connections)
    start = time.perf_counter()
    drain()
    printer.wait_for_connections(before + count, timeout=DRAIN_TIMEOUT)
    return rates(printer.last_byte_at[before : before + count], start)


def worker_drain(root: Holdshelf, printer: FakePrinter, count: int) -> tuple[float, float, list]:
    """The worker's drain, with a desk slip made at each of DESK_AT slips printed."""
    waits: list[float] = []
    before = len(printer.connections)

    def drain() -> None:
        with running(root):
            for n, at in enumerate(DESK_AT):
                if at < count:
                    printer.wait_for_connections(before + at, timeout=DRAIN_TIMEOUT)
                    waits.append(desk_slip(root, printer, f"9{n}"))
            printer.wait_for_connections(before + count + len(waits), timeout=DRAIN_TIMEOUT)

    first, last = timed_drain(printer, count, drain)
    return first, last, waits


def desk_slip(root: Holdshelf, printer: FakePrinter, prefix: str) -> float:
    """A clerk's check-in during the drain: seconds from `ready` to its slip's last byte."""
    start = time.perf_counter()
    entry = root.service.ready("MAIN", f"3{prefix}00000000", f"2{prefix}00000000")
    root.worker.wake()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while printer.printed(entry.code.display) == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    return time.perf_counter() - start


def draining(label: str, url: str | None, count: int) -> None:
    printer = FakePrinter().start()
    with instance(url, printer) as path:
        root = make_root(path)
        queue_import(root, "4", count)
        with counting(root.engine) as bare_counts:
            bare_first, bare_last = timed_drain(printer, count, lambda: bare_loop(root))
        queue_import(root, "5", count)  # behind the bare loop's printed rows, as in a day
        with counting(root.engine) as worker_counts:  # with the desk slips' few
            first, last, waits = worker_drain(root, printer, count)
        root.close()
    printer.stop()
    print(f"{label}: draining {count:,} imported slips (slips/s, first 500 / last 500)")
    print(f"  bare loop:  {bare_first:6.0f} / {bare_last:6.0f}")
    print(
        f"  worker:     {first:6.0f} / {last:6.0f}   "
        f"({first / bare_first:.2f}x / {last / bare_last:.2f}x bare)"
    )
    print(
        f"  statements / transactions per slip: bare {per_slip(bare_counts, count)}, "
        f"worker {per_slip(worker_counts, count)}"
    )
    shown = ", ".join(f"{wait:.3f} s" for wait in waits)
    print(f"  a desk slip made during the drain waited {shown} (ready -> last byte)")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    parts = sys.argv[3].split(",") if len(sys.argv) > 3 else ["latency", "drain"]
    for label in ("SQLite", "PostgreSQL"):
        with scratch_postgres() if label == "PostgreSQL" else nullcontext("") as url:
            if url is None:
                continue
            if "latency" in parts:
                ready_to_last_byte(label, url or None, samples)
            if "drain" in parts:
                draining(label, url or None, count)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        main()
