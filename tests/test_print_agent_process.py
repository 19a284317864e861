"""A branch print agent as it runs: a central `holdshelf serve`, a `holdshelf print-agent`
process on loopback, a fake network printer (a TCP listener collecting ESC/POS) and a TCP proxy
between agent and server that drops connections. The agent is killed mid-queue and restarted,
the network is cut, the printer is switched off and on: every slip arrives, and none twice
unless marked POSSIBLE DUPLICATE (the crash window the README's delivery section counts)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.helpers.cli import Cli
from tests.helpers.fake_printer import FakePrinter
from tests.helpers.serving import SCRIPT, Serving, child_environment
from tests.helpers.tcp_proxy import TcpProxy
from tests.test_print_agents import with_agent_printer

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Agent:
    """`holdshelf print-agent` in its own process, its token in the environment."""

    def __init__(self, server: str, token: str, printer_port: int, *extra: str) -> None:
        env = {**child_environment(), "HOLDSHELF_AGENT_TOKEN": token}
        self.process = subprocess.Popen(
            [str(SCRIPT), "--verbose", "print-agent", "--server", server,
             "--printer", f"network:127.0.0.1:{printer_port}", "--profile", "TM-T88V", *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._watchdog = threading.Timer(120, self.process.kill)
        self._watchdog.daemon = True  # a killed agent's timer must not hold up the test run
        self._watchdog.start()

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=80)
        self._watchdog.cancel()
        return self.process.returncode, out, err


def wait_until(condition: Callable[[], bool], timeout: float = 45.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


@pytest.fixture
def central(cli: Cli) -> Iterator[tuple[Cli, Serving, str]]:
    """The central server with EAST printed by an agent, and the agent's token."""
    with_agent_printer(cli.instance)
    token = cli.ok("token", "create", "east-pc", "--branch", "EAST", "--print-agent")
    serving = Serving("--instance", str(cli.instance), "serve")
    yield cli, serving, token.out.splitlines()[-1]
    serving.stop()


def ready(cli: Cli, patrons, numbers: range) -> list[str]:
    return [
        cli.ok(
            "ready", "--branch", "EAST", "--item", f"I{n}", "--patron", patrons[n].card, "--json"
        ).json["code"]
        for n in numbers
    ]


def copies(printer: FakePrinter, code: str) -> tuple[int, int]:
    """(slips with ``code``, of which marked POSSIBLE DUPLICATE)."""
    with printer._lock:
        slips = [slip for slip in printer.slips if code.encode() in slip]
    return len(slips), sum(1 for slip in slips if b"POSSIBLE DUPLICATE" in slip)


def get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@sqlite_only
def test_every_slip_arrives_once_through_kills_cuts_and_a_printer_off(central, patrons) -> None:
    cli, serving, token = central
    printer = FakePrinter(print_seconds=0.05).start()
    proxy = TcpProxy(serving.port).start()
    server = f"http://127.0.0.1:{serving.port}"
    # The agent's token opens nothing but the agent's endpoints, on the real server too.
    assert get(f"{server}/api/v1/holds", token) == 403
    assert get(f"{server}/api/v1/stats", token) == 403

    agent = Agent(proxy.url, token, printer.port)
    codes = ready(cli, patrons, range(0, 3))
    wait_until(lambda: all(copies(printer, c)[0] == 1 for c in codes), what="the first slips")

    # Killed mid-queue (a slow printer, the kill while slips are going out), then restarted.
    printer.print_seconds = 0.4
    more = ready(cli, patrons, range(3, 8))
    wait_until(lambda: copies(printer, more[0])[0] == 1, what="the queue to start")
    agent.process.kill()
    agent.process.wait()
    agent = Agent(proxy.url, token, printer.port)
    codes += more
    wait_until(lambda: all(copies(printer, c)[0] >= 1 for c in more), 60, "the queue after a kill")
    printer.print_seconds = 0.05

    # The network drops: open connections reset, new ones refused, for a few seconds.
    proxy.cut()
    cut = ready(cli, patrons, range(8, 10))
    time.sleep(3)
    assert all(copies(printer, c)[0] == 0 for c in cut)
    proxy.restore()
    codes += cut
    wait_until(lambda: all(copies(printer, c)[0] == 1 for c in cut), what="slips after the cut")

    # The printer is switched off (connections refused), then on again.
    printer.stop()
    off = ready(cli, patrons, range(10, 12))
    wait_until(lambda: _queue_error(cli, off[0]), what="the agent to report the printer off")
    printer.start()
    codes += off
    wait_until(lambda: all(copies(printer, c)[0] == 1 for c in off), what="slips after power on")

    code, out, err = agent.stop()
    assert code == 0 and out.endswith(")\n") and "print agent stopped" in out, err
    assert "Traceback" not in err
    for slip_code in codes:  # every slip; a second copy only marked, from the kill
        printed, marked = copies(printer, slip_code)
        assert printed == 1 or (printed == 2 and marked == 1 and slip_code in more), slip_code
    doubles = sum(copies(printer, c)[0] - 1 for c in codes)
    assert doubles <= 1, "at most one extra (marked) slip for the one kill"
    # The kill may have landed between the slip's bytes and its acknowledgement: that job is
    # still leased to the dead agent, and when its lease runs out it prints again, marked
    # (phase "sending"), or counts as printed (phase "accepted": the printer had read it all and
    # said it was online). Every other job is recorded as printed.
    unsettled = [row for row in _jobs(cli) if row.status != "sent"]
    assert len(unsettled) <= 1, unsettled
    for row in unsettled:
        assert row.status == "queued" and row.phase in ("sending", "accepted")
        assert row.leased_until is not None
        assert row.code in {c.replace("-", "") for c in more}
    assert_no_patron_text(printer, out + err, patrons)
    proxy.stop()
    printer.stop()


def _jobs(cli: Cli) -> list:
    from sqlalchemy import select

    from holdshelf.bootstrap import Holdshelf
    from holdshelf.settings import load_settings
    from holdshelf.storage.models import PrintJob

    root = Holdshelf(load_settings(cli.instance))
    try:
        with root.service.sessions() as session:
            return list(session.scalars(select(PrintJob).order_by(PrintJob.id)))
    finally:
        root.close()


def _queue_error(cli: Cli, code: str) -> bool:
    jobs = {job["code"]: job for job in cli.ok("print-queue", "--json").json}
    return "refused the connection" in (jobs.get(code, {}).get("last_error") or "")


def assert_no_patron_text(printer: FakePrinter, said: str, patrons) -> None:
    from tests.conftest import assert_no_patron_data

    assert_no_patron_data(b"".join(printer.connections) + said.encode(), patrons)


@sqlite_only
def test_a_cut_between_the_print_and_its_report_prints_once(central, patrons) -> None:
    """The line drops while the printer prints: the agent keeps reporting the printed slip
    until the server has it, and the slip is not printed again."""
    cli, serving, token = central
    printer = FakePrinter(print_seconds=1.5).start()
    proxy = TcpProxy(serving.port).start()
    agent = Agent(proxy.url, token, printer.port)
    (code,) = ready(cli, patrons, range(1))
    assert printer.whole_slip.wait(30), "the slip reached the printer"
    proxy.cut()  # before the process ID response, so before the acknowledgement
    time.sleep(4)
    assert _jobs(cli)[0].status == "queued"
    proxy.restore()
    wait_until(lambda: _jobs(cli)[0].status == "sent", 60, "the late acknowledgement")
    (job,) = _jobs(cli)
    assert (job.attempts, copies(printer, code)) == (1, (1, 0))
    assert agent.stop()[0] == 0
    proxy.stop()
    printer.stop()


@sqlite_only
def test_a_stopped_agent_finishes_the_slip_it_is_printing(central, patrons) -> None:
    cli, serving, token = central
    printer = FakePrinter(print_seconds=1.5).start()
    agent = Agent(f"http://127.0.0.1:{serving.port}", token, printer.port)
    (code,) = ready(cli, patrons, range(1))
    assert printer.printing.wait(30)
    returncode, out, err = agent.stop(signal.SIGINT)
    assert returncode == 0, err
    assert "stopping: finishing the slip being printed" in out
    assert copies(printer, code) == (1, 0)
    (job,) = cli.ok("print-queue", "--all", "--json").json
    assert (job["status"], job["attempts"]) == ("sent", 1)
    printer.stop()


@sqlite_only
def test_the_agent_waits_on_a_long_poll_and_prints_at_once(central, patrons) -> None:
    """An idle agent holds a lease request open; a slip queued meanwhile prints within the
    wake-up, not at the next poll."""
    cli, serving, token = central
    printer = FakePrinter().start()
    agent = Agent(f"http://127.0.0.1:{serving.port}", token, printer.port)
    time.sleep(2)  # the agent is in its long poll now
    started = time.monotonic()
    (code,) = ready(cli, patrons, range(1))
    wait_until(lambda: copies(printer, code)[0] == 1, 10, "the slip")
    assert time.monotonic() - started < 5
    assert agent.stop()[0] == 0
    printer.stop()


@sqlite_only
def test_serve_stops_at_once_while_an_agent_waits_and_the_agent_rides_it_out(
    central, patrons
) -> None:
    cli, serving, token = central
    printer = FakePrinter().start()
    agent = Agent(f"http://127.0.0.1:{serving.port}", token, printer.port)
    time.sleep(2)  # in its long poll
    started = time.monotonic()
    stopped = serving.stop()
    assert (stopped.code, stopped.out) == (0, "stopping\nstopped\n"), stopped.err
    assert time.monotonic() - started < 10
    (code,) = ready(cli, patrons, range(1))
    again = Serving("--instance", str(cli.instance), "serve", port=serving.port)
    wait_until(lambda: copies(printer, code)[0] == 1, 60, "the slip after the restart")
    assert agent.stop()[0] == 0
    assert again.stop().code == 0
    printer.stop()


@sqlite_only
def test_the_agent_prints_over_https_with_the_servers_ca(central, patrons, tmp_path) -> None:
    from tests.helpers.certificates import make_certificates

    cli, serving, token = central
    certificates = make_certificates(tmp_path / "tls")
    proxy = TcpProxy(serving.port, tls=certificates.server_context).start()
    printer = FakePrinter().start()
    agent = Agent(proxy.url, token, printer.port, "--ca-file", str(certificates.ca_file))
    (code,) = ready(cli, patrons, range(1))
    wait_until(lambda: copies(printer, code) == (1, 0), 30, "the slip over https")
    returncode, out, err = agent.stop()
    assert returncode == 0 and f"slips from {proxy.url}" in out, err
    proxy.stop()
    printer.stop()


@sqlite_only
def test_a_printer_that_stops_reading_prints_the_slip_once(central, patrons) -> None:
    """The printer stops reading after the status check (cover open) and prints later: the
    agent keeps the connection, as the worker does, and never sends the slip again."""
    cli, serving, token = central
    printer = FakePrinter(stalls=1, stall_seconds=4).start()
    agent = Agent(f"http://127.0.0.1:{serving.port}", token, printer.port)
    (code,) = ready(cli, patrons, range(1))
    wait_until(lambda: copies(printer, code)[0] == 1, 30, "the slip after the stall")
    wait_until(lambda: _jobs(cli)[0].status == "sent", 10, "the slip recorded")
    time.sleep(1)
    assert copies(printer, code) == (1, 0)
    assert agent.stop()[0] == 0
    printer.stop()


@sqlite_only
def test_the_agent_prints_to_a_device_file(central, patrons, tmp_path) -> None:
    cli, serving, token = central
    device = tmp_path / "lp0"
    device.touch()
    env = {**child_environment(), "HOLDSHELF_AGENT_TOKEN": token}
    process = subprocess.Popen(
        [str(SCRIPT), "print-agent", "--server", f"http://127.0.0.1:{serving.port}",
         "--printer", f"file:{device}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        (code,) = ready(cli, patrons, range(1))
        wait_until(lambda: code.encode() in device.read_bytes(), 30, "the slip in the file")
        wait_until(lambda: _jobs(cli)[0].status == "sent", 10, "the slip recorded")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert device.read_bytes().count(b"Eastside Branch") == 1, "one slip"


@sqlite_only
def test_a_refused_token_is_one_line_and_exit_1(central) -> None:
    _, serving, _ = central
    for wrong in ("hs_nonsense", _api_token(central)):
        agent = Agent(f"http://127.0.0.1:{serving.port}", wrong, 9)
        _, err = agent.process.communicate(timeout=60)
        agent._watchdog.cancel()
        assert agent.process.returncode == 1
        assert err.startswith("error: the server refused the token (40"), err
        assert err.count("\n") == 1 and "Traceback" not in err


def _api_token(central) -> str:
    cli, _, _ = central
    return cli.ok("token", "create", "ils", "--branch", "EAST").out.splitlines()[-1]


@sqlite_only
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "http://192.0.2.1", "--printer", "network:h"], "refusing plain http to"),
        (["--server", "ftp://x", "--printer", "network:h"], "--server must be an https:// URL"),
        (["--server", "https://h", "--printer", "cups:q"], "--printer 'cups:q': expected"),
        (["--server", "https://h"], "give the printer"),
        (["--server", "https://h", "--printer", "network:h:x"], "'x' is not a number"),
    ],
)
def test_bad_agent_options_are_one_line(cli: Cli, args: list[str], message: str) -> None:
    cli.fails("print-agent", "--token", "t", *args, message=message)


def test_the_token_can_come_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    from holdshelf.cli.agent import _token

    path = tmp_path / "token"
    path.write_text("hs_fromfile\n")
    monkeypatch.setenv("HOLDSHELF_AGENT_TOKEN", "hs_fromenv")
    assert _token("hs_flag", path) == "hs_fromfile"
    assert _token("hs_flag", None) == "hs_fromenv"
    monkeypatch.delenv("HOLDSHELF_AGENT_TOKEN")
    assert _token("hs_flag", None) == "hs_flag"
