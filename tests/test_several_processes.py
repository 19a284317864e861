"""Several app processes on one PostgreSQL, as a consortium runs them: three `holdshelf serve`
and two `holdshelf worker` processes (each serve runs a worker too), a network printer played
by a TCP listener and a mail server (aiosmtpd) on loopback. Holds made through every server at
once are printed and notified exactly once each; the limits are one across the servers; one
process purges. Then a killed lease holder is taken over (leases shortened to seconds), on
SQLite as well."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from holdshelf.bootstrap import Holdshelf
from holdshelf.settings import load_settings
from holdshelf.storage.leases import lease_states
from holdshelf.web.limits import FIND_LIMIT
from tests.helpers import short_leases
from tests.helpers.fake_printer import FakePrinter
from tests.helpers.servers import Mailbox, free_port
from tests.helpers.serving import SCRIPT, child_environment
from tests.helpers.web import STAFF
from tests.test_notices import configure
from tests.test_printing import add_printer
from tests.test_proxy import Visitor

HOLDS = 120  # made through the API, spread over the servers
TOKENS = 3  # ILS clients, each with its own token and its own share of the holds
API_LIMIT = 60  # requests a minute per token, for the shared-limit check
SHORT_LEASES = Path(short_leases.__file__)


@dataclass
class Running:
    """One `holdshelf` process, its output in files (a pipe left unread would stall it)."""

    name: str
    process: subprocess.Popen[str]
    out: Path
    err: Path
    port: int | None = None

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def purges(self) -> int:
        return self.err.read_text().count("purged: ")


def start(folder: Path, name: str, command: list[str], ready: str, port: int | None) -> Running:
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            command, env=child_environment(), stdout=stdout, stderr=stderr, text=True
        )
    running = Running(name, process, out, err, port)
    deadline = time.monotonic() + 60
    while ready not in out.read_text():
        assert process.poll() is None, running.output()
        assert time.monotonic() < deadline, f"{name} did not start: {running.output()}"
        time.sleep(0.05)
    return running


def serve(folder: Path, instance: Path, name: str, *, program: list[str] | None = None) -> Running:
    port = free_port()
    command = [*(program or [str(SCRIPT)]), "--verbose", "--instance", str(instance), "serve"]
    return start(folder, name, [*command, "--port", str(port)], "Holdshelf is serving at", port)


def worker(folder: Path, instance: Path, name: str, *, program: list[str] | None = None) -> Running:
    command = [*(program or [str(SCRIPT)]), "--verbose", "--instance", str(instance), "worker"]
    return start(folder, name, command, "worker running", None)


def stop_all(processes: list[Running]) -> list[tuple[str, int]]:
    for running in processes:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
    codes = []
    for running in processes:
        try:
            codes.append((running.name, running.process.wait(timeout=80)))
        except subprocess.TimeoutExpired:
            running.process.kill()
            codes.append((running.name, running.process.wait()))
    return codes


@dataclass
class Cluster:
    instance: Path
    root: Holdshelf
    servers: list[Running]
    workers: list[Running]
    tokens: list[str]
    printer: FakePrinter
    mailbox: Mailbox
    folder: Path
    codes: list[str] = field(default_factory=list)

    @property
    def processes(self) -> list[Running]:
        return self.servers + self.workers


def call(port: int, method: str, path: str, token: str | None = None, body: object = None):
    """One request on its own connection: (status, parsed JSON or text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body), "application/json"
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    is_json = response.headers.get("Content-Type", "").endswith("json")
    return response.status, json.loads(text) if is_json else text


@pytest.fixture
def cluster(instance_dir: Path, tmp_path: Path) -> Iterator[Cluster]:
    printer, mailbox = FakePrinter().start(), Mailbox().start()
    table = f'type = "network"\nhost = "127.0.0.1"\nport = {printer.port}\nprofile = "TM-T88V"'
    add_printer(instance_dir, "MAIN", table)
    configure(
        instance_dir,
        f'[mail]\nhost = "127.0.0.1"\nport = {mailbox.port}\nsecurity = "none"\n'
        f'sender = "holds@example.org"\n\n[api]\nrequests_per_minute = {API_LIMIT}\n',
    )
    root = Holdshelf(load_settings(instance_dir, environ={}))
    tokens = [root.integrations.create_token(f"ils-{n}", []) for n in range(TOKENS + 1)]
    root.accounts.add_user(*STAFF, "staff")
    (folder := tmp_path / "processes").mkdir()
    processes: list[Running] = []
    try:
        servers = [serve(folder, instance_dir, f"serve-{n}") for n in range(3)]
        processes += servers
        workers = [worker(folder, instance_dir, f"worker-{n}") for n in range(2)]
        processes += workers
        yield Cluster(instance_dir, root, servers, workers, tokens, printer, mailbox, folder)
    finally:
        codes = stop_all(processes)
        root.close()
        printer.stop()
        mailbox.stop()
    assert [code for _, code in codes] == [0] * len(codes), codes


def make_holds(cluster: Cluster) -> float:
    """HOLDS holds through the API, two client threads per token, each spreading its requests
    over every server; holds made a second."""
    ports = [running.port for running in cluster.servers]
    failures: list[object] = []
    codes: list[str] = []

    def client(token: str, numbers: range) -> None:
        for n in numbers:
            body = {
                "branch": "MAIN",
                "item_barcode": f"ITEM{n:05d}",
                "patron_card": f"CARD{n:05d}",
                "email": f"patron{n}@example.org",
            }
            status, reply = call(ports[n % len(ports)], "POST", "/api/v1/holds", token, body)
            if status == 201:
                codes.append(reply["code"])
            else:
                failures.append((status, reply))

    share = HOLDS // (TOKENS * 2)
    threads = [
        threading.Thread(
            target=client, args=(cluster.tokens[n // 2], range(n * share, (n + 1) * share))
        )
        for n in range(TOKENS * 2)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.perf_counter() - began
    assert failures == []
    cluster.codes = codes
    return HOLDS / elapsed


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_servers_and_workers_on_one_database(cluster: Cluster) -> None:
    rate = make_holds(cluster)
    print(f"\n{HOLDS} holds through 3 servers: {rate:.0f} holds/s")
    assert len(set(cluster.codes)) == HOLDS

    # Every slip printed and every notice sent exactly once, by five workers.
    wait_for(lambda: len(cluster.printer.jobs) >= HOLDS and len(cluster.mailbox.messages) >= HOLDS)
    time.sleep(2)  # a slip or notice sent twice would arrive by now
    assert len(cluster.printer.jobs) == HOLDS
    assert [cluster.printer.printed(code) for code in cluster.codes] == [1] * HOLDS
    recipients = Counter(to for tos, _ in cluster.mailbox.messages for to in tos)
    assert recipients == Counter({f"patron{n}@example.org": 1 for n in range(HOLDS)})

    ports = [running.port for running in cluster.servers]
    # Patrons' lookups from one address, spread over the servers: one limit, exact.
    finds = [call(ports[n % 3], "GET", "/find?code=HELLO1")[0] for n in range(FIND_LIMIT + 10)]
    assert finds == [200] * FIND_LIMIT + [429] * 10

    # Failed sign-ins at every server count against the one account.
    for n in range(5):
        assert Visitor(ports[n % 3], "127.0.0.1", None).sign_in(STAFF[0], "wrong").status == 401
    assert Visitor(ports[2], "127.0.0.1", None).sign_in(*STAFF).status == 429

    # A token's requests spread over the servers at 20 a second: one limit, overshot at most by
    # what the other servers accept between two flushes (each server alone would allow all).
    token, answers = cluster.tokens[TOKENS], []
    for n in range(2 * API_LIMIT):
        answers.append(call(ports[n % 3], "GET", "/api/v1/stats", token)[0])
        time.sleep(0.05)
    allowed = answers.count(200)
    print(f"API limit {API_LIMIT}/min over 3 servers: {allowed} of {len(answers)} allowed")
    assert set(answers) <= {200, 429}
    assert API_LIMIT <= allowed <= API_LIMIT + 30

    # One purge, by the one process holding the purge lease.
    purges = {running.name: running.purges() for running in cluster.processes}
    assert sum(purges.values()) == 1, purges
    (lease,) = [state for state in lease_states(cluster.root.sessions) if state.name == "purge"]
    (holder,) = [name for name, count in purges.items() if count]
    assert f":{process_of(cluster, holder).process.pid}:" in lease.holder

    for running in cluster.processes:
        output = running.output()
        assert "Traceback" not in output
        assert not re.search(r"CARD\d{5}|patron\d+@", output)


def process_of(cluster: Cluster, name: str) -> Running:
    return next(running for running in cluster.processes if running.name == name)


def holder_pid(root: Holdshelf) -> int | None:
    states = [state for state in lease_states(root.sessions) if state.name == "purge"]
    return int(states[0].holder.split(":")[1]) if states else None


@pytest.mark.slow
def test_a_killed_lease_holder_is_taken_over(instance_dir: Path, tmp_path: Path) -> None:
    """Workers whose purge "hour" is 4 s and whose leases run out after 3 s: the holder is
    killed (no clean release); another takes over within the lease, and the purge stays
    once a window. On SQLite too: the lease is a row, not a PostgreSQL lock."""
    program = [sys.executable, str(SHORT_LEASES)]
    root = Holdshelf(load_settings(instance_dir, environ={}))
    (folder := tmp_path / "processes").mkdir()
    processes = [worker(folder, instance_dir, f"worker-{n}", program=program) for n in range(3)]
    began = time.monotonic()
    try:
        wait_for(lambda: holder_pid(root) is not None and any(p.purges() for p in processes), 30)
        time.sleep(5)  # another window: still the same holder
        first = next(p for p in processes if p.process.pid == holder_pid(root))
        before = {p.name: p.purges() for p in processes}
        assert sum(before.values()) == before[first.name] >= 2, before
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: holder_pid(root) != first.process.pid, 15)
        taken_after = time.monotonic() - killed_at
        survivors = [p for p in processes if p is not first]
        second = next(p for p in survivors if p.process.pid == holder_pid(root))
        wait_for(lambda: second.purges() >= 2, 20)
        elapsed = time.monotonic() - began
    finally:
        codes = stop_all(processes)
        root.close()
    print(f"\nlease taken over {taken_after:.1f} s after its holder was killed")
    assert taken_after <= 2 * short_leases.LEASE_FOR.total_seconds()
    after = {p.name: p.purges() - before[p.name] for p in survivors}
    assert after[second.name] >= 2 and sum(after.values()) == after[second.name], after
    total = sum(p.purges() for p in processes)
    windows = elapsed / short_leases.PURGE_EVERY.total_seconds()
    assert total <= windows + 2, (total, elapsed)  # unleased: three a window
    assert [code for name, code in codes if name != first.name] == [0, 0]
