"""Every script under benchmarks/ still imports against the current code, and the harness
(benchmarks/run_all.py) still runs every benchmark, in its quickest mode.

The benchmarks' figures are not tested (they are not timed tests), so a moved name or a changed
import would go unnoticed until someone next measures. Each script keeps its work behind
``if __name__ == "__main__"``, so it is loaded here as ``python benchmarks/NAME.py`` would load
it (its folder first on sys.path, for ``scratch`` and ``csv_import``) under another name: its
imports run, its measurements do not. One process per script, so their sys.path edits and
top-level module names stay out of the test run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))
# As `python benchmarks/NAME.py` starts, but with __name__ other than "__main__".
LOAD = """
import os, runpy, sys
script = sys.argv[1]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="benchmark_import_check")
"""


def test_benchmarks_found() -> None:
    assert len(BENCHMARKS) >= 2, BENCHMARKS


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.name)
def test_benchmark_imports(script: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "", f"{script.name} did work on import: {result.stdout}"


# What run_all prints in every run: a figure of each benchmark, and each ceiling.
FIGURES = (
    "import 1,000 rows, {db}",
    "POST /api/v1/holds, {db}",
    "statements per API POST, {db}",
    "transactions per API POST, {db}",
    "ready in another process -> last byte, {db}: p99",
    "worker drains 60 slips, {db}: last 6",
    "a desk slip's wait during the drain, {db}",
    "expire 500 overdue holds, {db}",
    "import holdshelf.cli",
    "rate limiter per call, 5,000 addresses in the window",
    "GET /api/v1/holds, first page at 400 active holds, {db}",
    "shelf page at 400 active holds, {db}",
    "check-in at 400 active holds, {db}",
)
CEILINGS = (
    "bare executemany",
    "bare Flask, one INSERT",
    "in-process wake",
    "bare claim-send-record loop",
    "bare SQL, one transaction",
    "import click",
    "the same flood, 100 addresses in the window",
)
SPREAD = r"[\d.,]+ / [\d.,]+ / [\d.,]+"  # min / median / max


def test_run_all_quick(database_url: str) -> None:
    """`run_all.py --quick`: every benchmark on tiny sizes, each figure as min / median / max
    beside its ceiling and their ratio, the load at the start and the end, the summary table."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HOLDSHELF_") and key != "BENCH_POSTGRES_URL"
    }
    arguments, db = ["--quick", "--database", "sqlite"], "SQLite"
    if database_url.startswith("postgresql"):
        env["BENCH_POSTGRES_URL"] = database_url  # scratch databases are made beside it
        arguments, db = ["--quick", "--database", "postgresql"], "PostgreSQL"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-6000:]
    assert re.search(r"^start: .* load average [\d.]+ [\d.]+ [\d.]+ on \d+ CPUs$", out, re.M)
    assert re.search(r"^end: .* load average [\d.]+ [\d.]+ [\d.]+ on \d+ CPUs$", out, re.M)
    for figure in FIGURES:
        name = figure.format(db=db)
        assert re.search(rf"^{re.escape(name)}.* {SPREAD} ", out, re.M), name
        assert f"| {name}" in out, f"{name} is not in the summary table"
    for ceiling in CEILINGS:
        assert re.search(rf"ceiling, {re.escape(ceiling)}: {SPREAD} .*; ratio {SPREAD}", out), (
            ceiling
        )
    assert "FAILED" not in out


def test_readme_lists_every_benchmark_of_the_harness() -> None:
    """The README's table of benchmarks has a row for each name `run_all.py --only` takes."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    listing = re.search(r"NAME: ([\w,\s]+)", result.stdout).group(1)  # argparse wraps it
    names = [name.strip() for name in listing.split(",")]
    assert len(names) >= 9, names
    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"^\| `(\w+)` \| `(\w+\.py)` \|", readme, re.M)
    assert sorted(name for name, _ in listed) == sorted(names)
    for _, script in listed:
        assert (ROOT / "benchmarks" / script).exists(), script


def test_runs_are_interleaved() -> None:
    """A figure and its ceiling take turns (A, B, A, B, A, B), so a load that comes and goes
    hits both alike; each Figure's ratio is taken run by run."""
    check = """
import sys
sys.path.insert(0, "benchmarks")
from common import Figure, interleaved
order = []
a, b = interleaved(3, lambda: order.append("A") or len(order), lambda: order.append("B") or 1)
print("".join(order), a, b)
print(Figure.of("f", "s", [2.0, 4.0, 9.0], ceiling=[1.0, 2.0, 3.0], ceiling_name="bare").line())
"""
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True
    )
    first, *figure = result.stdout.splitlines()
    assert first == "ABABAB [1, 3, 5] [1, 1, 1]"
    assert figure[0].split()[-6:] == ["2.00", "/", "4.00", "/", "9.00", "s"]
    assert figure[1].strip() == "ceiling, bare: 1.00 / 2.00 / 3.00 s; ratio 2.00 / 2.00 / 3.00"
