"""Time to import a 50,000-row holds-ready report (generic CSV), on SQLite and PostgreSQL.

Usage: python benchmarks/csv_import.py [ROWS]
PostgreSQL: HOLDSHELF_BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test); a scratch
database is created and dropped.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.barcodes import luhn_valid
from holdshelf.importer import import_holds
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database

sys.path.insert(0, str(Path(__file__).parent))
from scratch import scratch_postgres


def barcode(first: str, n: int) -> str:
    """A 14-digit Codabar barcode with its Luhn digit: the demo instance checks both."""
    body = f"{first}{n:012d}"
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


def report(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("item_barcode,patron_card,title,patron_name\n")
        for n in range(rows):
            out.write(f"{barcode('3', n)},{barcode('2', n)},Title {n},Name {n}\n")


def measure(instance: Path, url: str, path: Path, rows: int, label: str) -> None:
    settings = load_settings(
        instance,
        environ={"HOLDSHELF_DATABASE_URL": url, "HOLDSHELF_BRANCHES__MAIN__CODE_LENGTH": "7"},
    )
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
    print(
        f"{label}: {rows:,} rows imported in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s, "
        f"each with its slip queued); the same report again (all skipped) {repeat:.1f} s"
    )
    service.engine.dispose()


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder)
        write_config(instance, demo=True)
        path = instance / "report.csv"
        report(path, rows)
        measure(instance, f"sqlite:///{instance / 'holdshelf.sqlite3'}", path, rows, "SQLite")
        with scratch_postgres() as url:
            if url is not None:
                measure(instance, url, path, rows, "PostgreSQL")


if __name__ == "__main__":
    main()
