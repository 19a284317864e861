"""Koha over its REST API (api/v1), signed in as an OAuth2 client (client credentials).

A scan is two reads: ``GET /items?external_id=`` finds the item's internal id (Koha's holds
know items by itemnumber, not barcode), then ``GET /holds?item_id=`` with
``x-koha-embed: patron`` names the waiting hold's card. Both ask ``_match=exact``: Koha's
default is ``contains``, which would match barcode 1234 for 123. The holds query asks only for
found holds (``W`` waiting, ``T`` in transit, ``P`` in processing), so Koha sends the patron
records of those few holds and not of the whole queue.

Of the embedded patron only ``cardnumber`` is read; names, contacts and addresses are dropped
where the JSON is parsed. The field names follow Koha's definitions (hold.yaml, item.yaml,
patron.yaml, paths/holds.yaml, items.yaml, oauth.yaml; see tests/peers/specs/koha/).
"""

from __future__ import annotations

import datetime as dt
import json
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

SYSTEM = "Koha"
API = "/api/v1"
ITEMS = API + "/items"
HOLDS = API + "/holds"
TOKEN = API + "/oauth/token"
# What the API client's patron needs for each read (x-koha-authorization in the paths files).
PERMISSION = {ITEMS: "catalogue", HOLDS: "reserveforothers (place_holds)"}
FOUND = ["W", "T", "P"]  # Koha::Hold: waiting, in transit, in processing


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)


class KohaConnector:
    """Thread-safe: one access token shared by every desk, fetched again shortly before
    ``expires_in`` runs out, or once when Koha answers 401."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        root = base_url.rstrip("/").removesuffix(API)  # the Koha URL, with or without /api/v1
        self._http = HttpJson(SYSTEM, root, timeout, log)
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._tokens: TokenCache[_Token] = TokenCache(clock)

    def trapped_hold(self, account: IlsAccount, item_barcode: str) -> TrapAnswer:
        item = self._item(account, item_barcode)
        if item is None:
            return NoHold("Koha knows no item with this barcode")
        return _answer(self._found_holds(account, item["item_id"]), item["item_id"])

    def hold_state(self, account: IlsAccount, item_barcode: str, is_patron: IsPatron) -> HoldState:
        """The item's found holds, then the item itself: a hold waiting (W) for the patron
        is still waiting; a checked-out item (item.yaml ``checked_out_date``) was picked up;
        otherwise the hold ended (cancelled, expired, or the item trapped for someone else).
        Koha keeps no "expired" apart from "cancelled" in what these reads show."""
        item = self._item(account, item_barcode)
        if item is None:
            return HoldState.UNKNOWN
        holds = self._found_holds(account, item["item_id"])
        mine = [h for h in holds if str(h.get("item_id")) == str(item["item_id"])]
        waiting = [h for h in mine if h.get("status") == "W"]
        if any(is_patron(_trapped(hold).card) for hold in waiting):
            return HoldState.WAITING
        if item.get("checked_out_date"):
            return HoldState.PICKED_UP
        return HoldState.ENDED

    def check(self, account: IlsAccount) -> str:
        self._get(account, ITEMS, {"q": json.dumps({"item_id": 0})})
        self._get(account, HOLDS, {"hold_id": "0", "_match": "exact"})
        return (
            f"Koha at {self._http.where}: token obtained for API client {self._client_id}; "
            "items and holds readable"
        )

    def close(self) -> None:
        self._tokens.clear()

    def _found_holds(self, account: IlsAccount, item_id: int) -> list[dict[str, Any]]:
        holds = self._get(
            account,
            HOLDS,
            {"item_id": str(item_id), "_match": "exact", "q": json.dumps({"status": FOUND})},
            {"x-koha-embed": "patron"},
        )
        if not isinstance(holds, list) or not all(isinstance(h, dict) for h in holds):
            raise unexpected_shape(SYSTEM, HOLDS)
        return holds

    def _item(self, account: IlsAccount, barcode: str) -> dict[str, Any] | None:
        """The item with this very barcode (its ``item_id`` checked), or None."""
        items = self._get(account, ITEMS, {"external_id": barcode, "_match": "exact"})
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise unexpected_shape(SYSTEM, ITEMS)
        # Koha compares barcodes as MySQL does (case-insensitively); so do we, and no looser.
        wanted = barcode.casefold()
        for item in items:
            external_id, item_id = item.get("external_id"), item.get("item_id")
            if isinstance(external_id, str) and external_id.casefold() == wanted:
                if not isinstance(item_id, int) or isinstance(item_id, bool):
                    raise unexpected_shape(SYSTEM, ITEMS)
                return item
        return None

    def _get(
        self,
        account: IlsAccount,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        def renew(stale: _Token | None) -> tuple[_Token, float]:
            return self._new_token(account.branch_id)

        token = self._tokens.get(renew)
        reply = self._send(account, token, path, query, headers)
        if reply.status == 401:  # expired or revoked early: one new token, one more try
            token = self._tokens.refused(token, renew)
            reply = self._send(account, token, path, query, headers)
            if reply.status == 401:
                raise IlsUnavailable(
                    f"Koha refused a new token for API client {self._client_id} (401)"
                )
        if reply.status == 403:
            raise refused(SYSTEM, path, 403, f"the API client needs {PERMISSION[path]}")
        if reply.status == 400 and headers and "x-koha-embed" in headers:
            raise refused(SYSTEM, path, 400, "this Koha may not embed patrons in holds")
        if reply.status != 200:
            raise refused(SYSTEM, path, reply.status)
        return json_of(reply, SYSTEM, path)

    def _send(
        self,
        account: IlsAccount,
        token: _Token,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str] | None,
    ) -> Reply:
        return self._http.send(
            "GET",
            path,
            branch=account.branch_id,
            query=query,
            headers={**(headers or {}), "Authorization": f"Bearer {token.value}"},
        )

    def _new_token(self, branch: str) -> tuple[_Token, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        reply = self._http.send("POST", TOKEN, branch=branch, form=form)
        if reply.status == 403:  # Koha::REST::V1::OAuth: the client did not verify
            raise IlsUnavailable(f"Koha refused the client credentials for {self._client_id}")
        if reply.status == 400:
            raise refused(SYSTEM, TOKEN, 400, "is the RESTOAuth2ClientCredentials preference on?")
        if reply.status != 200:
            raise refused(SYSTEM, TOKEN, reply.status)
        body = json_of(reply, SYSTEM, TOKEN)
        value = body.get("access_token") if isinstance(body, dict) else None
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value or not _positive_int(lifetime):
            raise unexpected_shape(SYSTEM, TOKEN)
        log.info("Koha: new access token for API client %s (branch %s)", self._client_id, branch)
        return _Token(value), usable_until(self._clock(), lifetime)


def _answer(holds: list[dict[str, Any]], item_id: int) -> TrapAnswer:
    """Only a found hold on this very item counts; the queue behind it does not."""
    mine = [h for h in holds if str(h.get("item_id")) == str(item_id)]
    first = {text_field(h.get("status")): h for h in reversed(mine)}
    if "W" in first:
        return _trapped(first["W"])
    if "T" in first:
        return InTransit(destination=_pickup_library(first["T"]))
    if "P" in first:
        return NoHold("Koha has this item's hold in processing")
    return NoHold()


def _trapped(hold: dict[str, Any]) -> Trapped:
    patron = hold.get("patron")
    if not isinstance(patron, dict):
        raise IlsUnavailable("Koha sent the waiting hold without its patron")
    card = patron.get("cardnumber")
    if not isinstance(card, str) or not card.strip():
        # Koha redacts patrons of libraries the API client may not see.
        raise IlsUnavailable("Koha withheld the card number of the waiting hold's patron")
    return Trapped(
        card=card,
        location=_pickup_library(hold),
        pickup_by=_date(hold.get("expiration_date")),
    )


def _pickup_library(hold: dict[str, Any]) -> str:
    library = hold.get("pickup_library_id")
    if not isinstance(library, str) or not library:
        raise unexpected_shape(SYSTEM, HOLDS)
    return library


def _date(value: Any) -> dt.date | None:
    if value is None:
        return None
    parsed = None
    if isinstance(value, str):
        try:
            parsed = dt.date.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise unexpected_shape(SYSTEM, HOLDS)
    return parsed


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
