"""Operations: `holdshelf check`, GET /healthz, GET /metrics (and who may read it), the
workers' heartbeat, and `worker` stopping cleanly on SIGTERM.

Real parts throughout: an SMTP server (aiosmtpd) with STARTTLS and a login, a network printer
played by a TCP listener, an HTTP SMS gateway, a SIP2 ILS process, closed ports for what is
down, and `holdshelf worker` as its own process.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from holdshelf import health
from holdshelf.bootstrap import Holdshelf
from holdshelf.checkup import NOT_CHECKED, check_printer
from holdshelf.ils.answers import IlsAccount, IlsUnavailable
from holdshelf.ils.sip2 import Sip2Connector
from holdshelf.settings import LOOPBACK_PROXIES, load_settings
from holdshelf.storage import database
from holdshelf.storage.models import PrintJob, WorkerHeartbeat
from holdshelf.web.limits import FIND_LIMIT
from tests.conftest import assert_no_patron_data, make_instance
from tests.helpers.certificates import make_certificates
from tests.helpers.cli import Cli
from tests.helpers.fake_printer import FakePrinter
from tests.helpers.servers import Mailbox, SmsGateway, free_port
from tests.helpers.serving import SCRIPT, Serving, child_environment
from tests.test_ils_sip2 import _start_peer, library_environment

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TOKEN = "metrics-token-0123456789abcdef-0123456789"
REMOTE = "192.0.2.50"


def configure(instance: Path, text: str) -> None:
    """TOML tables inserted before the branch tables of the test instance."""
    config = instance / "holdshelf.toml"
    head, sep, tail = config.read_text().partition("\n[branches.")
    config.write_text(head + "\n" + text + "\n" + sep + tail)


def use_printer(instance: Path, port: int) -> None:
    """Both branches print on a network printer at 127.0.0.1:port."""
    config = instance / "holdshelf.toml"
    text = config.read_text()
    for branch in ("MAIN", "EAST"):
        text = text.replace(f"[branches.{branch}]\n", f'[branches.{branch}]\nprinter = "desk"\n')
    config.write_text(
        text + f'\n[printers.desk]\ntype = "network"\nhost = "127.0.0.1"\nport = {port}\n'
    )


def lines(result) -> dict[str, str]:
    """`check`'s output as {part: what it said}."""
    found = {}
    for line in result.out.splitlines():
        part, _, said = line.partition(": ")
        found[part] = said
    return found


# -- holdshelf check ------------------------------------------------------------------------


def test_check_on_a_fresh_instance_lists_what_is_not_configured(cli: Cli) -> None:
    result = cli.ok("check")
    said = lines(result)
    assert list(said) == ["configuration", "database", "printer preview", "mail", "sms", "ils"]
    assert said["configuration"] == "ok"
    assert said["database"].startswith("ok (") and database.SCHEMA_REVISION in said["database"]
    assert said["printer preview"].startswith("ok")
    assert (said["mail"], said["sms"], said["ils"]) == ("not configured",) * 3
    assert result.err == ""


def test_check_says_each_working_part_and_sends_nothing(
    cli: Cli, tmp_path: Path, monkeypatch
) -> None:
    certificates = make_certificates(tmp_path / "certs")
    mail = Mailbox(
        security="starttls", tls_context=certificates.server_context, login=("holds", "s3cret-pw")
    ).start()
    gateway = SmsGateway().start()
    printer = FakePrinter().start()
    try:
        configure(
            cli.instance,
            f'[mail]\nhost = "127.0.0.1"\nport = {mail.port}\nsecurity = "starttls"\n'
            f'username = "holds"\nsender = "Library <holds@example.org>"\n'
            f'ca_file = "{certificates.ca_file}"\n'
            f'[sms]\ngateway = "http"\nurl = "{gateway.url}"\n',
        )
        use_printer(cli.instance, printer.port)
        monkeypatch.setenv("HOLDSHELF_MAIL__PASSWORD", "s3cret-pw")
        monkeypatch.setenv("HOLDSHELF_SMS__TOKEN", "sms-gateway-token-42")
        result = cli.ok("check")
        said = lines(result)
        assert said["printer desk"].startswith(f"ok (network 127.0.0.1:{printer.port}: online")
        assert said["mail"] == f"ok (127.0.0.1:{mail.port})"
        assert said["sms"].startswith("ok (127.0.0.1:") and "nothing sent" in said["sms"]
        assert mail.messages == [] and gateway.requests == [], "no message was sent"
        assert printer.slips == [], "nothing was printed"
        assert "s3cret-pw" not in result.out and "sms-gateway-token-42" not in result.out
    finally:
        mail.stop()
        gateway.stop()
        printer.stop()


def test_check_names_each_broken_part_and_exits_1(cli: Cli, monkeypatch) -> None:
    closed = free_port()
    configure(
        cli.instance,
        f'[mail]\nhost = "127.0.0.1"\nport = {closed}\nsecurity = "none"\n'
        f'sender = "holds@example.org"\ntimeout = 2\n'
        f'[sms]\ngateway = "http"\nurl = "http://127.0.0.1:{closed}/send"\ntimeout = 2\n',
    )
    use_printer(cli.instance, closed)
    result = cli("check")
    assert result.code == 1
    said = lines(result)
    assert said["configuration"] == "ok" and said["database"].startswith("ok")
    assert said["printer desk"].startswith(f"FAIL: unreachable: 127.0.0.1:{closed} refused")
    assert "refused the connection" in said["printer desk"]
    assert said["mail"] == f"FAIL: 127.0.0.1:{closed} unreachable (connection refused)"
    assert said["sms"] == f"FAIL: 127.0.0.1:{closed} unreachable (connection refused)"
    assert said["ils"] == "not configured"
    assert result.err == "error: 3 checks failed\n"


def test_check_of_an_email_sms_gateway_follows_mail(cli: Cli) -> None:
    configure(
        cli.instance,
        f'[mail]\nhost = "127.0.0.1"\nport = {free_port()}\nsecurity = "none"\n'
        'sender = "holds@example.org"\n[sms]\ngateway = "email"\nemail_domain = "sms.example"\n',
    )
    said = lines(cli("check"))
    assert said["mail"].startswith("FAIL:")
    assert said["sms"] == "FAIL: the email-to-SMS gateway goes through mail, which failed"


def test_check_without_a_configuration_or_a_schema(tmp_path: Path, capsys, monkeypatch) -> None:
    nothing = Cli(tmp_path / "none", capsys, monkeypatch)
    result = nothing("check")
    assert result.code == 1
    assert result.out.startswith("configuration: FAIL: no holdshelf.toml in ")
    assert result.out.count("\n") == 1

    url = f"sqlite:///{tmp_path / 'bare' / 'holdshelf.sqlite3'}"
    bare = Cli(make_instance(tmp_path / "bare", url), capsys, monkeypatch)  # never initialised
    said = lines(bare("check"))
    assert said["database"] == "FAIL: the database has no Holdshelf schema: run `holdshelf init`"


def test_check_of_an_unreachable_postgresql(tmp_path: Path, capsys, monkeypatch) -> None:
    url = f"postgresql+psycopg://holdshelf:db-password-99@127.0.0.1:{free_port()}/holdshelf"
    instance = Cli(make_instance(tmp_path / "pg", url), capsys, monkeypatch)
    result = instance("check")
    assert result.code == 1
    assert lines(result)["database"].startswith("FAIL: cannot open the database: ")
    assert "db-password-99" not in result.out + result.err


@pytest.fixture(scope="module")
def sip2_ils(tmp_path_factory: pytest.TempPathFactory):
    yield from _start_peer(tmp_path_factory.mktemp("sip2"))


@SQLITE
def test_check_logs_in_to_the_ils_for_each_branch(cli: Cli, sip2_ils, monkeypatch) -> None:
    for name, value in library_environment(sip2_ils).items():
        monkeypatch.setenv(name, value)
    said = lines(cli.ok("check"))
    where = f"SIP2 127.0.0.1:{sip2_ils.port}"
    assert said["ils sip2 MAIN"] == f"ok ({where} as hs-main: online (ACS status: checkin ok))"
    assert said["ils sip2 EAST"] == f"ok ({where} as hs-west: online (ACS status: checkin ok))"

    monkeypatch.setenv("HOLDSHELF_BRANCHES__EAST__ILS_PASSWORD", "wrong-secret")
    result = cli("check")
    assert result.code == 1
    said = lines(result)
    assert said["ils sip2 MAIN"].startswith("ok")
    assert said["ils sip2 EAST"] == "FAIL: the ILS refused the SIP login hs-west"
    assert "wrong-secret" not in result.out


@SQLITE
def test_a_printer_of_a_type_checked_elsewhere_is_said_not_crashed(settings) -> None:
    preview = settings.printers["preview"]
    other = dataclasses.replace(preview, name="braille", type="braille")
    with_other = dataclasses.replace(settings, printers={**settings.printers, "braille": other})
    line = check_printer(with_other, "braille")
    assert line.state == NOT_CHECKED and not line.failed
    assert line.render() == "printer braille: not checked here (a braille printer)"


# -- /healthz -------------------------------------------------------------------------------


def test_healthz_needs_a_live_worker(app, root, clock) -> None:
    client = app.test_client()
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json == {
        "status": "unhealthy",
        "database": True,
        "worker_alive": False,
        "workers": 0,
        "oldest_queued_slip_seconds": None,
        "oldest_queued_notice_seconds": None,
    }
    beating = health.Heartbeat(root.sessions, clock, name="test-worker")
    beating.beat()
    assert client.get("/healthz").status_code == 200
    clock.advance(seconds=health.HEARTBEAT_STALE.total_seconds() + 1)
    assert client.get("/healthz").json["worker_alive"] is False
    beating.beat()
    assert client.get("/healthz").json["status"] == "ok"
    beating.forget()
    assert client.get("/healthz").status_code == 503


def test_healthz_says_how_long_the_oldest_slip_and_notice_waited(
    app, root, service, clock, patrons
) -> None:
    health.Heartbeat(root.sessions, clock).beat()
    service.ready("MAIN", "I1", patrons[0].card)
    clock.advance(seconds=90)
    health.Heartbeat(root.sessions, clock).beat()
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 200
    assert answer.json["oldest_queued_slip_seconds"] == 90
    assert answer.json["oldest_queued_notice_seconds"] is None  # no mail configured: none


def test_healthz_without_a_database_is_503_not_500(settings, clock) -> None:
    from holdshelf.web import create_app

    away = database.make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    application = create_app(Holdshelf(settings, clock=clock, engine=away, check_schema=False))
    answer = application.test_client().get("/healthz")
    assert answer.status_code == 503
    assert answer.json["database"] is False and answer.json["worker_alive"] is False
    scrape = application.test_client().get("/metrics")
    assert scrape.status_code == 200 and "holdshelf_database_up 0\n" in scrape.text


@SQLITE
def test_healthz_and_metrics_are_off_the_rate_limits(app) -> None:
    client = app.test_client()
    for _ in range(FIND_LIMIT * 3):
        assert client.get("/healthz").status_code == 503  # no worker: but answered each time
        assert client.get("/metrics").status_code == 200


# -- /metrics -------------------------------------------------------------------------------

# One line of the text exposition format: a comment, or a sample with optional labels.
HELP = re.compile(r"# HELP (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) \S.*")
TYPE = re.compile(r"# TYPE (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<kind>counter|gauge)")
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(
    rf"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{(?P<labels>{LABEL}(?:,{LABEL})*)\}})? "
    r"(?P<value>-?[0-9]+(?:\.[0-9]+)?)"
)


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{family: {labels: value}}, failing on any line out of the format, a sample before its
    family's TYPE, or a family declared twice."""
    assert text.endswith("\n")
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if match := HELP.fullmatch(line):
            assert match["name"] not in families, f"{match['name']} declared twice"
            families[match["name"]] = {}
        elif match := TYPE.fullmatch(line):
            assert match["name"] in families, "TYPE after HELP"
            typed.add(match["name"])
        else:
            match = SAMPLE.fullmatch(line)
            assert match, f"not a metric line: {line!r}"
            assert match["name"] in typed, f"{match['name']} sampled before its TYPE"
            labels = tuple(
                re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match["labels"] or "")
            )
            assert labels not in families[match["name"]], "a sample twice"
            families[match["name"]][labels] = float(match["value"])
    return families


def test_metrics_parse_and_count_holds_queues_and_printers(app, service, clock, patrons) -> None:
    service.opt_out(patrons[1].card)  # the second patron's hold goes to the desk
    entries = [service.ready("MAIN", f"I{n}", p.card) for n, p in enumerate(patrons[:3])]
    service.ready("EAST", "I9", patrons[3].card)
    service.pickup(entries[0].code.display, branch_id="MAIN")
    clock.advance(seconds=120)
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    assert answer.content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_metrics(answer.text)
    assert families["holdshelf_holds"] == {
        (("branch", "EAST"), ("state", "ready"), ("mode", "shelf")): 1,
        (("branch", "MAIN"), ("state", "ready"), ("mode", "desk")): 1,
        (("branch", "MAIN"), ("state", "ready"), ("mode", "shelf")): 1,
    }, "the picked-up hold is gone at once (ended_hold_days = 0)"
    depth = families["holdshelf_queue_depth"]
    assert depth[(("queue", "print"), ("branch", "MAIN"))] == 3
    assert depth[(("queue", "print"), ("branch", "EAST"))] == 1
    assert depth[(("queue", "notice"), ("branch", "MAIN"))] == 0
    oldest = families["holdshelf_queue_oldest_seconds"]
    assert oldest[(("queue", "print"), ("branch", "MAIN"))] == 120
    printer = (("branch", "MAIN"), ("printer", "preview"), ("type", "preview"))
    assert families["holdshelf_printer_ok"][printer] == 0, "slips waited over a minute"
    assert families["holdshelf_printer_troubled_slips"][printer] == 3
    assert families["holdshelf_database_up"] == {(): 1}
    assert families["holdshelf_workers_alive"] == {(): 0}
    assert set(families["holdshelf_ils_errors_total"]) == {
        (("operation", name),) for name in health.ILS_OPERATIONS
    }


def test_metrics_name_no_patron_code_or_barcode(app, service, patrons) -> None:
    codes, items = [], []
    for n, patron in enumerate(patrons[:10]):
        item = f"39010000{n:06d}"
        entry = service.ready("MAIN" if n % 2 else "EAST", item, patron.card, title="A Title")
        codes += [entry.code.display, entry.code.display.replace("-", "")]
        items.append(item)
    text = app.test_client().get("/metrics").text
    assert_no_patron_data(text, patrons)
    for value in [*codes, *items, "A Title"]:
        assert value not in text


def test_label_values_are_escaped_as_the_format_asks() -> None:
    metric = health.Metric("holdshelf_example", "gauge", "An example.")
    metric.add(2.5, branch='NORTH "annex" \\ 2')
    metric.add(1)
    text = health.render([metric])
    assert text.splitlines()[2:] == [
        'holdshelf_example{branch="NORTH \\"annex\\" \\\\ 2"} 2.500',
        "holdshelf_example 1",
    ]
    assert parse_metrics(text)["holdshelf_example"][()] == 1


def test_ils_calls_and_failures_are_counted() -> None:
    calls = health.IlsCalls()
    closed = free_port()
    connector = health.CountedConnector(
        Sip2Connector("127.0.0.1", closed, institution="MAIN", timeout=2), calls
    )
    with pytest.raises(IlsUnavailable):
        connector.check(IlsAccount("MAIN", "MAIN", "hs-main", "main-secret"))
    connector.close()
    assert calls.snapshot() == ({"check": 1}, {"check": 1})
    families = parse_metrics(health.render(health._ils(calls)))
    assert families["holdshelf_ils_errors_total"][(("operation", "check"),)] == 1
    assert families["holdshelf_ils_errors_total"][(("operation", "trapped_hold"),)] == 0


# -- who may read /metrics ------------------------------------------------------------------


def app_with(service, clock, **web):
    from holdshelf.web import create_app

    settings = dataclasses.replace(
        service.settings, web=dataclasses.replace(service.settings.web, **web)
    )
    application = create_app(Holdshelf(settings, clock=clock, engine=service.engine))
    application.config["TESTING"] = True
    return application.test_client()


def scrape(client, peer: str, *, token: str | None = None, forwarded: str | None = None) -> int:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code


@SQLITE
def test_metrics_from_loopback_freely_from_elsewhere_with_the_token(service, clock) -> None:
    without = app_with(service, clock)
    assert scrape(without, "127.0.0.1") == 200
    assert scrape(without, "::1") == 200
    assert scrape(without, REMOTE) == 403, "no token configured: loopback only"
    assert scrape(without, REMOTE, token="") == 403

    client = app_with(service, clock, metrics_token=TOKEN)
    assert scrape(client, "127.0.0.1") == 200
    assert scrape(client, REMOTE) == 401
    assert scrape(client, REMOTE, token=TOKEN[:-1]) == 401
    assert scrape(client, REMOTE, token=TOKEN + "x") == 401
    assert scrape(client, REMOTE, token=TOKEN) == 200
    answer = client.get("/metrics", environ_base={"REMOTE_ADDR": REMOTE})
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in answer.text
    basic = client.get(
        "/metrics",
        headers={"Authorization": f"Basic {TOKEN}"},
        environ_base={"REMOTE_ADDR": REMOTE},
    )
    assert basic.status_code == 401


@SQLITE
def test_metrics_behind_the_proxy_go_by_the_real_client(service, clock) -> None:
    client = app_with(
        service,
        clock,
        behind_proxy=True,
        trusted_proxies=LOOPBACK_PROXIES,
        metrics_token=TOKEN,
    )
    assert scrape(client, "127.0.0.1", forwarded=REMOTE) == 401, "a remote client via the proxy"
    assert scrape(client, "127.0.0.1", forwarded=REMOTE, token=TOKEN) == 200
    assert scrape(client, "127.0.0.1", forwarded="127.0.0.1") == 200, "a scraper on the host"
    assert scrape(client, "127.0.0.1") == 401, "proxied without saying for whom: not local"
    # A client reaching the app directly cannot claim to be loopback
    assert scrape(client, REMOTE, forwarded="127.0.0.1") == 401


def test_a_short_metrics_token_is_refused(instance_dir: Path) -> None:
    from holdshelf.errors import ConfigError

    with pytest.raises(ConfigError, match=r"web\.metrics_token is shorter than 32"):
        load_settings(instance_dir, environ={"HOLDSHELF_WEB__METRICS_TOKEN": "short"})
    settings = load_settings(instance_dir, environ={"HOLDSHELF_WEB__METRICS_TOKEN": TOKEN})
    assert settings.web.metrics_token == TOKEN
    assert TOKEN not in repr(settings)


# -- the worker process: heartbeat and SIGTERM ----------------------------------------------


@pytest.fixture
def worker_process(cli: Cli) -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def start_worker(cli: Cli, started: list[subprocess.Popen]) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(SCRIPT), "--instance", str(cli.instance), "worker"],
        env=child_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    assert process.stdout is not None
    assert process.stdout.readline() == "worker running (Ctrl-C to stop)\n"
    return process


def heartbeats(cli: Cli) -> list[str]:
    with Holdshelf(load_settings(cli.instance)).service.sessions() as session:
        return list(session.scalars(select(WorkerHeartbeat.name)))


def wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_worker_in_another_process_makes_healthz_healthy(cli: Cli, worker_process) -> None:
    from holdshelf.web import create_app

    client = create_app(Holdshelf(load_settings(cli.instance))).test_client()
    assert client.get("/healthz").status_code == 503
    process = start_worker(cli, worker_process)
    assert wait_for(lambda: client.get("/healthz").status_code == 200)
    assert client.get("/healthz").json["workers"] == 1
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (0, "worker stopped\n", "")
    assert heartbeats(cli) == [], "a worker that stops says so"
    assert client.get("/healthz").status_code == 503


@SQLITE
def test_worker_finishes_the_slip_it_is_sending_on_sigterm(
    cli: Cli, patrons, worker_process
) -> None:
    printer = FakePrinter(answer_delay=0.4).start()  # about 2.5 s a slip
    try:
        use_printer(cli.instance, printer.port)
        first, second = (
            cli.ok(
                "ready", "--branch", "MAIN", "--item", f"I{n}", "--patron", p.card, "--json"
            ).json["code"]
            for n, p in enumerate(patrons[:2])
        )
        process = start_worker(cli, worker_process)
        assert printer.printing.wait(30), "the worker started on the first slip"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert (process.returncode, out, err) == (0, "worker stopped\n", "")
        assert len(printer.jobs) == 1, "the whole slip, and no other started"
        jobs = {job["code"]: job for job in cli.ok("print-queue", "--all", "--json").json}
        assert (jobs[first]["status"], jobs[first]["attempts"]) == ("sent", 1)
        assert (jobs[second]["status"], jobs[second]["attempts"]) == ("queued", 0)
        with Holdshelf(load_settings(cli.instance)).service.sessions() as session:
            assert session.scalars(select(PrintJob.leased_until)).all() == [None, None]
        assert heartbeats(cli) == []
    finally:
        printer.stop()


def test_serve_answers_healthz_over_http_and_stops_cleanly(cli: Cli) -> None:
    serving = Serving("--instance", str(cli.instance), "serve")
    base = f"http://127.0.0.1:{serving.port}"

    def healthz() -> int:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as refused:
            return refused.code

    assert wait_for(lambda: healthz() == 200), "serve's worker thread beats"
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
        families = parse_metrics(answer.read().decode())
    assert families["holdshelf_workers_alive"] == {(): 1}
    stopped = serving.stop(signal.SIGTERM)
    said = (stopped.code, stopped.out, stopped.err)
    assert said == (0, "stopping\nstopped\n", ""), said
    assert heartbeats(cli) == []


def test_heartbeats_of_dead_workers_are_forgotten(root, clock) -> None:
    dead = health.Heartbeat(root.sessions, clock, name="gone:1")
    dead.beat()
    clock.advance(seconds=health.HEARTBEAT_FORGET.total_seconds() + 1)
    health.Heartbeat(root.sessions, clock, name="alive:2").beat()
    with root.sessions() as session:
        assert list(session.scalars(select(WorkerHeartbeat.name))) == ["alive:2"]


# -- the systemd units ----------------------------------------------------------------------

UNITS = Path(__file__).resolve().parents[1] / "config" / "systemd"
INSTALLED_SCRIPT = "/opt/holdshelf/venv/bin/holdshelf"


def unit_command(name: str) -> list[str]:
    """The unit's ExecStart as argv, its ${VARIABLES} left as they are."""
    (line,) = [
        line for line in (UNITS / name).read_text().splitlines() if line.startswith("ExecStart=")
    ]
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize(
    ("unit", "command"),
    [("holdshelf-serve.service", ["serve"]), ("holdshelf-worker.service", ["worker"])],
)
def test_the_units_run_the_commands_that_stop_cleanly(unit: str, command: list[str]) -> None:
    from holdshelf.cli.serve import STOP_WAIT_SECONDS

    assert unit_command(unit) == [INSTALLED_SCRIPT, *command]
    text = (UNITS / unit).read_text()
    assert "KillSignal=SIGTERM" in text
    (timeout,) = re.findall(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)
    assert int(timeout) > STOP_WAIT_SECONDS, "systemd waits for the slip being sent"


def test_the_print_agent_unit_uses_the_agent_s_command_line() -> None:
    from holdshelf.cli import cli

    argv = unit_command("holdshelf-print-agent.service")
    assert argv[:2] == [INSTALLED_SCRIPT, "print-agent"]
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert set(options) == {"--server", "--printer", "--profile"}  # the token: from the env
    agent = cli.get_command(None, "print-agent")  # type: ignore[arg-type]
    assert agent is not None
    known = {opt for param in agent.params for opt in getattr(param, "opts", [])}
    assert set(options) <= known
    text = (UNITS / "holdshelf-print-agent.service").read_text()
    assert "HOLDSHELF_AGENT_TOKEN=" in text and "EnvironmentFile=" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for unit in UNITS.glob("*.service"):
        # verify checks that the program exists: point it at this checkout's script
        text = unit.read_text().replace(INSTALLED_SCRIPT, str(SCRIPT))
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(path) for path in tmp_path.glob("*.service"))
    assert len(units) == 3
    checked = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
