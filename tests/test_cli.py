"""The command line: the whole workflow, JSON output, and one-line errors with exit status 1."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from holdshelf.bootstrap import Holdshelf
from holdshelf.cli import _stop_worker
from holdshelf.settings import load_settings
from holdshelf.storage.models import PrintJob
from tests.conftest import Patron, assert_no_patron_data, codabar, make_instance
from tests.helpers.cli import Cli
from tests.helpers.fake_printer import FakePrinter
from tests.helpers.serving import SCRIPT, Serving, child_environment


def test_the_whole_workflow(cli: Cli, patrons: list[Patron]) -> None:
    alice, bob = patrons[0], patrons[1]
    first = cli.ok(
        "ready", "--branch", "MAIN", "--item", "39010001", "--patron", alice.card, "--json"
    ).json
    assert set(first) >= {"code", "section", "branch", "pickup_by", "mode"}
    assert first["mode"] == "shelf"
    assert first["section"] == first["code"][0]
    human = cli.ok("ready", "--branch", "main", "--item", "39010002", "--patron", bob.card)
    second_code = human.out.split()[0]
    assert "open shelf" in human.out and "Central Library (MAIN)" in human.out

    shelf = cli.ok("shelf", "--json").json
    assert [e["code"] for e in shelf] == sorted([first["code"], second_code])
    assert all(set(e) == set(first) for e in shelf)

    opted = cli.ok("patron", "opt-out", bob.card, "--json").json
    assert opted["preference"] == "desk"
    assert [(h["code"], h["move_to_desk"]) for h in opted["holds"]] == [(second_code, True)]
    assert "To move to the desk" in cli.ok("shelf").out
    cli.ok("move-to-desk", second_code)
    desk = cli.ok("ready", "--branch", "EAST", "--item", "39010003", "--patron", bob.card, "--json")
    assert desk.json["mode"] == "desk"
    assert "pickup: at the desk" in cli.ok("patron", "show", bob.card).out

    assert "picked up" in cli.ok("pickup", first["code"].lower()).out
    assert cli.ok("cancel", "--item", "39010003", "--json").json["branch"] == "EAST"
    cli.ok("patron", "opt-in", bob.card)
    assert cli.ok("patron", "show", bob.card, "--json").json["preference"] == "shelf"
    assert cli.ok("expire").out.strip() == "nothing to expire"
    assert "deleted 0 ended-hold links" in cli.ok("purge").out

    stats = cli.ok("stats", "--json").json
    main_today = next(d for d in stats["days"] if d["branch"] == "MAIN")
    assert main_today["ready"] == {"shelf": 2}
    assert main_today["picked_up"] == {"shelf": 1}
    assert {b["branch"]: b["active_holds"] for b in stats["branches"]} == {"MAIN": 1, "EAST": 0}
    assert "of them desk" in cli.ok("stats").out
    for output in cli.outputs:
        assert_no_patron_data(output, patrons)


def test_card_number_from_stdin_keeps_it_out_of_argv(cli: Cli, patrons) -> None:
    entry = cli.ok(
        "ready",
        "--branch",
        "MAIN",
        "--item",
        "I1",
        "--patron",
        "-",
        "--json",
        stdin=patrons[0].card + "\n",
    ).json
    shown = cli.ok("patron", "show", "-", "--json", stdin=patrons[0].card).json
    assert [h["code"] for h in shown["holds"]] == [entry["code"]]


def test_errors_are_one_line_with_exit_status_1(cli: Cli, patrons) -> None:
    card = patrons[0].card
    entry = cli.ok("ready", "--branch", "MAIN", "--item", "I1", "--patron", card, "--json").json
    cli.fails(
        "ready",
        "--branch",
        "MAIN",
        "--item",
        "I1",
        "--patron",
        card,
        message=f"item I1 is already on the hold shelf at MAIN (code {entry['code']})",
    )
    cli.fails(
        "ready",
        "--branch",
        "NOPE",
        "--item",
        "I2",
        "--patron",
        card,
        message="unknown branch 'NOPE' (known: MAIN, EAST)",
    )
    cli.fails(
        "ready",
        "--item",
        "I2",
        "--patron",
        card,
        message="Missing option '--branch'. (see: holdshelf ready --help)",
    )
    cli.fails(
        "ready", "--branch", "MAIN", "--item", "", "--patron", card, message="item barcode is empty"
    )
    cli.fails(
        "ready",
        "--branch",
        "MAIN",
        "--item",
        "I\x07",
        "--patron",
        card,
        message="characters no barcode has",
    )
    cli.fails(
        "ready", "--branch", "MAIN", "--item", "I" * 200, "--patron", card, message="longer than 64"
    )
    cli.fails(
        "ready",
        "--branch",
        "MAIN",
        "--item",
        "I2",
        "--patron",
        card,
        "--pickup-by",
        "2026-02-30",
        message="pickup-by date must be a date as YYYY-MM-DD",
    )
    cli.fails(
        "ready",
        "--branch",
        "MAIN",
        "--item",
        "I2",
        "--patron",
        card,
        "--pickup-by",
        "2001-01-01",
        message="is in the past",
    )
    cli.fails("pickup", "HELLO", message="not a valid shelf code")
    cli.fails("pickup", message="give either a shelf code or an item barcode")
    cli.fails("pickup", entry["code"], "--item", "I1", message="give either a shelf code")
    cli.fails("pickup", "--item", "NOTHING", message="no active hold for item NOTHING")
    cli.ok("pickup", entry["code"])
    cli.fails("pickup", entry["code"], message=f"hold with code {entry['code']} has already ended")
    cli.fails("move-to-desk", entry["code"], message="already ended")
    cli.fails("expire", "--on", "tomorrow", message="must be a date as YYYY-MM-DD")
    cli.fails("stats", "--since", "31/12/2026", message="must be a date")
    cli.fails("bogus", message="No such command 'bogus'")
    cli.fails("patron", "show", "", message="card number is empty")
    # nothing was written by any of the refused commands
    assert cli.ok("shelf", "--json").json == []
    for output in cli.outputs:
        assert_no_patron_data(output, patrons)


def test_a_database_error_is_one_line_and_a_bug_says_debug(cli: Cli, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    from holdshelf.service import HoldService

    def broken(*_: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("disk I/O error\nmore detail"))

    monkeypatch.setattr(HoldService, "shelf", broken)
    cli.fails("shelf", message="database error: disk I/O error")
    monkeypatch.setattr(HoldService, "shelf", lambda *_: 1 / 0)
    cli.fails("shelf", message="internal error (ZeroDivisionError); run again with --debug")
    with pytest.raises(ZeroDivisionError):
        cli("--debug", "shelf")


# What a command imports when it needs it, never at start-up (see holdshelf/cli/__init__.py).
HEAVY = (
    "sqlalchemy",
    "flask",
    "werkzeug",
    "jinja2",
    "babel",
    "PIL",
    "escpos",
    "qrcode",
    "argon2",  # no Argon2 module, so no Argon2 hash made either
    "cryptography",
    "waitress",
)
LOADED_AT_START = f"""
import contextlib, io, sys
import holdshelf.cli
loaded = [{{n.split(".")[0] for n in sys.modules}}]
for argv in (["--help"], ["--version"], ["shelf", "--help"], ["import", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            holdshelf.cli.main(argv)
        except SystemExit as exc:
            assert exc.code == 0, (argv, exc.code)
    loaded.append({{n.split(".")[0] for n in sys.modules}})
print([sorted(set({HEAVY!r}) & names) for names in loaded])
"""


def test_the_command_line_starts_without_its_heavy_libraries() -> None:
    """`import holdshelf.cli` and --help (the group's, and commands') in a fresh interpreter
    load none of the libraries that cost start-up time: every command would pay for them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
    result = subprocess.run(
        [sys.executable, "-c", LOADED_AT_START],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[[], [], [], [], []]\n"  # after the import, then after each --help


def test_shelf_loads_the_database_and_no_more(tmp_path: Path, capsys, monkeypatch) -> None:
    """`holdshelf shelf` needs SQLAlchemy and the hold service: not the web app, the notice
    templates (Jinja, Babel), the printers' libraries or Argon2."""
    instance = make_instance(tmp_path / "instance", f"sqlite:///{tmp_path}/holds.sqlite3")
    Cli(instance, capsys, monkeypatch).ok("init")
    shelf = (
        "import json, sys, holdshelf.cli\n"
        "try:\n"
        f"    holdshelf.cli.main(['--instance', {str(instance)!r}, 'shelf'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print(json.dumps(sorted(set({HEAVY!r}) & {{n.split('.')[0] for n in sys.modules}})))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
    result = subprocess.run(
        [sys.executable, "-c", shelf], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    listing, loaded = result.stdout.splitlines()
    assert listing == "no active holds"
    assert "sqlalchemy" in json.loads(loaded)
    unneeded = {"flask", "werkzeug", "jinja2", "babel", "PIL", "escpos", "qrcode", "argon2"}
    assert unneeded & set(json.loads(loaded)) == set()


def test_missing_instance_and_schema(tmp_path: Path, capsys, monkeypatch) -> None:
    empty = Cli(tmp_path / "nowhere", capsys, monkeypatch)
    empty.fails("shelf", message="no holdshelf.toml in")
    assert not (tmp_path / "nowhere").exists()
    fresh = Cli(
        make_instance(tmp_path / "fresh", f"sqlite:///{tmp_path}/x.sqlite3"), capsys, monkeypatch
    )
    fresh.fails("shelf", message="no Holdshelf schema: run `holdshelf init`")
    fresh.ok("db", "upgrade")
    assert fresh.ok("shelf").out.strip() == "no active holds"


def test_unreachable_database_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none"
    down = Cli(make_instance(tmp_path / "down", url), capsys, monkeypatch)
    down.fails("shelf", message="cannot open the database: connection failed")


def test_production_refuses_example_secrets(tmp_path: Path, capsys, monkeypatch) -> None:
    instance = tmp_path / "example"
    instance.mkdir()
    from holdshelf.resources import resource_dir

    (instance / "holdshelf.toml").write_bytes(
        (resource_dir("config") / "example.toml").read_bytes()
    )
    Cli(instance, capsys, monkeypatch).fails(
        "shelf", message="hashids_salt is the example value: refusing to start in production"
    )


def test_init_demo_prints_what_it_made(tmp_path: Path, capsys, monkeypatch) -> None:
    cli = Cli(tmp_path / "demo", capsys, monkeypatch)
    out = cli.ok("init", "--demo").out
    assert "with fresh secrets" in out
    assert "branches: MAIN (Central Library), EAST (Eastside Branch)" in out
    assert "settings and secrets are unchanged" in cli.ok("init").out


@pytest.fixture
def machine_12_hours_behind_utc() -> Iterator[None]:
    """This process's local zone (the machine's, as dt.date.today() reads it) at UTC-12: 26
    hours behind Kiritimati (UTC+14), so at any instant the two are on different dates."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset (Unix)")
    before = os.environ.get("TZ")
    os.environ["TZ"] = "<-12>12"  # POSIX: 12 hours west of UTC, named "-12"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.usefixtures("machine_12_hours_behind_utc")
def test_init_dates_the_config_in_the_librarys_zone(tmp_path: Path, capsys, monkeypatch) -> None:
    def dated(folder: str) -> dt.date:
        Cli(tmp_path / folder, capsys, monkeypatch).ok("init")
        header = (tmp_path / folder / "holdshelf.toml").read_text().splitlines()[0]
        return dt.date.fromisoformat(header.removesuffix(".").rsplit(" ", 1)[1])

    def today_in(zone: dt.tzinfo | None) -> dt.date:
        return dt.datetime.now(dt.UTC).astimezone(zone).date()

    library = ZoneInfo("Pacific/Kiritimati")
    monkeypatch.setenv("HOLDSHELF_TIMEZONE", "Pacific/Kiritimati")
    before = today_in(library)  # and after: init may run across a midnight
    assert dated("kiritimati") in {before, today_in(library)}
    # Without a zone the file leaves timezone empty: the machine's, whose date it then shows.
    monkeypatch.delenv("HOLDSHELF_TIMEZONE")
    before = today_in(None)
    assert dated("machine") in {before, today_in(None)}


def test_installed_console_script(tmp_path: Path, patrons) -> None:
    """The real entry point in a child process: exit statuses and stderr as a shell sees them."""
    script = Path(sys.executable).with_name("holdshelf")
    assert script.exists(), "the holdshelf console script is installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
    env["HOLDSHELF_INSTANCE"] = str(tmp_path / "inst")

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run("init", "--demo").returncode == 0
    made = run(
        "ready",
        "--branch",
        "MAIN",
        "--item",
        codabar("3901000012345"),  # the demo instance has the 14-digit barcode rules on
        "--patron",
        "-",
        "--json",
        stdin=patrons[0].card,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["branch"] == "MAIN"
    bad = run("pickup", "ZZZZZZ")
    assert (bad.returncode, bad.stdout, bad.stderr) == (1, "", "error: not a valid shelf code\n")
    assert run("--version").stdout.startswith("holdshelf, version ")


def test_printing_commands(cli: Cli, patrons, tmp_path: Path) -> None:
    entry = cli.ok(
        "ready", "--branch", "MAIN", "--item", "I1", "--patron", patrons[0].card, "--json"
    ).json
    queued = cli.ok("print-queue", "--json").json
    assert [(job["code"], job["status"], job["printer"]) for job in queued] == [
        (entry["code"], "queued", "preview")
    ]
    assert cli.ok("worker", "--once").out.strip() == "slips printed: 1; notices sent: 0"
    assert cli.ok("print-queue").out.strip() == "no slips waiting"
    assert len(list((cli.instance / "slips").glob("*.png"))) == 1
    png = tmp_path / "slip.png"
    cli.ok("slip", entry["code"], "--out", str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"
    escpos = tmp_path / "slip.bin"
    cli.ok("slip", entry["code"], "--format", "escpos", "--out", str(escpos))
    assert entry["code"].encode() in escpos.read_bytes()
    assert "slip queued for preview" in cli.ok("reprint", entry["code"]).out
    assert "printed: 1" in cli.ok("worker", "--once").out
    assert "preview: preview" in cli.ok("printers").out
    assert cli.ok("printers", "--json").json[0]["online"] is True
    assert "test slip sent to preview" in cli.ok("print-test", "preview").out
    cli.fails("print-test", "lobby", message="unknown printer 'lobby' (known: preview)")
    cli.fails("slip", "HELLO", "--out", str(png), message="not a valid shelf code")
    cli.ok("pickup", entry["code"])
    cli.fails("reprint", entry["code"], message="has already ended")
    for output in cli.outputs:
        assert_no_patron_data(output, patrons)


def test_worker_once_reports_a_dead_printer(cli: Cli, patrons) -> None:
    config = cli.instance / "holdshelf.toml"
    config.write_text(
        config.read_text().replace("[branches.MAIN]\n", '[branches.MAIN]\nprinter = "desk"\n')
        + '\n[printers.desk]\ntype = "network"\nhost = "127.0.0.1"\nport = 9\n'
    )
    cli.ok("ready", "--branch", "MAIN", "--item", "I1", "--patron", patrons[0].card)
    result = cli("worker", "--once")
    assert result.code == 1
    assert result.out == "slips printed: 0; notices sent: 0\n"
    assert result.err.startswith("error: 1 still waiting (desk: 127.0.0.1:9 refused")
    assert result.err.count("\n") == 1
    assert "refused the connection" in cli.ok("print-queue").out
    status = cli.ok("printers", "--json").json
    assert {row["name"]: row["reachable"] for row in status} == {"preview": True, "desk": False}


def test_staff_accounts(cli: Cli) -> None:
    assert (
        "added admin account ada"
        in cli.ok(
            "user", "add", "ada", "--role", "admin", "--password-stdin", stdin="a long passphrase\n"
        ).out
    )
    cli.ok("user", "add", "bob", "--password-stdin", stdin="another long one\n")
    assert cli.ok("user", "list").out.splitlines() == ["ada (admin)", "bob (staff)"]
    cli.fails(
        "user",
        "add",
        "bob",
        "--password-stdin",
        stdin="yet another one\n",
        message="a staff account named 'bob' exists already",
    )
    cli.fails(
        "user",
        "add",
        "carol",
        "--password-stdin",
        stdin="short\n",
        message="a password needs at least 10 characters",
    )
    cli.fails(
        "user",
        "add",
        "x y",
        "--password-stdin",
        stdin="long enough pass\n",
        message="an account name has no spaces",
    )
    cli.ok("user", "password", "bob", "--password-stdin", stdin="a new long password\n")
    cli.ok("user", "remove", "bob")
    cli.fails("user", "remove", "bob", message="no staff account named 'bob'")
    assert cli.ok("user", "list").out.splitlines() == ["ada (admin)"]


def test_user_unlock_lets_a_locked_out_account_in(cli: Cli) -> None:
    from holdshelf.accounts import Accounts, SignInRefused, SignInThrottled
    from holdshelf.settings import load_settings

    cli.ok("user", "add", "bob", "--password-stdin", stdin="another long one\n")
    settings = load_settings(cli.instance, environ={})
    service = Holdshelf(settings).service
    accounts = Accounts(settings, service.sessions, service.clock)
    try:
        for _ in range(5):
            with pytest.raises(SignInRefused, match="wrong account name or password"):
                accounts.sign_in("bob", "not his password", "192.0.2.1")
        with pytest.raises(SignInThrottled):
            accounts.sign_in("bob", "another long one", "192.0.2.1")
        assert cli.ok("user", "list").out == "bob (staff, locked out for 15 minutes)\n"
        unlocked = cli.ok("user", "unlock", "bob").out
        assert unlocked == "unlocked bob (5 failed sign-ins forgotten)\n"
        assert accounts.sign_in("bob", "another long one", "192.0.2.1")
        assert cli.ok("user", "list").out == "bob (staff)\n"
        cli.fails("user", "unlock", "nobody", message="no staff account named 'nobody'")
    finally:
        service.engine.dispose()


def test_serve_demo_refuses_a_production_instance(tmp_path: Path, capsys, monkeypatch) -> None:
    production = Cli(tmp_path / "prod", capsys, monkeypatch)
    production.ok("init")
    production.fails("serve", "--demo", message="is a production instance: --demo only runs")


# -- stopping `serve` -----------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_stops_cleanly_on_a_signal(cli: Cli, signum: int) -> None:
    serving = Serving("--instance", str(cli.instance), "serve")
    assert serving.listening()
    stopped = serving.stop(signum)
    assert (stopped.code, stopped.out, stopped.err) == (0, "stopping\nstopped\n", "")
    assert not serving.listening()
    assert serving.port_is_free()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_finishes_the_slip_it_is_sending_on_sigterm(cli: Cli, patrons) -> None:
    printer = FakePrinter(answer_delay=0.4).start()  # about 2.5 s a slip, status asked around it
    config = cli.instance / "holdshelf.toml"
    config.write_text(
        config.read_text().replace("[branches.MAIN]\n", '[branches.MAIN]\nprinter = "desk"\n')
        + f'\n[printers.desk]\ntype = "network"\nhost = "127.0.0.1"\nport = {printer.port}\n'
    )
    first, second = (
        cli.ok("ready", "--branch", "MAIN", "--item", f"I{n}", "--patron", p.card, "--json").json
        for n, p in enumerate(patrons[:2])
    )
    serving = Serving("--instance", str(cli.instance), "serve")
    assert printer.printing.wait(30), "the worker started on the first slip"
    serving.process.send_signal(signal.SIGTERM)
    assert serving.line() == "stopping: finishing the slip being sent\n"
    assert not serving.listening(), "the port is closed while the slip finishes"
    stopped = serving.stop(None)
    assert (stopped.code, stopped.out, stopped.err) == (0, "stopped\n", "")
    assert serving.port_is_free()
    assert len(printer.jobs) == 1, "the whole slip, and no other started"
    jobs = {job["code"]: job for job in cli.ok("print-queue", "--all", "--json").json}
    assert (jobs[first["code"]]["status"], jobs[first["code"]]["attempts"]) == ("sent", 1)
    assert (jobs[second["code"]]["status"], jobs[second["code"]]["attempts"]) == ("queued", 0)
    settings = load_settings(cli.instance)
    with Holdshelf(settings).service.sessions() as session:
        assert session.scalars(select(PrintJob.leased_until)).all() == [None, None]
    printer.stop()


def test_a_slip_that_does_not_finish_in_time_is_said(capsys) -> None:
    release, stop = threading.Event(), threading.Event()
    stuck = threading.Thread(target=release.wait, daemon=True)  # a send that hangs
    stuck.start()
    worker = SimpleNamespace(sending=lambda: "slip", wake=lambda: None)
    _stop_worker(worker, stuck, stop, wait=0.1)  # type: ignore[arg-type]
    release.set()
    captured = capsys.readouterr()
    assert stop.is_set()
    assert captured.out == "stopping: finishing the slip being sent\n"
    assert captured.err == (
        "stopped; the slip being sent did not finish within 0.1 s: it stays queued and is sent "
        "again\n"
    )


# -- the README's commands ------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(marker: str) -> str:
    """The shell command between <!-- marker --> and <!-- /marker --> (as .ci/run reads it)."""
    block = README.read_text().split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
    return " ".join(line for line in block.splitlines() if line and not line.startswith("```"))


def readme_line(command: str) -> list[str]:
    """The README's example line of a holdshelf command, without its comment, as argv."""
    (line,) = [
        line.split("#")[0]
        for line in README.read_text().splitlines()
        if line.startswith("holdshelf ") and f" {command} " in line
    ]
    return shlex.split(line)


def test_readme_print_test_works_on_the_instance_the_readme_builds(tmp_path: Path) -> None:
    """The main command's `holdshelf ... serve --demo` builds the instance; the README's
    print-test line, run where the README's reader stands, prints on it."""
    serve = shlex.split(readme_command("main-command").split("&&")[-1])
    assert serve[0] == ".venv/bin/holdshelf" and serve[-2:] == ["serve", "--demo"]
    serving = Serving(*serve[1:], cwd=tmp_path)
    assert "Demo sign-in: account demo, password " in "".join(serving.said)
    assert serving.stop().code == 0

    argv = readme_line("print-test")
    assert argv[0] == "holdshelf"
    printed = subprocess.run(
        [str(SCRIPT), *argv[1:]],
        cwd=tmp_path,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("test slip sent to ")
    assert list((tmp_path / "demo-instance" / "slips").glob("*.png")), "the preview printed"
