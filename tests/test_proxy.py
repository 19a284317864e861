"""Behind a reverse proxy: the client's address and scheme come from the proxy's
X-Forwarded-For / -Proto, believed from the proxy named in [web] and from nobody else."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from holdshelf.settings import LOOPBACK_PROXIES
from holdshelf.web.patron import FIND_LIMIT
from holdshelf.web.proxy import TrustedProxy
from holdshelf.web.security import STRICT_TRANSPORT_SECURITY
from tests.helpers.web import CSRF, STAFF

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FORGED = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}


def seen_by_app(proxies, peer: str, headers: dict[str, str]) -> dict[str, Any]:
    """The environ the app behind TrustedProxy gets for a request from ``peer``."""
    seen: dict[str, Any] = {}

    def app(environ, start_response):
        seen.update(environ)
        return Response("ok")(environ, start_response)

    client = Client(TrustedProxy(app, proxies))
    client.get("/", headers=headers, environ_base={"REMOTE_ADDR": peer})
    return seen


def test_the_proxy_s_forwarded_address_and_scheme_are_believed() -> None:
    # The proxy appends the address it saw; anything before it the client may have made up.
    headers = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "X-Forwarded-Proto": "https"}
    for proxy in ("127.0.0.1", "::1"):
        seen = seen_by_app(LOOPBACK_PROXIES, proxy, headers)
        assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == ("198.51.100.7", "https")


@pytest.mark.parametrize(
    ("proxies", "peer"),
    [
        (LOOPBACK_PROXIES, "127.0.0.2"),  # another process on this machine, not the proxy
        (LOOPBACK_PROXIES, "192.0.2.50"),  # a client reaching the app's port directly
        ((), "127.0.0.1"),  # not behind a proxy at all
        ((ipaddress.ip_network("10.0.0.0/24"),), "10.0.1.1"),
        ((ipaddress.ip_network("10.0.0.0/24"),), "localhost"),  # not an address
    ],
)
def test_forwarded_headers_from_anyone_else_are_dropped(proxies, peer: str) -> None:
    headers = FORGED | {"Forwarded": "for=198.51.100.7;proto=https", "X-Real-IP": "198.51.100.7"}
    seen = seen_by_app(proxies, peer, headers)
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == (peer, "http")
    assert not [name for name in seen if "FORWARDED" in name or "REAL_IP" in name]


@pytest.mark.parametrize("peer", ["10.0.0.77", "::ffff:10.0.0.5"])
def test_a_network_of_proxies_is_trusted(peer: str) -> None:
    seen = seen_by_app((ipaddress.ip_network("10.0.0.0/24"),), peer, FORGED)
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == ("198.51.100.7", "https")


def behind_proxy(service, clock):
    from holdshelf.web import create_app

    web = dataclasses.replace(
        service.settings.web, behind_proxy=True, trusted_proxies=LOOPBACK_PROXIES
    )
    application = create_app(
        dataclasses.replace(service.settings, web=web), clock=clock, service=service
    )
    application.config["TESTING"] = True
    return application


def find(client, patron: str, peer: str = "127.0.0.1") -> int:
    return client.get(
        "/find?code=HELLO1",
        headers={"X-Forwarded-For": patron},
        environ_base={"REMOTE_ADDR": peer},
    ).status_code


@SQLITE
def test_find_is_limited_per_patron_behind_the_proxy_not_per_proxy(service, clock) -> None:
    client = behind_proxy(service, clock).test_client()
    assert [find(client, "198.51.100.7") for _ in range(FIND_LIMIT + 1)][-2:] == [200, 429]
    assert find(client, "198.51.100.8") == 200  # the next patron through the same proxy


@SQLITE
def test_a_direct_client_cannot_dodge_the_limit_with_forged_addresses(service, clock) -> None:
    client = behind_proxy(service, clock).test_client()
    answers = [find(client, f"198.51.100.{n}", peer="192.0.2.50") for n in range(FIND_LIMIT + 1)]
    assert answers[-2:] == [200, 429]


VIA_PROXY = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}


@SQLITE
def test_https_through_the_proxy_is_seen_and_pinned(service, clock) -> None:
    client = behind_proxy(service, clock).test_client()
    pinned = client.get("/find", headers=VIA_PROXY).headers
    assert pinned["Strict-Transport-Security"] == STRICT_TRANSPORT_SECURITY == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/find").headers  # plain http
    forged = client.get("/find", headers=VIA_PROXY, environ_base={"REMOTE_ADDR": "192.0.2.50"})
    assert "Strict-Transport-Security" not in forged.headers


@SQLITE
def test_a_form_over_https_needs_the_referer_the_policy_lets_through(app, service, clock) -> None:
    """Over HTTPS Flask-WTF refuses a form without a same-site Referer: a Referrer-Policy of
    no-referrer would fail every sign-in behind the proxy."""
    client = behind_proxy(service, clock).test_client()
    page = client.get("/login", headers=VIA_PROXY)
    assert page.headers["Referrer-Policy"] == "same-origin"
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    form = {"name": STAFF[0], "password": STAFF[1], "csrf_token": token}
    without = client.post("/login", data=form, headers=VIA_PROXY)
    assert without.status_code == 400 and "This form has expired" in without.get_data(as_text=True)
    referred = VIA_PROXY | {"Referer": "https://localhost/login"}
    signed_in = client.post("/login", data=form, headers=referred)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/checkin"  # relative: it stays on https
