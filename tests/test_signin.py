"""Sign-in throttling: per account name, and apart from it (much higher) per address, so one
clerk's typos never lock the whole desk out; the wait named in minutes; unlocking."""

from __future__ import annotations

import dataclasses

import pytest
from flask.testing import FlaskClient

from tests.conftest import Clock
from tests.helpers.web import ADMIN, STAFF, sign_in

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


@pytest.fixture
def spray_app(app, service, clock: Clock):
    """The same desk with a per-address limit of 8, so a spray over names is quick to test
    (each attempt costs an Argon2 hash)."""
    from holdshelf.web import create_app

    web = dataclasses.replace(service.settings.web, login_attempts_per_address=8)
    settings = dataclasses.replace(service.settings, web=web)
    application = create_app(settings, clock=clock, service=service)
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
