"""Start-up time of the ``holdshelf`` command, beside a bare interpreter in the same run:

- ``import holdshelf.cli``, timed inside a fresh interpreter (what every command pays first);
- wall time of ``holdshelf --help`` and of ``holdshelf shelf`` (a demo instance, no holds), as
  whole processes, next to ``python -c pass`` and ``python -c "import click"``;
- which of the heavy libraries ``import holdshelf.cli`` loads.

Each figure is the median of RUNS fresh processes (the machine's load moves single runs a lot;
the baselines, measured in between, show how busy it was). run_all.py calls ``figures``: three
interleaved runs of `import holdshelf.cli` beside `import click`, and `holdshelf --help` beside
`python -c "import click"`.

Usage: python benchmarks/cli_startup.py [RUNS]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import INTERLEAVED_RUNS, Figure, child_environment, interleaved

# Timed inside the child, so the interpreter's own start is not counted.
IMPORT_TIME = (
    "import time; start = time.perf_counter(); import {}; print(time.perf_counter() - start)"
)
HEAVY = ("sqlalchemy", "flask", "werkzeug", "jinja2", "babel", "PIL", "escpos", "qrcode", "argon2")
LOADED = f"import sys, holdshelf.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"


def holdshelf_command() -> list[str]:
    """The console script beside this interpreter, as a user runs it; else ``-m holdshelf``."""
    script = Path(sys.executable).with_name("holdshelf")
    return [str(script)] if script.exists() else [sys.executable, "-m", "holdshelf"]


def wall_ms(command: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def import_ms(runs: int, env: dict[str, str], module: str = "holdshelf.cli") -> float:
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", IMPORT_TIME.format(module)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(times) * 1000


def figures(runs: int = INTERLEAVED_RUNS, processes: int = 5) -> list[Figure]:
    """`import holdshelf.cli` beside `import click`, and `holdshelf --help` beside
    `python -c "import click"`: each run the median of ``processes`` fresh processes, the
    four interleaved run by run."""
    env = child_environment()
    click_wall = [sys.executable, "-c", "import click"]
    cli, click, helped, bare = interleaved(
        runs,
        lambda: import_ms(processes, env),
        lambda: import_ms(processes, env, "click"),
        lambda: wall_ms([*holdshelf_command(), "--help"], processes, env),
        lambda: wall_ms(click_wall, processes, env),
    )
    note = f"each run the median of {processes} fresh processes"
    return [
        Figure.of("import holdshelf.cli", "ms", cli, ceiling=click, ceiling_name="import click",
                  note=note),
        Figure.of("holdshelf --help, whole process", "ms", helped, ceiling=bare,
                  ceiling_name='python -c "import click"', note=note),
    ]  # fmt: skip


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    holdshelf = holdshelf_command()
    env = child_environment()
    folder = tempfile.mkdtemp(prefix="holdshelf-bench-")
    try:
        instance = str(Path(folder) / "instance")
        subprocess.run(
            [*holdshelf, "--instance", instance, "init", "--demo"],
            check=True,
            capture_output=True,
            env=env,
        )
        figures = {
            "python -c pass": wall_ms([sys.executable, "-c", "pass"], runs, env),
            'python -c "import click"': wall_ms([sys.executable, "-c", "import click"], runs, env),
            "holdshelf --help": wall_ms([*holdshelf, "--help"], runs, env),
            "holdshelf shelf": wall_ms([*holdshelf, "--instance", instance, "shelf"], runs, env),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED], check=True, capture_output=True, text=True, env=env
    ).stdout.split()
    print(f"import holdshelf.cli: {import_ms(runs, env):.0f} ms median of {runs} (in process)")
    for label, ms in figures.items():
        print(f"{label}: {ms:.0f} ms wall, median of {runs}")
    print(f"loaded by import holdshelf.cli: {', '.join(loaded) or 'none of ' + ', '.join(HEAVY)}")


if __name__ == "__main__":
    main()
