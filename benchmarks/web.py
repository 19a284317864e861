"""Server time of the desk's busiest requests, in process (Flask test client, no network):

- the check-in POST (make a hold ready, queue its slip, redirect), then the result page;
- the hold-shelf page of a branch with 5,000 active holds.

Usage: python benchmarks/web.py [ACTIVE_HOLDS]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from holdshelf.bootstrap import Holdshelf
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.web import create_app

sys.path.insert(0, str(Path(__file__).parent))
from common import barcode

ACCOUNT = ("bench", "benchmark password")


def timed(action, count: int) -> tuple[float, float]:
    """(median ms, p95 ms)"""
    times = []
    for n in range(count):
        start = time.perf_counter()
        action(n)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.95)] * 1000


def main() -> None:
    active = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder)
        write_config(instance, demo=True)
        settings = load_settings(instance)
        database.upgrade(database.make_engine(settings.database_url))
        root = Holdshelf(settings)
        service = root.service
        root.accounts.add_user(*ACCOUNT, "staff")
        app = create_app(root)
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        client.post(
            "/login", data={"name": ACCOUNT[0], "password": ACCOUNT[1], "csrf_token": token}
        )
        page = client.get("/branch").get_data(as_text=True)  # signed in: a fresh token
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        client.post("/branch", data={"branch": "MAIN", "csrf_token": token})

        def check_in(n: int) -> None:
            response = client.post(
                "/checkin",
                data={"item": barcode("3", n), "card": barcode("2", n), "csrf_token": token},
            )
            assert response.status_code == 302, response.status_code

        median, p95 = timed(check_in, 300)
        print(f"check-in POST: median {median:.1f} ms, p95 {p95:.1f} ms (SQLite, 300 requests)")
        code = client.post(
            "/checkin",
            data={"item": barcode("3", active), "card": barcode("2", active), "csrf_token": token},
        )
        result_path = code.headers["Location"]
        median, p95 = timed(lambda n: client.get(result_path), 100)
        print(f"check-in result page (with print status): median {median:.1f} ms, p95 {p95:.1f} ms")

        for n in range(300, active):
            service.ready("MAIN", barcode("3", n), barcode("2", n))
        assert len(service.shelf("MAIN")) >= active
        median, p95 = timed(lambda n: client.get("/shelf"), 20)
        size = len(client.get("/shelf").data)
        print(
            f"hold shelf page, {active:,} active holds: median {median:.0f} ms, "
            f"p95 {p95:.0f} ms, {size / 1024:.0f} KiB"
        )
        root.close()


if __name__ == "__main__":
    main()
