"""Slips and notices doubled and lost per 1,000 under each fault, beside the same run without one.

Every slip goes through the real print queue (SQLite), a real worker and a real TCP connection
to tests/helpers/fake_printer.py, which plays an Epson TM-T88V (status and process ID answers,
``PRINT_SECONDS`` from a slip's last byte to its process ID response). A slip is "printed" when
the fake printer has read all of it (a receipt printer prints as it reads); doubled = printed
more than once, lost = never printed (or not recorded as sent at the end). Faults, each on
every slip of its run:

- none: the baseline.
- drop after the slip: the printer reads the whole slip, then the connection drops before it
  answers (a print server reset, a cable). The printer printed it and cannot tell anyone.
- stall, then print: after the status check the printer stops reading for ``STALL`` seconds
  (cover open, a jam), then reads and prints what it was sent.
- worker killed: the worker process is SIGKILLed at a moment drawn uniformly between "the
  printer has read the whole slip" and the moment the same worker records it in the baseline
  run (measured here first); then a new worker takes over once the lease has run out. Once for
  a printer with process IDs (TM-T88V), once for one with status answers only (POS-5890).
- SMTP lost reply: the mail server keeps each message and drops the connection before its
  "250". Notices, not slips: doubled = a recipient got the notice twice.

Usage: python benchmarks/delivery_faults.py [COUNT]   (COUNT slips per fault, default 1000)
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers

from holdshelf.printers import connections
from sqlalchemy import select

from holdshelf.bootstrap import Holdshelf
from holdshelf.instance import write_config
from holdshelf.print_worker import PrintWorker
from holdshelf.service import HoldService
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.storage.models import Notice, PrintJob
from tests.helpers.fake_printer import FakePrinter
from tests.helpers.servers import Mailbox

PRINT_SECONDS = 0.02  # a short slip on a fast thermal printer takes longer; shorter is harsher
STALL = 0.15  # seconds the stalled printer does not read
START = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)


class Clock:
    """The library's clock, moved on past backoffs and leases instead of waiting them out."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def today(self) -> dt.date:
        """The library's date: the demo leaves its time zone empty (this machine's)."""
        return self.now.astimezone().date()

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Result:
    kind: str
    count: int
    doubled: int
    marked: int  # doubles whose second copy said POSSIBLE DUPLICATE
    lost: int
    seconds: float
    note: str = ""

    def row(self) -> str:
        per = 1000 / self.count
        return (
            f"{self.kind:<38} {self.count:>6} {self.doubled * per:>9.1f} {self.marked * per:>8.1f}"
            f" {self.lost * per:>7.1f} {self.seconds:>7.1f}  {self.note}"
        )


@contextmanager
def instance(printer_table: str, extra: str = "") -> Iterator[tuple[Holdshelf, Clock]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        write_config(path, demo=True)
        config = path / "holdshelf.toml"
        text = config.read_text().replace(
            "[branches.MAIN]\n", '[branches.MAIN]\nprinter = "desk"\n'
        )
        for key in ("card_pattern", "item_pattern", "check_digit"):  # made-up barcodes
            text = text.replace(f"\n{key} = ", f"\n# {key} = ")
        head, sep, tail = text.partition("\n[branches.")
        config.write_text(f"{head}\n{extra}\n{sep}{tail}\n[printers.desk]\n{printer_table}\n")
        settings = load_settings(path)
        database.upgrade(database.make_engine(settings.database_url))
        clock = Clock()
        root = Holdshelf(settings, clock=clock)
        try:
            yield root, clock
        finally:
            root.close()


def network(printer: FakePrinter, profile: str = "TM-T88V") -> str:
    return (
        f'type = "network"\nhost = "127.0.0.1"\nport = {printer.port}\nprofile = "{profile}"\n'
        "connect_timeout = 1\nsend_timeout = 2\n"
    )


def ready(service: HoldService, n: int, **contact: str) -> str:
    return service.ready("MAIN", f"3901{n:010d}", f"2101{n:010d}", **contact).code.display


def unsent(service: HoldService, model: type) -> int:
    with service.sessions() as session:
        return len(list(session.scalars(select(model.id).where(model.status != "sent"))))


def tally(printer: FakePrinter, codes: list[str]) -> tuple[int, int, int]:
    """Doubled, marked, lost, from what the printer printed."""
    with printer._lock:  # the fake's own lock: its list grows from its threads
        printed = list(printer.slips)
    per_code = Counter()
    marked = 0
    for slip in printed:
        code = next((c for c in codes if c.encode() in slip), None)
        per_code[code] += 1
        marked += b"POSSIBLE DUPLICATE" in slip
    doubled = sum(1 for c in codes if per_code[c] > 1)
    lost = sum(1 for c in codes if per_code[c] == 0)
    return doubled, marked, lost


def until_sent(worker: PrintWorker, clock: Clock, service: HoldService) -> None:
    """Passes (the clock moved past each backoff) until every slip is recorded as sent."""
    for _ in range(2000):
        if unsent(service, PrintJob) == 0:
            return
        clock.advance(minutes=6)
        worker.run_once()
        time.sleep(0.002)
    raise RuntimeError("slips still unsent")


def printing_run(kind: str, count: int, arm: Callable[[FakePrinter], None]) -> Result:
    """``count`` slips, one after the other, each with the fault ``arm`` sets on the printer."""
    printer = FakePrinter(print_seconds=PRINT_SECONDS).start()
    started = time.perf_counter()
    try:
        with instance(network(printer)) as (root, clock):
            service, worker = root.service, root.worker.prints
            codes = []
            for n in range(count):
                arm(printer)
                codes.append(ready(service, n))
                worker.run_once()
                until_sent(worker, clock, service)
            time.sleep(0.2)  # stalled printers finish what they were sent
            doubled, marked, lost = tally(printer, codes)
            lost = max(lost, unsent(service, PrintJob))
    finally:
        printer.stop()
    return Result(kind, count, doubled, marked, lost, time.perf_counter() - started)


def stall(printer: FakePrinter) -> None:
    printer.stalls, printer.stall_seconds = 1, STALL


def drop(printer: FakePrinter) -> None:
    printer.drops = 1


def record_window(count: int, profile: str) -> float:
    """Median seconds from "the printer has read the whole slip" to the worker's record of it,
    without faults: the window a kill is drawn from."""
    printer = FakePrinter(print_seconds=PRINT_SECONDS).start()
    windows = []
    try:
        with instance(network(printer, profile)) as (root, _clock):
            service, worker = root.service, root.worker.prints
            recorded = worker._record

            def timed(row_id, outcome):
                recorded(row_id, outcome)
                windows.append(time.perf_counter() - printer_whole[0])

            printer_whole = [0.0]
            worker._record = timed  # type: ignore[method-assign]
            for n in range(count):
                printer.whole_slip.clear()
                ready(service, n)
                watcher = _stamp_when(printer, printer_whole)
                worker.run_once()
                watcher.join()
    finally:
        printer.stop()
    return statistics.median(windows)


def _stamp_when(printer: FakePrinter, stamp: list[float]):
    import threading

    def wait() -> None:
        printer.whole_slip.wait(5)
        stamp[0] = time.perf_counter()

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def _child(settings, clock: Clock) -> None:
    Holdshelf(settings, clock=clock).worker.prints.run_once()  # its own engine and connections
    os._exit(0)


def kill_run(kind: str, count: int, profile: str, rng: random.Random) -> Result:
    window = record_window(min(count, 200), profile)
    printer = FakePrinter(print_seconds=PRINT_SECONDS).start()
    started = time.perf_counter()
    landed = 0
    fork = multiprocessing.get_context("fork")
    try:
        with instance(network(printer, profile)) as (root, clock):
            service = root.service
            codes = []
            for n in range(count):
                printer.whole_slip.clear()
                codes.append(ready(service, n))
                service.engine.dispose()  # the child opens its own connections
                child = fork.Process(target=_child, args=(service.settings, clock))
                child.start()
                if printer.whole_slip.wait(5):
                    time.sleep(rng.uniform(0, window))
                os.kill(child.pid, signal.SIGKILL)
                child.join(5)
                landed += unsent(service, PrintJob) > 0  # killed before it recorded the slip
                clock.advance(minutes=3)  # the dead worker's lease runs out
                successor = Holdshelf(root.settings, clock=clock, engine=root.engine).worker.prints
                until_sent(successor, clock, service)
            time.sleep(0.2)
            doubled, marked, lost = tally(printer, codes)
            lost = max(lost, unsent(service, PrintJob))
    finally:
        printer.stop()
    note = f"window {window * 1000:.1f} ms; {landed} of {count} kills came before the record"
    return Result(kind, count, doubled, marked, lost, time.perf_counter() - started, note)


def smtp_run(kind: str, count: int, lose: bool) -> Result:
    mailbox = Mailbox().start()
    printer = FakePrinter().start()
    started = time.perf_counter()
    mail = (
        f'[mail]\nhost = "127.0.0.1"\nport = {mailbox.port}\nsecurity = "none"\n'
        'sender = "Library <holds@library.example.org>"\ntimeout = 5\n'
    )
    try:
        with instance(network(printer), mail) as (root, clock):
            service, worker = root.service, root.worker.notices
            addresses = []
            for n in range(count):
                mailbox.lose_replies = 1 if lose else 0
                address = f"patron{n}@example.org"
                ready(service, n, email=address)
                addresses.append(address)
                worker.run_once()
                for _ in range(50):
                    if unsent(service, Notice) == 0:
                        break
                    clock.advance(minutes=6)
                    worker.run_once()
            got = Counter(to[0] for to, _ in mailbox.messages)
            ids: dict[str, set[str]] = {}
            for to, message in mailbox.messages:
                ids.setdefault(to[0], set()).add(message["Message-ID"])
            doubled = sum(1 for a in addresses if got[a] > 1)
            lost = max(sum(1 for a in addresses if got[a] == 0), unsent(service, Notice))
            same_id = all(len(v) == 1 for v in ids.values())
    finally:
        mailbox.stop()
        printer.stop()
    note = "every copy carried its notice's one Message-ID" if same_id else "Message-IDs differ"
    return Result(kind, count, doubled, 0, lost, time.perf_counter() - started, note)


def main(count: int) -> None:
    logging.getLogger("holdshelf").setLevel(logging.ERROR)  # each fault logs a warning
    # A stalled printer is given up on the connection after a short wait, then held: the
    # waits are shortened so that STALL outlasts them, as a real cover left open outlasts 2 s.
    connections.STATUS_TIMEOUT = 0.05
    connections.RECEIPT_WAIT = 0.05
    rng = random.Random(11)
    print(f"{count} per fault; fake TM-T88V prints a slip in {PRINT_SECONDS * 1000:.0f} ms")
    print(
        f"{'fault':<38} {'slips':>6} {'doubled':>9} {'marked':>8} {'lost':>7} {'seconds':>7}"
        "  (per 1,000)"
    )
    runs = [
        lambda: printing_run("none (baseline)", count, lambda printer: None),
        lambda: printing_run("drop after the slip, before answers", count, drop),
        lambda: printing_run(f"stall {STALL * 1000:.0f} ms, then print", count, stall),
        lambda: kill_run("worker killed, process IDs (TM-T88V)", count, "TM-T88V", rng),
        lambda: kill_run("worker killed, status only (POS-5890)", count, "POS-5890", rng),
        lambda: smtp_run("notices: none (baseline)", count, lose=False),
        lambda: smtp_run("notices: SMTP reply lost", count, lose=True),
    ]
    for run in runs:
        print(run().row(), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
