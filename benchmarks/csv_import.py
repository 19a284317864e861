"""Import rows/s of a holds-ready report (generic CSV, one branch, 7-character codes) at
several sizes, on SQLite and PostgreSQL, beside the ceiling: a bare executemany of as many rows
into a table shaped like ``holds``, measured in the same run on the same database (import,
bare, import, bare, ...; a fresh database each run). Rows/s should hold steady as the file
grows (a cost per row that grows with the shelf would show).

Usage: python benchmarks/csv_import.py [ROWS ...] (default 1000 10000 50000)
PostgreSQL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test); a scratch database is
created and dropped per run. Unreachable PostgreSQL is reported and skipped.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    INTERLEAVED_RUNS,
    Database,
    Figure,
    barcode,
    databases,
    demo_instance,
    show,
    temporary_folder,
    upgraded,
)
from sqlalchemy import Engine

from holdshelf.bootstrap import Holdshelf
from holdshelf.importer import import_holds

SIZES = (1_000, 10_000, 50_000)
ENVIRON = {"HOLDSHELF_BRANCHES__MAIN__CODE_LENGTH": "7"}  # 50,000 holds crowd six characters
CEILING_TABLE = """CREATE TABLE bench_ceiling (
    id INTEGER PRIMARY KEY, branch VARCHAR(32), code VARCHAR(16), item_barcode VARCHAR(64),
    patron VARCHAR(64), mode VARCHAR(8), status VARCHAR(16), pickup_by DATE,
    ready_at TIMESTAMP)"""


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


def imported(kind: Database, path: Path, rows: int) -> tuple[float, float]:
    """(import rows/s, bare executemany rows/s), into a fresh instance and database."""
    with temporary_folder() as folder, kind.fresh() as url:
        instance = demo_instance(folder)
        root = Holdshelf(upgraded(instance, url, **ENVIRON))
        try:
            start = time.perf_counter()
            result = import_holds(root.service, path, "MAIN")
            elapsed = time.perf_counter() - start
            assert not result.bad, result.bad[:3]
            assert len(result.imported) == rows
            bare = ceiling(root.engine, rows)
        finally:
            root.close()
    return rows / elapsed, bare


def figures(kind: Database, sizes: list[int], runs: int = INTERLEAVED_RUNS) -> list[Figure]:
    """Per size: import rows/s beside a bare executemany, each pair in a fresh database."""
    found = []
    with temporary_folder() as reports:
        for rows in sizes:
            path = reports / f"report-{rows}.csv"
            report(path, rows)
            pairs = [imported(kind, path, rows) for _ in range(runs)]  # import, bare, ...
            found.append(
                Figure.of(
                    f"import {rows:,} rows, {kind.label}",
                    "rows/s",
                    [pair[0] for pair in pairs],
                    ceiling=[pair[1] for pair in pairs],
                    ceiling_name="bare executemany",
                    note=f"seconds: {', '.join(f'{rows / pair[0]:.1f}' for pair in pairs)}",
                )
            )
    return found


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or list(SIZES)
    for kind in databases(postgres=True):
        try:
            show(figures(kind, sizes))
        except RuntimeError as exc:
            print(f"{kind.label}: skipped ({exc})")


if __name__ == "__main__":
    main()
