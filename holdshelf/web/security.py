"""Headers on every response and friendly error pages instead of tracebacks."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from holdshelf.errors import unexpected
from holdshelf.web.problems import problem_for

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Nothing tells another site which page linked to it; a staff form still says it came
    # from this site, as the CSRF check demands over HTTPS (no Referer: the form fails).
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# A year of HTTPS only, once a browser has seen it over HTTPS. Not includeSubDomains: the
# library's other hosts are not this app's to pin.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"
FRIENDLY = {
    400: "The request could not be understood. Go back and try again.",
    403: "This page is for administrators.",
    404: "There is no such page.",
    405: "That action is not available here.",
    413: "That was more data than a form may send.",
    429: "Too many requests at once. Wait a moment and try again.",
    500: "Something went wrong on our side and nothing was changed. Please try again.",
}


def error_page(status: int, message: str | None = None) -> tuple[str, int]:
    text = message or FRIENDLY.get(status, FRIENDLY[400])
    return render_template("error.html", status=status, message=text), status


def init_app(app: Flask) -> None:
    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if request.blueprint == "public":  # patrons' URLs carry codes and link tokens, and
            response.headers["Referrer-Policy"] = "no-referrer"  # their forms need no Referer
        if request.is_secure:  # as the app sees it: https, or forwarded as https by the proxy
            response.headers["Strict-Transport-Security"] = STRICT_TRANSPORT_SECURITY
        if request.endpoint != "static":  # pages about holds must not linger in caches
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def stale_form(_: CSRFError) -> tuple[str, int]:
        return error_page(
            400,
            "This form has expired or did not come from this page. "
            "Reload the page and try again; nothing was changed.",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if _is_api():
            return problem_for(error)
        return error_page(error.code or 500)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Any:
        log.error(
            "unexpected error on %s %s: %s", request.method, request.endpoint, unexpected(error)
        )
        if _is_api():
            return problem_for(error)
        return error_page(500)


def _is_api() -> bool:
    """The API answers in problem JSON, never with an HTML page."""
    return request.path == "/api" or request.path.startswith("/api/")
