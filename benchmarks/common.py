"""What the benchmarks share: a demo instance and its database (SQLite, or a scratch PostgreSQL
database), the barcodes the demo accepts, a fixed clock, a free port, a server process started
and stopped, the machine's load, and figures measured in interleaved runs beside their ceiling.

Every script in this folder puts the folder (and the repository, for tests.helpers) on sys.path
and imports this module as ``common``; benchmarks/run_all.py calls their ``figures`` functions.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers, tests.peers

from sqlalchemy import create_engine, make_url, text

from holdshelf.clock import LibraryClock
from holdshelf.domain.barcodes import luhn_valid
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database
from tests.helpers.servers import free_port

__all__ = ["free_port"]  # re-exported: the benchmarks' one free_port is the tests' one

# Not a HOLDSHELF_ variable: the settings refuse the ones they do not know.
POSTGRES_VARIABLE = "BENCH_POSTGRES_URL"
POSTGRES_URL = os.environ.get(
    POSTGRES_VARIABLE, "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)  # the settings clock of benchmarks that fix it
INTERLEAVED_RUNS = 3


def fixed_clock() -> LibraryClock:
    """``Holdshelf(settings, clock=fixed_clock())``: the time stands still at NOW (the
    library's date in this machine's zone, as the demo leaves its zone empty)."""
    return LibraryClock(None, source=lambda: NOW)


def barcode(first: str, n: int) -> str:
    """A 14-digit Codabar barcode with its Luhn digit: the demo instance checks both."""
    body = f"{first}{n:012d}"
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


# -- instances and databases -------------------------------------------------------------------


def network_printer(port: int) -> str:
    """A [printers.NAME] table for tests/helpers/fake_printer.py on ``port``."""
    return f'type = "network"\nhost = "127.0.0.1"\nport = {port}\nprofile = "TM-T88V"'


FILE_PRINTER = 'type = "file"\ndevice = "/dev/null"\nprofile = "TM-T88V"'  # ESC/POS bytes only


def demo_instance(folder: Path, *, printer: str | None = None, barcode_rules: bool = True) -> Path:
    """The demo instance (MAIN, EAST) in ``folder``; ``printer``: a printer table for MAIN's
    slips (else the demo's preview printer); without ``barcode_rules``, any barcode goes (the
    benchmarks that make up barcodes, or use a peer's)."""
    write_config(folder, demo=True)
    config = folder / "holdshelf.toml"
    content = config.read_text()
    if not barcode_rules:
        for key in ("card_pattern", "item_pattern", "check_digit"):
            content = content.replace(f"\n{key} = ", f"\n# {key} = ")
    if printer is not None:
        content = content.replace("[branches.MAIN]\n", '[branches.MAIN]\nprinter = "desk"\n')
        content += f"\n[printers.desk]\n{printer}\n"
    config.write_text(content)
    return folder


def upgraded(instance: Path, database_url: str | None, **environ: str) -> Any:
    """The instance's settings on ``database_url`` (None: its own SQLite file), its schema
    made; ``environ``: more HOLDSHELF_ settings."""
    if database_url is not None:
        environ["HOLDSHELF_DATABASE_URL"] = database_url
    settings = load_settings(instance, environ=environ)
    engine = database.make_engine(settings.database_url)
    database.upgrade(engine)
    engine.dispose()
    return settings


@contextmanager
def scratch_postgres() -> Iterator[str | None]:
    """The URL of an empty database, or None (with a note) when PostgreSQL does not answer."""
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"holdshelf_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL: skipped ({str(exc).splitlines()[0]})")
        admin.dispose()
        yield None
        return
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class Database:
    """A kind of database a benchmark runs on: SQLite (the instance's own file) or PostgreSQL
    (a scratch database per ``fresh()``)."""

    label: str

    @contextmanager
    def fresh(self) -> Iterator[str | None]:
        """An empty database: None for SQLite (a new instance folder's own file)."""
        if self.label == "SQLite":
            yield None
            return
        with scratch_postgres() as url:
            if url is None:
                raise RuntimeError(f"PostgreSQL does not answer at {POSTGRES_URL}")
            yield url


SQLITE = Database("SQLite")
POSTGRES = Database("PostgreSQL")


def databases(postgres: bool | None = None) -> list[Database]:
    """SQLite, and PostgreSQL when ``postgres`` (default: when BENCH_POSTGRES_URL is set)."""
    wanted = POSTGRES_VARIABLE in os.environ if postgres is None else postgres
    return [SQLITE, POSTGRES] if wanted else [SQLITE]


@contextmanager
def temporary_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="holdshelf-bench-") as folder:
        yield Path(folder)


# -- processes ---------------------------------------------------------------------------------


def child_environment(**extra: str) -> dict[str, str]:
    """This environment without HOLDSHELF_ variables (a child's settings are the ones given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
    return env | extra


@contextmanager
def serving(command: list[str], env: dict[str, str], ready: str) -> Iterator[subprocess.Popen]:
    """A server process, once it printed a line matching ``ready``; stopped by SIGTERM."""
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        said = []
        assert server.stdout is not None
        while not re.search(ready, line := server.stdout.readline()):
            said.append(line)
            if not line:
                raise RuntimeError(f"{command[1:3]} did not start: {''.join(said)[-2000:]}")
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# -- figures -----------------------------------------------------------------------------------


def interleaved(runs: int, *measures: Callable[[], Any]) -> list[list[Any]]:
    """Each measure ``runs`` times, in turn (A, B, A, B, ...: a load that comes and goes hits
    them alike); what each returned, by measure."""
    results: list[list[Any]] = [[] for _ in measures]
    for _ in range(runs):
        for taken, measure in zip(results, measures, strict=True):
            taken.append(measure())
    return results


def spread(values: list[float]) -> str:
    """min / median / max."""
    return " / ".join(number(v) for v in (min(values), statistics.median(values), max(values)))


def number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3g}"


@dataclass(frozen=True)
class Figure:
    """One figure of runs (min / median / max), beside its ceiling measured in the same runs
    (``ceiling_name``: the bare work it is); the ratio is figure / ceiling, run by run."""

    name: str
    unit: str
    values: tuple[float, ...]
    ceiling: tuple[float, ...] = ()
    ceiling_name: str = ""
    note: str = ""

    @classmethod
    def of(cls, name: str, unit: str, values: list[float], **more: Any) -> Figure:
        ceiling = tuple(more.pop("ceiling", ()))
        return cls(name, unit, tuple(values), ceiling, **more)

    def ratios(self) -> list[float]:
        return [v / c for v, c in zip(self.values, self.ceiling, strict=True) if c]

    def line(self) -> str:
        shown = f"{self.name:<62} {spread(list(self.values)):>22} {self.unit}"
        if self.ceiling:
            shown += (
                f"\n{'':<4}ceiling, {self.ceiling_name}: {spread(list(self.ceiling))} {self.unit};"
                f" ratio {spread(self.ratios())}"
            )
        if self.note:
            shown += f"\n{'':<4}{self.note}"
        return shown

    def row(self) -> str:
        """A Markdown table row: figure, median (min / median / max), ceiling, ratio."""
        middle = statistics.median
        unit = f" {self.unit}" if self.unit else ""
        ceiling, ratio = "-", "-"
        if self.ceiling:
            ceiling = f"{number(middle(self.ceiling))}{unit} ({self.ceiling_name})"
            ratio = number(middle(self.ratios()))
        return (
            f"| {self.name} | {number(middle(self.values))}{unit} "
            f"({spread(list(self.values))}) | {ceiling} | {ratio} |"
        )


def show(figures: list[Figure]) -> list[Figure]:
    for figure in figures:
        print(figure.line(), flush=True)
    return figures
