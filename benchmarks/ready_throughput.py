"""Holds marked ready per second, one transaction each, on SQLite and on PostgreSQL.

Usage: python benchmarks/ready_throughput.py [COUNT]
PostgreSQL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test); a scratch
database is created and dropped. Unreachable PostgreSQL is reported and skipped.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from holdshelf.bootstrap import Holdshelf
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database

sys.path.insert(0, str(Path(__file__).parent))
from common import barcode, scratch_postgres


def measure(instance: Path, database_url: str, count: int) -> tuple[float, float]:
    """(holds/s, median ms per hold) marking ``count`` holds ready."""
    settings = load_settings(instance, environ={"HOLDSHELF_DATABASE_URL": database_url})
    database.upgrade(database.make_engine(database_url))
    service = Holdshelf(settings).service
    durations = []
    start = time.perf_counter()
    for n in range(count):
        item, card = barcode("3", n), barcode("2", n)  # the demo checks both
        began = time.perf_counter()
        service.ready("MAIN" if n % 3 else "EAST", item, card)
        durations.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    service.engine.dispose()
    durations.sort()
    return count / elapsed, durations[len(durations) // 2] * 1000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder)
        write_config(instance, demo=True)
        sqlite_url = f"sqlite:///{instance / 'holdshelf.sqlite3'}"
        per_second, median = measure(instance, sqlite_url, count)
        print(f"SQLite (WAL): {per_second:,.0f} holds ready/s, median {median:.2f} ms")

        with scratch_postgres() as url:
            if url is not None:
                per_second, median = measure(instance, url, count)
                print(f"PostgreSQL: {per_second:,.0f} holds ready/s, median {median:.2f} ms")


if __name__ == "__main__":
    main()
