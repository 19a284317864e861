"""The ILS sync over SIP2: active holds checked per second, and what the sync costs the ILS.

`IlsSync.run()` (what the worker runs every ``[ils] sync_minutes`` and ``holdshelf sync`` on
demand) asks the ILS about every active hold, one 17 Item Information each on the branch's own
SIP login, and ends those the ILS says ended. Here it runs against the SIP2 server process the
tests use (tests/peers/sip2_ils.py: pysip2's server side behind its counting wire proxy, the
hs-main account answering 17 as Evergreen does, with CY), on loopback, with COUNT holds ready
at MAIN, each for an item the peer holds on its shelf for the peer's card (status 08, CY).

- steady state: every hold still waiting, two rounds of: the bare baseline (the same COUNT
  17/18 round trips on one raw socket logged in once (93) to the same peer, framed by
  holdshelf.ils.sip2_wire, no Holdshelf), the sync at ``sync_per_second`` 1000 (the most the
  settings allow), and the sync unpaced (the sync module's pacing replaced here by no wait:
  Holdshelf's own cost, which pacing at 1000/s hides where a lookup takes under 1 ms);
- ending path: every tenth item then checked out at the ILS (status 04), the sync timed again:
  how many holds ended and how long `end_in_ils` (one transaction for them all) took;
- the ILS's load, from the peer's counters around each run: SIP2 requests per hold by message
  type, logins, connections;
- where a run's time goes, by wrapping methods on the instances: `active_holds` (the read),
  the connector's `hold_state` (the SIP2 call), the sync's pacing sleep, `end_in_ils`, and the
  rest (the loop itself, the pseudonym of the card the ILS names); and the rate over the first
  and the last tenth of the holds, which would show a sync that slows as it goes.

At 1000/s a lookup under 1 ms is followed by a sleep, and the sleep's wake-up latency is
lost each time (`_pace` starts the next interval from when it woke), so the rate stays below
the setting, the more so on a busy machine. The ending runs are paced at 1000/s too. One
run at the default pacing (20/s) over PACED holds, in a database of their own, shows the cap
holds: about (PACED - 1) / 20 s.

Usage: python benchmarks/ils_sync.py [COUNT] [--postgres]   (COUNT holds, 5000)
SQLite by default; --postgres repeats the timed runs on a scratch PostgreSQL database
(BENCH_POSTGRES_URL, see benchmarks/common.py). The machine's load average is
printed before and after.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.peers
sys.path.insert(0, str(Path(__file__).parent))  # for common, checkin_sip2

from checkin_sip2 import BareSip2, Peer, item, sip2_environment, sip2_peer
from common import demo_instance, scratch_postgres

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.holds import HoldStatus
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.workflow import sync as sync_module
from holdshelf.workflow.sync import SyncReport
from tests.peers.sip2_ils import CARD

PACED = 100  # holds synced at the default pacing
FAST = "1000"  # sync_per_second for the timed runs: the most the settings allow
WARMUP = 50  # bare round trips not timed: the peer's first answers on a new connection
ENDED_EVERY = 10  # every tenth item is checked out at the ILS before the ending run
# The parts of a run, by the instance methods timed: the read, the SIP2 call, the end.
PARTS = {"active_holds": "read", "hold_state": "ils", "end_in_ils": "end"}


def instance_at(folder: Path) -> Path:
    """The demo instance (MAIN, EAST), its barcode rules off as in the tests (the peer's
    items and card have no check digit)."""
    return demo_instance(folder, barcode_rules=False)


def control(peer: Peer, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A call to the peer's control port (GET without a body, else POST)."""
    data = None if body is None else json.dumps(body).encode()
    url = f"http://127.0.0.1:{peer.control}{path}"
    with urllib.request.urlopen(urllib.request.Request(url, data), timeout=5) as reply:
        return json.loads(reply.read())


def set_items(peer: Peer, numbers: range | list[int], **fields: Any) -> None:
    for n in numbers:
        control(peer, "/items", {"barcode": item(n), **fields})


@dataclass
class Load:
    """What one run asked of the ILS, from the peer's counters before and after."""

    requests: Counter[str]
    logins: int
    connections: int

    @staticmethod
    def between(before: dict[str, Any], after: dict[str, Any]) -> Load:
        requests = Counter(after["requests"])
        requests.subtract(before["requests"])
        logins = sum(after["logins"].values()) - sum(before["logins"].values())
        return Load(+requests, logins, after["connections"] - before["connections"])


@dataclass
class Run:
    label: str
    holds: int
    seconds: float
    report: SyncReport
    load: Load
    parts: dict[str, float]
    calls: list[float] = field(repr=False)  # when each SIP2 call of the run ended

    @property
    def per_second(self) -> float:
        return self.holds / self.seconds

    def tenth_rates(self) -> tuple[float, float]:
        """Holds per second over the first and over the last tenth of the calls."""
        tenth = max(1, len(self.calls) // 10)
        first = self.calls[tenth - 1] - self.calls[0]
        last = self.calls[-1] - self.calls[-tenth]
        return (tenth - 1) / first if first else 0.0, (tenth - 1) / last if last else 0.0


class Timer:
    """Seconds spent in methods wrapped on their instances (and in the sync's pacing), per
    part, and when each SIP2 call ended."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = defaultdict(float)
        self.calls: list[float] = []

    def wrap(self, owner: object, method: str, part: str) -> None:
        original = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self.parts[part] += end - start
                if part == "ils":
                    self.calls.append(end)

        setattr(owner, method, timed)

    def pace(self, *, paced: bool = True) -> Callable[[], None]:
        """Time the sync's pacing (its sleeps), or with ``paced`` false leave it out (no
        sleep at all); module-level, so undone by the call returned."""
        original = sync_module._pace

        def timed(next_at: float, interval: float) -> float:
            start = time.perf_counter()
            try:
                return original(next_at, interval) if paced else time.monotonic()
            finally:
                self.parts["pace"] += time.perf_counter() - start

        sync_module._pace = timed

        def undo() -> None:
            sync_module._pace = original

        return undo

    def take(self) -> tuple[dict[str, float], list[float]]:
        taken = (dict(self.parts), self.calls)
        self.parts, self.calls = defaultdict(float), []
        return taken


def connected(instance: Path, database_url: str, peer: Peer, timer: Timer, **env: str) -> Holdshelf:
    """A Holdshelf on [ils] kind = "sip2" (an account per branch), its parts timed."""
    environ = sip2_environment(peer, database_url, "item-information") | env
    root = Holdshelf(load_settings(instance, environ=environ))
    assert root.connector is not None
    assert root.sync is not None
    timer.wrap(root.connector, "hold_state", "ils")
    for method, part in PARTS.items():
        if part != "ils":
            timer.wrap(root.service, method, part)
    return root


def make_holds(root: Holdshelf, numbers: range) -> float:
    """A hold ready at MAIN for each item, with the peer's card, in batches; seconds taken."""
    service = root.service
    start = time.perf_counter()
    requests = [service.hold_request("MAIN", item(n), CARD) for n in numbers]
    outcomes = service.ready_many(requests)
    errors = [outcome.error for outcome in outcomes if outcome.error]
    assert not errors, errors[:3]
    return time.perf_counter() - start


def synced(label: str, root: Holdshelf, peer: Peer, timer: Timer, *, paced: bool = True) -> Run:
    sync = root.sync
    assert sync is not None
    before = control(peer, "/stats")
    timer.take()
    undo = timer.pace(paced=paced)
    start = time.perf_counter()
    try:
        report = sync.run()
    finally:
        seconds = time.perf_counter() - start
        undo()
    parts, calls = timer.take()
    load = Load.between(before, control(peer, "/stats"))
    holds = report.checked + report.unchecked
    return Run(label, holds, seconds, report, load, parts, calls)


def bare(peer: Peer, numbers: range) -> float:
    """The same 17 round trips on one raw socket logged in once: 17s per second (after
    WARMUP untimed, as the sync's connection is already open after its first run)."""
    client = BareSip2(peer.port)
    try:
        for n in numbers[:WARMUP]:
            client.lookup("17", item(n))
        start = time.perf_counter()
        for n in numbers:
            client.lookup("17", item(n))
        return len(numbers) / (time.perf_counter() - start)
    finally:
        client.close()


def measure(instance: Path, database_url: str, peer: Peer, count: int) -> None:
    database.upgrade(database.make_engine(database_url))
    timer = Timer()
    root = connected(instance, database_url, peer, timer, HOLDSHELF_ILS__SYNC_PER_SECOND=FAST)
    numbers = range(count)
    made = make_holds(root, numbers)
    print(f"  {count:,} holds made ready at MAIN in {made:.1f} s (ready_many)")
    ended = [n for n in numbers if n % ENDED_EVERY == 0]
    baselines, runs = [], []
    try:
        for round_ in (1, 2):
            baselines.append(bare(peer, numbers))
            runs.append(synced(f"steady {round_}, at {FAST}/s", root, peer, timer))
            runs.append(synced(f"steady {round_}, unpaced", root, peer, timer, paced=False))
            assert runs[-1].report.waiting == runs[-2].report.waiting == count
        set_items(peer, ended, circulation="04", pickup=None)  # checked out at the self-check
        runs.append(synced("ending", root, peer, timer))
        runs.append(synced("after", root, peer, timer))  # what is left, steady again
    finally:
        set_items(peer, ended, circulation="08", pickup="MAIN")  # for the next database
        root.close()
    for round_, per_second in enumerate(baselines, 1):
        print(f"  bare 17/18 round trips, raw socket (before steady {round_}): {per_second:,.0f}/s")
    for run in runs:
        show(run)
    ending = runs[-2]
    assert ending.report.ended[HoldStatus.PICKED_UP] == len(ended), ending.report.line()
    capped = max(run.per_second for run in runs[0:4:2])
    unpaced = max(run.per_second for run in runs[1:4:2])
    print(
        f"  => steady state {capped:,.0f} holds/s at {FAST}/s, {unpaced:,.0f} unpaced, against "
        f"{max(baselines):,.0f} bare 17s/s ({unpaced / max(baselines):.0%}); "
        f"{len(ended)} holds ended in "
        f"{ending.parts.get('end', 0.0) * 1000:.0f} ms of end_in_ils "
        f"({ending.parts.get('end', 0.0) * 1000 / len(ended):.2f} ms each)"
    )


def show(run: Run) -> None:
    report, load = run.report, run.load
    ended = sum(report.ended.values())
    kinds = ", ".join(f"{n:,} x {kind}" for kind, n in sorted(load.requests.items()))
    total = sum(load.requests.values())
    print(
        f"  sync, {run.label}: {run.holds:,} holds in {run.seconds:.2f} s = "
        f"{run.per_second:,.0f} holds/s ({report.waiting:,} waiting, {ended:,} ended, "
        f"{report.unchecked} unchecked)"
    )
    print(
        f"      ILS load: {total:,} SIP2 requests ({kinds or 'none'}) = "
        f"{total / run.holds:.4f} per hold; {load.logins} logins, {load.connections} connections"
    )
    parts = dict(run.parts)
    parts["rest"] = run.seconds - sum(parts.values())
    split = ", ".join(
        f"{name} {parts.get(name, 0.0):.2f} s"
        for name in ("read", "ils", "pace", "end", "rest")
        if name in parts
    )
    first, last = run.tenth_rates()
    print(f"      {split}; first tenth {first:,.0f}/s, last tenth {last:,.0f}/s")


def default_pacing(folder: Path, peer: Peer, first: int) -> None:
    """PACED holds at the default sync_per_second, in a database of their own."""
    url = f"sqlite:///{folder / 'paced.sqlite3'}"
    database.upgrade(database.make_engine(url))
    timer = Timer()
    root = connected(folder, url, peer, timer)
    try:
        per_second = root.settings.ils.sync_per_second
        make_holds(root, range(first, first + PACED))
        run = synced(f"default pacing ({per_second:g}/s)", root, peer, timer)
    finally:
        root.close()
    show(run)
    expected = (PACED - 1) / per_second
    print(f"  => {run.seconds:.2f} s for {PACED} holds; the cap allows no less than {expected:.2f}")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    count = int(args[0]) if args else 5000
    print(f"load average {load_average()} ({os.cpu_count()} cores)")
    with (
        tempfile.TemporaryDirectory() as folder,
        sip2_peer(count + PACED, Path(folder) / "peer.log") as peer,
    ):
        instance = instance_at(Path(folder))
        print("\nSQLite (WAL)")
        measure(instance, f"sqlite:///{instance / 'holdshelf.sqlite3'}", peer, count)
        if "--postgres" in sys.argv:
            with scratch_postgres() as url:
                if url is not None:
                    print("\nPostgreSQL")
                    measure(instance, url, peer, count)
        print("\nSQLite, the default pacing")
        default_pacing(instance, peer, count)
    print(f"\nload average {load_average()}")


if __name__ == "__main__":
    main()
