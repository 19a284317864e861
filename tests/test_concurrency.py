"""Several processes marking holds ready at once, as several desks or app servers would, and
desk check-ins beside a big import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from holdshelf.bootstrap import Holdshelf
from holdshelf.service import HoldService
from holdshelf.settings import load_settings
from holdshelf.storage.models import Hold, PrintJob

PROCESSES = 4
HOLDS_PER_PROCESS = 500
WORKER = Path(__file__).parent / "helpers" / "ready_many.py"


@pytest.mark.slow
def test_parallel_clerks_get_unique_codes_and_lose_nothing(
    service: HoldService, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
    clerks = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(service.settings.instance_dir),
                f"{p}",
                str(HOLDS_PER_PROCESS),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for p in range(1, PROCESSES + 1)
    ]
    go.touch()
    reports = []
    for clerk in clerks:
        out, err = clerk.communicate(timeout=600)
        assert clerk.returncode == 0, err
        reports.append(json.loads(out))

    errors = [e for report in reports for e in report["errors"]]
    assert errors == [], "no clerk saw an error"
    made = [tuple(m) for report in reports for m in report["made"]]
    assert len(made) == PROCESSES * HOLDS_PER_PROCESS
    assert len(set(made)) == len(made), "no two active holds of a branch share a code"

    with service._sessions() as session:
        stored = session.execute(select(Hold.branch, Hold.code)).all()
        duplicates = session.execute(
            select(Hold.branch, Hold.code).group_by(Hold.branch, Hold.code).having(func.count() > 1)
        ).all()
    assert len(stored) == PROCESSES * HOLDS_PER_PROCESS, "no hold was lost"
    assert sorted(map(tuple, stored)) == sorted(made)
    assert duplicates == []


# Big enough that the set-based import (thousands of rows a second) is still writing while
# the desk checks in; the desk stops when the import ends.
IMPORT_ROWS = 100_000
CHECKINS = 100
FEWEST_BESIDE = 10  # check-ins that must have met the import's batches
# Generous, to stay clear of a loaded machine's hiccups: the benchmark
# (benchmarks/import_contention.py) measures a p99 about a tenth of this. Before an import paused
# between short batches, check-ins here waited up to 30 s and then failed.
LONGEST_CHECKIN = 2.0


def holds_ready_report(path: Path, rows: int) -> Path:
    with path.open("w") as out:
        out.write("item_barcode,patron_card,patron_name\n")
        for n in range(rows):
            out.write(f"3901{n:010d},2101{n:010d},Name {n}\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_checkins_beside_a_big_import_on_sqlite(service: HoldService, tmp_path: Path) -> None:
    """`holdshelf import` of a 100,000-row report in its own process, as from cron beside
    `serve`, while the desk checks items in: none fails and none waits long. The import is
    stopped once the desk is done (the benchmark runs it to the end): what it had committed is
    whole, batch by batch."""
    instance = service.settings.instance_dir
    config = instance / "holdshelf.toml"  # 100,000 holds would crowd six-character codes
    config.write_text(
        config.read_text().replace("[branches.MAIN]\n", "[branches.MAIN]\ncode_length = 7\n")
    )
    desk = Holdshelf(load_settings(instance, environ={}), clock=service.clock).service
    report = holds_ready_report(tmp_path / "report.csv", IMPORT_ROWS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
    command = [sys.executable, "-m", "holdshelf", "--instance", str(instance), "import"]
    importer = subprocess.Popen(
        [*command, str(report), "--branch", "MAIN"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        while not desk.shelf("MAIN"):  # the import has begun writing
            assert importer.poll() is None, importer.communicate()
            time.sleep(0.05)
        waits, errors = check_in_beside(desk, lambda: importer.poll() is None)
    finally:
        importer.terminate()
        _, err = importer.communicate(timeout=60)
    desk.engine.dispose()

    assert errors == []
    assert max(waits) < LONGEST_CHECKIN, sorted(waits)[-5:]
    assert len(waits) >= FEWEST_BESIDE, f"the import ended before the desk got going: {err}"
    with service.sessions() as session:
        holds = session.scalar(select(func.count()).select_from(Hold))
        slips = session.scalar(select(func.count()).select_from(PrintJob))
        desk_holds = session.scalar(select(func.count()).where(Hold.item_barcode.like("DESK-%")))
    assert desk_holds == len(waits)
    assert len(waits) < holds <= IMPORT_ROWS + len(waits)
    assert slips == holds, "every hold committed has its slip: no half batch"


def check_in_beside(
    desk: HoldService, importing: Callable[[], bool]
) -> tuple[list[float], list[str]]:
    """Up to CHECKINS check-ins at the desk, scanned 0.2 s apart (a brisk desk), while the
    import is still ``importing``: how long each took, and errors."""
    waits, errors = [], []
    for n in range(CHECKINS):
        if not importing():
            break
        start = time.perf_counter()
        try:
            desk.ready("MAIN", f"DESK-{n}", f"2999{n:010d}")
        except Exception as exc:  # reported to the test, which fails on any
            errors.append(f"{type(exc).__name__}: {exc}")
        waits.append(time.perf_counter() - start)
        if errors or waits[-1] >= LONGEST_CHECKIN:
            break  # failed already: not another 30 s per check-in
        time.sleep(0.2)
    return waits, errors
