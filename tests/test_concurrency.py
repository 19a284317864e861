"""Several processes marking holds ready at once, as several desks or app servers would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from holdshelf.service import HoldService
from holdshelf.storage.models import Hold

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
