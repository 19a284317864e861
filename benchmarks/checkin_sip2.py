"""One check-in scan with a SIP2 lookup, to the last byte of its slip at a network printer.

Each scan is `CheckIn.scan` (what the desk's check-in page calls): a SIP2 lookup of the item
over loopback, the hold made ready in the database with its slip queued, then one print worker
pass sends the slip to a network printer (tests/helpers/fake_printer.py, a TCP listener on
loopback answering like an Epson TM-T88V). Timed from the call to the printer's last byte, as
benchmarks/slips.py times `ready`. Each scan is a new item with a hold trapped for it.

The ILS is the SIP2 server process the tests use (tests/peers/sip2_ils.py: pysip2's server
side, answering as Koha, behind its fault-injecting wire proxy), started here with this run's
items added to its catalogue. Both lookups: `lookup = "checkin"` (09/10) and
`"item-information"` (17/18, Evergreen's answer). Beside them, in the same run and interleaved
scan by scan (so background load hits all alike):

- bare SIP2: the same request on a raw socket logged in once (93), one 09 or 17 and its
  answer, framed by holdshelf.ils.sip2_wire;
- the connector alone: Sip2Connector.trapped_hold, no database;
- ready -> last byte without the ILS: `service.ready` with the card, then the worker pass.

Each path is timed after 20 ms idle (see IDLE), as scans at a desk come seconds apart; the
bare round trip is also timed again at once, the peer awake. The scan's own time is split into
its parts, timed by wrapping the connector's and the service's methods: the SIP2 lookup, the
two reads (the item is not a known patron's card, nor a hold ready already), hold_request,
and ready_request (the write transaction that queues the slip); then the worker pass to the
last byte.

Usage: python benchmarks/checkin_sip2.py [COUNT] [--postgres]   (COUNT scans per path, 200)
SQLite by default; --postgres repeats it on a scratch PostgreSQL database
(BENCH_POSTGRES_URL, see benchmarks/common.py).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers, tests.peers
sys.path.insert(0, str(Path(__file__).parent))  # for common

from common import demo_instance, network_printer, scratch_postgres

from holdshelf.bootstrap import Holdshelf
from holdshelf.ils.sip2 import Sip2Connector
from holdshelf.ils.sip2_wire import request, sip_datetime
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.workflow.checkin import Shelved, account_of
from tests.helpers.fake_printer import FakePrinter
from tests.peers.sip2_ils import CARD

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 5  # rounds not counted: first login, imports, the printer profile and fonts
# Every timed call follows this much idle time, as scans at a desk come seconds apart: the
# first SIP2 request after a pause costs ~0.7 ms more than one right after another here (the
# peer's threads are woken: its wire proxy, then its server), and the scans always pay that.
IDLE = 0.02
# The parts of a scan (and of ready) timed inside it, by the service's methods.
SERVICE_PARTS = {
    "is_a_card": "reads",  # the scan is not a known patron's card (a read transaction)
    "repeat_of": "reads",  # ...nor a hold already ready (another read transaction)
    "hold_request": "request",  # checks, the card's pseudonym, the pickup-by date
    "ready_request": "write",  # the write transaction: hold, code, slip queued, counter
}
PARTS = ("ils", "reads", "request", "write")
LOOKUPS = {"09": "checkin", "17": "item-information"}
# The peer's catalogue gets these items, each filling a hold waiting at MAIN (Koha: CV 01 on
# checkin; Evergreen: status 08 with CY on item information), as its "HOLD-MAIN" does.
PEER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.peers import sip2_ils
count = int(sys.argv.pop(1))
for n in range(count):
    sip2_ils.ITEMS[f"3901{{n:010d}}"] = sip2_ils.Item("MAIN", pickup="MAIN", circulation="08")
sip2_ils.main()
"""


def item(n: int) -> str:
    return f"3901{n:010d}"  # the barcodes the peer was given (no check digit rule here)


@dataclass(frozen=True)
class Peer:
    port: int
    control: int


@contextmanager
def sip2_peer(items: int, log: Path) -> Iterator[Peer]:
    """tests/peers/sip2_ils.py in its own process, as tests/test_ils_sip2.py _start_peer."""
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", PEER, str(items)], stdout=subprocess.PIPE, stderr=errors
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready else b""
        if not line:
            raise SystemExit(f"the SIP2 peer did not start: {log.read_text()[-2000:]}")
        ports = json.loads(line)
        yield Peer(ports["port"], ports["control"])
    finally:
        process.terminate()
        process.wait(5)


class BareSip2:
    """A raw SIP2 client: one socket, logged in once, one request and its answer at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""
        self.sequence = 0
        answer = self.call("9300CNhs-main|COmain-secret|CPMAIN|")
        assert answer.startswith(b"941"), "the peer refused the login"

    def call(self, body: str) -> bytes:
        self.sequence = (self.sequence + 1) % 10
        self.sock.sendall(request(body, self.sequence))
        while b"\r" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(b"\r")
        return frame

    def lookup(self, command: str, barcode: str) -> None:
        now = sip_datetime(dt.datetime.now())
        if command == "09":  # as Sip2Connector.trapped_hold sends them
            body = f"09N{now}{now}APMAIN|AOMAIN|AB{barcode}|AC|"
        else:
            body = f"17{now}AOMAIN|AB{barcode}|AC|"
        answer = self.call(body)
        assert answer.startswith(b"10" if command == "09" else b"18"), answer[:2]
        assert b"CY" + CARD.encode() in answer, "the peer knows no hold for the item"

    def close(self) -> None:
        self.sock.close()


def instance_for(folder: Path, printer_port: int) -> Path:
    """The demo instance (MAIN, EAST) with MAIN's slips on the network printer; the demo's
    barcode rules are off, as in the tests (the peer's card has no Luhn check digit)."""
    return demo_instance(folder, printer=network_printer(printer_port), barcode_rules=False)


def sip2_environment(peer: Peer, database_url: str, lookup: str) -> dict[str, str]:
    """[ils] kind = "sip2" with a SIP account per branch, as tests/test_checkin_ils.py."""
    return {
        "HOLDSHELF_DATABASE_URL": database_url,
        "HOLDSHELF_ILS__KIND": "sip2",
        "HOLDSHELF_ILS__HOST": "127.0.0.1",
        "HOLDSHELF_ILS__PORT": str(peer.port),
        "HOLDSHELF_ILS__INSTITUTION": "MAIN",
        "HOLDSHELF_ILS__LOOKUP": lookup,
        "HOLDSHELF_BRANCHES__MAIN__ILS_LOGIN": "hs-main",
        "HOLDSHELF_BRANCHES__MAIN__ILS_PASSWORD": "main-secret",
        "HOLDSHELF_BRANCHES__EAST__ILS_LOCATION": "WEST",
        "HOLDSHELF_BRANCHES__EAST__ILS_LOGIN": "hs-west",
        "HOLDSHELF_BRANCHES__EAST__ILS_PASSWORD": "west-secret",
    }


class Parts:
    """How long the calls inside one timed path took, by part: methods wrapped on their
    instances (the connector, the service) add to the path being timed."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    def wrap(self, owner: object, method: str, part: str) -> None:
        original = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.current[part] += time.perf_counter() - start

        setattr(owner, method, timed)

    def take(self) -> dict[str, float]:
        taken, self.current = dict(self.current), defaultdict(float)
        return taken


def measure(instance: Path, database_url: str, peer: Peer, printer: FakePrinter, count: int):
    """Seconds per path and per part of a path, every path once per round, interleaved."""
    database.upgrade(database.make_engine(database_url))
    roots = {
        command: Holdshelf(
            load_settings(instance, environ=sip2_environment(peer, database_url, lookup))
        )
        for command, lookup in LOOKUPS.items()
    }
    engine = roots["09"].engine
    plain = Holdshelf(
        load_settings(instance, environ={"HOLDSHELF_DATABASE_URL": database_url}), engine=engine
    )
    worker = plain.worker.prints  # the print queue only
    connectors = {
        command: Sip2Connector("127.0.0.1", peer.port, institution="MAIN", lookup=lookup)
        for command, lookup in LOOKUPS.items()
    }
    account = account_of(roots["09"].settings.branch("MAIN"))
    bare = BareSip2(peer.port)
    parts = Parts()
    for root in (*roots.values(), plain):
        if root.connector is not None:
            parts.wrap(root.connector, "trapped_hold", "ils")
        for method, part in SERVICE_PARTS.items():
            parts.wrap(root.service, method, part)
    times: dict[str, list[float]] = defaultdict(list)
    printed = len(printer.connections)
    barcodes = iter(range(10**9))

    def timed(name: str, action: Callable[[], object]) -> None:
        time.sleep(IDLE)
        start = time.perf_counter()
        action()
        times[name].append(time.perf_counter() - start)

    def to_printer(name: str, action: Callable[[], object]) -> None:
        nonlocal printed
        time.sleep(IDLE)
        parts.take()
        start = time.perf_counter()
        action()
        made = time.perf_counter()
        worker.run_once()
        printer.wait_for_connections(printed + 1)
        last_byte = printer.last_byte_at[printed]
        printed += 1
        times[name].append(last_byte - start)
        inside = parts.take()
        for part in (*PARTS, "other"):
            times[f"{name}:{part}"].append(inside.get(part, 0.0))
        times[f"{name}:other"][-1] = made - start - sum(inside.values())
        times[f"{name}:worker"].append(last_byte - made)

    def ready(barcode: str) -> Callable[[], object]:
        return lambda: plain.service.ready("MAIN", barcode, CARD)

    def scan(command: str, barcode: str) -> Callable[[], object]:
        checkin = roots[command].checkin
        assert checkin is not None

        def action() -> None:
            outcome = checkin.scan("MAIN", barcode)
            assert isinstance(outcome, Shelved), outcome
            assert not outcome.repeated

        return action

    for round_ in range(WARMUP + count):
        if round_ == WARMUP:
            times.clear()
        for command in LOOKUPS:
            barcode = item(next(barcodes))
            timed(f"bare-{command}", lambda c=command, b=barcode: bare.lookup(c, b))
            start = time.perf_counter()  # the same again at once: the peer is awake
            bare.lookup(command, barcode)
            times[f"bare-{command}:warm"].append(time.perf_counter() - start)
            barcode = item(next(barcodes))
            call = connectors[command].trapped_hold
            timed(f"connector-{command}", lambda c=call, b=barcode: c(account, b))
        to_printer("ready", ready(item(next(barcodes))))
        for command in LOOKUPS:
            to_printer(f"scan-{command}", scan(command, item(next(barcodes))))
    bare.close()
    for connector in connectors.values():
        connector.close()
    for root in roots.values():
        root.close()
    engine.dispose()
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def rows() -> list[tuple[str, str]]:
    found = [
        ("bare-09", "(a) bare SIP2 09/10 round trip, raw socket"),
        ("bare-09:warm", "      the same again at once (peer awake)"),
        ("bare-17", "(a) bare SIP2 17/18 round trip, raw socket"),
        ("bare-17:warm", "      the same again at once (peer awake)"),
        ("connector-09", "    Sip2Connector.trapped_hold, checkin"),
        ("connector-17", "    Sip2Connector.trapped_hold, item-information"),
        ("ready", "(b) ready with the card -> last byte, no ILS"),
    ]
    parts = {
        "ils": "SIP2 lookup (the connector)",
        "reads": "card check, repeat check (2 reads)",
        "request": "hold_request (checks, pseudonym)",
        "write": "ready_request (write transaction)",
        "other": "the rest of the call",
        "worker": "worker pass -> last byte",
    }
    for name in ("ready", "scan-09", "scan-17"):
        if name != "ready":
            lookup = LOOKUPS[name[-2:]]
            found.append((name, f'scan, lookup = "{lookup}" -> last byte'))
        for part, label in parts.items():
            if name != "ready" or part not in ("ils", "reads"):
                found.append((f"{name}:{part}", f"      {label}"))
    return found


def report(title: str, times: dict[str, list[float]]) -> None:
    table = rows()
    width = max(len(label) for _, label in table)
    print(f"\n{title}: ms, {len(times['scan-09'])} of each")
    print(f"{'':{width}}  {'p50':>7} {'p99':>7} {'mean':>7}")
    for key, label in table:
        values = times[key]
        print(
            f"{label:{width}}  {percentile(values, 0.5) * 1000:7.2f} "
            f"{percentile(values, 0.99) * 1000:7.2f} {statistics.fmean(values) * 1000:7.2f}"
        )
    for command, lookup in LOOKUPS.items():
        name = f"scan-{command}"
        print(
            f'lookup = "{lookup}": p50 {_ms(times, name)} ms against ready\'s '
            f"{_ms(times, 'ready')}: its SIP2 lookup {_ms(times, f'{name}:ils')} and its two "
            f"reads {_ms(times, f'{name}:reads')} at p50"
        )


def _ms(times: dict[str, list[float]], key: str) -> str:
    return f"{percentile(times[key], 0.5) * 1000:.2f}"


def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    count = int(args[0]) if args else 200
    items = (WARMUP + count) * 7  # barcodes used per round: 2 bare, 2 connector, ready, 2 scans
    with (
        tempfile.TemporaryDirectory() as folder,
        sip2_peer(items, Path(folder) / "peer.log") as peer,
    ):
        printer = FakePrinter().start()
        instance = instance_for(Path(folder), printer.port)
        sqlite_url = f"sqlite:///{instance / 'holdshelf.sqlite3'}"
        report("SQLite (WAL)", measure(instance, sqlite_url, peer, printer, count))
        if "--postgres" in sys.argv:
            with scratch_postgres() as url:
                if url is not None:
                    report("PostgreSQL", measure(instance, url, peer, printer, count))
        printer.stop()


if __name__ == "__main__":
    main()
