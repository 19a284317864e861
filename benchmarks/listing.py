"""The shelf as it grows: server time and bytes of the two whole-shelf reads, and the time of a
check-in, in process (Flask test client), at 100, 5,000 and 20,000 active holds of one branch,
on SQLite and PostgreSQL:

- GET /api/v1/holds: the first page (the default limit), and every page walked to the end;
- the desk's hold-shelf page (/shelf), as a clerk first opens it;
- a check-in: HoldService.ready, what `holdshelf ready` and the desk's check-in call (its slip
  queued; no worker runs). It should cost the same however full the shelf is.

Each figure is min / median / max of three runs, the reads interleaved (first page, every page,
shelf page, first page, ...), each run after one unmeasured call; a check-in run is the median
of CHECKINS check-ins.

Usage: python benchmarks/listing.py [ACTIVE_HOLDS ...]
PostgreSQL: BENCH_POSTGRES_URL (see benchmarks/common.py); unreachable, it is skipped.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    INTERLEAVED_RUNS,
    Database,
    Figure,
    barcode,
    databases,
    demo_instance,
    interleaved,
    show,
    temporary_folder,
    upgraded,
)
from expire import fill

from holdshelf.bootstrap import Holdshelf
from holdshelf.web import create_app

ACCOUNT = ("bench", "benchmark password")
SIZES = (100, 5_000, 20_000)
CHECKINS = 20
PARTS = ("api", "shelf", "checkin")


def signed_in(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"name": ACCOUNT[0], "password": ACCOUNT[1], "csrf_token": token})
    page = client.get("/branch").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/branch", data={"branch": "MAIN", "csrf_token": token})
    return client


def timed(action: Callable[[], int]) -> Callable[[], tuple[float, int]]:
    """``action`` as a run: (ms, bytes of its answer), after one call not measured."""
    warmed = []

    def run() -> tuple[float, int]:
        if not warmed:
            warmed.append(action())
        start = time.perf_counter()
        size = action()
        return (time.perf_counter() - start) * 1000, size

    return run


def reads(root: Holdshelf, active: int) -> dict[str, Callable[[], int]]:
    """The whole-shelf reads, each returning the bytes it got."""
    token = root.integrations.create_token("bench", [])
    app = create_app(root)
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    desk = signed_in(app)

    def first_page() -> int:
        response = api.get("/api/v1/holds", headers=headers)
        assert response.status_code == 200
        return len(response.get_data())

    def every_page() -> int:
        size, after, seen = 0, None, 0
        while True:
            query = {"after": after} if after else {}
            response = api.get("/api/v1/holds", headers=headers, query_string=query)
            body = response.get_json()
            size += len(response.get_data())
            seen += len(body["holds"])
            after = body.get("next")
            if not after:
                assert seen == active, (seen, active)
                return size

    def shelf_page() -> int:
        response = desk.get("/shelf")
        assert response.status_code == 200
        return len(response.get_data())

    return {
        "GET /api/v1/holds, first page": first_page,
        "GET /api/v1/holds, every page": every_page,
        "shelf page": shelf_page,
    }


def checkin_run(root: Holdshelf, count: int, numbers) -> Callable[[], float]:
    """A run: the median ms of ``count`` check-ins of new holds at MAIN."""

    def run() -> float:
        times = []
        for _ in range(count):
            n = next(numbers)
            start = time.perf_counter()
            root.service.ready("MAIN", barcode("3", n), barcode("2", n))
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    return run


def at_size(kind: Database, active: int, runs: int, checkins: int, parts) -> list[Figure]:
    found = []
    with temporary_folder() as folder, kind.fresh() as url:
        root = Holdshelf(upgraded(demo_instance(folder), url))
        try:
            root.accounts.add_user(*ACCOUNT, "staff")
            fill(root, active, overdue=False, branches=1)
            if "api" in parts or "shelf" in parts:
                chosen = {
                    name: action
                    for name, action in reads(root, active).items()
                    if ("shelf" if name == "shelf page" else "api") in parts
                }
                results = interleaved(runs, *(timed(action) for action in chosen.values()))
                for name, taken in zip(chosen, results, strict=True):
                    found.append(
                        Figure.of(
                            f"{name} at {active:,} active holds, {kind.label}",
                            "ms",
                            [ms for ms, _ in taken],
                            note=f"{taken[-1][1] / 1e6:.3f} MB",
                        )
                    )
            if "checkin" in parts:
                run = checkin_run(root, checkins, iter(range(10**6)))
                run()  # not measured: the first check-in's connections and caches
                found.append(
                    Figure.of(
                        f"check-in at {active:,} active holds, {kind.label}",
                        "ms",
                        [run() for _ in range(runs)],
                        note=f"each run the median of {checkins} check-ins",
                    )
                )
        finally:
            root.close()
    return found


def figures(
    kind: Database,
    sizes: list[int],
    runs: int = INTERLEAVED_RUNS,
    checkins: int = CHECKINS,
    parts: tuple[str, ...] = PARTS,
) -> list[Figure]:
    """Per size of the shelf: the reads and a check-in (``parts``: of "api", "shelf",
    "checkin"), each on a fresh database."""
    return [figure for active in sizes for figure in at_size(kind, active, runs, checkins, parts)]


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    for kind in databases(postgres=True):
        try:
            show(figures(kind, sizes))
        except RuntimeError as exc:
            print(f"{kind.label}: skipped ({exc})")


if __name__ == "__main__":
    main()
