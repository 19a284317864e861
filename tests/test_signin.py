"""Sign-in throttling: per account name, and apart from it (much higher) per address, so one
clerk's typos never lock the whole desk out; the wait named in minutes; unlocking."""

from __future__ import annotations

import dataclasses

import pytest
from flask.testing import FlaskClient

from tests.conftest import Clock
from tests.helpers.web import ADMIN, STAFF, post, sign_in

WRONG = "not the password at all"
LOCKED_ACCOUNT = "too many failed sign-ins for this account: try again in"
LOCKED_ADDRESS = "too many failed sign-ins from this address: try again in"


def fail(client: FlaskClient, name: str, times: int = 1) -> None:
    for _ in range(times):
        response = sign_in(client, (name, WRONG))
        assert response.status_code == 401, response.get_data(as_text=True)
        assert "wrong account name or password" in response.get_data(as_text=True)


def refusal(response) -> str:
    assert response.status_code == 429
    return response.get_data(as_text=True)


def from_address(app, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def admin_client(app) -> FlaskClient:
    admin = app.test_client()
    assert sign_in(admin, ADMIN).status_code == 302
    post(admin, "/branch", {"branch": "MAIN"})
    return admin


@pytest.fixture
def spray_app(app, service, clock: Clock):
    """The same desk with a per-address limit of 8, so a spray over names is quick to test
    (each attempt costs an Argon2 hash)."""
    from holdshelf.bootstrap import Holdshelf
    from holdshelf.web import create_app

    web = dataclasses.replace(service.settings.web, login_attempts_per_address=8)
    settings = dataclasses.replace(service.settings, web=web)
    application = create_app(Holdshelf(settings, clock=clock, engine=service.engine))
    application.config["TESTING"] = True
    return application


def test_a_colleague_at_the_same_address_signs_in_while_an_account_is_locked(app) -> None:
    desk = app.test_client()
    fail(desk, STAFF[0], times=5)
    assert sign_in(desk, STAFF).status_code == 429  # even the right password waits
    colleague = app.test_client()  # the next PC at the desk: the same address
    assert sign_in(colleague, ADMIN).status_code == 302
    assert sign_in(desk, ADMIN).status_code == 302  # and on the very same browser
    assert LOCKED_ACCOUNT in refusal(sign_in(desk, STAFF))  # alice still waits


def test_a_name_without_an_account_is_locked_out_in_the_same_words(app, clock: Clock) -> None:
    desk = app.test_client()
    fail(desk, STAFF[0], times=5)
    fail(desk, "nobody", times=5)
    real, unknown = sign_in(desk, STAFF), sign_in(desk, ("nobody", WRONG))
    assert refusal(real) == refusal(unknown)  # the page does not tell which account exists
    assert real.headers["Retry-After"] == unknown.headers["Retry-After"]
    assert sign_in(desk, ("Nobody ", WRONG)).status_code == 429  # case and spaces fold


def test_the_per_address_limit_stops_a_spray_across_many_names(spray_app) -> None:
    attacker = spray_app.test_client()
    for n in range(8):  # one guess per name stays under every per-account limit
        fail(attacker, f"clerk{n}")
    assert LOCKED_ADDRESS in refusal(sign_in(attacker, ("clerk99", WRONG)))
    assert LOCKED_ADDRESS in refusal(sign_in(attacker, ADMIN))  # this address waits
    elsewhere = from_address(spray_app, "192.0.2.7")
    assert sign_in(elsewhere, ADMIN).status_code == 302  # other addresses do not


def test_the_wait_is_named_in_minutes_and_shrinks_as_the_clock_advances(app, clock: Clock) -> None:
    desk = app.test_client()
    fail(desk, STAFF[0])  # the oldest counted failure: it leaves the window at 09:45
    clock.advance(minutes=2)
    fail(desk, STAFF[0], times=4)
    blocked = sign_in(desk, STAFF)
    assert f"{LOCKED_ACCOUNT} 13 minutes" in refusal(blocked)
    assert blocked.headers["Retry-After"] == str(13 * 60)
    clock.advance(minutes=10, seconds=30)
    blocked = sign_in(desk, STAFF)
    assert f"{LOCKED_ACCOUNT} 3 minutes" in refusal(blocked)  # 2.5 minutes, rounded up
    assert blocked.headers["Retry-After"] == "150"
    clock.advance(minutes=2, seconds=20)
    assert f"{LOCKED_ACCOUNT} 1 minute<" in refusal(sign_in(desk, STAFF))  # 10 s: one minute
    clock.advance(seconds=10)  # the first failure has left the window: four remain
    fail(desk, STAFF[0])
    assert f"{LOCKED_ACCOUNT} 2 minutes" in refusal(sign_in(desk, STAFF))  # until 09:47
    clock.advance(minutes=2)
    assert sign_in(desk, STAFF).status_code == 302


def test_an_admin_unlocks_an_account_on_the_staff_accounts_page(app) -> None:
    desk = app.test_client()
    fail(desk, STAFF[0], times=5)
    admin = admin_client(app)
    page = admin.get("/admin/accounts").get_data(as_text=True)
    assert "<td>alice</td><td>staff</td><td>5</td>" in page
    assert "locked out: 15 minutes to wait" in page
    assert ">Unlock alice</button>" in page and ">Unlock ada</button>" not in page
    unlocked = post(admin, "/admin/accounts/unlock", {"name": "alice"}, page="/admin/accounts")
    assert unlocked.headers["Location"] == "/admin/accounts"
    page = admin.get("/admin/accounts").get_data(as_text=True)
    assert "alice may sign in again (5 failed sign-ins forgotten)" in page
    assert "<td>alice</td><td>staff</td><td>0</td>\n      <td>open</td>" in page
    assert sign_in(desk, STAFF).status_code == 302
    audit = admin.get("/admin/audit").get_data(as_text=True)
    assert "<td>ada</td><td>MAIN</td><td>unlocked alice</td>" in audit
    post(admin, "/admin/accounts/unlock", {"name": "nobody"}, page="/admin/accounts")
    assert "no staff account named &#39;nobody&#39;" in admin.get("/admin/accounts").get_data(
        as_text=True
    )
    actions = [entry.action for entry in app.extensions["holdshelf"].accounts.audit_entries()]
    assert actions == ["unlocked alice"]  # the refused unlock is not recorded


def test_only_an_admin_may_unlock(app, client) -> None:
    desk = app.test_client()
    fail(desk, ADMIN[0], times=5)
    assert client.get("/admin/accounts").status_code == 403
    refused = post(client, "/admin/accounts/unlock", {"name": "ada"}, page="/checkin")
    assert refused.status_code == 403
    assert LOCKED_ACCOUNT in refusal(sign_in(desk, ADMIN))  # still locked
    accounts = app.extensions["holdshelf"].accounts
    assert accounts.audit_entries() == []


def test_a_long_account_name_is_unlocked_and_audited_cut_short(app) -> None:
    accounts = app.extensions["holdshelf"].accounts
    name = "reference-desk-evening-relief-" + "x" * 30
    accounts.add_user(name, "a long enough password", "staff")
    desk = app.test_client()
    fail(desk, name, times=5)
    admin = admin_client(app)
    post(admin, "/admin/accounts/unlock", {"name": name}, page="/admin/accounts")
    assert sign_in(desk, (name, "a long enough password")).status_code == 302
    [entry] = accounts.audit_entries()
    assert entry.action == f"unlocked {name}"[:32]


def test_parallel_guesses_over_two_servers_are_counted_one_by_one(service, clock) -> None:
    """40 wrong passwords for one account at once, through two app servers' own connection
    pools: exactly the limit's worth are checked, every other one is refused unchecked."""
    import threading

    from holdshelf.accounts import Accounts, SignInRefused, SignInThrottled
    from holdshelf.storage import database
    from holdshelf.storage.models import LoginFailure

    settings = service.settings
    engines = [database.make_engine(settings.database_url) for _ in range(2)]
    servers = [Accounts(settings, database.session_factory(e), clock) for e in engines]
    servers[0].add_user("bob", "bobs long password", "staff")
    outcomes: list[str] = []
    start = threading.Barrier(40)

    def guess(n: int) -> None:
        start.wait()
        try:
            servers[n % 2].sign_in("bob", WRONG, f"192.0.2.{n}")
        except SignInThrottled:
            outcomes.append("throttled")
        except SignInRefused:
            outcomes.append("checked")

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with service.sessions() as session:
        recorded = session.query(LoginFailure).count()
    for engine in engines:
        engine.dispose()
    limit = settings.web.login_attempts
    assert outcomes.count("checked") == limit, outcomes
    assert outcomes.count("throttled") == 40 - limit
    assert recorded == 2 * limit  # one row for the account, one for each address


def test_an_admin_unlocks_a_whole_desks_address(spray_app) -> None:
    desk_pc = from_address(spray_app, "192.0.2.50")
    for n in range(8):
        fail(desk_pc, f"name{n}")
    assert LOCKED_ADDRESS in refusal(sign_in(desk_pc, STAFF))
    admin = admin_client(spray_app)
    unlocked = post(admin, "/admin/accounts/unlock-address", {"address": "192.0.2.50"},
                    "/admin/accounts")  # fmt: skip
    assert "are open again (8 failures forgotten)" in admin.get(
        unlocked.headers["Location"]
    ).get_data(as_text=True)
    assert sign_in(desk_pc, STAFF).status_code == 302
    actions = [e.action for e in spray_app.extensions["holdshelf"].accounts.audit_entries()]
    assert "unlocked an address" in actions


def test_user_unlock_takes_an_address_too(cli) -> None:
    from holdshelf.accounts import SignInRefused
    from holdshelf.bootstrap import Holdshelf
    from holdshelf.settings import load_settings

    settings = load_settings(cli.instance, environ={})
    accounts = Holdshelf(settings).accounts
    with pytest.raises(SignInRefused):
        accounts.sign_in("nobody", WRONG, "192.0.2.60")
    assert cli.ok("user", "unlock", "--address", "192.0.2.60").out == (
        "unlocked 192.0.2.60 (1 failed sign-ins forgotten)\n"
    )
    cli.fails("user", "unlock", message="name an account, or give --address ADDRESS")


# -- the dummy hash: a name without an account costs as long as one with it -------------------


def test_importing_accounts_makes_no_argon2_hash() -> None:
    """Every CLI command imports the accounts module; an Argon2 hash (100-160 ms, 64 MiB) is
    made only when someone signs in. A fresh interpreter, so no earlier import hides it."""
    import subprocess
    import sys

    count_hashes = (
        "import argon2\n"
        "made = []\n"
        "real = argon2.PasswordHasher.hash\n"
        "argon2.PasswordHasher.hash = lambda self, *a, **k: made.append(1) or real(self, *a, **k)\n"
        "import holdshelf.accounts\n"
        "print(len(made))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", count_hashes], capture_output=True, text=True, check=True
    )
    assert result.stdout == "0\n", result.stderr


def test_a_sign_in_costs_the_same_hashes_whether_the_account_exists(root, monkeypatch) -> None:
    """From a process's first sign-in on: the dummy hash is made once, before the name is
    looked up, and every attempt verifies one hash of the same Argon2 parameters."""
    from argon2 import PasswordHasher, extract_parameters

    from holdshelf import accounts as module

    root.accounts.add_user(*STAFF, "staff")
    real_hash, real_verify = PasswordHasher.hash, PasswordHasher.verify

    def costs(name: str) -> tuple[int, list[object]]:
        monkeypatch.setattr(module, "_dummy", None)  # as in a process that just started
        made: list[int] = []
        verified: list[str] = []
        monkeypatch.setattr(
            PasswordHasher, "hash", lambda self, *a, **k: made.append(1) or real_hash(self, *a, **k)
        )
        monkeypatch.setattr(
            PasswordHasher,
            "verify",
            lambda self, h, pw: verified.append(h) or real_verify(self, h, pw),
        )
        for n in range(3):
            with pytest.raises(module.SignInRefused):
                root.accounts.sign_in(name, WRONG, f"192.0.2.{70 + n}")
        return len(made), [extract_parameters(h) for h in verified]

    known, unknown = costs(STAFF[0]), costs("nobody")
    assert known == unknown
    assert known[0] == 1  # the dummy, made once
    assert len(known[1]) == 3  # one verified per attempt
