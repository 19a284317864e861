"""A SIP2 ILS for the connector's tests, run as its own process: pysip2's server side answering
checkins like Koha (C4/SIP/Sip/MsgType.pm handle_checkin) or Evergreen (OpenILS/Application/
SIP2.pm handle_checkin), and item information like Evergreen (handle_item_info) or, for the
hs-koha account, like Koha (MsgType.pm handle_item_information: no CY, no CT), behind a
small wire that injects faults. A control port (HTTP, JSON) counts and arms them, and sets
what the ILS knows about an item:

    GET  /stats   logins per account, refused logins, connections, requests per message type,
                  the most requests one connection had unanswered at once
    POST /reset   zero the counters, disarm the faults, restore the items below
    POST /items   {"barcode": "X", "circulation": "04", "pickup": "MAIN", "card": "...", ...}:
                  add or replace item X; the other keys are Item's fields (home defaults to
                  MAIN, pickup null = no hold on it, card = its hold patron's, CARD unless
                  given); {"barcode": "X", "known": false} makes the ILS forget X. Answers
                  {"barcode": "X", "item": {...} or null}; 400 for an unknown key
    POST /drop    close every open connection (as an ILS dropping idle SIP clients)
    POST /faults  {"answers": [...], "requests": ["corrupt"], "delay": seconds}: the next
                  answers, in order, are "bad-checksum", "malformed" (truncated, valid
                  checksum), "garbage", "strip-checksum" (no AY/AZ), "crlf" (CR LF ending,
                  Koha's default), "resequence" (another AY, as a late answer), "drop"
                  (closed instead of answered), "slow" (held back ``delay`` seconds) or
                  "ok" (untouched); requests are "corrupt" (checksum damaged) or "ok"

Run: python sip2_ils.py [--tls-chain server.pem]; it prints {"port": .., "control": ..}.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import select
import socket
import ssl
import threading
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The patron whose hold the items fill, another patron an item may be trapped for, and a
# previous borrower (Koha's AA on checkin): none of this may reach Holdshelf's logs or
# exceptions; only the hold patron's card (CARD, OTHER_CARD) may reach its answers.
CARD = "21000000000017"
OTHER_CARD = "21000000000025"
PREVIOUS_BORROWER = "21000000000099"
NAME = "Jane Reader"
EMAIL = "jane@example.org"
PHONE = "555-0100"
TITLE = "Confessions of a Private Reader"
SECRETS = (CARD, OTHER_CARD, PREVIOUS_BORROWER, NAME, EMAIL, PHONE, TITLE)
KOHA_DA = f"{NAME} ({EMAIL}, {PHONE})"  # C4/SIP/ILS/Item.pm hold_patron_name, no template
SHELF_EXPIRES = "20261205    235900"  # Koha's timestamp() of a YYYY-MM-DD date; EG's sipdate
KOHA_DUE = "20261219    235900"  # AH of a checked-out item: Koha's timestamp()
EVERGREEN_DUE = "2026-12-19 23:59:00"  # Evergreen's default '%F %T' (SIP2/Item.pm)
CHARGED = ("04", "05")


@dataclass(frozen=True)
class Account:
    password: str
    location: str  # the SIP account's library (Koha: institution; Evergreen: workstation org)
    flavor: str = "koha"  # how it answers 09
    items: str = "evergreen"  # how it answers 17 (hs-main's and hs-west's predate Koha's 18)


ACCOUNTS = {
    "hs-main": Account("main-secret", "MAIN"),
    "hs-west": Account("west-secret", "WEST"),
    "hs-eg": Account("eg-secret", "MAIN", flavor="evergreen"),
    "hs-koha": Account("koha-secret", "MAIN", items="koha"),
}


@dataclass(frozen=True)
class Item:
    home: str  # AQ / circ lib
    pickup: str | None = None  # the pickup library of the hold it fills, if any
    circulation: str = "03"  # its 18 circulation status
    card: str = CARD  # the card of that hold's patron
    checkin_cm: str | None = None  # CM on checkin (Koha sends none; some servers do)
    message: str | None = None  # AF
    bare: bool = False  # a minimal server: CY and CV, nothing else
    in_transit_to: str | None = None  # 18: status 10's destination
    cy_in_18: bool = True  # Koha's 18 has no CY


INITIAL_ITEMS = {
    "HOLD-MAIN": Item("MAIN", pickup="MAIN", circulation="08"),
    "HOLD-MAIN-CM": Item("MAIN", pickup="MAIN", checkin_cm=SHELF_EXPIRES, message="Hold waiting"),
    "HOLD-MAIN-ISO": Item("MAIN", pickup="MAIN", checkin_cm="2026-12-05"),
    "HOLD-BARE": Item("MAIN", pickup="MAIN", bare=True),
    "HOLD-WEST": Item("MAIN", pickup="WEST", circulation="10", in_transit_to="WEST"),
    "WAITING-WEST": Item("WEST", pickup="WEST", circulation="08"),
    "SHELF-NO-CY": Item("MAIN", pickup="MAIN", circulation="08", cy_in_18=False),
    "PLAIN": Item("MAIN"),
    "HOME-WEST": Item("WEST"),
}
ITEMS = dict(INITIAL_ITEMS)  # what the ILS knows now: POST /items changes it, /reset restores it


def set_item(body: dict[str, Any]) -> Item | None:
    """POST /items: add, replace or (``"known": false``) forget one item."""
    body = dict(body)
    barcode = body.pop("barcode")
    if body.pop("known", True) is False:
        ITEMS.pop(barcode, None)
        return None
    names = {field.name for field in dataclasses.fields(Item)}
    if not isinstance(barcode, str) or not barcode or set(body) - names:
        raise ValueError(f"an item is a barcode and some of {', '.join(sorted(names))}")
    item = Item(**{"home": "MAIN", **body})
    ITEMS[barcode] = item
    return item


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.logins: Counter[str] = Counter()
        self.refused = 0
        self.connections = 0
        self.requests: Counter[str] = Counter()
        self.max_in_flight = 0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "logins": dict(self.logins),
                "refused": self.refused,
                "connections": self.connections,
                "requests": dict(self.requests),
                "max_in_flight": self.max_in_flight,
            }


# -- the ILS: pysip2 models for the 3M extension fields, and the handlers -------------------


def _models() -> tuple[type, type, type, type]:
    """Checkin and item-information answers with the fields Koha and Evergreen add, in the
    order they send them, registered with pysip2's codec for encoding."""
    from pysip2 import CheckinResponse, ItemInformationResponse
    from pysip2.models import F_TXN_DATE, MESSAGE_SPECS_BY_TYPE, MessageSpec, fix, ident

    class KohaCheckin(CheckinResponse, frozen=True, kw_only=True):
        permanent_location: str | None = None  # Koha sends AQ only for a known item
        call_number: str | None = None
        hold_patron_id: str | None = None
        destination_location: str | None = None
        hold_patron_name: str | None = None
        hold_pickup_date: str | None = None
        alert_type: str | None = None

    class EvergreenCheckin(KohaCheckin, frozen=True, kw_only=True):
        current_location: str | None = None
        home_phone: str | None = None
        owner: str | None = None

    class EvergreenItem(ItemInformationResponse, frozen=True, kw_only=True):
        destination_location: str | None = None
        hold_patron_id: str | None = None

    class KohaItem(ItemInformationResponse, frozen=True, kw_only=True):
        pass

    head = (fix("ok", 1), fix("resensitize", 1), fix("magnetic_media", 1), fix("alert", 1))
    koha = (  # MsgType.pm handle_checkin (CM: not Koha's, for servers that send it)
        *head,
        F_TXN_DATE,
        ident("institution_id", "AO"),
        ident("item_identifier", "AB"),
        ident("permanent_location", "AQ"),
        ident("title_identifier", "AJ"),
        ident("patron_identifier", "AA"),
        ident("call_number", "CS"),
        ident("hold_patron_id", "CY"),
        ident("destination_location", "CT"),
        ident("hold_patron_name", "DA"),
        ident("hold_pickup_date", "CM"),
        ident("alert_type", "CV"),
        ident("screen_message", "AF", repeatable=True),
    )
    evergreen = (  # SIP2.pm handle_checkin
        *head,
        F_TXN_DATE,
        ident("patron_identifier", "AA"),
        ident("item_identifier", "AB"),
        ident("title_identifier", "AJ"),
        ident("institution_id", "AO"),
        ident("current_location", "AP"),
        ident("permanent_location", "AQ"),
        ident("home_phone", "BF"),
        ident("owner", "BG"),
        ident("call_number", "CS"),
        ident("alert_type", "CV"),
        ident("screen_message", "AF", repeatable=True),
        ident("destination_location", "CT"),
        ident("hold_patron_id", "CY"),
        ident("hold_patron_name", "DA"),
    )
    item = (  # SIP2.pm handle_item_info
        fix("circulation_status", 2),
        fix("security_marker", 2),
        fix("fee_type", 2),
        F_TXN_DATE,
        ident("item_identifier", "AB"),
        ident("due_date", "AH"),
        ident("title_identifier", "AJ"),
        ident("current_location", "AP"),
        ident("permanent_location", "AQ"),
        ident("owner", "BG"),
        ident("hold_queue_length", "CF"),
        ident("hold_pickup_date", "CM"),
        ident("destination_location", "CT"),
        ident("hold_patron_id", "CY"),
        ident("screen_message", "AF", repeatable=True),
    )
    koha_item = (  # MsgType.pm handle_item_information: neither CY nor CT
        *item[:4],
        ident("screen_message", "AF", repeatable=True),  # "Item is damaged" comes first
        ident("item_identifier", "AB"),
        ident("title_identifier", "AJ"),
        ident("permanent_location", "AQ"),
        ident("current_location", "AP"),
        ident("owner", "BG"),
        ident("hold_queue_length", "CF"),
        ident("due_date", "AH"),
        ident("hold_pickup_date", "CM"),
    )
    for model, fields in (
        (KohaCheckin, koha),
        (EvergreenCheckin, evergreen),
        (EvergreenItem, item),
        (KohaItem, koha_item),
    ):
        command = "18" if issubclass(model, ItemInformationResponse) else "10"
        MESSAGE_SPECS_BY_TYPE[model] = MessageSpec(command, model, fields)
    return KohaCheckin, EvergreenCheckin, EvergreenItem, KohaItem


def _koha_checkin(model: type, req: Any, account: Account, now: str) -> Any:
    item = ITEMS.get(req.item_identifier)
    common = {
        "transaction_date": now,
        "institution_id": req.institution_id,
        "item_identifier": req.item_identifier,
    }
    if item is None:  # C4/SIP/ILS.pm checkin: alert 99, not ok, "Invalid Item"
        return model(
            ok="0",
            resensitize="N",
            magnetic_media="U",
            alert="Y",
            alert_type="99",
            screen_message=("Invalid Item",),
            **common,
        )
    branch = req.current_location or account.location  # MsgType.pm: AP if set
    hold, alert = {}, None
    if item.pickup:  # Transaction/Checkin.pm: ResFound, 01 here, 02 elsewhere
        alert = "01" if item.pickup == branch else "02"
        hold = {
            "hold_patron_id": item.card,
            "destination_location": item.pickup,
            "hold_patron_name": KOHA_DA,
        }
    elif item.home != branch:  # NeedsTransfer: 04, send to the home library
        alert, hold = "04", {"destination_location": item.home}
    if item.bare:
        return model(
            ok="1",
            resensitize="Y",
            magnetic_media="U",
            alert="Y",
            hold_patron_id=item.card,
            alert_type=alert,
            **common,
        )
    return model(
        ok="1",
        resensitize="Y",
        magnetic_media="U",
        alert="Y" if alert else "N",
        permanent_location=item.home,
        title_identifier=TITLE,
        patron_identifier=PREVIOUS_BORROWER,
        call_number="FIC REA",
        alert_type=alert,
        hold_pickup_date=item.checkin_cm,
        screen_message=(item.message,) if item.message else (),
        **common,
        **hold,
    )


def _evergreen_checkin(model: type, req: Any, account: Account, now: str) -> Any:
    item = ITEMS.get(req.item_identifier)
    common = {
        "transaction_date": now,
        "institution_id": req.institution_id,
        "item_identifier": req.item_identifier,
    }
    if item is None:  # the stub: not ok, CV 00
        return model(
            ok="0", resensitize="N", magnetic_media="N", alert="N", alert_type="00", **common
        )
    hold, alert = {}, None
    if item.pickup:  # SIP2/Checkin.pm handle_hold: 01 when pickup_lib is the workstation's
        alert = "01" if item.pickup == account.location else "02"
        hold = {
            "hold_patron_id": item.card,
            "destination_location": item.pickup,
            "hold_patron_name": NAME,
            "home_phone": PHONE,
        }
    return model(
        ok="1",
        resensitize="Y",
        magnetic_media="N",
        alert="Y" if alert else "N",
        patron_identifier=PREVIOUS_BORROWER,
        title_identifier=TITLE,
        current_location=item.home,
        permanent_location=item.home,
        owner=item.home,
        call_number="FIC REA",
        alert_type=alert,
        **common,
        **hold,
    )


def _unknown_item(model: type, req: Any, now: str) -> Any:
    """An item the ILS does not know, alike in both: Koha's handle_item_information and
    Evergreen's handle_item_info answer 01 01 01 (other, other, unknown), AB and an empty AJ."""
    return model(
        circulation_status="01",
        security_marker="01",
        fee_type="01",
        transaction_date=now,
        item_identifier=req.item_identifier,
        title_identifier="",
    )


def _evergreen_item(model: type, req: Any, now: str) -> Any:
    """SIP2.pm handle_item_info with SIP2/Item.pm get_item_details: CY, CM and CF 1 only
    while a captured hold is open (a hold cancelled on the shelf leaves the copy 08, CF 0);
    CT the hold's pickup library, the transit's destination or else the circ library."""
    item = ITEMS.get(req.item_identifier)
    if item is None:
        return _unknown_item(model, req, now)
    waiting = item.circulation == "08" and item.pickup is not None
    destination = item.in_transit_to or item.pickup or item.home  # CT: circ lib by default
    return model(
        circulation_status=item.circulation,
        security_marker="02",
        fee_type="01",
        transaction_date=now,
        item_identifier=req.item_identifier,
        due_date=EVERGREEN_DUE if item.circulation in CHARGED else None,
        title_identifier=TITLE,
        current_location=item.home,
        permanent_location=item.home,
        owner=item.home,
        hold_queue_length="1" if item.pickup else "0",
        hold_pickup_date=SHELF_EXPIRES if waiting else None,
        destination_location=destination,
        hold_patron_id=item.card if item.pickup and item.cy_in_18 else None,
    )


def _koha_item(model: type, req: Any, now: str) -> Any:
    """MsgType.pm handle_item_information, status from C4/SIP/ILS/Item.pm
    sip_circulation_status (10 transfer, 11 claim, 12 lost, 04 checked out, 08 a hold
    attached, 09 cart, 01 damaged, 02 on order, else 03): CF only when holds are queued,
    CM the waiting hold's expiry, AF "Item is damaged" for 01; never CY or CT."""
    item = ITEMS.get(req.item_identifier)
    if item is None:
        return _unknown_item(model, req, now)
    damaged = ("Item is damaged",) if item.circulation == "01" else ()
    return model(
        circulation_status=item.circulation,
        security_marker="02",
        fee_type="01",
        transaction_date=now,
        screen_message=damaged,
        item_identifier=req.item_identifier,
        title_identifier=TITLE,
        permanent_location=item.home,
        current_location=item.home,
        owner=item.home,
        hold_queue_length="1" if item.pickup else None,
        due_date=KOHA_DUE if item.circulation in CHARGED else None,
        hold_pickup_date=SHELF_EXPIRES if item.circulation == "08" and item.pickup else None,
    )


def build_ils(stats: Stats) -> Any:
    from pysip2 import CHECKIN, ITEM_INFORMATION, LOGIN, LoginResponse, SIP2Server

    koha, evergreen, evergreen_item, koha_item = _models()
    app = SIP2Server(institution_id="MAIN", login_required=True, library_name="Test Library")

    @app.route(LOGIN)
    async def login(req: Any, ctx: Any) -> Any:
        account = ACCOUNTS.get(req.login_user_id)
        with stats.lock:
            if account is None or account.password != req.login_password:
                stats.refused += 1
                return LoginResponse(ok="0")
            stats.logins[req.login_user_id] += 1
        ctx.connection.state["account"] = account
        return LoginResponse(ok="1")

    @app.route(CHECKIN)
    async def checkin(req: Any, ctx: Any) -> Any:
        account = ctx.connection.state["account"]
        if account.flavor == "evergreen":
            return _evergreen_checkin(evergreen, req, account, ctx.now_18())
        return _koha_checkin(koha, req, account, ctx.now_18())

    @app.route(ITEM_INFORMATION)
    async def item_information(req: Any, ctx: Any) -> Any:
        if ctx.connection.state["account"].items == "koha":
            return _koha_item(koha_item, req, ctx.now_18())
        return _evergreen_item(evergreen_item, req, ctx.now_18())

    return app


# -- the wire: a proxy in front of the ILS that counts and injects faults -------------------


def _resum(body: bytes) -> bytes:
    from pysip2 import calculate_checksum

    return body + calculate_checksum(body).encode("ascii") + b"\r"


def _damage(frame: bytes) -> bytes:
    """The frame with its last checksum digit changed (it ends ...AZ####CR)."""
    digit = b"1" if frame[-2:-1] != b"1" else b"2"
    return frame[:-2] + digit + b"\r"


def _resequence(frame: bytes) -> bytes:
    """The answer to another request: its sequence number (AY) changed, checksum redone."""
    at = frame.rfind(b"AY")
    digit = b"8" if frame[at + 2 : at + 3] == b"9" else b"9"
    return _resum(frame[:at] + b"AY" + digit + b"AZ")


ANSWER_FAULTS = {
    "bad-checksum": _damage,
    "malformed": lambda frame: _resum(b"10YNAY0AZ"),
    "garbage": lambda frame: b"\xff\xfe not SIP at all\r",
    "strip-checksum": lambda frame: frame[: frame.rfind(b"AY")] + b"\r",
    "crlf": lambda frame: frame + b"\n",
    "resequence": _resequence,
}


class Wire:
    """Lock-step proxy: one request frame in, one answer frame out, per connection thread."""

    def __init__(self, upstream: int, stats: Stats, tls: ssl.SSLContext | None) -> None:
        self.upstream, self.stats, self.tls = upstream, stats, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.answer_faults: deque[str] = deque()
        self.request_faults: deque[str] = deque()
        self.delay = 0.0
        self.clients: set[socket.socket] = set()

    def serve(self) -> None:
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def arm(self, answers: list[str], requests: list[str], delay: float | None) -> None:
        with self.lock:
            self.answer_faults.extend(answers)
            self.request_faults.extend(requests)
            if delay is not None:
                self.delay = delay

    def disarm(self) -> None:
        with self.lock:
            self.answer_faults.clear()
            self.request_faults.clear()
            self.delay = 0.0

    def drop_all(self) -> int:
        with self.lock:
            clients = list(self.clients)
        for client in clients:
            _hang_up(client)
        return len(clients)

    def _connection(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        with self.lock:
            self.clients.add(client)
        with self.stats.lock:
            self.stats.connections += 1
        try:
            with contextlib.suppress(OSError):
                self._relay(client, upstream)
        finally:
            with self.lock:
                self.clients.discard(client)
            _hang_up(client)
            upstream.close()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        incoming, answers = bytearray(), bytearray()
        while True:
            frame = _next_frame(client, incoming)
            if frame is None:
                return
            with self.stats.lock:
                self.stats.requests[frame[:2].decode("ascii", "replace")] += 1
            upstream.sendall(self._request_fault(frame))
            answer = _next_frame(upstream, answers)
            if answer is None:
                return
            if not self._answer(client, incoming, answer):
                return

    def _request_fault(self, frame: bytes) -> bytes:
        with self.lock:
            fault = self.request_faults.popleft() if self.request_faults else None
        return _damage(frame) if fault == "corrupt" else frame

    def _answer(self, client: socket.socket, incoming: bytearray, answer: bytes) -> bool:
        with self.lock:
            fault = self.answer_faults.popleft() if self.answer_faults else None
            delay = self.delay
        if fault == "drop":
            return False
        if fault == "slow":
            threading.Event().wait(delay)  # the ILS thinking; the client's timeout runs
        self._note_pipelining(client, incoming)
        client.sendall(ANSWER_FAULTS[fault](answer) if fault in ANSWER_FAULTS else answer)
        return True

    def _note_pipelining(self, client: socket.socket, incoming: bytearray) -> None:
        """A request waiting before this answer left means two were unanswered at once."""
        pending = bool(incoming) or bool(select.select([client], [], [], 0)[0])
        if isinstance(client, ssl.SSLSocket):
            pending = pending or client.pending() > 0
        with self.stats.lock:
            self.stats.max_in_flight = max(self.stats.max_in_flight, 2 if pending else 1)


def _next_frame(sock: socket.socket, buffer: bytearray) -> bytes | None:
    while b"\r" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buffer += chunk
    end = buffer.index(b"\r") + 1
    frame = bytes(buffer[:end])
    del buffer[:end]
    return frame


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS
    sock.close()


# -- the control port ---------------------------------------------------------------------


def control_server(wire: Wire, stats: Stats) -> ThreadingHTTPServer:
    class Control(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(stats.snapshot())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/reset":
                wire.disarm()
                with stats.lock:
                    stats.reset()
                ITEMS.clear()
                ITEMS.update(INITIAL_ITEMS)
                self._reply({})
            elif self.path == "/items":
                try:
                    item = set_item(body)
                except (KeyError, TypeError, ValueError) as exc:
                    self.send_error(400, str(exc))
                    return
                stored = dataclasses.asdict(item) if item else None
                self._reply({"barcode": body["barcode"], "item": stored})
            elif self.path == "/drop":
                self._reply({"dropped": wire.drop_all()})
            elif self.path == "/faults":
                wire.arm(body.get("answers", []), body.get("requests", []), body.get("delay"))
                self._reply({})
            else:
                self.send_error(404)

        def _reply(self, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Control)


async def _serve(tls: ssl.SSLContext | None) -> None:
    import anyio

    stats = Stats()
    async with build_ils(stats).start("127.0.0.1", 0) as ils_port:
        wire = Wire(ils_port, stats, tls)
        control = control_server(wire, stats)
        threading.Thread(target=wire.serve, daemon=True).start()
        threading.Thread(target=control.serve_forever, daemon=True).start()
        print(json.dumps({"port": wire.port, "control": control.server_address[1]}), flush=True)
        await anyio.sleep_forever()


def main() -> None:
    import anyio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tls-chain", help="PEM with the server certificate and its key")
    args = parser.parse_args()
    tls = None
    if args.tls_chain:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_chain)
    anyio.run(_serve, tls)


if __name__ == "__main__":
    main()
