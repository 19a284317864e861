"""Desk check-ins while a 20,000-row holds-ready report is imported, on SQLite.

The import runs in its own process, as `holdshelf import` from cron does beside `serve`; the desk
is the web app in this process (Flask test client, no network): a check-in is the POST that
makes the hold ready and the result page the clerk then sees (the hold, its slip's state, the
printer banner), each with the staff session check. Printed beside a baseline measured in the
same run with no import running, and the import's own rate alone and beside the desk.

Usage: python benchmarks/import_contention.py [ROWS] [PAUSE_MS]
(PAUSE_MS: the desk scans again about this long after each check-in, between half and one and a
half times it; default 100.)
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from holdshelf.bootstrap import Holdshelf
from holdshelf.importer import import_holds
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.web import create_app

sys.path.insert(0, str(Path(__file__).parent))
from common import barcode
from csv_import import report as write_report

ACCOUNT = ("bench", "benchmark password")
BASELINE_CHECKINS = 100
# 20,000 holds in one branch would fill most of a six-character code space.
ENVIRON = {"HOLDSHELF_BRANCHES__MAIN__CODE_LENGTH": "7"}


def run_import(instance: Path, report: Path) -> None:
    """The child process: import the report, print its rate as JSON."""
    settings = load_settings(instance, environ=ENVIRON)
    service = Holdshelf(settings).service
    start = time.perf_counter()
    result = import_holds(service, report, "MAIN")
    elapsed = time.perf_counter() - start
    assert not result.bad, result.bad[:3]
    print(json.dumps({"rows": len(result.imported), "seconds": elapsed}))


def start_import(instance: Path, report: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--import", str(instance), str(report)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENVIRON},
    )


def import_rate(process: subprocess.Popen[str]) -> float:
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, "the import failed"
    result = json.loads(out)
    return result["rows"] / result["seconds"]


def fresh_instance(folder: Path) -> Path:
    write_config(folder, demo=True)
    database.upgrade(database.make_engine(load_settings(folder, environ=ENVIRON).database_url))
    return folder


@dataclass
class Desk:
    """A signed-in desk at MAIN, scanning items that no report carries."""

    instance: Path
    scanned: int = 0
    checkins: list[float] = field(default_factory=list)
    pages: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        settings = load_settings(self.instance, environ=ENVIRON)
        root = Holdshelf(settings)
        root.accounts.add_user(*ACCOUNT, "staff")
        self.client = create_app(root).test_client()
        token = self._token("/login")
        data = {"name": ACCOUNT[0], "password": ACCOUNT[1], "csrf_token": token}
        self.client.post("/login", data=data)
        self.token = self._token("/branch")
        self.client.post("/branch", data={"branch": "MAIN", "csrf_token": self.token})

    def _token(self, path: str) -> str:
        page = self.client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, path
        return match.group(1)

    def clear(self) -> None:
        self.checkins, self.pages, self.failures = [], [], []

    def check_in(self) -> None:
        n = self.scanned = self.scanned + 1
        item, card = barcode("3", 900_000_000 + n), barcode("2", 900_000_000 + n)
        start = time.perf_counter()
        response = self.client.post(
            "/checkin", data={"item": item, "card": card, "csrf_token": self.token}
        )
        middle = time.perf_counter()
        if response.status_code != 302:
            self.failures.append(f"check-in {response.status_code}")
            return
        page = self.client.get(response.headers["Location"])
        end = time.perf_counter()
        if page.status_code != 200:
            self.failures.append(f"result page {page.status_code}")
            return
        self.checkins.append(middle - start)
        self.pages.append(end - middle)


def figures(label: str, waits: list[float]) -> str:
    if not waits:
        return f"{label}: none completed"
    ordered = sorted(waits)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{label}: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms ({len(ordered)})"
    )


SCANS = random.Random(11)


def next_scan(pause: float) -> None:
    # Not a fixed beat: a desk scanning every 100 ms falls into step with the import's
    # tenth-of-a-second batches and meets each one just as it has begun.
    time.sleep(pause * SCANS.uniform(0.5, 1.5))


def report_desk(title: str, desk: Desk) -> None:
    print(title)
    print("  " + figures("check-in POST", desk.checkins))
    print("  " + figures("result page  ", desk.pages))
    print(f"  failed: {len(desk.failures)}" + (f" {desk.failures[:5]}" if desk.failures else ""))


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    pause = (float(sys.argv[2]) if len(sys.argv) > 2 else 100) / 1000
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.csv"
        write_report(report, rows)

        alone = import_rate(start_import(fresh_instance(Path(folder) / "alone"), report))

        desk = Desk(fresh_instance(Path(folder) / "desk"))
        for _ in range(BASELINE_CHECKINS):
            desk.check_in()
            next_scan(pause)
        report_desk(f"SQLite, no import running ({BASELINE_CHECKINS} check-ins):", desk)

        desk.clear()
        process = start_import(desk.instance, report)
        while process.poll() is None:
            desk.check_in()
            next_scan(pause)
        beside = import_rate(process)
        report_desk(f"SQLite, during a {rows:,}-row import:", desk)
        print(
            f"import: {alone:,.0f} rows/s alone, {beside:,.0f} rows/s beside the desk "
            f"({rows:,} rows, each with its slip queued)"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--import"]:
        run_import(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
