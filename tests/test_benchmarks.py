"""Every script under benchmarks/ still imports against the current code.

The benchmarks are not run by the tests, so a moved name or a changed import would go
unnoticed until someone next measures. Each script keeps its work behind
``if __name__ == "__main__"``, so it is loaded here as ``python benchmarks/NAME.py`` would load
it (its folder first on sys.path, for ``scratch`` and ``csv_import``) under another name: its
imports run, its measurements do not. One process per script, so their sys.path edits and
top-level module names stay out of the test run.
"""

from __future__ import annotations

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
