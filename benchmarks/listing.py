"""Server time and bytes of the two whole-shelf reads, in process (Flask test client), at
100, 5,000 and 20,000 active holds of one branch (SQLite):

- GET /api/v1/holds: the first page (the default limit), and every page walked to the end;
- the desk's hold-shelf page (/shelf), as a clerk first opens it.

Usage: python benchmarks/listing.py [ACTIVE_HOLDS ...]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from expire import fill

from holdshelf.bootstrap import Holdshelf
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.web import create_app

ACCOUNT = ("bench", "benchmark password")
RUNS = 7


def median_ms(action) -> tuple[float, int]:
    """(median ms, bytes of the last answer)"""
    times, size = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        size = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, size


def signed_in(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"name": ACCOUNT[0], "password": ACCOUNT[1], "csrf_token": token})
    page = client.get("/branch").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/branch", data={"branch": "MAIN", "csrf_token": token})
    return client


def measure(active: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder)
        write_config(instance, demo=True)
        settings = load_settings(instance)
        database.upgrade(database.make_engine(settings.database_url))
        root = Holdshelf(settings)
        try:
            root.accounts.add_user(*ACCOUNT, "staff")
            fill(root, active, overdue=False, branches=1)
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

            for label, action in (
                ("API first page", first_page),
                ("API every page", every_page),
                ("shelf page", shelf_page),
            ):
                ms, size = median_ms(action)
                print(f"{active:>6} active holds: {label:15} {ms:8.1f} ms {size / 1e6:7.3f} MB")
        finally:
            root.close()


def main() -> None:
    for active in [int(a) for a in sys.argv[1:]] or [100, 5000, 20000]:
        measure(active)


if __name__ == "__main__":
    main()
