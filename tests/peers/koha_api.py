"""Koha's REST API (api/v1) as a real HTTP server: OAuth2 client credentials, GET /items and
GET /holds with ``x-koha-embed: patron``, answering as Koha's definitions say (checked against
tests/peers/specs/koha/) and filtering as Koha does: ``_match`` defaults to ``contains``.

Commands for the tests: ``expire_tokens()`` revokes every token (the next call gets 401),
``without_patron_embed()`` turns it into a Koha whose holds cannot embed patrons, ``status``,
``delay`` and ``malformed`` inject faults into the data endpoints."""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from typing import Any

from tests.peers.base import Answer, Call, Gate, Peer
from tests.peers.people import ADA, ALAN, GRACE, NOTES, REDACTED, Person
from tests.peers.spec import Spec

CLIENT_ID = "holdshelf"
CLIENT_SECRET = "koha-client-secret-4c1e"
RESERVED = {"_match", "_order_by", "_page", "_per_page", "q"}
ROUTES = {("GET", "/api/v1/items"): "listItems", ("GET", "/api/v1/holds"): "listHolds"}
NEEDS = {"listItems": "catalogue", "listHolds": "reserveforothers"}


class KohaApi(Peer):
    def __init__(self) -> None:
        super().__init__(Spec("koha"))
        self.client_id, self.client_secret = CLIENT_ID, CLIENT_SECRET
        self.expires_in = 3600
        self.tokens: set[str] = set()
        self.permissions = {"catalogue", "reserveforothers"}
        self.holds_operation = "listHolds"
        self.token_gate: Gate | None = None
        self.loose_matching = False  # True: filters match "contains" whatever _match says
        self.honour_tokens = True  # False: every token is refused, even a fresh one
        self.patrons: dict[int, dict[str, Any]] = {}
        self.items: list[dict[str, Any]] = []
        self.holds: list[dict[str, Any]] = []
        self._token_lock = threading.Lock()

    # -- commands ---------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        with self._token_lock:
            self.tokens.clear()

    def without_patron_embed(self) -> None:
        """A Koha whose GET /holds does not list ``patron`` in x-koha-embed."""
        self.holds_operation = "listHolds-without-patron-embed"

    @property
    def token_requests(self) -> int:
        return self.count("POST", "/api/v1/oauth/token")

    # -- data -------------------------------------------------------------------------------

    def add_patron(self, person: Person, patron_id: int, *, redacted: bool = False) -> int:
        self.patrons[patron_id] = {
            "patron_id": patron_id,
            "cardnumber": None if redacted else person.card,
            "surname": person.last,
            "firstname": person.first,
            "email": person.email,
            "phone": person.phone,
            "mobile": person.phone,
            "address": person.street,
            "city": "Springfield",
            "postal_code": "62701",
            "date_of_birth": "1815-12-10",
            "library_id": "MAIN",
            "category_id": "PT",
            "restricted": False,
            "userid": person.email,
            "opac_notes": f"Prefers {person.first}",
            "updated_on": "2026-11-20T10:00:00+00:00",
        }
        return patron_id

    def add_item(self, item_id: int, barcode: str) -> int:
        self.items.append(
            {
                "item_id": item_id,
                "biblio_id": item_id * 10,
                "external_id": barcode,
                "home_library_id": "MAIN",
                "holding_library_id": "MAIN",
                "callnumber": "823.8 BUR",
                "location": "GEN",
                "internal_notes": NOTES[1],
                "not_for_loan_status": 0,
                "damaged_status": 0,
                "lost_status": 0,
                "withdrawn": 0,
                "holds_count": 3,
                "checked_out_date": None,
                "timestamp": "2026-11-20T10:00:00+00:00",
            }
        )
        return item_id

    def check_out(self, item_id: int, on: str = "2026-11-30") -> None:
        """The waiting hold's patron took the item at a self-check: Koha fills the hold (it
        moves to old_reserves) and the item is on loan."""
        self.end_waiting_hold(item_id)
        next(i for i in self.items if i["item_id"] == item_id)["checked_out_date"] = on

    def end_waiting_hold(self, item_id: int) -> None:
        """Cancelled or expired at the ILS: the hold is gone from the current holds."""
        self.holds = [h for h in self.holds if not (h["item_id"] == item_id and h["status"] == "W")]

    def add_hold(
        self,
        item_id: int,
        patron_id: int,
        *,
        status: str | None,
        pickup: str = "MAIN",
        expires: str | None = None,
        priority: int = 0,
    ) -> None:
        self.holds.append(
            {
                "hold_id": 9000 + len(self.holds),
                "patron_id": patron_id,
                "hold_date": "2026-11-01",
                "biblio_id": item_id * 10,
                "pickup_library_id": pickup,
                "notes": NOTES[0],
                "priority": priority,
                "status": status,
                "timestamp": "2026-11-20T10:00:00+00:00",
                "item_id": item_id,
                "waiting_date": "2026-11-20" if status == "W" else None,
                "expiration_date": expires,
                "lowest_priority": False,
                "suspended": False,
                "non_priority": False,
                "item_level": True,
            }
        )

    # -- the API ----------------------------------------------------------------------------

    def handle(self, call: Call) -> Answer:
        if (call.method, call.path) == ("POST", "/api/v1/oauth/token"):
            return self._token(call)
        operation = ROUTES.get((call.method, call.path))
        if operation is None:
            return self.json(404, {"error": "Not found."}, "error.json")
        if call.path == "/api/v1/holds":
            operation = self.holds_operation
        return self._read(operation, call)

    def _token(self, call: Call) -> Answer:
        form = urllib.parse.parse_qs(call.body.decode())
        one = {k: v[0] for k, v in form.items()}
        if "grant_type" not in one:  # required formData parameter
            return self.json(400, {"error": "Missing property."}, "error.json")
        if one["grant_type"] != "client_credentials":
            return self.json(400, {"error": "Unimplemented grant type"}, "error.json")
        if (one.get("client_id"), one.get("client_secret")) != (self.client_id, self.client_secret):
            return self.json(403, {"error": "unauthorized_client"}, "error.json")
        if self.token_gate is not None:
            self.token_gate.arrive()
        token = secrets.token_hex(16)
        with self._token_lock:
            self.tokens.add(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return self.json(200, body, "token.json")

    def _read(self, operation: str, call: Call) -> Answer:
        with self._token_lock:
            token = call.headers.get("authorization", "").removeprefix("Bearer ")
            signed_in = self.honour_tokens and token in self.tokens
        if not signed_in:
            return self.json(401, {"error": "Authentication failure."}, "error.json")
        if NEEDS[operation.split("-")[0]] not in self.permissions:
            return self.json(
                403,
                {"error": "Authorization failure. Missing required permission(s)."},
                "error.json",
            )
        errors = self.spec.parameter_errors(operation, call.query, call.headers)
        if errors:  # as Koha's OpenAPI validation answers
            return self.json(400, {"errors": errors, "status": 400}, "error.json")
        fault = self.fault()
        if fault is not None:
            return fault
        records = self.items if operation == "listItems" else self.holds
        query = {**call.query, "_match": ["contains"]} if self.loose_matching else call.query
        found = [r for r in records if _selected(r, query)]
        if operation == "listItems":
            return self.json(200, found, self.spec.operations[operation]["response"])
        return self._holds(found, call.headers.get("x-koha-embed", ""))

    def _holds(self, holds: list[dict[str, Any]], embed: str) -> Answer:
        out = []
        for hold in holds:
            hold = dict(hold)
            if "patron" in embed.split(","):
                hold["patron"] = self.patrons[hold["patron_id"]]
                for error in self.spec.errors("patron.json", hold["patron"]):
                    self.violations.append(f"embedded patron: {error}")
            out.append(hold)
        return self.json(200, out, "holds.json")

    def fault_answer(self, status: int) -> Answer:
        body = {
            "error": "Something went wrong, check Koha logs for details.",
            "error_code": "internal_server_error",
        }
        return self.json(status, body, "error.json")


def _selected(record: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """Koha's query building: each filter parameter with ``_match`` (default ``contains``),
    then every ``q`` object (a field's list means any of its values)."""
    match = query.get("_match", ["contains"])[0]
    for name, values in query.items():
        if name not in RESERVED and not _matches(record.get(name), values[0], match):
            return False
    for text in query.get("q", []):
        for name, wanted in json.loads(text).items():
            options = wanted if isinstance(wanted, list) else [wanted]
            if record.get(name) not in options:
                return False
    return True


def _matches(field: Any, value: str, match: str) -> bool:
    text, value = ("" if field is None else str(field)).casefold(), value.casefold()
    if match == "exact":
        return text == value
    if match == "starts_with":
        return text.startswith(value)
    if match == "ends_with":
        return text.endswith(value)
    return value in text


# -- the library the tests scan at --------------------------------------------------------------

WAITING_HERE = "39010000000101"  # Ada's waiting hold at MAIN; Grace and Alan queue behind her
IN_TRANSIT = "39010000000102"  # Grace's hold, on its way to EAST
QUEUE_ONLY = "39010000000103"  # holds placed, none found yet
IN_PROCESSING = "39010000000104"
NO_HOLDS = "39010000000105"
WITHHELD = "39010000000106"  # waiting for a patron the API client may not see
NO_EXPIRY = "39010000000107"
CONTAINED = "3901000000010"  # a prefix of the barcodes above: item 10, no holds
UNKNOWN = "39010000009999"


def library() -> KohaApi:
    koha = KohaApi()
    ada, grace = koha.add_patron(ADA, 1), koha.add_patron(GRACE, 2)
    alan, hedy = koha.add_patron(ALAN, 3), koha.add_patron(REDACTED, 4, redacted=True)
    for item_id, barcode in [
        (101, WAITING_HERE), (102, IN_TRANSIT), (103, QUEUE_ONLY), (104, IN_PROCESSING),
        (105, NO_HOLDS), (106, WITHHELD), (107, NO_EXPIRY), (10, CONTAINED),
    ]:  # fmt: skip
        koha.add_item(item_id, barcode)
    koha.add_hold(101, grace, status=None, priority=1)  # the queue comes first in the answer
    koha.add_hold(101, ada, status="W", expires="2026-12-04")
    koha.add_hold(101, alan, status=None, priority=2)
    koha.add_hold(102, grace, status="T", pickup="EAST")
    koha.add_hold(103, ada, status=None, priority=1)
    koha.add_hold(103, alan, status=None, priority=2)
    koha.add_hold(104, alan, status="P")
    koha.add_hold(106, hedy, status="W", expires="2026-12-04")
    koha.add_hold(107, alan, status="W")
    return koha
