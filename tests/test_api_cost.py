"""What one request of the holds API costs the database: a new hold is one transaction of a
few statements, and a checked token is not read again for every request (within limits that
keep revocation prompt)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

import holdshelf.integrations as integrations_module
from holdshelf.integrations import TOKEN_RECHECK_SECONDS, Integrations
from tests.test_api import Api, hold, integrations

# The look (the item's active hold, misplaced cards, the patron's choice: one SELECT), the code's
# claim, the hold, its slip, the day's count; and on PostgreSQL the NOTIFY that wakes workers.
MOST_STATEMENTS_PER_NEW_HOLD = 6


@contextmanager
def recorded(engine) -> Iterator[list[str]]:
    """Every statement and transaction start of this thread on ``engine`` while inside (not
    a background thread's, such as the shared limiter's flush)."""
    seen: list[str] = []
    this_thread = threading.get_ident()

    def statement(_connection, _cursor, sql, _params, _context, _many) -> None:
        if threading.get_ident() == this_thread:
            seen.append(sql)

    def began(_connection) -> None:
        if threading.get_ident() == this_thread:
            seen.append("BEGIN")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "begin", began)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "begin", began)


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client(), integrations(app).create_token("ils", []))


def test_a_new_hold_is_one_transaction_of_a_few_statements(api, root, patrons) -> None:
    assert api.post("/holds", hold(patrons[0], "39010000000001", branch="MAIN")).status_code == 201
    with recorded(root.engine) as seen:
        created = api.post("/holds", hold(patrons[1], "39010000000002", branch="MAIN"))
    assert created.status_code == 201
    assert created.get_json()["print_status"] == "queued for the printer"
    statements = [sql for sql in seen if sql != "BEGIN"]
    assert seen.count("BEGIN") == 1, seen
    assert len(statements) <= MOST_STATEMENTS_PER_NEW_HOLD, statements


def test_a_repeated_hold_reads_its_slip(api, root, patrons) -> None:
    body = hold(patrons[0], "39010000000001", branch="MAIN")
    assert api.post("/holds", body).status_code == 201
    repeated = api.post("/holds", body)
    assert repeated.status_code == 200
    assert repeated.get_json()["print_status"] == "queued for the printer"


def token_reads(statements: list[str]) -> int:
    return sum("FROM api_tokens" in sql for sql in statements)


def test_a_checked_token_is_read_again_only_after_the_recheck(
    api, root, patrons, monkeypatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(integrations_module.time, "monotonic", lambda: now[0])
    with recorded(root.engine) as seen:
        assert api.get("/holds").status_code == 200
        assert api.get("/holds").status_code == 200
        now[0] += TOKEN_RECHECK_SECONDS
        assert api.get("/holds").status_code == 200
    assert token_reads(seen) == 2


def test_a_token_revoked_here_is_refused_at_once(api, app) -> None:
    assert api.get("/holds").status_code == 200
    integrations(app).revoke("ils")
    assert api.get("/holds").status_code == 401


def test_a_token_revoked_by_another_process_is_refused_within_the_recheck(
    api, app, root, settings, clock, monkeypatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(integrations_module.time, "monotonic", lambda: now[0])
    assert api.get("/holds").status_code == 200
    Integrations(settings, root.sessions, clock).revoke("ils")  # as `holdshelf token revoke`
    now[0] += TOKEN_RECHECK_SECONDS
    assert api.get("/holds").status_code == 401


def test_made_up_tokens_are_looked_up_every_time(app, root) -> None:
    forged = Api(app.test_client(), "hs_" + "x" * 43)
    with recorded(root.engine) as seen:
        assert forged.get("/holds").status_code == 401
        assert forged.get("/holds").status_code == 401
    assert token_reads(seen) == 2
