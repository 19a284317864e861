"""Shared fixtures: instances on SQLite and on a real PostgreSQL, a settable clock, patrons.

PostgreSQL: HOLDSHELF_TEST_POSTGRES_URL (default: postgres@127.0.0.1:5432/test). Each test run
creates its own database next to it and drops it afterwards. Unreachable PostgreSQL skips those
tests, unless HOLDSHELF_TEST_REQUIRE_POSTGRES=1 (CI), where it fails the run instead.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.barcodes import luhn_valid
from holdshelf.instance import write_config
from holdshelf.service import HoldService
from holdshelf.settings import Settings, load_settings
from holdshelf.storage import database
from holdshelf.storage.models import Base

POSTGRES_URL = os.environ.get(
    "HOLDSHELF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("HOLDSHELF_TEST_REQUIRE_POSTGRES") == "1"
TIMEZONE = ZoneInfo("America/Chicago")
# A Monday morning at the circulation desk.
START = dt.datetime(2026, 11, 23, 9, 30, tzinfo=TIMEZONE)

_postgres_tests_run = 0


# -- PostgreSQL -------------------------------------------------------------------------------


def _admin_engine():
    return create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[URL]:
    """A fresh, migrated database for this test run (dropped at the end)."""
    admin = _admin_engine()
    name = f"holdshelf_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        message = f"PostgreSQL unavailable at {POSTGRES_URL}: {str(exc).splitlines()[0]}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(POSTGRES_URL).set(database=name)
    engine = database.make_engine(url.render_as_string(hide_password=False))
    database.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def truncate_all(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables}"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs twice: on SQLite in its instance folder, and on PostgreSQL."""
    global _postgres_tests_run
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'instance' / 'holdshelf.sqlite3'}"
        return
    url = request.getfixturevalue("postgres_server_url").render_as_string(hide_password=False)
    _postgres_tests_run += 1
    yield url
    truncate_all(url)


def pytest_configure(config: pytest.Config) -> None:
    # The tests test the working tree (an editable install), so an edit is never silently left
    # untested; the installed copy is the packaging test's (tests/test_packaging.py).
    import holdshelf.printers

    import holdshelf

    root = Path(__file__).resolve().parents[1]
    for package in (holdshelf, holdshelf.printers):
        if not Path(package.__file__).resolve().is_relative_to(root):
            pytest.exit(
                f"{package.__name__} is imported from {Path(package.__file__).parent}, not this "
                "checkout: pip install -e '.[test,postgres]'",
                returncode=4,
            )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A CI run that silently ran no PostgreSQL test would hide half of what we ship.
    distributed = getattr(session.config.option, "numprocesses", None)  # pytest-xdist
    if REQUIRE_POSTGRES and _postgres_tests_run == 0 and not distributed:
        session.config.get_terminal_writer().line(
            "HOLDSHELF_TEST_REQUIRE_POSTGRES=1 but no PostgreSQL test ran", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- instances and the service ------------------------------------------------------------


class Clock:
    """The library's clock, moved by tests: ``now`` is the library's wall-clock time; like
    holdshelf.clock.LibraryClock it answers instants in UTC and dates in the library's zone."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now.astimezone(dt.UTC)

    def today(self) -> dt.date:
        return self.now.astimezone(TIMEZONE).date()

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def make_instance(
    directory: Path,
    database_url: str,
    *,
    extra: str = "",
    demo: bool = True,
    barcode_rules: bool = False,
) -> Path:
    """A demo instance (branches MAIN and EAST) using ``database_url``; ``extra`` is TOML
    inserted before the branch tables. The demo's barcode rules (14-digit Codabar, Luhn) are
    commented out unless ``barcode_rules``: most tests scan short made-up barcodes."""
    write_config(directory, demo=demo)
    config = directory / "holdshelf.toml"
    text_ = config.read_text()
    if not barcode_rules:
        for key in ("card_pattern", "item_pattern", "check_digit"):
            text_ = text_.replace(f"\n{key} = ", f"\n# {key} = ")
    text_ = text_.replace(
        '# database_url = "postgresql+psycopg://holdshelf@localhost/holdshelf"',
        f'database_url = "{database_url}"',
    ).replace('timezone = ""', 'timezone = "America/Chicago"')
    head, sep, tail = text_.partition("\n[retention]")
    config.write_text(head + sep + tail.replace("\n[branches.", f"\n{extra}\n[branches.", 1))
    return directory


def wants_barcode_rules(request: pytest.FixtureRequest) -> bool:
    """A test marked ``barcode_rules`` runs on the demo's barcode rules (see make_instance)."""
    return request.node.get_closest_marker("barcode_rules") is not None


@pytest.fixture
def instance_dir(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Path:
    path = make_instance(
        tmp_path / "instance", database_url, barcode_rules=wants_barcode_rules(request)
    )
    if database_url.startswith("sqlite"):
        database.upgrade(database.make_engine(database_url))
    return path


@pytest.fixture
def settings(instance_dir: Path) -> Settings:
    return load_settings(instance_dir, environ={})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def root(settings: Settings, clock: Clock) -> Iterator[Holdshelf]:
    """What the composition root builds for the test instance, on the test's clock."""
    parts = Holdshelf(settings, clock=clock)
    yield parts
    parts.close()


@pytest.fixture
def service(root: Holdshelf) -> HoldService:
    return root.service


@pytest.fixture
def cli(tmp_path: Path, database_url: str, capsys, monkeypatch, request):
    """The holdshelf command on an initialised instance (see tests/helpers/cli.py)."""
    from tests.helpers.cli import Cli

    instance = make_instance(
        tmp_path / "instance", database_url, barcode_rules=wants_barcode_rules(request)
    )
    runner = Cli(instance, capsys, monkeypatch)
    runner.ok("init")
    return runner


# -- patrons ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patron:
    """A fixture patron. Only ``card`` ever reaches Holdshelf; the rest must never appear."""

    card: str
    name: str
    email: str
    phone: str

    @property
    def secrets(self) -> list[str]:
        """Strings that must appear in no output: the card (as typed and normalised), the name
        and the contacts."""
        digits = self.card.replace(" ", "")
        return [self.card, digits, self.name, self.name.split()[-1], self.email, self.phone]


FIRST = ["Ana", "Bo", "Chidi", "Dolores", "Eun-ji", "Farid", "Grete", "Hiroshi", "Ines", "Jalen"]
LAST = ["Okafor", "Lindqvist", "Marquez", "Nakamura", "Petrov", "Quispe", "Rasmussen", "Thibault"]


def codabar(body: str) -> str:
    """``body`` with the mod-10 check digit of 14-digit library barcodes appended."""
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


def make_patrons(count: int, seed: int = 7) -> list[Patron]:
    rng = random.Random(seed)
    patrons = []
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        # A 14-digit library card (Codabar style, its check digit valid)
        card = codabar(f"2{rng.randrange(10**12, 10**13)}"[:13])
        patrons.append(
            Patron(
                card=card,
                name=f"{first} {last}{n}",
                email=f"{first.lower()}.{last.lower()}{n}@example.org",
                phone=f"+1 312 555 {rng.randrange(1000, 9999)}",
            )
        )
    return patrons


@pytest.fixture
def patrons() -> list[Patron]:
    return make_patrons(40)


def assert_no_patron_data(text_: str | bytes, patrons: list[Patron]) -> None:
    """Fail if any fixture patron's card number, name or contact occurs in ``text_``."""
    haystack = text_ if isinstance(text_, bytes) else text_.encode("utf-8")
    for patron in patrons:
        for secret in patron.secrets:
            assert secret.encode("utf-8") not in haystack, "patron data leaked into output"


# -- the web app ----------------------------------------------------------------------------


@pytest.fixture
def app(root: Holdshelf, service: HoldService):
    from holdshelf.accounts import Accounts
    from holdshelf.web import create_app
    from tests.helpers.web import ADMIN, STAFF

    application = create_app(root)
    application.config["TESTING"] = True
    accounts: Accounts = application.extensions["holdshelf"].accounts
    accounts.add_user(*STAFF, "staff")
    accounts.add_user(*ADMIN, "admin")
    return application


@pytest.fixture
def client(app):
    from tests.helpers.web import post, sign_in

    test_client = app.test_client()
    assert sign_in(test_client).status_code == 302
    assert post(test_client, "/branch", {"branch": "MAIN"}).status_code == 302
    return test_client


def raw_database_bytes(service: HoldService) -> bytes:
    """Everything the database holds, as bytes an attacker with the disk would see: the SQLite
    file with its WAL, or a pg_dump of every table."""
    import shutil
    import subprocess

    url = make_url(service.settings.database_url)
    if url.get_backend_name() == "sqlite":
        # Connections stay open (as in a running server): closing the last one would fold
        # and delete the WAL and hide what a long-running process leaves in it.
        # (Files only: the worker's wake-up socket folder sits beside them.)
        found = Path(url.database).parent.glob(Path(url.database).name + "*")
        files = sorted(path for path in found if path.is_file())
        assert files, "the SQLite file exists"
        return b"".join(path.read_bytes() for path in files)
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is needed to dump the PostgreSQL tables")
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            url.database,
        ],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    tables = [table.name for table in Base.metadata.sorted_tables]
    assert all(f"COPY public.{name} ".encode() in dump for name in tables)
    return dump
