"""Branch print agents, the server's side: agent printers in the configuration, tokens that
can only fetch their branch's slips, leases, phases and acknowledgements by the outbox rules,
and what staff see (the Printers page, the desk's banner). The agent process itself, against
a real server and a fake printer, is in tests/test_print_agent_process.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from holdshelf.errors import ConfigError
from holdshelf.settings import load_settings
from holdshelf.storage import database
from holdshelf.storage.models import PrintJob
from tests.conftest import assert_no_patron_data, make_instance
from tests.helpers.escpos_parser import parse
from tests.helpers.web import ADMIN, post, sign_in

AGENT_PRINTER = '\n[printers.east-agent]\ntype = "agent"\nprofile = "TM-T88V"\n'


def with_agent_printer(instance: Path) -> Path:
    """EAST prints through a branch print agent; MAIN keeps its preview printer."""
    config = instance / "holdshelf.toml"
    text = config.read_text().replace(
        "[branches.EAST]\n", '[branches.EAST]\nprinter = "east-agent"\n'
    )
    config.write_text(text + AGENT_PRINTER)
    return instance


@pytest.fixture
def instance_dir(tmp_path: Path, database_url: str) -> Path:
    path = with_agent_printer(make_instance(tmp_path / "instance", database_url))
    if database_url.startswith("sqlite"):
        database.upgrade(database.make_engine(database_url))
    return path


@pytest.fixture
def agents(app):
    return app.extensions["holdshelf"].agents


@pytest.fixture
def agent_token(app) -> str:
    return app.extensions["holdshelf"].integrations.create_token("east-pc", ["EAST"], "print-agent")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def lease(http, token: str, **body) -> list[dict]:
    answer = http.post("/api/v1/agent/jobs/lease", json=body, headers=bearer(token))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["jobs"]


def phase(http, token: str, lease_id: str, name: str):
    return http.post(
        f"/api/v1/agent/jobs/{lease_id}/phase", json={"phase": name}, headers=bearer(token)
    )


def ack(http, token: str, lease_id: str, outcome: str = "printed", **extra) -> str:
    answer = http.post(
        f"/api/v1/agent/jobs/{lease_id}/ack",
        json={"outcome": outcome, **extra},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["result"]


def job_rows(service) -> list[PrintJob]:
    with service.sessions() as session:
        return list(session.scalars(select(PrintJob).order_by(PrintJob.id)))


def slip_text(job: dict) -> str:
    return parse(base64.b64decode(job["escpos"])).all_text


# -- configuration -------------------------------------------------------------------------------


def test_an_agent_printer_names_no_host_or_port(tmp_path: Path) -> None:
    instance = make_instance(tmp_path / "i", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    config = instance / "holdshelf.toml"
    base = config.read_text()
    config.write_text(base + AGENT_PRINTER + 'host = "192.0.2.40"\n')
    with pytest.raises(ConfigError, match=r"printers\.east-agent\.host and port are not for"):
        load_settings(instance, environ={})
    config.write_text(base + AGENT_PRINTER + "port = 9101\n")
    with pytest.raises(ConfigError, match="host and port are not for an agent printer"):
        load_settings(instance, environ={})
    config.write_text(base + AGENT_PRINTER)
    assert load_settings(instance, environ={}).printers["east-agent"].type == "agent"


def test_the_agents_token_variable_is_not_read_as_configuration(instance_dir: Path) -> None:
    environ = {"HOLDSHELF_AGENT_TOKEN": "hs_x"}
    assert load_settings(instance_dir, environ=environ).printers["east-agent"].type == "agent"


def test_a_print_agent_token_is_for_exactly_one_branch(cli) -> None:
    with_agent_printer(cli.instance)
    cli.fails("token", "create", "a", "--print-agent", message="give exactly one --branch")
    cli.fails(
        "token", "create", "a", "--print-agent", "--branch", "EAST", "--branch", "MAIN",
        message="give exactly one --branch",
    )  # fmt: skip
    made = cli.ok("token", "create", "east-pc", "--branch", "east", "--print-agent")
    assert made.out.startswith("token east-pc (print agent of EAST); store it now")
    assert "east-pc: active, print-agent of EAST" in cli.ok("token", "list").out


# -- who may do what -----------------------------------------------------------------------------


def test_an_agent_token_can_use_nothing_but_the_agent_endpoints(app, agent_token) -> None:
    http = app.test_client()
    for method, path in [
        ("get", "/api/v1/holds"),
        ("get", "/api/v1/stats"),
        ("post", "/api/v1/holds"),
        ("post", "/api/v1/pickups"),
        ("post", "/api/v1/cancellations"),
        ("post", "/api/v1/holds/K7Q4MX/pickup"),
    ]:
        answer = getattr(http, method)(path, json={}, headers=bearer(agent_token))
        assert answer.status_code == 403, path
        assert answer.mimetype == "application/problem+json"
        assert answer.get_json()["type"] == "urn:holdshelf:problem:forbidden-scope"
    assert lease(http, agent_token) == []


def test_a_holds_api_token_cannot_lease_slips(app, service, patrons) -> None:
    service.ready("EAST", "I1", patrons[0].card)
    http = app.test_client()
    integrations = app.extensions["holdshelf"].integrations
    for token in (integrations.create_token("ils", []), integrations.create_token("e", ["EAST"])):
        answer = http.post("/api/v1/agent/jobs/lease", json={}, headers=bearer(token))
        assert answer.status_code == 403
        assert answer.get_json()["type"] == "urn:holdshelf:problem:forbidden-scope"
    assert http.post("/api/v1/agent/jobs/lease", json={}).status_code == 401
    assert [row.attempts for row in job_rows(service)] == [0]


def test_an_agent_sees_only_its_own_branchs_slips(app, service, patrons, agent_token) -> None:
    main = service.ready("MAIN", "I1", patrons[0].card)
    http = app.test_client()
    main_job = job_rows(service)[0]
    assert main_job.branch == "MAIN"
    assert lease(http, agent_token) == []  # MAIN's slip is not EAST's
    for guess in (f"{main_job.id}.0", f"{main_job.id}.1"):
        answer = http.post(
            f"/api/v1/agent/jobs/{guess}/ack",
            json={"outcome": "printed"},
            headers=bearer(agent_token),
        )
        assert answer.status_code == 404
        assert phase(http, agent_token, guess, "sending").status_code == 404
    assert job_rows(service)[0].status == "queued"
    assert main.code  # MAIN's slip stays for MAIN's printer


def test_an_agent_for_a_branch_without_an_agent_printer_is_told_so(app) -> None:
    token = app.extensions["holdshelf"].integrations.create_token("m", ["MAIN"], "print-agent")
    answer = app.test_client().post("/api/v1/agent/jobs/lease", json={}, headers=bearer(token))
    assert answer.status_code == 503
    assert "MAIN does not print through an agent printer" in answer.get_json()["detail"]


# -- leases, phases, acknowledgements ------------------------------------------------------------


def test_a_leased_slip_carries_the_rendered_slip_and_is_acknowledged_once(
    app, service, patrons, agent_token
) -> None:
    entry = service.ready("EAST", "I1", patrons[0].card)
    http = app.test_client()
    (job,) = lease(http, agent_token, wait=5, printer={"ok": True, "status": "online, paper ok"})
    assert entry.code.display in slip_text(job) and "Eastside Branch" in slip_text(job)
    assert not job["possible_duplicate"] and len(job["process_id"]) == 4
    assert lease(http, agent_token) == [], "a leased slip is not leased twice"
    assert phase(http, agent_token, job["lease"], "sending").status_code == 200
    assert ack(http, agent_token, job["lease"]) == "recorded"
    assert ack(http, agent_token, job["lease"]) == "already recorded"
    assert ack(http, agent_token, job["lease"], "failed", error="late") == "already recorded"
    (row,) = job_rows(service)
    assert (row.status, row.attempts, row.phase, row.leased_until) == ("sent", 1, None, None)
    assert lease(http, agent_token) == []
    assert_no_patron_data(json.dumps(job) + slip_text(job), patrons)


def test_the_local_worker_leaves_agent_slips_alone(app, service, patrons, root) -> None:
    service.ready("EAST", "I1", patrons[0].card)
    service.ready("MAIN", "I2", patrons[1].card)
    report = root.worker.prints.run_once(ignore_backoff=True)
    assert (report.sent, report.failed) == (1, {})
    east, main = sorted(job_rows(service), key=lambda row: row.branch)
    assert (east.status, east.attempts, main.status) == ("queued", 0, "sent")


def test_an_expired_lease_returns_the_slip_marked_if_it_may_have_printed(
    app, service, patrons, agent_token, clock
) -> None:
    service.ready("EAST", "I1", patrons[0].card)
    service.ready("EAST", "I2", patrons[1].card)
    http = app.test_client()
    (first,) = lease(http, agent_token)
    clock.advance(minutes=3)  # the agent vanished before sending a byte
    (again,) = lease(http, agent_token)
    assert again["id"] == first["id"] and not again["possible_duplicate"]
    assert phase(http, agent_token, again["lease"], "sending").status_code == 200
    clock.advance(minutes=3)  # ... and now after its first byte may have gone out
    (third,) = lease(http, agent_token)
    assert third["id"] == first["id"] and third["possible_duplicate"]
    assert "POSSIBLE DUPLICATE" in slip_text(third)
    # The older lease may not start printing any more, nor fail the slip; its "printed" counts.
    assert phase(http, agent_token, again["lease"], "sending").status_code == 409
    assert ack(http, agent_token, again["lease"], "failed", error="x") == "stale"
    assert ack(http, agent_token, again["lease"]) == "recorded"
    assert ack(http, agent_token, third["lease"]) == "already recorded"
    (second,) = lease(http, agent_token)
    assert second["id"] != first["id"]


def test_a_slip_the_printer_accepted_is_not_sent_again(app, service, patrons, agent_token, clock):
    service.ready("EAST", "I1", patrons[0].card)
    http = app.test_client()
    (job,) = lease(http, agent_token)
    assert phase(http, agent_token, job["lease"], "sending").status_code == 200
    assert phase(http, agent_token, job["lease"], "accepted").status_code == 200
    clock.advance(minutes=3)  # the agent died waiting for the process ID response
    assert lease(http, agent_token) == []
    (row,) = job_rows(service)
    assert (row.status, row.phase) == ("sent", None)


def test_a_failed_slip_waits_for_the_agent_with_its_error(
    app, service, patrons, agent_token
) -> None:
    service.ready("EAST", "I1", patrons[0].card)
    http = app.test_client()
    (job,) = lease(http, agent_token)
    printer = {"ok": False, "status": "unreachable: 192.0.2.40:9100 refused the connection"}
    result = ack(http, agent_token, job["lease"], "failed", error="refused", printer=printer)
    assert result == "recorded"
    (row,) = job_rows(service)
    assert (row.status, row.last_error, row.leased_until) == ("queued", "refused", None)
    (again,) = lease(http, agent_token)  # at once: the agent paces itself
    assert again["id"] == job["id"]


def test_a_slip_whose_hold_ended_is_dropped_not_leased(app, service, patrons, agent_token):
    entry = service.ready("EAST", "I1", patrons[0].card)
    service.pickup(entry.code.display, branch_id="EAST")
    assert lease(app.test_client(), agent_token) == []
    assert job_rows(service)[0].status == "dropped"


def test_bad_requests_get_problem_json(app, agent_token) -> None:
    http = app.test_client()
    for path, body in [
        ("/api/v1/agent/jobs/lease", {"wait": 99}),
        ("/api/v1/agent/jobs/lease", {"nonsense": 1}),
        ("/api/v1/agent/jobs/1.1/phase", {"phase": "printing"}),
        ("/api/v1/agent/jobs/1.1/ack", {"outcome": "maybe"}),
        ("/api/v1/agent/jobs/x/ack", {"outcome": "printed"}),
    ]:
        answer = http.post(path, json=body, headers=bearer(agent_token))
        assert answer.status_code == 400, (path, answer.get_data(as_text=True))
        assert answer.mimetype == "application/problem+json"
    answer = http.post("/api/v1/agent/jobs/lease", data="x", headers=bearer(agent_token))
    assert answer.status_code == 415


# -- what staff see ------------------------------------------------------------------------------


def test_the_desk_banner_covers_agent_printers(app, service, patrons, agent_token, clock):
    agents = app.extensions["holdshelf"].agents
    assert agents.trouble("EAST") is None, "no agent, nothing waiting: nothing to say"
    service.ready("EAST", "I1", patrons[0].card)
    trouble = agents.trouble("EAST")
    assert trouble and "no print agent has been in touch" in trouble.error
    http = app.test_client()
    (job,) = lease(http, agent_token, printer={"ok": True, "status": "online, paper ok"})
    assert agents.trouble("EAST") is None
    ack(http, agent_token, job["lease"], "failed", error="paper out",
        printer={"ok": False, "status": "offline (paper out), paper out"})  # fmt: skip
    assert agents.trouble("EAST").error == "offline (paper out), paper out"
    (again,) = lease(http, agent_token, printer={"ok": True, "status": "online, paper ok"})
    assert agents.trouble("EAST").error == "paper out", "the slip's failure, until it prints"
    ack(http, agent_token, again["lease"], printer={"ok": True, "status": "online, paper ok"})
    assert agents.trouble("EAST") is None
    clock.advance(minutes=4)
    assert "not been in touch for 4 minutes" in agents.trouble("EAST").error
    desk = app.test_client()
    sign_in(desk)
    post(desk, "/branch", {"branch": "EAST"})
    page = desk.get("/checkin").get_data(as_text=True)
    assert "its print agent has not been in touch for 4 minutes" in page


def test_the_printers_page_shows_each_agent(app, service, patrons, agent_token) -> None:
    service.ready("EAST", "I1", patrons[0].card)
    service.ready("EAST", "I2", patrons[1].card)
    lease(app.test_client(), agent_token, printer={"ok": False, "status": "cover open"})
    admin = app.test_client()
    sign_in(admin, ADMIN)
    post(admin, "/branch", {"branch": "MAIN"})
    page = admin.get("/admin/printers").get_data(as_text=True)
    assert "Branch print agents" in page
    row = page[page.index("<td>east-pc</td>") :].split("</tr>")[0]
    assert "<td>EAST</td>" in row and "<td>2</td>" in row and "<strong>cover open</strong>" in row
    printer_row = page[page.index("<td>east-agent</td>") :].split("</tr>")[0]
    assert "agent: the branch print agent fetches its slips</td><td>EAST</td>" in printer_row
    assert "<td>cover open</td>" in printer_row and "Print a test slip" not in printer_row


def test_a_long_poll_waits_for_a_slip_and_only_so_many_wait(app, service, patrons, agent_token):
    """Each waiting lease holds a web server thread: at most MOST_WAITING wait, the others are
    answered at once; a slip queued meanwhile goes to a waiting request at once."""
    import threading
    import time

    from holdshelf.agents import MOST_WAITING

    results: list[list[dict]] = []

    def waiting_lease() -> None:
        results.append(lease(app.test_client(), agent_token, wait=6))

    threads = [threading.Thread(target=waiting_lease) for _ in range(MOST_WAITING)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert lease(app.test_client(), agent_token, wait=6) == []
    assert time.monotonic() - started < 1, "no thread to wait with: answered at once"
    started = time.monotonic()
    entry = service.ready("EAST", "I1", patrons[0].card)
    threads[0].join(0)
    while not results and time.monotonic() - started < 5:
        time.sleep(0.02)
    assert results and results[0] and results[0][0]["id"] == job_rows(service)[0].id
    assert time.monotonic() - started < 2, "the waiting request got the slip when it was queued"
    assert entry.code.display in slip_text(results[0][0])
    for thread in threads:
        thread.join(10)
    assert sorted(len(r) for r in results) == [0] * (MOST_WAITING - 1) + [1]


def test_the_printers_command_lists_an_agent_printer(cli) -> None:
    with_agent_printer(cli.instance)
    rows = {row["name"]: row for row in cli.ok("printers", "--json").json}
    assert rows["east-agent"]["type"] == "agent"
    assert rows["east-agent"]["branches"] == ["EAST"]
    assert "print agent" in rows["east-agent"]["status"]
    cli.fails("print-test", "east-agent", message="printed to by its branch print agent")


def test_an_agent_config_file_with_an_unknown_key_is_one_line(cli, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('server = "https://h"\nprinter = "network:h"\npassword = "x"\n')
    cli.fails("print-agent", "--config", str(config), message="unknown key 'password'")
    config.write_text('server = "http://192.0.2.9"\nprinter = "network:h"\n')
    cli.fails("print-agent", "--config", str(config), "--token", "t", message="refusing plain")


# -- `holdshelf check` of an agent's printer ------------------------------------------------


def test_check_reports_what_the_branch_agent_last_said(settings, monkeypatch) -> None:
    import holdshelf.agents
    from holdshelf.agents import PrinterReport
    from holdshelf.bootstrap import Holdshelf
    from holdshelf.checkup import FAIL, OK, check_printer

    def checked() -> tuple[str, str]:
        line = check_printer(settings, "east-agent")
        return line.state, line.detail

    state, detail = checked()
    assert state == FAIL and "token create" in detail
    root = Holdshelf(settings)  # the real clock, as `holdshelf check` reads it
    try:
        token = root.integrations.create_token("east-pc", ["EAST"], "print-agent")
        assert checked() == (FAIL, "print agent east-pc has never been in touch")
        client = root.integrations.authenticate(token)
        assert client is not None
        root.agents.lease(client, 0, PrinterReport(True, "online, paper ok"))
        assert checked() == (OK, "print agent east-pc: online, paper ok")
        root.agents.lease(client, 0, PrinterReport(False, "paper out"))
        assert checked() == (FAIL, "print agent east-pc: paper out")
        monkeypatch.setattr(holdshelf.agents, "AGENT_SILENT", holdshelf.agents.AGENT_SILENT * 0)
        state, detail = checked()
        assert state == FAIL and detail.startswith("print agent east-pc silent for")
    finally:
        root.close()


def test_metrics_judge_an_agent_printer_as_the_desk_banner_does(
    app, service, patrons, agent_token
) -> None:
    http = app.test_client()  # from loopback: no metrics token needed

    def east_printer_ok() -> str:
        text = http.get("/metrics").get_data(as_text=True)
        (line,) = [
            line
            for line in text.splitlines()
            if line.startswith("holdshelf_printer_ok{") and 'branch="EAST"' in line
        ]
        assert 'type="agent"' in line
        return line.rsplit(" ", 1)[1]

    service.ready("EAST", "I1", patrons[0].card)
    assert east_printer_ok() == "0"  # a slip waits and no agent has been in touch
    (job,) = lease(http, agent_token, printer={"ok": True, "status": "online"})
    assert ack(http, agent_token, job["lease"]) == "recorded"
    assert east_printer_ok() == "1"
