"""The client's address and scheme behind a reverse proxy, believed from that proxy only.

Behind a proxy every request comes from the proxy's address, so without its X-Forwarded-For
every patron and desk would share one rate limit and one sign-in throttle, and without its
X-Forwarded-Proto the app would never see that it is served over HTTPS. Anyone can send those
headers, though: they are believed only when the connection comes from ``[web]
trusted_proxy`` (loopback by default), and removed from every other request, so a client
reaching the app directly cannot pick its own address.

This is the only layer that reads them: `holdshelf serve` has waitress pass them through
untouched, and waitress's own trusted_proxy (one exact address) is left unset.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

from holdshelf.settings import IPNetwork

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Every forwarding header a proxy may add: from an untrusted peer none reaches the app.
FORWARDED_HEADERS = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_X_FORWARDED_BY",
    "HTTP_X_REAL_IP",
)


class TrustedProxy:
    """WSGI middleware: X-Forwarded-For and -Proto from ``proxies`` are applied (one proxy:
    the address it appended, the last one, is the client), from anyone else dropped."""

    def __init__(self, app: WSGIApplication, proxies: Iterable[IPNetwork]) -> None:
        self.app = app
        self.proxies = tuple(proxies)
        self._forwarded = ProxyFix(app, x_for=1, x_proto=1)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.trusts(environ.get("REMOTE_ADDR", "")):
            return self._forwarded(environ, start_response)
        for header in FORWARDED_HEADERS:
            environ.pop(header, None)
        return self.app(environ, start_response)

    def trusts(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # a Unix socket or a test client's made-up name: not the proxy
            return False
        # A dual-stack listener sees an IPv4 proxy as ::ffff:10.0.0.5
        mapped = getattr(address, "ipv4_mapped", None)
        return any(a in network for network in self.proxies for a in (address, mapped) if a)
