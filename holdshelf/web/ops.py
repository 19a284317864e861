"""For monitoring: ``GET /healthz`` (is this server able to work) and ``GET /metrics``
(Prometheus text format). No sign-in and no rate limit: a load balancer and a scraper ask
every few seconds. /metrics serves loopback freely and anyone else with ``[web] metrics_token``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from holdshelf import health
from holdshelf.errors import unexpected
from holdshelf.web.extensions import desk

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# ProxyFix keeps the peer's own address here when it applied a trusted proxy's headers.
PROXIED = "werkzeug.proxy_fix.orig"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the database answers and a worker beats (in any process), else 503."""
    parts = desk()
    report = health.health(parts.sessions, parts.clock)
    if report.problem:
        log.warning("healthz: the database did not answer: %s", report.problem)
    return jsonify(report.as_dict()), 200 if report.healthy else 503


@bp.get("/metrics")
def metrics() -> Response:
    refusal = _refusal()
    if refusal is not None:
        return refusal
    parts = desk()
    try:
        families = health.metrics(
            parts.settings, parts.sessions, parts.clock, parts.printer_trouble
        )
    except SQLAlchemyError as exc:  # the scrape says so, in the format, instead of a 500 page
        log.warning("metrics: the database did not answer: %s", unexpected(exc))
        down = health.Metric("holdshelf_database_up", "gauge", "Whether the database answered.")
        down.add(0)
        families = [down]
    return Response(health.render(families), 200, content_type=PROMETHEUS_TYPE)


def _refusal() -> Response | None:
    """None when this request may read the metrics: from loopback (the client as the app
    resolves it behind a trusted proxy), or with the metrics token."""
    if _from_loopback():
        return None
    token = desk().settings.web.metrics_token
    if not token:
        return _plain(403, "metrics are served to this machine only: set [web] metrics_token\n")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    ):
        return None
    refused = _plain(401, "a bearer token is needed: Authorization: Bearer <metrics_token>\n")
    refused.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return refused


def _from_loopback() -> bool:
    """Whether the client is on this machine. Through a trusted proxy that is the address the
    proxy forwarded; a proxied request that forwarded none is not taken for local (the proxy
    would be passing on someone else's request)."""
    if PROXIED in request.environ and "X-Forwarded-For" not in request.headers:
        return False
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _plain(status: int, body: str) -> Response:
    return Response(body, status, content_type="text/plain; charset=utf-8")
