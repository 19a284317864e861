"""FOLIO through Okapi: mod-login's expiring tokens, mod-circulation's requests.

Sign-in is ``POST /authn/login-with-expiry``; the access and refresh tokens come back as the
cookies ``folioAccessToken`` and ``folioRefreshToken``, their lifetimes in the body. Calls carry
the access token in ``x-okapi-token``. Shortly before it expires (or once on a 401) the session
is renewed with ``POST /authn/refresh``, or by signing in again when the refresh token is spent.
mod-authtoken redeems a refresh token once and revokes every token of the user when one is
used twice, so renewals happen one at a time for all threads.

A scan is one CQL query on ``/circulation/requests``: the item's open requests that are
awaiting pickup (trapped) or in transit. A sync asks for the item's newest requests (by
``requestDate``) and reads the state of the patron's. Of a request only ``status``,
``requester.barcode``, ``pickupServicePointId``, ``pickupServicePoint.code``,
``holdShelfExpirationDate`` and ``requestDate`` are read; requester names, titles and addresses
are dropped where the JSON is parsed.

Locations: a branch's ``ils_location`` is its FOLIO service point's code (as in Settings >
Tenant > Service points) or the service point's UUID; the connector answers with whichever of
the two the branch uses when the request's pickup service point is that branch's, and with the
code (the UUID when FOLIO sends no code) for any other service point.
"""

from __future__ import annotations

import datetime as dt
import http.cookies
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from holdshelf.ils.answers import (
    HoldState,
    IlsAccount,
    IlsUnavailable,
    InTransit,
    IsPatron,
    NoHold,
    TrapAnswer,
    Trapped,
)
from holdshelf.ils.http import (
    HttpJson,
    Reply,
    TokenCache,
    json_of,
    refused,
    text_field,
    unexpected_shape,
    usable_until,
)

log = logging.getLogger(__name__)

SYSTEM = "FOLIO"
LOGIN = "/authn/login-with-expiry"
REFRESH = "/authn/refresh"
REQUESTS = "/circulation/requests"
AWAITING = "Open - Awaiting pickup"
IN_TRANSIT = "Open - In transit"
PERMISSION = "circulation.requests.collection.get"
SYNC_REQUESTS = 20  # an item's newest requests the sync reads: the patron's is among them
_SYNC_STATES = {
    AWAITING: HoldState.WAITING,
    "Closed - Filled": HoldState.PICKED_UP,
    "Closed - Pickup expired": HoldState.EXPIRED,
}


def cql_string(value: str) -> str:
    """A CQL quoted term matching ``value`` literally: backslash escapes the quote, the
    backslash itself and the masking characters * ? ^ (CQL 1.2, "Masking")."""
    escaped = "".join("\\" + c if c in '"\\*?^' else c for c in value)
    return f'"{escaped}"'


@dataclass(frozen=True)
class _Session:
    access: str = field(repr=False)
    refresh: str = field(repr=False)
    refresh_until: float


class FolioConnector:
    """Thread-safe: one session for every desk. ``timezone`` turns FOLIO's hold shelf
    expiration (a UTC instant) into the library's date; None means the machine's zone."""

    def __init__(
        self,
        okapi_url: str,
        tenant: str,
        username: str,
        password: str,
        *,
        timeout: float = 3.0,
        timezone: dt.tzinfo | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = HttpJson(SYSTEM, okapi_url, timeout, log)
        self._tenant = tenant
        self._username = username
        self._password = password
        self._timezone = timezone
        self._clock = clock
        self._sessions: TokenCache[_Session] = TokenCache(clock)

    def trapped_hold(self, account: IlsAccount, item_barcode: str) -> TrapAnswer:
        query = (
            f"(item.barcode=={cql_string(item_barcode)} and "
            f'(status=="{AWAITING}" or status=="{IN_TRANSIT}"))'
        )
        body = self._get(account, REQUESTS, {"query": query, "limit": "10"})
        return self._answer(account, item_barcode, _requests_in(body))

    def hold_state(self, account: IlsAccount, item_barcode: str, is_patron: IsPatron) -> HoldState:
        """The patron's newest request on the item: awaiting pickup is still waiting;
        Closed - Filled was picked up, Closed - Pickup expired expired, any other state ended
        (cancelled, unfilled, or the item went to another request). FOLIO keeps closed
        requests, so an item it has no request for at all is unknown, not ended."""
        query = f"(item.barcode=={cql_string(item_barcode)}) sortby requestDate/sort.descending"
        body = self._get(account, REQUESTS, {"query": query, "limit": str(SYNC_REQUESTS)})
        requests = _requests_in(body)
        wanted = item_barcode.casefold()
        mine = [r for r in requests if _barcode(r) in (None, wanted)]
        if not mine:
            return HoldState.UNKNOWN
        theirs = [r for r in mine if _is_theirs(r, is_patron)]
        if not theirs:
            return HoldState.ENDED
        return _SYNC_STATES.get(text_field(theirs[0].get("status")) or "", HoldState.ENDED)

    def check(self, account: IlsAccount) -> str:
        self._get(account, REQUESTS, {"limit": "0"})
        return (
            f"FOLIO at {self._http.where} (tenant {self._tenant}): logged in as "
            f"{self._username}; requests readable"
        )

    def close(self) -> None:
        self._sessions.clear()

    def _answer(
        self, account: IlsAccount, barcode: str, requests: list[dict[str, Any]]
    ) -> TrapAnswer:
        """The first request awaiting pickup, else the first in transit, of this very item
        (FOLIO compares barcodes case-insensitively; a request without its item counts)."""
        wanted = barcode.casefold()
        mine = [r for r in requests if _barcode(r) in (None, wanted)]
        first = {text_field(r.get("status")): r for r in reversed(mine)}
        if AWAITING in first:
            request = first[AWAITING]
            return Trapped(
                card=_requester_barcode(request),
                location=_location(account, request),
                pickup_by=self._date(request.get("holdShelfExpirationDate")),
            )
        if IN_TRANSIT in first:
            return InTransit(destination=_location(account, first[IN_TRANSIT]))
        return NoHold()

    def _date(self, value: Any) -> dt.date | None:
        if value is None:
            return None
        instant = _instant(value)
        if instant is None:
            raise unexpected_shape(SYSTEM, REQUESTS)
        return instant.astimezone(self._timezone).date()

    def _get(self, account: IlsAccount, path: str, query: Mapping[str, str]) -> Any:
        def renew(stale: _Session | None) -> tuple[_Session, float]:
            return self._renew(stale, account.branch_id)

        session = self._sessions.get(renew)
        reply = self._send(account, session, path, query)
        if reply.status == 401:  # expired or revoked early: renew once, try once more
            session = self._sessions.refused(session, renew)
            reply = self._send(account, session, path, query)
            if reply.status == 401:
                raise IlsUnavailable(f"FOLIO refused a new token for {self._username} (401)")
        if reply.status == 403:
            raise refused(SYSTEM, path, 403, f"{self._username} needs {PERMISSION}")
        if reply.status != 200:
            raise refused(SYSTEM, path, reply.status)
        return json_of(reply, SYSTEM, path)

    def _send(
        self, account: IlsAccount, session: _Session, path: str, query: Mapping[str, str]
    ) -> Reply:
        headers = {"x-okapi-tenant": self._tenant, "x-okapi-token": session.access}
        return self._http.send("GET", path, branch=account.branch_id, query=query, headers=headers)

    def _renew(self, stale: _Session | None, branch: str) -> tuple[_Session, float]:
        if stale is not None and self._clock() < stale.refresh_until:
            renewed = self._refresh(stale, branch)
            if renewed is not None:
                return renewed
        return self._login(branch)

    def _login(self, branch: str) -> tuple[_Session, float]:
        reply = self._http.send(
            "POST",
            LOGIN,
            branch=branch,
            headers={"x-okapi-tenant": self._tenant},
            json_body={"username": self._username, "password": self._password},
        )
        if reply.status == 422:  # mod-login: wrong username or password, or account blocked
            raise IlsUnavailable(f"FOLIO refused the login for {self._username}")
        if reply.status != 201:
            raise refused(SYSTEM, LOGIN, reply.status)
        log.info("FOLIO: logged in as %s (branch %s)", self._username, branch)
        return self._session(reply, LOGIN)

    def _refresh(self, stale: _Session, branch: str) -> tuple[_Session, float] | None:
        """A new session from the refresh token, or None when FOLIO will not refresh it
        (spent, expired, revoked: mod-login answers 4xx) and a login must follow."""
        headers = {"x-okapi-tenant": self._tenant, "Cookie": f"folioRefreshToken={stale.refresh}"}
        reply = self._http.send("POST", REFRESH, branch=branch, headers=headers)
        if 400 <= reply.status < 500:
            return None
        if reply.status != 201:
            raise refused(SYSTEM, REFRESH, reply.status)
        log.info("FOLIO: session of %s refreshed (branch %s)", self._username, branch)
        return self._session(reply, REFRESH)

    def _session(self, reply: Reply, path: str) -> tuple[_Session, float]:
        cookies = _cookies(reply)
        body = json_of(reply, SYSTEM, path)
        if not isinstance(body, dict):
            raise unexpected_shape(SYSTEM, path)
        access, refresh = cookies.get("folioAccessToken"), cookies.get("folioRefreshToken")
        access_until = _instant(body.get("accessTokenExpiration"))
        refresh_until = _instant(body.get("refreshTokenExpiration"))
        if not access or not refresh or access_until is None or refresh_until is None:
            raise unexpected_shape(SYSTEM, path)
        now = self._clock()
        session = _Session(access, refresh, usable_until(now, refresh_until.timestamp() - now))
        return session, usable_until(now, access_until.timestamp() - now)


def _cookies(reply: Reply) -> dict[str, str]:
    """The Set-Cookie values by name. A CookieError would quote the header, token and all,
    so it is not let out."""
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    broken = False
    for header in reply.header_values("Set-Cookie"):
        try:
            jar.load(header)
        except http.cookies.CookieError:
            broken = True
    if broken:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _requests_in(body: Any) -> list[dict[str, Any]]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
        raise unexpected_shape(SYSTEM, REQUESTS)
    return requests


def _is_theirs(request: dict[str, Any], is_patron: IsPatron) -> bool:
    requester = request.get("requester")
    barcode = requester.get("barcode") if isinstance(requester, dict) else None
    return isinstance(barcode, str) and bool(barcode.strip()) and is_patron(barcode)


def _barcode(request: dict[str, Any]) -> str | None:
    item = request.get("item")
    barcode = item.get("barcode") if isinstance(item, dict) else None
    return barcode.casefold() if isinstance(barcode, str) else None


def _requester_barcode(request: dict[str, Any]) -> str:
    requester = request.get("requester")
    barcode = requester.get("barcode") if isinstance(requester, dict) else None
    if not isinstance(barcode, str) or not barcode.strip():
        raise IlsUnavailable("FOLIO sent the request awaiting pickup without a requester barcode")
    return barcode


def _location(account: IlsAccount, request: dict[str, Any]) -> str:
    """The branch's own ils_location when the pickup service point is this branch's (by code
    or UUID); for any other service point its code, or its UUID when FOLIO sends no code."""
    point_id = request.get("pickupServicePointId")
    point = request.get("pickupServicePoint")
    code = point.get("code") if isinstance(point, dict) else None
    known = [v for v in (code, point_id) if isinstance(v, str) and v]
    if not known:
        raise unexpected_shape(SYSTEM, REQUESTS)
    return account.location if account.location in known else known[0]


def _instant(value: Any) -> dt.datetime | None:
    """An ISO 8601 instant; one without an offset is UTC (as FOLIO writes them)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
