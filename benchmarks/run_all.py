"""Every figure of issue 15's table, and its scaling curves, in one run: each figure beside its
ceiling measured in the same run (a bare Flask endpoint, a bare executemany, a bare
claim-send-record loop, bare SQL...), with the ratio figure / ceiling, as min / median / max
of three interleaved runs; the machine's load at the start and the end; a Markdown table of
the medians last, for the README.

Usage: python benchmarks/run_all.py [--quick] [--only NAME ...] [--database KIND]
  --quick     tiny sizes (under a minute a database, on a busy 2-core machine): the harness
              works, the figures mean little. The full sizes (the issue's) take some 15-20
              minutes on SQLite and PostgreSQL together, estimated from the sizes.
  --only      some of: {names}
  --database  sqlite or postgresql only
SQLite, and PostgreSQL when BENCH_POSTGRES_URL is set (a server URL whose user may create
databases: each run makes a scratch database and drops it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import api
import cli_startup
import csv_import
import expire
import listing
import rate_limiter
import worker_speed
from common import POSTGRES, POSTGRES_VARIABLE, Database, Figure, databases, machine_load, show


@dataclass(frozen=True)
class Sizes:
    import_rows: tuple[int, ...]
    api_holds: int
    api_clients: int
    statement_posts: int
    latency_samples: int
    drain_slips: int
    expire_holds: tuple[int, ...]
    cli_processes: int
    limiter_addresses: int
    limiter_calls: int
    shelf_holds: tuple[int, ...]
    checkins: int


FULL = Sizes(
    import_rows=(1_000, 10_000, 50_000),
    api_holds=2_000,
    api_clients=4,
    statement_posts=100,
    latency_samples=200,
    drain_slips=5_000,
    expire_holds=(2_000, 20_000),
    cli_processes=5,
    limiter_addresses=50_000,
    limiter_calls=20_000,
    shelf_holds=(100, 5_000, 20_000),
    checkins=20,
)
QUICK = Sizes(
    import_rows=(100, 300, 1_000),
    api_holds=40,
    api_clients=2,
    statement_posts=10,
    latency_samples=5,
    drain_slips=60,
    expire_holds=(100, 500),
    cli_processes=1,
    limiter_addresses=5_000,
    limiter_calls=2_000,
    shelf_holds=(20, 100, 400),
    checkins=3,
)


@dataclass(frozen=True)
class Benchmark:
    title: str
    # (sizes, database) -> figures; database is None for those that use none
    run: Callable[[Sizes, Database | None], list[Figure]]
    per_database: bool = True


BENCHMARKS: dict[str, Benchmark] = {
    "import": Benchmark(
        "holdshelf import of a generic report, rows/s as the file grows (csv_import.py)",
        lambda s, db: csv_import.figures(db, list(s.import_rows)),
    ),
    "api": Benchmark(
        "POST /api/v1/holds through `holdshelf serve` (api.py)",
        lambda s, db: api.figures(db, s.api_holds, s.api_clients),
    ),
    "statements": Benchmark(
        "what one API POST costs the database (api.py)",
        lambda s, db: api.statement_figures(db, s.statement_posts),
    ),
    "latency": Benchmark(
        "a hold made ready by another process, to its slip's last byte (worker_speed.py)",
        lambda s, db: worker_speed.latency_figures(db, s.latency_samples),
    ),
    "drain": Benchmark(
        "the worker draining an import's slips; a desk slip meanwhile (worker_speed.py)",
        lambda s, db: worker_speed.drain_figures(db, s.drain_slips),
    ),
    "expire": Benchmark(
        "holdshelf expire of overdue holds (expire.py)",
        lambda s, db: expire.figures(db, list(s.expire_holds)),
    ),
    "cli": Benchmark(
        "start-up of the holdshelf command (cli_startup.py)",
        lambda s, _db: cli_startup.figures(processes=s.cli_processes),
        per_database=False,
    ),
    "limiter": Benchmark(
        "the per-address rate limiter under a flood (rate_limiter.py)",
        lambda s, _db: rate_limiter.figures(s.limiter_addresses, s.limiter_calls),
        per_database=False,
    ),
    "listing": Benchmark(
        "the shelf as it grows: GET /api/v1/holds, the shelf page, a check-in (listing.py)",
        lambda s, db: listing.figures(db, list(s.shelf_holds), checkins=s.checkins),
    ),
}


def commit() -> str:
    found = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "unknown"


def run(names: list[str], sizes: Sizes, kinds: list[Database]) -> tuple[list[Figure], list[str]]:
    """The benchmarks ``names`` in order; (their figures, the ones that failed)."""
    figures: list[Figure] = []
    failed: list[str] = []
    for name in names:
        benchmark = BENCHMARKS[name]
        for kind in kinds if benchmark.per_database else [None]:
            label = f"{name}, {kind.label}" if kind else name
            print(f"\n== {label}: {benchmark.title}", flush=True)
            start = time.perf_counter()
            try:
                figures += show(benchmark.run(sizes, kind))
            except Exception:
                traceback.print_exc()
                print(f"!! {label} FAILED", flush=True)
                failed.append(label)
            print(f"   ({time.perf_counter() - start:.1f} s; {machine_load()})", flush=True)
    return figures, failed


def markdown(figures: list[Figure]) -> str:
    head = "| figure | median (min / median / max) | ceiling, median | ratio |\n|---|---|---|---|"
    return "\n".join([head, *(figure.row() for figure in figures)])


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=f"NAME: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: the harness works")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME")
    parser.add_argument("--database", choices=[kind.label.lower() for kind in databases(True)])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    sizes = QUICK if options.quick else FULL
    kinds = [kind for kind in databases() if options.database in (None, kind.label.lower())]
    if not kinds:
        print(f"PostgreSQL: set {POSTGRES_VARIABLE} to run it", file=sys.stderr)
        return 2
    names = options.only or list(BENCHMARKS)
    started = time.perf_counter()
    print(f"Holdshelf benchmarks at {commit()}, {'quick' if options.quick else 'full'} sizes")
    print(f"start: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {machine_load()}")
    if POSTGRES not in databases():
        print(f"PostgreSQL: not run (set {POSTGRES_VARIABLE} to run it)")
    figures, failed = run(names, sizes, kinds)
    print(f"\nend: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {machine_load()}")
    print(f"{len(figures)} figures in {time.perf_counter() - started:.0f} s")
    print(f"\n{markdown(figures)}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


__doc__ = __doc__.format(names=", ".join(BENCHMARKS))

if __name__ == "__main__":
    sys.exit(main())
