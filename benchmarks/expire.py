"""`holdshelf expire` (HoldService.expire) over N overdue holds, on SQLite and PostgreSQL,
beside the same ending done in bare SQL in one transaction (the floor), in three interleaved
runs (expire, bare, expire, bare, ...).

Each run empties the database and fills it with N overdue holds at two branches (a shelf code
claimed by each, a queued notice for every other hold, a tenth of them desk holds) straight in
SQL, then times the expiry; the bare-SQL run refills and ends them with the statements by hand.

Usage: python benchmarks/expire.py [N ...]   (default 2000 20000)
PostgreSQL: BENCH_POSTGRES_URL (see benchmarks/common.py); unreachable, it is skipped.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    INTERLEAVED_RUNS,
    NOW,
    Database,
    Figure,
    databases,
    demo_instance,
    fixed_clock,
    interleaved,
    show,
    temporary_folder,
    upgraded,
)

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.codes import ShelfCodec
from holdshelf.storage import database


def fill(root: Holdshelf, count: int, *, overdue: bool = True, branches: int = 2) -> None:
    """``count`` holds (overdue, or due in a week), their codes claimed, every other one with
    a queued notice, at MAIN and EAST (or MAIN only)."""
    settings = root.settings
    ready_at = (NOW - dt.timedelta(days=10)).replace(tzinfo=None)
    pickup_by = (NOW + dt.timedelta(days=-2 if overdue else 7)).date()
    holds, claims, notices = [], [], []
    per_branch = (
        {"MAIN": (count + 1) // 2, "EAST": count // 2} if branches == 2 else {"MAIN": count}
    )
    n = 0
    for branch, wanted in per_branch.items():
        codec = ShelfCodec(settings.hashids_salt, settings.branch(branch).code_length)
        number = 0
        while wanted:
            number += 1
            code = codec.encode(number)
            if code is None:
                continue
            wanted -= 1
            n += 1
            row = {"branch": branch, "code": code.compact}
            claims.append(row)
            holds.append(
                row
                | {
                    "item": f"3901{n:010d}",
                    "patron": f"{n:064x}",
                    "mode": "desk" if n % 10 == 0 else "shelf",
                    "pickup_by": pickup_by,
                    "ready_at": ready_at,
                }
            )
            if n % 2 == 0:
                notices.append(row | {"sealed": "gAAAA" + "x" * 200, "at": ready_at})
    with root.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO shelf_codes (branch, code) VALUES (:branch, :code)"), claims
        )
        connection.execute(
            text(
                "INSERT INTO holds (branch, code, item_barcode, patron, mode, status, pickup_by,"
                " ready_at, move_to_desk) VALUES (:branch, :code, :item, :patron, :mode, 'ready',"
                " :pickup_by, :ready_at, false)"
            ),
            holds,
        )
        connection.execute(
            text(
                "INSERT INTO notices (branch, code, channel, sealed, status, attempts,"
                " created_at, next_attempt_at) VALUES (:branch, :code, 'email', :sealed,"
                " 'queued', 0, :at, :at)"
            ),
            notices,
        )
    database.refresh_statistics(root.engine, ("holds", "shelf_codes", "notices"))


BARE = [
    "UPDATE shelf_codes SET released_at = :now WHERE (branch, code) IN"
    " (SELECT branch, code FROM holds WHERE status = 'ready' AND pickup_by < :on)",
    "UPDATE notices SET status = 'dropped', sealed = NULL, finished_at = :now,"
    " last_error = 'ended' WHERE status = 'queued' AND (branch, code) IN"
    " (SELECT branch, code FROM holds WHERE status = 'ready' AND pickup_by < :on)",
    "INSERT INTO daily_counts (day, branch, event, mode, count)"
    " SELECT :day, branch, 'expired', mode, count(*) FROM holds"
    " WHERE status = 'ready' AND pickup_by < :on GROUP BY branch, mode"
    " ON CONFLICT (day, branch, event, mode) DO UPDATE"
    " SET count = daily_counts.count + excluded.count",
    "DELETE FROM holds WHERE status = 'ready' AND pickup_by < :on",
]


def bare(root: Holdshelf) -> float:
    values = {"now": NOW.replace(tzinfo=None), "on": NOW.date(), "day": NOW.date()}
    start = time.perf_counter()
    with root.engine.begin() as connection:
        for statement in BARE:
            connection.execute(text(statement), values)
    return time.perf_counter() - start


def clear(root: Holdshelf) -> None:
    with root.engine.begin() as connection:
        for table in ("notices", "holds", "shelf_codes", "daily_counts"):
            connection.execute(text(f"DELETE FROM {table}"))


def figures(kind: Database, counts: list[int], runs: int = INTERLEAVED_RUNS) -> list[Figure]:
    """Per count: the expiry's seconds and ms per hold, beside the bare SQL, interleaved
    (expire, bare, expire, bare, ...), each on a freshly filled database."""
    found = []
    with temporary_folder() as folder, kind.fresh() as url:
        root = Holdshelf(upgraded(demo_instance(folder), url), clock=fixed_clock())
        try:
            for count in counts:

                def expired(count: int = count) -> float:
                    clear(root)
                    fill(root, count)
                    start = time.perf_counter()
                    pulled = root.service.expire()
                    took = time.perf_counter() - start
                    assert len(pulled) == count, (len(pulled), count)
                    return took

                def floor(count: int = count) -> float:
                    clear(root)
                    fill(root, count)
                    return bare(root)

                took, floors = interleaved(runs, expired, floor)
                found.append(
                    Figure.of(
                        f"expire {count:,} overdue holds, {kind.label}",
                        "s",
                        took,
                        ceiling=floors,
                        ceiling_name="bare SQL, one transaction",
                        note="ms per hold: " + ", ".join(f"{t / count * 1000:.3f}" for t in took),
                    )
                )
        finally:
            root.close()
    return found


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [2000, 20000]
    for kind in databases(postgres=True):
        try:
            show(figures(kind, counts))
        except RuntimeError as exc:
            print(f"{kind.label}: skipped ({exc})")


if __name__ == "__main__":
    main()
