"""FOLIO behind Okapi as a real HTTP server: mod-login's ``/authn/login-with-expiry`` and
``/authn/refresh`` (tokens as cookies, refresh tokens redeemed once, a reused one revoking every
token of the user as mod-authtoken does) and mod-circulation's ``GET /circulation/requests``
with a CQL query. Answers are checked against tests/peers/specs/folio/.

Commands for the tests: ``expire_tokens()`` expires the access tokens (the next call gets 401),
``end_sessions()`` revokes refresh tokens too, ``status``, ``delay`` and ``malformed`` inject
faults into the requests endpoint."""

from __future__ import annotations

import datetime as dt
import http.cookies
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from typing import Any

from tests.peers.base import Answer, Call, Gate, Peer
from tests.peers.people import ADA, ALAN, GRACE, NOTES, TITLES, Person
from tests.peers.spec import Spec

TENANT = "diku"
USERNAME = "holdshelf"
PASSWORD = "folio-password-9d2a"
AWAITING = "Open - Awaiting pickup"
IN_TRANSIT = "Open - In transit"
NOT_YET_FILLED = "Open - Not yet filled"
PERMISSION = "circulation.requests.collection.get"


class FolioApi(Peer):
    def __init__(self) -> None:
        super().__init__(Spec("folio"))
        self.tenant, self.username, self.password = TENANT, USERNAME, PASSWORD
        self.access_lifetime, self.refresh_lifetime = 600, 604800
        self.access: set[str] = set()
        self.refresh: set[str] = set()  # not yet redeemed
        self.redeemed: set[str] = set()
        self.refused_tokens = 0  # data calls answered 401
        self.honour_tokens = True
        self.permitted = True
        self.loose_query = False  # True: every request is answered, whatever the query says
        self.login_gate: Gate | None = None
        self.refresh_gate: Gate | None = None
        self.service_points: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._tokens = threading.Lock()

    # -- commands ---------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        with self._tokens:
            self.access.clear()

    def end_sessions(self) -> None:
        with self._tokens:
            self.access.clear()
            self.refresh.clear()

    @property
    def logins(self) -> int:
        return self.count("POST", "/authn/login-with-expiry")

    @property
    def refreshes(self) -> int:
        return self.count("POST", "/authn/refresh")

    # -- data -------------------------------------------------------------------------------

    def add_service_point(self, code: str, *, embedded: bool = True) -> str:
        point_id = str(uuid.uuid4())
        self.service_points[point_id] = {
            "name": f"{code} circulation desk",
            "code": code,
            "discoveryDisplayName": f"{code} library",
            "pickupLocation": True,
            "embedded": embedded,
        }
        return point_id

    def add_request(
        self,
        barcode: str,
        person: Person | None,
        *,
        status: str,
        pickup: str | None,
        expires: str | None = None,
        title: str = TITLES[0],
    ) -> None:
        request: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "requestType": "Hold",
            "requestLevel": "Item",
            "requestDate": "2026-11-01T14:00:00.000+00:00",
            "patronComments": NOTES[0],
            "requesterId": str(uuid.uuid4()),
            "instanceId": str(uuid.uuid4()),
            "holdingsRecordId": str(uuid.uuid4()),
            "itemId": str(uuid.uuid4()),
            "status": status,
            "position": 1 + sum(r["item"]["barcode"] == barcode for r in self.requests),
            "instance": {"title": title, "identifiers": []},
            "item": {"barcode": barcode},
            "fulfillmentPreference": "Hold Shelf",
        }
        if person is not None:
            request["requester"] = {"firstName": person.first, "lastName": person.last}
            request["requester"]["barcode"] = person.card
        if pickup is not None:
            request["pickupServicePointId"] = pickup
            point = dict(self.service_points[pickup])
            if point.pop("embedded"):
                request["pickupServicePoint"] = point
        if expires is not None:
            request["holdShelfExpirationDate"] = expires
        self.requests.append(request)

    def close_request(self, barcode: str, person: Person, status: str) -> None:
        """What a self-check (Closed - Filled), a cancel or the expiry job did to the
        patron's open request on the item."""
        for request in self.requests:
            theirs = request.get("requester", {}).get("barcode") == person.card
            open_ = request["status"].startswith("Open")
            if request["item"]["barcode"] == barcode and theirs and open_:
                request["status"] = status
                return
        raise KeyError(barcode)

    def add_newer_request(self, barcode: str, person: Person, *, status: str, pickup: str) -> None:
        """A request placed after the others (a re-trap for another patron)."""
        self.add_request(barcode, person, status=status, pickup=pickup)
        self.requests[-1]["requestDate"] = "2026-11-25T09:00:00.000+00:00"

    # -- Okapi ------------------------------------------------------------------------------

    def handle(self, call: Call) -> Answer:
        if call.headers.get("x-okapi-tenant") != self.tenant:
            return Answer.text(400, "No such Tenant")
        route = {
            ("POST", "/authn/login-with-expiry"): self._login,
            ("POST", "/authn/refresh"): self._refresh,
            ("GET", "/circulation/requests"): self._requests,
        }.get((call.method, call.path))
        if route is None:
            return Answer.text(404, "No suitable module found")
        return route(call)

    def _login(self, call: Call) -> Answer:
        credentials = json.loads(call.body)
        for error in self.spec.errors("login-credentials.json", credentials):
            self.violations.append(f"login body: {error}")
        if (credentials.get("username"), credentials.get("password")) != (
            self.username,
            self.password,
        ):
            return self._errors("Wrong username or wrong password or account blocked")
        if self.login_gate is not None:
            self.login_gate.arrive()
        return self._tokens_answer()

    def _refresh(self, call: Call) -> Answer:
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie(call.headers.get("cookie", ""))
        token = jar["folioRefreshToken"].value if "folioRefreshToken" in jar else ""
        if self.refresh_gate is not None:
            self.refresh_gate.arrive()
        with self._tokens:
            fresh = token in self.refresh
            if fresh:
                self.refresh.discard(token)
                self.redeemed.add(token)
            elif token in self.redeemed:  # a leaked token: mod-authtoken revokes them all
                self.access.clear()
                self.refresh.clear()
        if not fresh:
            return self._errors("Invalid token")
        return self._tokens_answer()

    def _tokens_answer(self) -> Answer:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        with self._tokens:
            self.access.add(access)
            self.refresh.add(refresh)
        now = dt.datetime.now(dt.UTC)
        body = {
            "accessTokenExpiration": _instant(now, self.access_lifetime),
            "refreshTokenExpiration": _instant(now, self.refresh_lifetime),
        }
        answer = self.json(201, body, "login-response-with-expiry.json")
        answer.headers += [
            ("Set-Cookie", _cookie("folioAccessToken", access, self.access_lifetime, "/")),
            ("Set-Cookie", _cookie("folioRefreshToken", refresh, self.refresh_lifetime, "/authn")),
        ]
        return answer

    def _errors(self, message: str) -> Answer:  # mod-login answers every refusal with 422
        body = {"errors": [{"message": message, "code": "login.refused"}]}
        return self.json(422, body, "errors.json")

    def _requests(self, call: Call) -> Answer:
        with self._tokens:
            valid = self.honour_tokens and call.headers.get("x-okapi-token") in self.access
            self.refused_tokens += not valid
        if not valid:
            return Answer.text(401, "Access token has expired")
        if not self.permitted:
            return Answer.text(403, f"Access requires permission: {PERMISSION}")
        errors = self.spec.parameter_errors("getRequests", call.query, {})
        if errors:
            return Answer.text(400, "; ".join(errors))
        fault = self.fault()
        if fault is not None:
            return fault
        try:
            query, _, order = call.query.get("query", [""])[0].partition(" sortby ")
            matches = _cql(query) if query and not self.loose_query else (lambda r: True)
        except CqlError:
            return Answer.text(422, "Invalid CQL")
        found = [r for r in self.requests if matches(r)]
        if order:  # CQL sortby: one index, its modifier /sort.ascending or /sort.descending
            index, _, modifier = order.strip().partition("/")
            if modifier not in ("", "sort.ascending", "sort.descending"):
                return Answer.text(422, "Invalid CQL")
            found.sort(key=lambda r: str(_field(r, index)), reverse=modifier == "sort.descending")
        limit = int(call.query.get("limit", ["10"])[0])
        return self.json(
            200, {"requests": found[:limit], "totalRecords": len(found)}, "requests.json"
        )


def _instant(now: dt.datetime, seconds: int) -> str:
    return (now + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _cookie(name: str, value: str, max_age: int, path: str) -> str:
    return f"{name}={value}; Max-Age={max_age}; Path={path}; Secure; HTTPOnly; SameSite=Lax"


# -- CQL, as far as the connector's queries go -----------------------------------------------------


class CqlError(ValueError):
    pass


Predicate = Callable[[dict[str, Any]], bool]


_TOKEN = re.compile(r'\s*(\(|\)|==|"(?:\\.|[^"\\])*"|[^\s()"=]+)')


def _cql(query: str) -> Predicate:
    """A predicate for ``index=="term"`` clauses joined by and/or with parentheses. In a term
    an unescaped * or ? masks; a backslash makes the next character literal."""
    tokens = _tokens(query)
    predicate, rest = _or(tokens)
    if rest:
        raise CqlError("trailing tokens")
    return predicate


def _tokens(query: str) -> list[str]:
    tokens, position = [], 0
    while position < len(query.rstrip()):
        found = _TOKEN.match(query, position)
        if found is None:
            raise CqlError("unreadable")
        tokens.append(found.group(1))
        position = found.end()
    return tokens


def _or(tokens: list[str]) -> tuple[Predicate, list[str]]:
    left, tokens = _and(tokens)
    while tokens and tokens[0] == "or":
        right, tokens = _and(tokens[1:])
        left = _either(left, right)
    return left, tokens


def _and(tokens: list[str]) -> tuple[Predicate, list[str]]:
    left, tokens = _atom(tokens)
    while tokens and tokens[0] == "and":
        right, tokens = _atom(tokens[1:])
        left = _both(left, right)
    return left, tokens


def _either(a: Predicate, b: Predicate) -> Predicate:
    return lambda r: a(r) or b(r)


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda r: a(r) and b(r)


def _atom(tokens: list[str]) -> tuple[Predicate, list[str]]:
    if tokens and tokens[0] == "(":
        inner, rest = _or(tokens[1:])
        if not rest or rest[0] != ")":
            raise CqlError("unbalanced")
        return inner, rest[1:]
    if len(tokens) < 3 or tokens[1] != "==" or not tokens[2].startswith('"'):
        raise CqlError("not index==term")
    index, pattern = tokens[0], _term(tokens[2][1:-1])
    return (lambda r: pattern.fullmatch(str(_field(r, index))) is not None), tokens[3:]


def _term(text: str) -> re.Pattern[str]:
    out, escaped = [], False
    for char in text:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char != "^":  # an anchor; == matches the whole value anyway
            out.append(re.escape(char))
    if escaped:
        raise CqlError("dangling backslash")
    return re.compile("".join(out))


def _field(record: dict[str, Any], index: str) -> Any:
    value: Any = record
    for part in index.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else value


# -- the library the tests scan at --------------------------------------------------------------

WAITING_HERE = "5000001"  # Ada's request awaiting pickup at MAIN; Grace and Alan behind her
IN_TRANSIT_EAST = "5000002"
QUEUE_ONLY = "5000003"
FILLED = "5000004"
NO_CODE = "5000005"  # in transit to a service point FOLIO sends without its record
NO_REQUESTER_BARCODE = "5000006"
NO_PICKUP = "5000007"  # awaiting pickup, yet no pickup service point at all
SPECIAL = 'X*"\\1'  # CQL's quote, backslash and masking character in one barcode
UNKNOWN = "5009999"


def library() -> FolioApi:
    folio = FolioApi()
    main, east = folio.add_service_point("MAIN"), folio.add_service_point("EAST")
    far = folio.add_service_point("FAR", embedded=False)
    expires = "2026-12-05T05:59:59.000+00:00"  # the end of 4 December in Chicago
    folio.add_request(WAITING_HERE, GRACE, status=NOT_YET_FILLED, pickup=east)
    folio.add_request(WAITING_HERE, ADA, status=AWAITING, pickup=main, expires=expires)
    folio.add_request(WAITING_HERE, ALAN, status=NOT_YET_FILLED, pickup=main, title=TITLES[1])
    folio.add_request(IN_TRANSIT_EAST, GRACE, status=IN_TRANSIT, pickup=east, title=TITLES[2])
    folio.add_request(QUEUE_ONLY, ALAN, status=NOT_YET_FILLED, pickup=main)
    folio.add_request(FILLED, ADA, status="Closed - Filled", pickup=main)
    folio.add_request(NO_CODE, ALAN, status=IN_TRANSIT, pickup=far)
    folio.add_request(NO_REQUESTER_BARCODE, None, status=AWAITING, pickup=main)
    folio.add_request(NO_PICKUP, ALAN, status=AWAITING, pickup=None)
    folio.add_request(SPECIAL, ALAN, status=AWAITING, pickup=main, expires=expires)
    return folio
