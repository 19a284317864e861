"""RFC 9457 problem details: how the API (and any error under /api) answers a failure.

Mapped from the error's type, never from its message. Shared by the API blueprint and the
app-wide error handlers, so neither imports the other.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException

from holdshelf.errors import CodesExhausted, ConfigError, Conflict, HoldshelfError, NotFound

API_WINDOW = 60.0  # api.requests_per_minute per token; a 429 says when to retry
PROBLEM_JSON = "application/problem+json"
TITLES = {
    "invalid-input": "The request is not valid",
    "unauthorized": "A valid integration token is needed",
    "forbidden-branch": "This token may not act for that branch",
    "forbidden-scope": "This token may not use this part of the API",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "conflict": "The request conflicts with the hold's state",
    "idempotency-key-in-use": "A request with this Idempotency-Key is still running",
    "idempotency-key-reused": "This Idempotency-Key was used with a different request",
    "too-large": "The request body is too large",
    "unsupported-media-type": "Send JSON (Content-Type: application/json)",
    "rate-limited": "Too many requests",
    "codes-exhausted": "The branch has no free shelf code",
    "internal": "Something went wrong on our side; nothing was changed",
    "misconfigured": "The server's configuration does not allow this; tell its administrator",
}


class Problem(Exception):
    def __init__(self, status: int, kind: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.extra = status, kind, detail, extra

    def response(self) -> Response:
        body = {
            "type": f"urn:holdshelf:problem:{self.kind}",
            "title": TITLES[self.kind],
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        response = Response(json.dumps(body), status=self.status, mimetype=PROBLEM_JSON)
        if self.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="holdshelf"'
        if self.status == 429:
            response.headers["Retry-After"] = str(int(API_WINDOW))
        return response


HTTP_KINDS = {404: "not-found", 405: "method-not-allowed", 413: "too-large", 429: "rate-limited"}


def problem_for(error: Exception) -> Response:
    """Any error under /api as problem JSON (used by the app-wide error handlers)."""
    if isinstance(error, Problem):
        return error.response()
    if isinstance(error, HTTPException) and error.code in HTTP_KINDS:
        response = Problem(
            error.code, HTTP_KINDS[error.code], TITLES[HTTP_KINDS[error.code]]
        ).response()
        allowed = getattr(error, "valid_methods", None)  # 405 names what is allowed (RFC 9110)
        if allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    if isinstance(error, HTTPException) and error.code and error.code < 500:
        return Problem(error.code, "invalid-input", error.description or "bad request").response()
    return Problem(500, "internal", TITLES["internal"]).response()


def problem_from(error: HoldshelfError) -> Problem:
    field = getattr(error, "field", None)
    extra = {"field": field} if field else {}
    if isinstance(error, NotFound):
        return Problem(404, "not-found", str(error))
    if isinstance(error, Conflict):
        return Problem(409, "conflict", str(error))
    if isinstance(error, CodesExhausted):
        return Problem(503, "codes-exhausted", str(error))
    if isinstance(error, ConfigError):  # the server's to fix, not the client's request
        return Problem(503, "misconfigured", str(error))
    return Problem(400, "invalid-input", str(error), **extra)  # InvalidInput, unknown branch
