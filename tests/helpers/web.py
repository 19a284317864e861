"""Signing in with Flask's test client, the way a browser does (CSRF token from the page)."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

STAFF = ("alice", "correct horse battery")
ADMIN = ("ada", "analytical engine 1843")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, account: tuple[str, str] = STAFF) -> TestResponse:
    token = csrf_token(client)
    return client.post(
        "/login", data={"name": account[0], "password": account[1], "csrf_token": token}
    )


def post(
    client: FlaskClient,
    path: str,
    data: dict[str, Any] | None = None,
    page: str | None = None,
    **kwargs: Any,
) -> TestResponse:
    """POST like a form on ``page`` (default: the same path) would."""
    token = csrf_token(client, page or path)
    return client.post(path, data={**(data or {}), "csrf_token": token}, **kwargs)


FOCUS = re.compile(r'name="focus" value="([^"]*)"')


def look_up_patron(client: FlaskClient, card: str) -> tuple[str, str]:
    """Scan a card at the patron desk and follow to the page it leads to: (page, its URL)."""
    response = post(client, "/patron", {"card": card})
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    return client.get(location).get_data(as_text=True), location


def choose_pickup(client: FlaskClient, page: str, location: str, choice: str) -> TestResponse:
    """Press "Switch to ..." on a patron page: the form carries the page's focus tag."""
    match = FOCUS.search(page)
    assert match, "the patron page has no choice form"
    return post(client, "/patron/choice", {"choice": choice, "focus": match.group(1)}, location)
