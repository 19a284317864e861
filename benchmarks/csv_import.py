"""Import rows/s of a holds-ready report (generic CSV, one branch, 7-character codes) at
several sizes, on SQLite and PostgreSQL, beside the ceiling: a bare executemany of as many rows
into a table shaped like ``holds``, measured in the same run on the same database. Rows/s
should hold steady as the file grows (a cost per row that grows with the shelf would show).

Usage: python benchmarks/csv_import.py [ROWS ...] (default 1000 10000 50000)
PostgreSQL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test); a scratch database is
created and dropped per size. Unreachable PostgreSQL is reported and skipped.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.barcodes import luhn_valid
from holdshelf.importer import import_holds
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database

sys.path.insert(0, str(Path(__file__).parent))
from scratch import scratch_postgres

SIZES = (1_000, 10_000, 50_000)
ENVIRON = {"HOLDSHELF_BRANCHES__MAIN__CODE_LENGTH": "7"}  # 50,000 holds crowd six characters
CEILING_TABLE = """CREATE TABLE bench_ceiling (
    id INTEGER PRIMARY KEY, branch VARCHAR(32), code VARCHAR(16), item_barcode VARCHAR(64),
    patron VARCHAR(64), mode VARCHAR(8), status VARCHAR(16), pickup_by DATE,
    ready_at TIMESTAMP)"""


def barcode(first: str, n: int) -> str:
    """A 14-digit Codabar barcode with its Luhn digit: the demo instance checks both."""
    body = f"{first}{n:012d}"
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


def report(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("item_barcode,patron_card,title,patron_name\n")
        for n in range(rows):
            out.write(f"{barcode('3', n)},{barcode('2', n)},Title {n},Name {n}\n")


def ceiling(engine: Engine, rows: int) -> float:
    """Rows/s of one bare executemany (the driver's own) of ``rows`` holds-shaped rows."""
    values = [
        (n, "MAIN", f"C{n:07d}", barcode("3", n), f"p{n:063d}", "shelf", "ready", "2026-12-08",
         "2026-12-01 10:00:00")
        for n in range(rows)
    ]  # fmt: skip
    placeholders = ", ".join(["?" if engine.dialect.name == "sqlite" else "%s"] * 9)
    with engine.begin() as connection:
        connection.exec_driver_sql(CEILING_TABLE)
        start = time.perf_counter()
        connection.exec_driver_sql(f"INSERT INTO bench_ceiling VALUES ({placeholders})", values)
        elapsed = time.perf_counter() - start
        connection.exec_driver_sql("DROP TABLE bench_ceiling")
    return rows / elapsed


def measure(instance: Path, url: str, path: Path, rows: int) -> tuple[float, float, float]:
    """(import rows/s, the same report again (all skipped) rows/s, ceiling rows/s)."""
    settings = load_settings(instance, environ={"HOLDSHELF_DATABASE_URL": url, **ENVIRON})
    database.upgrade(database.make_engine(url))
    service = Holdshelf(settings).service
    start = time.perf_counter()
    result = import_holds(service, path, "MAIN")
    elapsed = time.perf_counter() - start
    assert not result.bad, result.bad[:3]
    assert len(result.imported) == rows
    start = time.perf_counter()
    again = import_holds(service, path, "MAIN")
    repeat = time.perf_counter() - start
    assert again.skipped == rows
    bare = ceiling(service.engine, rows)
    service.engine.dispose()
    return rows / elapsed, rows / repeat, bare


def show(label: str, rows: int, figures: tuple[float, float, float]) -> None:
    imported, repeated, bare = figures
    print(
        f"{label:<10} {rows:>7,} rows: import {imported:>8,.0f} rows/s ({rows / imported:6.1f} s),"
        f" again (all skipped) {repeated:>8,.0f} rows/s; bare executemany {bare:>9,.0f} rows/s",
        flush=True,
    )


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or list(SIZES)
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder)
        write_config(instance, demo=True)
        for rows in sizes:
            path = instance / f"report-{rows}.csv"
            report(path, rows)
            url = f"sqlite:///{instance / f'holdshelf-{rows}.sqlite3'}"
            show("SQLite", rows, measure(instance, url, path, rows))
        for rows in sizes:
            with scratch_postgres() as url:
                if url is None:
                    break
                show(
                    "PostgreSQL",
                    rows,
                    measure(instance, url, instance / f"report-{rows}.csv", rows),
                )


if __name__ == "__main__":
    main()
