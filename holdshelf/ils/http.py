"""HTTP and JSON for the REST connectors (Koha, FOLIO): one request, one reply, one clear line
when it fails, and a token cache that several desk threads share.

What an ILS sends (names, contacts, titles) never reaches a log line or an exception: a reply's
body is kept out of its repr, errors are raised outside the ``except`` that caught them (so not
even ``__context__`` holds a body), and requests are logged by path only, never by query.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Generic, TypeVar

from holdshelf.errors import ConfigError
from holdshelf.ils.answers import IlsUnavailable

T = TypeVar("T")
_MALFORMED = object()


@dataclass(frozen=True)
class Reply:
    """An ILS's answer. The body stays out of repr() so that no log or assertion prints it."""

    status: int
    headers: Message
    body: bytes = field(repr=False)

    def header_values(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """An API that redirects is misconfigured; following it would carry the token elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpJson:
    """Requests to one ILS (``system`` names it in messages: "Koha", "FOLIO")."""

    def __init__(self, system: str, base_url: str, timeout: float, log: logging.Logger) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the {system} URL must be http:// or https:// with a host name")
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.log = log
        # Host and port only: a URL with user:password@ must not put them in a message.
        self.where = parts.hostname + (f":{parts.port}" if parts.port else "")
        self._opener = urllib.request.build_opener(_NoRedirects)

    def send(
        self,
        method: str,
        path: str,
        *,
        branch: str,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Reply:
        """One request; any HTTP status comes back as a Reply. Raises IlsUnavailable when no
        answer came (unreachable, refused, too slow, a redirect, an untrusted certificate)."""
        request = self._request(method, path, query, headers, form, json_body)
        started = time.monotonic()
        reply, failure = self._open(request)
        elapsed = round((time.monotonic() - started) * 1000)
        if failure is not None:
            self.log.warning(
                "%s %s %s: %s after %d ms (branch %s)",
                self.system,
                method,
                path,
                failure,
                elapsed,
                branch,
            )
            raise IlsUnavailable(f"{self.system} {failure}")
        assert reply is not None
        self.log.debug(
            "%s %s %s answered %d in %d ms (branch %s)",
            self.system,
            method,
            path,
            reply.status,
            elapsed,
            branch,
        )
        if 300 <= reply.status < 400:
            raise IlsUnavailable(
                f"{self.system} answered {reply.status} (a redirect: check the URL)"
            )
        return reply

    def _request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        form: Mapping[str, str] | None,
        json_body: Any,
    ) -> urllib.request.Request:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode("ascii")
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        return urllib.request.Request(url, data=data, headers=all_headers, method=method)  # noqa: S310 (the configured ILS)

    def _open(self, request: urllib.request.Request) -> tuple[Reply | None, str | None]:
        """The reply, or why there was none (a phrase free of anything the ILS sent)."""
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return Reply(response.status, response.headers, response.read()), None
        except urllib.error.HTTPError as exc:
            with exc:
                return self._error_reply(exc), None
        except http.client.HTTPException as exc:  # its message may quote what was sent
            return None, f"at {self.where} did not answer in HTTP ({type(exc).__name__})"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return None, self._reason(exc)

    def _error_reply(self, exc: urllib.error.HTTPError) -> Reply:
        try:
            body = exc.read()
        except (OSError, ValueError):  # the body broke off; the status is what counts
            body = b""
        return Reply(exc.code, exc.headers, body)

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
            exc = exc.reason
        if isinstance(exc, TimeoutError | socket.timeout):
            return f"did not answer within {self.timeout:g} s"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"at {self.where}: certificate not trusted ({exc.verify_message})"
        if isinstance(exc, ConnectionRefusedError):
            return f"unreachable at {self.where} (connection refused)"
        if isinstance(exc, socket.gaierror):
            return f"unreachable at {self.where} (unknown host)"
        return f"unreachable at {self.where} ({type(exc).__name__})"


def json_of(reply: Reply, system: str, path: str) -> Any:
    """The reply's JSON. Raised after the ``except``: a JSONDecodeError keeps the whole body
    in its ``doc``, and a ``from None`` would still leave it in ``__context__``."""
    try:
        value = json.loads(reply.body)
    except ValueError:
        value = _MALFORMED
    if value is _MALFORMED:
        raise IlsUnavailable(f"{system} answered {path} with malformed JSON")
    return value


def refused(system: str, path: str, status: int, hint: str = "") -> IlsUnavailable:
    """The one line for an HTTP status that is not an answer ("Koha answered 503")."""
    return IlsUnavailable(f"{system} answered {status} to {path}" + (f" ({hint})" if hint else ""))


def unexpected_shape(system: str, path: str) -> IlsUnavailable:
    return IlsUnavailable(f"{system} answered {path} in an unexpected shape")


class TokenCache(Generic[T]):
    """One token (or session) for every thread, renewed by one thread at a time.

    ``renew(stale)`` returns a new value and the clock time until which it may be used; it is
    called under the lock, so threads that find the token missing, expiring or refused wait for
    the one renewal instead of each asking the ILS."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._until = 0.0

    def get(self, renew: Callable[[T | None], tuple[T, float]]) -> T:
        with self._lock:
            if self._value is None or self._clock() >= self._until:
                self._value, self._until = renew(self._value)
            return self._value

    def refused(self, stale: T, renew: Callable[[T | None], tuple[T, float]]) -> T:
        """The ILS refused ``stale``: renew it, unless another thread already has."""
        with self._lock:
            if self._value is None or self._value is stale:
                self._value, self._until = renew(self._value)
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._value, self._until = None, 0.0


def usable_until(now: float, lifetime: float) -> float:
    """Renew a little before the ILS would: a minute early, or a tenth early for short tokens,
    so a token does not expire between the check and the request."""
    return now + lifetime - min(60.0, lifetime / 10)


def text_field(value: Any) -> str | None:
    """A string field's value; anything else (a list, a number) matches no status."""
    return value if isinstance(value, str) else None
