"""The SIP2 connector against a real SIP2 server process (tests/peers/sip2_ils.py: pysip2's
server side answering as Koha and Evergreen do), with faults injected on the wire."""

from __future__ import annotations

import datetime as dt
import json
import logging
import select
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from holdshelf.ils.answers import HoldState, IlsAccount, IlsUnavailable, InTransit, NoHold, Trapped
from holdshelf.ils.sip2 import Sip2Connector
from holdshelf.ils.sip2_wire import ChecksumError, checksum, read_answer, request, sip_date
from tests.helpers.certificates import make_certificates
from tests.helpers.servers import free_port
from tests.peers.sip2_ils import CARD, OTHER_CARD, SECRETS

PEER = Path(__file__).parent / "peers" / "sip2_ils.py"
MAIN = IlsAccount("MAIN", "MAIN", "hs-main", "main-secret")
WEST = IlsAccount("WEST", "WEST", "hs-west", "west-secret")
EVERGREEN = IlsAccount("MAIN", "MAIN", "hs-eg", "eg-secret")
KOHA = IlsAccount("MAIN", "MAIN", "hs-koha", "koha-secret")  # its 18 is Koha's: no CY, no CT
SHELF_EXPIRES = dt.date(2026, 12, 5)


@dataclass(frozen=True)
class Peer:
    port: int
    control: int

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        url = f"http://127.0.0.1:{self.control}{path}"
        with urllib.request.urlopen(urllib.request.Request(url, data), timeout=5) as reply:
            return json.loads(reply.read())

    def stats(self) -> dict[str, Any]:
        return self._call("/stats")

    def reset(self) -> None:
        self._call("/reset", {})

    def drop(self) -> None:
        self._call("/drop", {})

    def arm(
        self, answers: tuple[str, ...] = (), requests: tuple[str, ...] = (), delay: float = 0.0
    ) -> None:
        self._call("/faults", {"answers": answers, "requests": requests, "delay": delay})

    def item(self, barcode: str, **fields: Any) -> None:
        """What the ILS knows of the item now (until the next reset): Item's fields."""
        self._call("/items", {"barcode": barcode, **fields})


def _start_peer(folder: Path, *args: str) -> Iterator[Peer]:
    log = folder / "peer.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, str(PEER), *args], stdout=subprocess.PIPE, stderr=errors
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready else b""
        if not line:
            pytest.fail(f"the SIP2 peer did not start: {log.read_text()[-2000:]}")
        ports = json.loads(line)
        yield Peer(ports["port"], ports["control"])
    finally:
        process.terminate()
        process.wait(5)


def library_environment(peer: Peer) -> dict[str, str]:
    """Holdshelf's [ils] for the peer: MAIN is its MAIN, EAST its WEST, each branch with its
    own SIP account."""
    return {
        "HOLDSHELF_ILS__KIND": "sip2",
        "HOLDSHELF_ILS__HOST": "127.0.0.1",
        "HOLDSHELF_ILS__PORT": str(peer.port),
        "HOLDSHELF_ILS__INSTITUTION": "MAIN",
        "HOLDSHELF_BRANCHES__MAIN__ILS_LOGIN": "hs-main",
        "HOLDSHELF_BRANCHES__MAIN__ILS_PASSWORD": "main-secret",
        "HOLDSHELF_BRANCHES__EAST__ILS_LOCATION": "WEST",
        "HOLDSHELF_BRANCHES__EAST__ILS_LOGIN": "hs-west",
        "HOLDSHELF_BRANCHES__EAST__ILS_PASSWORD": "west-secret",
    }


@pytest.fixture(scope="module")
def ils(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    yield from _start_peer(tmp_path_factory.mktemp("sip2"))


@pytest.fixture(scope="module")
def tls_ils(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Path]]:
    folder = tmp_path_factory.mktemp("sip2-tls")
    ca_file = make_certificates(folder).ca_file
    for peer in _start_peer(folder, "--tls-chain", str(folder / "server.pem")):
        yield peer, ca_file


@pytest.fixture(autouse=True)
def _fresh_peer(ils: Peer) -> None:
    ils.reset()


@pytest.fixture
def connect(ils: Peer) -> Iterator[Callable[..., Sip2Connector]]:
    made: list[Sip2Connector] = []

    def make(**options: Any) -> Sip2Connector:
        options = {"institution": "MAIN", "timeout": 3.0, "port": ils.port, **options}
        connector = Sip2Connector("127.0.0.1", **options)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


# -- what the answers mean ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "barcode", "expected"),
    [
        (MAIN, "HOLD-MAIN", Trapped(CARD, "MAIN")),
        (MAIN, "HOLD-MAIN-CM", Trapped(CARD, "MAIN", SHELF_EXPIRES, "Hold waiting")),
        (MAIN, "HOLD-MAIN-ISO", Trapped(CARD, "MAIN", SHELF_EXPIRES)),
        (MAIN, "HOLD-BARE", Trapped(CARD, "MAIN")),  # CY and CV only: CT, AQ, DA missing
        (MAIN, "HOLD-WEST", InTransit("WEST")),
        (WEST, "HOLD-MAIN", InTransit("MAIN")),  # the ILS decides by the AP we send
        (WEST, "HOLD-WEST", Trapped(CARD, "WEST")),
        (MAIN, "PLAIN", NoHold()),
        (MAIN, "HOME-WEST", NoHold()),  # CV 04 with CT: goes home, fills no hold
        (MAIN, "NO-SUCH-ITEM", NoHold("Invalid Item")),  # Koha: CV 99, AF
        (EVERGREEN, "HOLD-MAIN", Trapped(CARD, "MAIN")),
        (EVERGREEN, "HOLD-WEST", InTransit("WEST")),
        (EVERGREEN, "PLAIN", NoHold()),
        (EVERGREEN, "NO-SUCH-ITEM", NoHold()),
    ],
)
def test_checkin_answers(connect, account: IlsAccount, barcode: str, expected) -> None:
    assert connect().trapped_hold(account, barcode) == expected


@pytest.mark.parametrize(
    ("barcode", "expected"),
    [
        ("HOLD-MAIN", Trapped(CARD, "MAIN", SHELF_EXPIRES)),
        ("HOLD-WEST", InTransit("WEST")),  # status 10
        ("WAITING-WEST", InTransit("WEST")),  # 08, but on another library's shelf
        ("PLAIN", NoHold()),  # 03 with CT = its circ library, as Evergreen sends
        ("NO-SUCH-ITEM", NoHold()),
    ],
)
def test_item_information_answers(connect, ils: Peer, barcode: str, expected) -> None:
    assert connect(lookup="item-information").trapped_hold(MAIN, barcode) == expected
    assert "09" not in ils.stats()["requests"]  # reads without checking in


def test_item_information_without_the_hold_patron_is_not_a_guess(connect) -> None:
    with pytest.raises(IlsUnavailable, match=r"not for whom \(no CY\)"):
        connect(lookup="item-information").trapped_hold(MAIN, "SHELF-NO-CY")


def test_an_unknown_lookup_is_refused() -> None:
    with pytest.raises(ValueError, match="lookup"):
        Sip2Connector("127.0.0.1", 6001, institution="MAIN", lookup="patron")


# -- the sync's question: hold_state ----------------------------------------------------------

WAITING, PICKED_UP, ENDED, UNKNOWN = (
    HoldState.WAITING,
    HoldState.PICKED_UP,
    HoldState.ENDED,
    HoldState.UNKNOWN,
)
ON_SHELF = {"circulation": "08", "pickup": "MAIN"}  # a hold waits on it, for CARD by default
# (the item as the ILS has it, Koha's state, Evergreen's state; None: that server cannot say so)
HOLD_STATES: list[tuple[str, dict[str, Any] | None, HoldState | None, HoldState | None]] = [
    ("waiting", ON_SHELF, WAITING, WAITING),
    # Koha's 18 names no patron: an item trapped for another patron still reads as waiting.
    ("trapped-for-another", {**ON_SHELF, "card": OTHER_CARD}, WAITING, ENDED),
    ("cancelled-on-the-shelf", {"circulation": "08"}, None, ENDED),  # Evergreen: CF 0, no CY
    ("checked-out", {"circulation": "04"}, PICKED_UP, PICKED_UP),
    ("checked-out-not-recalled", {"circulation": "05"}, PICKED_UP, PICKED_UP),
    ("unknown-item", None, UNKNOWN, UNKNOWN),  # 01 01 01, AB, empty AJ
    ("other-damaged", {"circulation": "01"}, UNKNOWN, UNKNOWN),  # Koha: AF "Item is damaged"
    ("not-a-sip2-status", {"circulation": "99"}, UNKNOWN, UNKNOWN),
    ("on-order", {"circulation": "02"}, ENDED, ENDED),
    ("back-on-the-shelf", {"circulation": "03"}, ENDED, ENDED),
    ("in-process", {"circulation": "06"}, ENDED, ENDED),
    ("recalled", {"circulation": "07"}, ENDED, ENDED),
    ("to-be-reshelved", {"circulation": "09"}, ENDED, ENDED),
    ("in-transit-home", {"circulation": "10", "in_transit_to": "WEST"}, ENDED, ENDED),
    ("in-transit-to-a-hold", {"circulation": "10", "pickup": "WEST"}, ENDED, ENDED),  # EG: CY
    ("claimed-returned", {"circulation": "11"}, ENDED, ENDED),
    ("lost", {"circulation": "12"}, ENDED, ENDED),
    ("missing", {"circulation": "13"}, ENDED, ENDED),
]
HOLD_STATE_CASES = [
    pytest.param(account, item, expected, id=f"{name}-{flavor}")
    for name, item, koha, evergreen in HOLD_STATES
    for account, flavor, expected in ((KOHA, "koha", koha), (EVERGREEN, "evergreen", evergreen))
    if expected is not None
]


class Patron:
    """The sync's ``is_patron``: recognises one card, remembers what it was asked."""

    def __init__(self, card: str = CARD) -> None:
        self.card = card
        self.asked: list[str] = []

    def __call__(self, card: str) -> bool:
        self.asked.append(card)
        return card == self.card


@pytest.mark.parametrize(("account", "item", "expected"), HOLD_STATE_CASES)
def test_hold_states(connect, ils: Peer, account: IlsAccount, item, expected) -> None:
    if item is None:
        ils.item("ITEM", known=False)
    else:
        ils.item("ITEM", **item)
    patron = Patron()
    assert connect().hold_state(account, "ITEM", patron) is expected
    named = account is EVERGREEN and item is not None and item.get("pickup") is not None
    if named and item["circulation"] == "08":  # the card only ever goes to is_patron
        assert patron.asked == [item.get("card", CARD)]
    else:
        assert patron.asked == []
    assert ils.stats()["requests"].get("17") == 1


@pytest.mark.parametrize("lookup", ["checkin", "item-information"])
def test_hold_state_reads_without_checking_in(connect, ils: Peer, lookup: str) -> None:
    connector = connect(lookup=lookup)
    for account in (MAIN, KOHA, EVERGREEN):
        assert connector.hold_state(account, "HOLD-MAIN", Patron()) is WAITING
    assert connector.hold_state(EVERGREEN, "HOLD-WEST", Patron()) is ENDED  # 10, not 02
    requests = ils.stats()["requests"]
    assert requests["17"] == 4
    assert "09" not in requests


def test_hold_state_follows_the_hold_from_shelf_to_checkout(connect, ils: Peer) -> None:
    connector = connect()
    for account in (KOHA, EVERGREEN):
        ils.item("SYNCED", **ON_SHELF)
        assert connector.hold_state(account, "SYNCED", Patron()) is WAITING
        ils.item("SYNCED", circulation="04")  # checked out at a self-check
        assert connector.hold_state(account, "SYNCED", Patron()) is PICKED_UP
        ils.item("SYNCED", circulation="03")  # returned since
        assert connector.hold_state(account, "SYNCED", Patron()) is ENDED
    stats = ils.stats()
    assert stats["logins"] == {"hs-koha": 1, "hs-eg": 1}  # a sync round keeps its connections
    assert stats["requests"]["17"] == 6


def test_hold_state_after_the_ils_dropped_the_connection(connect, ils: Peer) -> None:
    connector = connect()
    assert connector.hold_state(EVERGREEN, "HOLD-MAIN", Patron()) is WAITING
    ils.drop()  # idle between two sync rounds: asked again on a new connection
    assert connector.hold_state(EVERGREEN, "HOLD-MAIN", Patron()) is WAITING
    assert ils.stats()["logins"] == {"hs-eg": 2}


@pytest.mark.parametrize(
    ("timeout", "faults", "reason"),
    [
        (3.0, ("ok", "drop"), r"^the ILS closed the SIP connection$"),
        (0.3, ("ok", "slow"), r"^the ILS did not answer within 0\.3 s$"),
        (3.0, ("ok", *("bad-checksum",) * 3), r"^the SIP2 answer failed its checksum$"),
    ],
)
def test_hold_state_when_the_ils_cannot_say(
    connect, ils: Peer, timeout: float, faults: tuple[str, ...], reason: str
) -> None:
    connector = connect(timeout=timeout)
    ils.arm(answers=faults, delay=2.0)
    patron = Patron()
    with pytest.raises(IlsUnavailable, match=reason) as caught:
        connector.hold_state(EVERGREEN, "HOLD-MAIN", patron)
    assert "\n" not in str(caught.value)
    assert patron.asked == []
    ils.reset()
    assert connector.hold_state(EVERGREEN, "HOLD-MAIN", patron) is WAITING  # the next round


# -- connections ----------------------------------------------------------------------------


def test_one_login_serves_every_call_of_a_branch(connect, ils: Peer) -> None:
    connector = connect()
    for barcode in ("HOLD-MAIN", "PLAIN", "HOLD-WEST", "HOLD-MAIN"):
        connector.trapped_hold(MAIN, barcode)
    stats = ils.stats()
    assert stats["logins"] == {"hs-main": 1}
    assert stats["connections"] == 1
    assert stats["requests"]["09"] == 4


def test_each_branch_account_has_its_own_connection(connect, ils: Peer) -> None:
    connector = connect()
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
    assert connector.trapped_hold(WEST, "HOLD-WEST") == Trapped(CARD, "WEST")
    assert connector.trapped_hold(MAIN, "PLAIN") == NoHold()
    assert ils.stats()["logins"] == {"hs-main": 1, "hs-west": 1}


def test_a_connection_the_ils_dropped_is_logged_in_again(connect, ils: Peer) -> None:
    connector = connect()
    connector.trapped_hold(MAIN, "PLAIN")
    ils.drop()
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
    assert ils.stats()["logins"] == {"hs-main": 2}


def test_a_checkin_whose_answer_was_lost_is_asked_again_once(connect, ils: Peer) -> None:
    connector = connect()
    connector.trapped_hold(MAIN, "PLAIN")
    ils.arm(answers=("drop",))  # the ILS checked it in; its answer never came
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
    stats = ils.stats()
    assert stats["requests"]["09"] == 3
    assert stats["logins"] == {"hs-main": 2}


def test_a_new_connection_that_drops_is_not_retried(connect, ils: Peer) -> None:
    connector = connect()
    ils.arm(answers=("ok", "drop"))  # the login is answered, the checkin is not
    with pytest.raises(IlsUnavailable, match=r"^the ILS closed the SIP connection$"):
        connector.trapped_hold(MAIN, "HOLD-MAIN")
    assert ils.stats()["requests"]["09"] == 1
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")


def test_close_drops_the_connections(connect, ils: Peer) -> None:
    connector = connect()
    connector.trapped_hold(MAIN, "PLAIN")
    connector.close()
    connector.trapped_hold(MAIN, "PLAIN")
    assert ils.stats()["logins"] == {"hs-main": 2}


def test_two_threads_on_one_account_take_turns_on_its_connection(connect, ils: Peer) -> None:
    connector = connect(timeout=5.0)
    ils.arm(answers=("slow",) * 9, delay=0.05)  # a login and 8 checkins, each held back
    start = threading.Barrier(2)
    answers: dict[str, list[object]] = {"HOLD-MAIN": [], "HOLD-WEST": []}

    def scan(barcode: str) -> None:
        start.wait()
        for _ in range(4):
            answers[barcode].append(connector.trapped_hold(MAIN, barcode))

    threads = [threading.Thread(target=scan, args=(barcode,)) for barcode in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {
        "HOLD-MAIN": [Trapped(CARD, "MAIN")] * 4,
        "HOLD-WEST": [InTransit("WEST")] * 4,
    }
    stats = ils.stats()
    assert stats["logins"] == {"hs-main": 1}
    assert stats["max_in_flight"] == 1  # never a second request before the first's answer


# -- faults ---------------------------------------------------------------------------------


def test_an_ils_slower_than_the_timeout(connect, ils: Peer) -> None:
    connector = connect(timeout=0.3)
    ils.arm(answers=("ok", "slow"), delay=2.0)
    started = time.monotonic()
    with pytest.raises(IlsUnavailable, match=r"^the ILS did not answer within 0\.3 s$"):
        connector.trapped_hold(MAIN, "HOLD-WEST")
    assert time.monotonic() - started < 1.5
    # The late answer (in transit) arrives on the old connection, not as this one's:
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
    assert ils.stats()["logins"] == {"hs-main": 2}


def test_a_login_slower_than_the_timeout(connect, ils: Peer) -> None:
    ils.arm(answers=("slow",), delay=2.0)
    with pytest.raises(IlsUnavailable, match=r"did not answer within 0\.3 s"):
        connect(timeout=0.3).trapped_hold(MAIN, "PLAIN")


@pytest.mark.parametrize("fault", ["bad-checksum", "malformed", "garbage"])
def test_a_damaged_answer_is_asked_for_again(connect, ils: Peer, fault: str) -> None:
    ils.arm(answers=("ok", fault))
    assert connect().trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
    assert ils.stats()["requests"]["97"] == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("bad-checksum", "the SIP2 answer failed its checksum"),
        ("malformed", "the ILS answered with a truncated SIP2 message"),
        ("garbage", "the ILS answered with an unknown SIP2 message"),
    ],
)
def test_answers_that_stay_damaged(connect, ils: Peer, fault: str, reason: str) -> None:
    connector = connect()
    ils.arm(answers=("ok", fault, fault, fault))
    with pytest.raises(IlsUnavailable, match=f"^{reason}$"):
        connector.trapped_hold(MAIN, "HOLD-MAIN")
    assert ils.stats()["requests"]["97"] == 2
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")  # a new login


def test_a_request_the_ils_could_not_read_is_sent_again(connect, ils: Peer) -> None:
    ils.arm(requests=("ok", "corrupt"))  # the ILS answers 96 to the damaged checkin
    assert connect().trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
    assert ils.stats()["requests"]["09"] == 2


def test_answers_without_error_detection_and_with_cr_lf(connect, ils: Peer) -> None:
    connector = connect()
    ils.arm(answers=("strip-checksum", "crlf", "crlf", "strip-checksum"))
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
    assert connector.trapped_hold(MAIN, "HOLD-WEST") == InTransit("WEST")
    assert connector.trapped_hold(MAIN, "PLAIN") == NoHold()
    assert "97" not in ils.stats()["requests"]  # read as they came, not asked for again


def test_an_answer_to_another_request_is_not_taken(connect, ils: Peer) -> None:
    connector = connect()
    ils.arm(answers=("ok", "resequence"))
    with pytest.raises(IlsUnavailable, match=r"^the ILS answered another SIP2 request"):
        connector.trapped_hold(MAIN, "HOLD-MAIN")
    assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")


@pytest.mark.parametrize(
    "account",
    [
        IlsAccount("MAIN", "MAIN", "hs-main", "wrong"),
        IlsAccount("MAIN", "MAIN", "hs-nobody", "main-secret"),
    ],
)
def test_a_refused_login(connect, ils: Peer, account: IlsAccount) -> None:
    with pytest.raises(IlsUnavailable, match=f"^the ILS refused the SIP login {account.login}$"):
        connect().trapped_hold(account, "HOLD-MAIN")
    assert ils.stats()["refused"] == 1


def test_a_branch_without_a_sip_login(connect) -> None:
    with pytest.raises(IlsUnavailable, match="branch MAIN has no SIP login"):
        connect().trapped_hold(IlsAccount("MAIN", "MAIN"), "HOLD-MAIN")


def test_an_unreachable_ils(connect) -> None:
    with pytest.raises(IlsUnavailable, match=r"could not be reached \(Connection refused\)"):
        connect(port=free_port()).trapped_hold(MAIN, "HOLD-MAIN")


def test_a_barcode_that_cannot_be_sent(connect, ils: Peer) -> None:
    with pytest.raises(IlsUnavailable, match="cannot be sent over SIP2"):
        connect().trapped_hold(MAIN, "HOLD|MAIN")
    assert "09" not in ils.stats()["requests"]


# -- check ----------------------------------------------------------------------------------


def test_check_logs_in_and_asks_the_status(connect, ils: Peer) -> None:
    connector = connect()
    line = f"SIP2 127.0.0.1:{ils.port} as hs-main: online (ACS status: checkin ok)"
    assert connector.check(MAIN) == line
    assert connector.check(MAIN) == line
    assert ils.stats()["logins"] == {"hs-main": 2}  # each check logs in afresh
    reader = connect(lookup="item-information")
    assert reader.check(MAIN).endswith("online (ACS status: item information ok)")


def test_check_names_a_refused_login(connect) -> None:
    with pytest.raises(IlsUnavailable, match="refused the SIP login hs-main"):
        connect().check(IlsAccount("MAIN", "MAIN", "hs-main", "wrong"))


# -- TLS ------------------------------------------------------------------------------------


def test_sip2_over_tls_with_the_librarys_ca(tls_ils: tuple[Peer, Path]) -> None:
    peer, ca_file = tls_ils
    connector = Sip2Connector("127.0.0.1", peer.port, institution="MAIN", tls=True, ca_file=ca_file)
    try:
        line = connector.check(MAIN)
        assert (
            line
            == f"SIP2 over TLS 127.0.0.1:{peer.port} as hs-main: online (ACS status: checkin ok)"
        )
        assert connector.trapped_hold(MAIN, "HOLD-MAIN") == Trapped(CARD, "MAIN")
        peer.drop()
        assert connector.trapped_hold(MAIN, "HOLD-WEST") == InTransit("WEST")
    finally:
        connector.close()


def test_tls_refuses_a_certificate_it_cannot_trust(tls_ils: tuple[Peer, Path]) -> None:
    peer, _ = tls_ils
    connector = Sip2Connector("127.0.0.1", peer.port, institution="MAIN", tls=True)
    with pytest.raises(IlsUnavailable, match="TLS certificate is not trusted"):
        connector.check(MAIN)


# -- privacy --------------------------------------------------------------------------------


def _every_path(connect, ils: Peer) -> tuple[list[object], list[IlsUnavailable]]:
    """Every answer kind of both lookups and both servers, and every error path."""
    answers: list[object] = []
    errors: list[IlsUnavailable] = []
    checkin, reader, hasty = connect(), connect(lookup="item-information"), connect(timeout=0.3)
    for account in (MAIN, WEST, EVERGREEN):
        for barcode in ("HOLD-MAIN", "HOLD-MAIN-CM", "HOLD-WEST", "PLAIN", "NO-SUCH-ITEM"):
            answers.append(checkin.trapped_hold(account, barcode))
            answers.append(reader.trapped_hold(account, barcode))
    faults: list[tuple[Sip2Connector, tuple[str, ...], str]] = [
        (checkin, ("ok", "bad-checksum", "bad-checksum", "bad-checksum"), "HOLD-MAIN"),
        (checkin, ("ok", "malformed", "malformed", "malformed"), "HOLD-MAIN"),
        (checkin, ("ok", "garbage", "garbage", "garbage"), "HOLD-MAIN"),
        (checkin, ("ok", "resequence"), "HOLD-MAIN"),
        (checkin, ("ok", "drop"), "HOLD-MAIN"),
        (hasty, ("ok", "slow"), "HOLD-MAIN"),
        (reader, (), "SHELF-NO-CY"),
    ]
    for connector, faults_armed, barcode in faults:
        connector.close()
        ils.arm(answers=faults_armed, delay=2.0)
        with pytest.raises(IlsUnavailable) as caught:
            connector.trapped_hold(EVERGREEN if connector is checkin else MAIN, barcode)
        errors.append(caught.value)
        ils.reset()
    with pytest.raises(IlsUnavailable) as caught:
        checkin.check(IlsAccount("MAIN", "MAIN", "hs-main", "wrong"))
    errors.append(caught.value)
    return answers, errors


def _assert_kept_out(logged: str, errors: list[IlsUnavailable]) -> None:
    """No card, name, contact or title in the log or in an exception; one-line errors."""
    raised = "\n".join("".join(traceback.format_exception(error)) for error in errors)
    for secret in SECRETS:
        assert secret not in logged, "the ILS's data reached the log"
        assert secret not in raised, "the ILS's data reached an exception"
    for error in errors:
        assert "\n" not in str(error)
        assert error.__cause__ is None
        assert error.__suppress_context__ or error.__context__ is None


def test_nothing_the_ils_sends_beyond_the_card_is_logged_or_raised(
    connect, ils: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers, errors = _every_path(connect, ils)
    assert Trapped(CARD, "MAIN", SHELF_EXPIRES, "Hold waiting") in answers
    assert len(errors) == 8
    logged = caplog.text
    assert "SIP2 09 for branch MAIN failed" in logged  # the failures are logged, as facts
    _assert_kept_out(logged, errors)
    for answer in answers:  # only the card, in its own field, comes back
        fields = [answer.message] + ([answer.location] if isinstance(answer, Trapped) else [])
        assert not any(secret in (field or "") for field in fields for secret in SECRETS)


def test_hold_state_logs_and_raises_nothing_the_ils_sends(
    connect, ils: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, hasty = connect(), connect(timeout=0.3)
    states: list[HoldState] = []
    for _, item, _, _ in HOLD_STATES:
        for account in (KOHA, EVERGREEN):
            if item is None:
                ils.item("ITEM", known=False)
            else:
                ils.item("ITEM", **item)
            states.append(connector.hold_state(account, "ITEM", Patron()))
    assert set(states) == {WAITING, PICKED_UP, ENDED, UNKNOWN}
    errors: list[IlsUnavailable] = []
    for client, faults in (
        (connector, ("ok", "drop")),
        (hasty, ("ok", "slow")),
        (connector, ("ok", *("garbage",) * 3)),
        (connector, ("ok", "resequence")),
    ):
        client.close()
        ils.arm(answers=faults, delay=2.0)
        with pytest.raises(IlsUnavailable) as caught:
            client.hold_state(EVERGREEN, "HOLD-MAIN", Patron())
        errors.append(caught.value)
        ils.reset()
    logged = caplog.text
    assert "SIP2 17 for branch MAIN failed" in logged
    _assert_kept_out(logged, errors)


# -- the wire format ------------------------------------------------------------------------


def test_checksums_as_the_servers_compute_them() -> None:
    assert checksum(b"97AZ") == "FEF5"  # Koha's REQUEST_ACS_RESEND_CKSUM is 97AZFEF5
    frame = request("9300CNhs-main|COpw|", 1)
    assert frame.endswith(b"\r")
    assert read_answer(b"941AY1AZ" + checksum(b"941AY1AZ").encode(), frozenset()).sequence == 1
    with pytest.raises(ChecksumError):
        read_answer(b"941AY1AZFFFF", frozenset())


def test_an_answer_keeps_only_the_fields_asked_for() -> None:
    body = f"101YUY20261123    093000AOMAIN|ABX|CY{CARD}|DAJane Reader|BF555-0100|CV01|AFa|AFb|"
    prefix = f"{body}AY3AZ".encode()
    answer = read_answer(prefix + checksum(prefix).encode(), frozenset({"CY", "CV", "AF"}))
    assert answer.fields == {"CY": CARD, "CV": "01", "AF": "a b"}
    assert answer.sequence == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20261205    235900", SHELF_EXPIRES),  # Koha's timestamp(), Evergreen's sipdate
        ("20261205 EST153000", SHELF_EXPIRES),  # a zone in ZZZZ
        ("2026-12-05", SHELF_EXPIRES),
        ("2026-12-05T23:59:00", SHELF_EXPIRES),
        ("", None),
        (None, None),
        ("soon", None),
        ("20261341    000000", None),
    ],
)
def test_pickup_dates_in_either_shape(value: str | None, expected: dt.date | None) -> None:
    assert sip_date(value) == expected
