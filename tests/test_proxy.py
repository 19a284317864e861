"""Behind a reverse proxy: the client's address and scheme come from the proxy's
X-Forwarded-For / -Proto, believed from the proxy named in [web] and from nobody else.

First the middleware and the app on their own; then `holdshelf serve` behind a real proxy:
Debian's nginx on loopback, terminating TLS with a certificate made for the test, reached by
clients at addresses of their own. Without nginx those are skipped, unless
HOLDSHELF_TEST_REQUIRE_PROXY=1 (CI) or HOLDSHELF_TEST_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from werkzeug.test import Client
from werkzeug.wrappers import Response

from holdshelf.bootstrap import Holdshelf
from holdshelf.settings import LOOPBACK_PROXIES
from holdshelf.web.limits import FIND_LIMIT
from holdshelf.web.proxy import TrustedProxy
from holdshelf.web.security import STRICT_TRANSPORT_SECURITY
from tests import test_browser
from tests.conftest import make_instance
from tests.helpers.certificates import make_certificates
from tests.helpers.cli import Cli
from tests.helpers.servers import free_port
from tests.helpers.serving import Serving
from tests.helpers.web import CSRF, STAFF
from tests.test_notices import configure

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
    settings = dataclasses.replace(service.settings, web=web)
    application = create_app(Holdshelf(settings, clock=clock, engine=service.engine))
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


# -- through a real reverse proxy: Debian's nginx in front of `holdshelf serve` ---------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # Debian's is in sbin, off a user's PATH
REQUIRE_PROXY = "1" in (
    os.environ.get("HOLDSHELF_TEST_REQUIRE_PROXY"),
    os.environ.get("HOLDSHELF_TEST_REQUIRE_BROWSER"),
)
# nginx run from the test's folder: its pid, logs and temporary files there; the http
# block stays open for what follows.
NGINX_MAIN = """\
worker_processes 1;
pid {folder}/nginx.pid;
lock_file {folder}/nginx.lock;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
"""
# TLS ends here; the app gets the client's address and the scheme as a library's nginx sends
# them. Host is passed on with its port, as the browser sent it, for the CSRF check's
# same-origin Referer test (on port 443, $host does as well).
NGINX_CONF = (
    NGINX_MAIN
    + """\
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {certificate};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind {bind};
            proxy_buffering off;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
)
# Desks and patrons at their own addresses: Linux answers on all of 127.0.0.0/8, and a client
# socket bound to 127.0.0.N reaches nginx from there.
PATRONS = [f"127.0.0.{n}" for n in range(10, 40)]
DESK_A, DESK_B, LOOKUPS, DIRECT = "127.0.0.50", "127.0.0.51", "127.0.0.52", "127.0.0.53"
SECOND_CLERK = ("carol", "second clerk password")
# Where the app expects its proxy ([web] trusted_proxy, "" for behind_proxy alone), and the
# address nginx connects from: for the network, one only trusted_proxy makes trusted.
LOOPBACK, NETWORK = ("", "127.0.0.1"), ("127.0.0.4/30", "127.0.0.6")
AS_CONFIGURED = pytest.mark.parametrize(
    "proxied", [LOOPBACK, NETWORK], indirect=True, ids=["loopback", "trusted_proxy-network"]
)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: str


@dataclass
class Visitor:
    """One desk's or patron's HTTP client: its own source address, its own cookies."""

    port: int
    address: str
    tls: ssl.SSLContext | None  # None: plain http, straight to waitress
    cookies: dict[str, str] = field(default_factory=dict)

    def _connect(self) -> http.client.HTTPConnection:
        """A new connection from this visitor's own address (a new TLS session each time)."""
        source = (self.address, 0)
        if self.tls is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, 30, source)
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=30, source_address=source, context=self.tls
        )

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> Reply:
        sent = dict(headers)
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection = self._connect()
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read().decode())
        finally:
            connection.close()
        for cookie in reply.headers.get_all("Set-Cookie") or []:
            name, _, value = cookie.split(";")[0].partition("=")
            self.cookies[name] = value
        return reply

    def sign_in(self, name: str, password: str) -> Reply:
        """As the browser does: the form's CSRF token, then the POST from that page."""
        page = self.request("GET", "/login").body
        token = CSRF.search(page).group(1)
        form = {"name": name, "password": password, "csrf_token": token}
        return self.request("POST", "/login", form, Referer=f"https://127.0.0.1:{self.port}/login")


@dataclass
class Proxied:
    """`holdshelf serve` with nginx in front: where each listens, and the client's CA."""

    serving: Serving
    port: int  # nginx's, TLS
    tls: ssl.SSLContext
    certificate: Path

    def visitor(self, address: str) -> Visitor:
        return Visitor(self.port, address, self.tls)

    def direct(self, address: str) -> Visitor:
        """A client reaching waitress's port itself, past the proxy."""
        return Visitor(self.serving.port, address, None)


def _start_nginx(folder: Path, port: int, upstream: int, **conf_values: Any) -> subprocess.Popen:
    conf = NGINX_CONF.format(folder=folder, port=port, upstream=upstream, **conf_values)
    return _run_nginx(folder, conf, port)


def _run_nginx(folder: Path, conf_text: str, port: int) -> subprocess.Popen:
    """nginx with this configuration, once it answers on ``port``."""
    conf = folder / "nginx.conf"
    conf.write_text(conf_text)
    command = [NGINX, "-p", str(folder), "-c", str(conf), "-g", "daemon off;"]
    checked = subprocess.run(
        [*command, "-t"], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            answered = probe.connect_ex(("127.0.0.1", port)) == 0
        if answered:
            # Something answers: nginx, unless another server holds the port and nginx quit
            # on it (a TLS client would then wait 30 s for a handshake that never comes).
            time.sleep(0.2)
            if nginx.poll() is None:
                return nginx
            break
        if nginx.poll() is not None:
            break
        time.sleep(0.05)
    nginx.kill()
    raise AssertionError(f"nginx did not start: {nginx.communicate()[1]}")


def port_apart(*taken: int) -> int:
    """A free port none of ``taken`` (ports chosen but perhaps not yet listened on)."""
    port = free_port()
    while port in taken:
        port = free_port()
    return port


def _require_nginx() -> None:
    if not Path(NGINX).exists():
        message = "Debian's nginx is not installed (apt-get install nginx)"
        if REQUIRE_PROXY:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def proxied(request, tmp_path: Path, capsys, monkeypatch) -> Iterator[Proxied]:
    """A production instance behind_proxy = true, its clerks, `holdshelf serve`, and nginx
    terminating TLS with this test's own certificate in front of it. The parameter: LOOPBACK
    (the default) or NETWORK."""
    trusted_proxy, bind = getattr(request, "param", LOOPBACK)
    _require_nginx()
    instance = make_instance(
        tmp_path / "instance",
        f"sqlite:///{tmp_path / 'instance' / 'holdshelf.sqlite3'}",
        demo=False,  # production: Secure cookies
        # The per-address limit as low as it may be, so one desk's typos reach it quickly.
        extra=(
            f'[web]\nbehind_proxy = true\ntrusted_proxy = "{trusted_proxy}"\n'
            "login_attempts = 5\nlogin_attempts_per_address = 5\n"
        ),
    )
    cli = Cli(instance, capsys, monkeypatch)
    cli.ok("init")
    for name, password in (STAFF, SECOND_CLERK):
        cli.ok("user", "add", name, "--role", "staff", "--password-stdin", stdin=password + "\n")
    certificates = make_certificates(tmp_path / "certs")
    certificate = certificates.ca_file.with_name("server.pem")  # its key is in the file too
    (folder := tmp_path / "nginx").mkdir()
    serving = Serving("--instance", str(instance), "serve")
    port = port_apart(serving.port)  # free_port twice can give one port twice
    try:
        nginx = _start_nginx(folder, port, serving.port, certificate=certificate, bind=bind)
        try:
            tls = ssl.create_default_context(cafile=certificates.ca_file)
            yield Proxied(serving, port, tls, certificate)
        finally:
            nginx.terminate()
            nginx.communicate(timeout=30)
    finally:
        stopped = serving.stop()
    assert stopped.code == 0, stopped.err


@pytest.mark.slow
@AS_CONFIGURED
def test_every_patron_behind_the_proxy_has_their_own_find_limit(proxied: Proxied) -> None:
    answers = [proxied.visitor(patron).request("GET", "/find?code=HELLO1") for patron in PATRONS]
    assert [reply.status for reply in answers] == [200] * len(PATRONS)  # 10 of 30 got 429
    assert "Too many lookups" not in answers[-1].body
    busy = proxied.visitor(LOOKUPS)
    statuses = [busy.request("GET", "/find?code=HELLO1").status for _ in range(FIND_LIMIT + 1)]
    assert statuses[-2:] == [200, 429]  # the limit still holds, for that one address
    assert proxied.visitor(PATRONS[0]).request("GET", "/find?code=HELLO1").status == 200


@pytest.mark.slow
def test_one_desk_s_typos_do_not_lock_out_a_clerk_at_another(proxied: Proxied) -> None:
    desk_a, desk_b = proxied.visitor(DESK_A), proxied.visitor(DESK_B)
    for typo in ("alcie", "alice ", "alise", "aliec", "ailce"):  # five names: no account locks
        assert desk_a.sign_in(typo, "wrong password").status == 401
    refused = desk_a.sign_in(*SECOND_CLERK)
    assert refused.status == 429 and "from this address" in refused.body
    signed_in = desk_b.sign_in(*SECOND_CLERK)
    assert (signed_in.status, signed_in.headers["Location"]) == (302, "/checkin")


@pytest.mark.slow
def test_https_at_the_proxy_is_seen_by_the_app(proxied: Proxied) -> None:
    desk = proxied.visitor(DESK_B)
    page = desk.request("GET", "/login")
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    (cookie,) = page.headers.get_all("Set-Cookie")
    assert "; Secure" in cookie and "; HttpOnly" in cookie
    # The CSRF check's HTTPS-only half applies: a form from another site is refused ...
    token = CSRF.search(page.body).group(1)
    form = {"name": STAFF[0], "password": STAFF[1], "csrf_token": token}
    elsewhere = desk.request("POST", "/login", form, Referer="https://evil.example/login")
    assert elsewhere.status == 400
    # ... and this site's own form signs in; the redirects stay on https (relative)
    signed_in = desk.request("POST", "/login", form, Referer=f"https://127.0.0.1:{desk.port}/")
    assert (signed_in.status, signed_in.headers["Location"]) == (302, "/checkin")
    desk_page = desk.request("GET", "/checkin")  # the Secure cookie came back: signed in
    assert desk_page.status == 200 and "Sign out" in desk_page.body


@pytest.mark.slow
@AS_CONFIGURED
def test_a_client_past_the_proxy_cannot_forge_its_address_or_https(proxied: Proxied) -> None:
    direct = proxied.direct(DIRECT)
    statuses = []
    for n in range(FIND_LIMIT + 1):
        forged = {"X-Forwarded-For": f"198.51.100.{n}", "X-Forwarded-Proto": "https"}
        reply = direct.request("GET", "/find?code=HELLO1", **forged)
        assert "Strict-Transport-Security" not in reply.headers
        statuses.append(reply.status)
    assert statuses[-2:] == [200, 429]  # one address, whatever it claimed


def _spki_pin(certificate: Path) -> str:
    """Chromium's pin of the certificate's public key: it trusts this test's certificate only,
    with no CA to install and no certificate error ignored beyond it."""
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.mark.slow
def test_browser_signs_in_through_the_proxy_on_https(proxied: Proxied) -> None:
    """A real browser at the desk: the sign-in form posts over HTTPS with the Referer its
    policy sends (no-referrer would fail the CSRF check), and keeps the Secure cookie."""
    reason = test_browser._missing()
    if reason:
        if test_browser.REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    flags = [
        *test_browser.CHROMIUM_FLAGS,
        f"--ignore-certificate-errors-spki-list={_spki_pin(proxied.certificate)}",
    ]
    base = f"https://127.0.0.1:{proxied.port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=flags
        )
        page = browser.new_page()
        answer = page.goto(base + "/login")
        assert answer is not None and answer.headers["strict-transport-security"] == (
            "max-age=31536000"
        )
        page.fill("#name", STAFF[0])
        page.fill("#password", STAFF[1])
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url == base + "/checkin", page.content()
        assert page.get_by_role("button", name="Sign out").is_visible()
        (cookie,) = page.context.cookies()
        assert (cookie["name"], cookie["secure"]) == ("holdshelf_session", True)
        browser.close()


# -- the example configuration: two `holdshelf serve` processes on one PostgreSQL --------------

EXAMPLE_CONF = Path(__file__).resolve().parents[1] / "config" / "nginx" / "holdshelf.conf"
# The example is an http-context file, as /etc/nginx/conf.d/ holds; here it is included in a
# main configuration that keeps nginx's files in the test's folder.
EXAMPLE_MAIN = (
    NGINX_MAIN
    + """\
    include {folder}/holdshelf.conf;
}}
"""
)


def example_conf(
    folder: Path, port: int, redirect_port: int, upstreams: list[int], certificate: Path
) -> str:
    """The example, with this test's ports and certificate in place of the library's."""
    text = EXAMPLE_CONF.read_text()
    replacements = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{redirect_port};",
        "/etc/ssl/holdshelf/fullchain.pem": str(certificate),
        "/etc/ssl/holdshelf/privkey.pem": str(certificate),
        "server 127.0.0.1:5001 ": f"server 127.0.0.1:{upstreams[0]} ",
        "server 127.0.0.1:5002 ": f"server 127.0.0.1:{upstreams[1]} ",
    }
    for example, here in replacements.items():
        assert text.count(example) == 1, example
        text = text.replace(example, here)
    (folder / "holdshelf.conf").write_text(text)
    return EXAMPLE_MAIN.format(folder=folder)


def connections_to(port: int) -> int:
    """Established TCP connections whose server end is 127.0.0.1:``port`` (Linux)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    wanted = f"0100007F:{port:04X}"
    return sum(1 for row in rows if row.split()[1] == wanted and row.split()[3] == "01")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_example_config_spreads_requests_over_two_servers(
    instance_dir: Path, tmp_path: Path
) -> None:
    """config/nginx/holdshelf.conf in front of two `holdshelf serve` processes: every patron's
    lookup gets through, one address's lookups are limited once over both processes, both
    serve, plain http is sent to https, and a stopped process is stepped around."""
    _require_nginx()
    configure(instance_dir, "[web]\nbehind_proxy = true\n")
    certificates = make_certificates(tmp_path / "certs")
    certificate = certificates.ca_file.with_name("server.pem")
    (folder := tmp_path / "nginx").mkdir()
    servers = [Serving("--instance", str(instance_dir), "serve") for _ in range(2)]
    port = port_apart(*(s.port for s in servers))
    redirect_port = port_apart(port, *(s.port for s in servers))
    try:
        conf = example_conf(folder, port, redirect_port, [s.port for s in servers], certificate)
        nginx = _run_nginx(folder, conf, port)
        try:
            tls = ssl.create_default_context(cafile=certificates.ca_file)
            statuses = [
                Visitor(port, patron, tls).request("GET", "/find?code=HELLO1").status
                for patron in PATRONS
            ]
            assert statuses == [200] * len(PATRONS)
            busy = Visitor(port, LOOKUPS, tls)
            statuses = [busy.request("GET", "/find?code=HELLO1").status for _ in range(25)]
            assert statuses == [200] * FIND_LIMIT + [429] * 5  # one limit, not one a process
            assert [connections_to(s.port) > 0 for s in servers] == [True, True]
            redirect = Visitor(redirect_port, DESK_A, None).request("GET", "/find")
            assert redirect.status == 301
            assert redirect.headers["Location"].startswith("https://")
            assert servers[0].stop().code == 0
            after = [Visitor(port, DESK_B, tls).request("GET", "/find").status for _ in range(6)]
            assert after == [200] * 6
        finally:
            nginx.terminate()
            nginx.communicate(timeout=30)
    finally:
        stopped = [s.stop() for s in servers if s.process.returncode is None]
    assert [result.code for result in stopped] == [0] * len(stopped)
