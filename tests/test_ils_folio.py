"""The FOLIO connector against a real HTTP peer that answers as Okapi, mod-login and
mod-circulation do (tests/peers/folio_api.py; answers checked against tests/peers/specs/folio/)."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import pytest

from holdshelf.ils.answers import HoldState, IlsAccount, IlsUnavailable, InTransit, NoHold, Trapped
from holdshelf.ils.folio import FolioConnector, cql_string
from tests.peers import folio_api as f
from tests.peers.base import Gate
from tests.peers.folio_api import PASSWORD, TENANT, USERNAME, FolioApi
from tests.peers.people import ADA, ALAN, leaked

CHICAGO = ZoneInfo("America/Chicago")
MAIN = IlsAccount(branch_id="main", location="MAIN")


@pytest.fixture
def folio() -> Iterator[FolioApi]:
    peer = f.library().start()
    yield peer
    peer.stop()
    assert peer.violations == [], "the peer answered what FOLIO's definitions do not allow"


def connect(folio: FolioApi, **options) -> FolioConnector:
    options.setdefault("timeout", 2.0)
    options.setdefault("timezone", CHICAGO)
    password = options.pop("password", PASSWORD)
    tenant = options.pop("tenant", TENANT)
    return FolioConnector(folio.url, tenant, USERNAME, password, **options)


def refusal(scan: Callable[[], object]) -> IlsUnavailable:
    with pytest.raises(IlsUnavailable) as caught:
        scan()
    return caught.value


def point_id(folio: FolioApi, code: str) -> str:
    return next(i for i, p in folio.service_points.items() if p["code"] == code)


# -- answers -----------------------------------------------------------------------------------


def test_a_request_awaiting_pickup_names_the_card_the_service_point_and_the_last_day(folio):
    answer = connect(folio).trapped_hold(MAIN, f.WAITING_HERE)
    assert answer == Trapped(card=ADA.card, location="MAIN", pickup_by=dt.date(2026, 12, 4))


def test_the_last_pickup_day_is_the_librarys_date_of_folios_instant(folio):
    answer = connect(folio, timezone=dt.UTC).trapped_hold(MAIN, f.WAITING_HERE)
    assert answer.pickup_by == dt.date(2026, 12, 5)  # 05:59 UTC is still the 4th in Chicago


def test_the_query_asks_for_the_items_requests_awaiting_pickup_or_in_transit(folio):
    connect(folio).trapped_hold(MAIN, f.WAITING_HERE)
    (call,) = (c for c in folio.calls if c.path == "/circulation/requests")
    assert call.query == {
        "query": [
            '(item.barcode=="5000001" and '
            '(status=="Open - Awaiting pickup" or status=="Open - In transit"))'
        ],
        "limit": ["10"],
    }
    assert call.headers["x-okapi-tenant"] == TENANT and call.headers["x-okapi-token"]


def test_a_request_in_transit_sends_the_item_to_its_service_point(folio):
    assert connect(folio).trapped_hold(MAIN, f.IN_TRANSIT_EAST) == InTransit(destination="EAST")


@pytest.mark.parametrize("barcode", [f.QUEUE_ONLY, f.FILLED, f.UNKNOWN])
def test_an_item_without_a_request_awaiting_pickup_or_in_transit_goes_back(folio, barcode):
    assert connect(folio).trapped_hold(MAIN, barcode) == NoHold()


def test_only_the_request_awaiting_pickup_counts_among_several(folio):
    assert sum(r["item"]["barcode"] == f.WAITING_HERE for r in folio.requests) == 3
    assert connect(folio).trapped_hold(MAIN, f.WAITING_HERE).card == ADA.card


def test_an_answer_with_other_items_or_statuses_is_not_taken_for_a_trap(folio):
    folio.loose_query = True  # belt and braces: FOLIO answering more than was asked
    assert connect(folio).trapped_hold(MAIN, f.QUEUE_ONLY) == NoHold()


def test_a_status_that_is_not_a_string_matches_nothing():
    # Outside mod-circulation's schema (status is an enum of strings), so no peer sends it.
    connector = FolioConnector("http://127.0.0.1:9", TENANT, USERNAME, PASSWORD)
    assert connector._answer(MAIN, "1", [{"status": [f.AWAITING]}]) == NoHold()


def test_cql_characters_in_a_barcode_are_matched_literally(folio):
    assert cql_string('X*"\\1') == '"X\\*\\"\\\\1"'
    connector = connect(folio)
    assert connector.trapped_hold(MAIN, f.SPECIAL).card == ALAN.card
    assert connector.trapped_hold(MAIN, "500000*") == NoHold()  # no mask: not 5000001
    assert connector.trapped_hold(MAIN, 'A"B') == NoHold()  # a quote cannot end the term


def test_a_branch_may_name_its_service_point_by_uuid(folio):
    account = IlsAccount(branch_id="main", location=point_id(folio, "MAIN"))
    assert connect(folio).trapped_hold(account, f.WAITING_HERE).location == account.location
    assert connect(folio).trapped_hold(account, f.IN_TRANSIT_EAST) == InTransit("EAST")


def test_a_service_point_folio_sends_without_its_record_is_named_by_uuid(folio):
    answer = connect(folio).trapped_hold(MAIN, f.NO_CODE)
    assert answer == InTransit(destination=point_id(folio, "FAR"))


def test_a_request_without_a_requester_barcode_is_an_error(folio):
    error = refusal(lambda: connect(folio).trapped_hold(MAIN, f.NO_REQUESTER_BARCODE))
    assert str(error) == "FOLIO sent the request awaiting pickup without a requester barcode"


def test_a_request_without_a_pickup_service_point_is_an_unexpected_shape(folio):
    error = refusal(lambda: connect(folio).trapped_hold(MAIN, f.NO_PICKUP))
    assert str(error) == "FOLIO answered /circulation/requests in an unexpected shape"


# -- the session -------------------------------------------------------------------------------


def test_one_login_serves_many_scans(folio):
    connector = connect(folio)
    for _ in range(3):
        connector.trapped_hold(MAIN, f.WAITING_HERE)
    assert (folio.logins, folio.refreshes) == (1, 0)


def test_an_access_token_folio_expired_early_is_refreshed_once(folio):
    connector = connect(folio)
    connector.trapped_hold(MAIN, f.WAITING_HERE)
    folio.expire_tokens()
    assert connector.trapped_hold(MAIN, f.WAITING_HERE).card == ADA.card
    assert (folio.logins, folio.refreshes, folio.refused_tokens) == (1, 1, 1)


def test_a_revoked_session_logs_in_again(folio):
    connector = connect(folio)
    connector.trapped_hold(MAIN, f.WAITING_HERE)
    folio.end_sessions()
    assert connector.trapped_hold(MAIN, f.WAITING_HERE).card == ADA.card
    assert (folio.logins, folio.refreshes) == (2, 1)


def test_the_access_token_is_refreshed_shortly_before_it_expires(folio):
    now = [time.time()]
    connector = connect(folio, clock=lambda: now[0])
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    now[0] += 500  # the access token lives 600 s
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    assert folio.refreshes == 0
    now[0] += 50  # within its last minute: refreshed before FOLIO would refuse it
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    assert (folio.logins, folio.refreshes, folio.refused_tokens) == (1, 1, 0)


def test_a_spent_refresh_token_is_not_offered_but_a_login_made(folio):
    folio.refresh_lifetime = 900
    now = [time.time()]
    connector = connect(folio, clock=lambda: now[0])
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    now[0] += 850  # both tokens at their end
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    assert (folio.logins, folio.refreshes) == (2, 0)


def test_a_fresh_token_refused_too_is_an_error(folio):
    folio.honour_tokens = False
    error = refusal(lambda: connect(folio).trapped_hold(MAIN, f.WAITING_HERE))
    assert str(error) == "FOLIO refused a new token for holdshelf (401)"
    assert folio.refused_tokens == 2  # one renewal, not a loop


def test_a_wrong_password_is_refused(folio):
    error = refusal(lambda: connect(folio, password="not-it").trapped_hold(MAIN, f.QUEUE_ONLY))
    assert str(error) == "FOLIO refused the login for holdshelf"


def test_a_wrong_tenant_is_refused(folio):
    error = refusal(lambda: connect(folio, tenant="other").trapped_hold(MAIN, f.QUEUE_ONLY))
    assert str(error) == "FOLIO answered 400 to /authn/login-with-expiry"


def test_close_drops_the_session(folio):
    connector = connect(folio)
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    connector.close()
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    assert folio.logins == 2


def _two_desks(connector: FolioConnector) -> list[object]:
    start = threading.Barrier(2)
    answers: list[object] = []

    def desk() -> None:
        start.wait()
        try:
            answers.append(connector.trapped_hold(MAIN, f.WAITING_HERE))
        except IlsUnavailable as error:
            answers.append(error)

    desks = [threading.Thread(target=desk) for _ in range(2)]
    for thread in desks:
        thread.start()
    for thread in desks:
        thread.join(5)
    return answers


def test_two_desks_at_once_log_in_once(folio):
    folio.login_gate = Gate(expected=2, timeout=0.5)  # a second login would be let in
    answers = _two_desks(connect(folio))
    assert folio.logins == 1
    assert [getattr(a, "card", a) for a in answers] == [ADA.card, ADA.card]


def test_two_desks_at_once_redeem_the_refresh_token_once(folio):
    # mod-authtoken revokes every token of a user whose refresh token is used twice.
    connector = connect(folio)
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)
    folio.expire_tokens()
    folio.refresh_gate = Gate(expected=2, timeout=0.5)
    answers = _two_desks(connector)
    assert (folio.logins, folio.refreshes) == (1, 1)
    assert [getattr(a, "card", a) for a in answers] == [ADA.card, ADA.card]


# -- faults ------------------------------------------------------------------------------------


def test_a_server_error_is_one_line(folio):
    folio.status = 500
    error = refusal(lambda: connect(folio).trapped_hold(MAIN, f.WAITING_HERE))
    assert str(error) == "FOLIO answered 500 to /circulation/requests"


def test_a_missing_permission_is_named(folio):
    folio.permitted = False
    error = refusal(lambda: connect(folio).trapped_hold(MAIN, f.WAITING_HERE))
    assert str(error) == (
        "FOLIO answered 403 to /circulation/requests "
        "(holdshelf needs circulation.requests.collection.get)"
    )


def test_a_slow_folio_is_given_up_on_after_the_timeout(folio):
    folio.delay = 10
    started = time.monotonic()
    error = refusal(lambda: connect(folio, timeout=0.3).trapped_hold(MAIN, f.WAITING_HERE))
    assert str(error) == "FOLIO did not answer within 0.3 s"
    assert time.monotonic() - started < 3


def test_malformed_json_is_an_error(folio):
    folio.malformed = True
    error = refusal(lambda: connect(folio).trapped_hold(MAIN, f.WAITING_HERE))
    assert str(error) == "FOLIO answered /circulation/requests with malformed JSON"


def test_an_unreachable_folio_is_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = FolioConnector(f"http://127.0.0.1:{port}", TENANT, USERNAME, PASSWORD, timeout=1)
    error = refusal(lambda: connector.trapped_hold(MAIN, f.WAITING_HERE))
    assert str(error) == f"FOLIO unreachable at 127.0.0.1:{port} (connection refused)"


# -- check -------------------------------------------------------------------------------------


def test_check_logs_in_and_reads_requests(folio):
    line = connect(folio).check(MAIN)
    where = folio.url.removeprefix("http://")
    assert line == f"FOLIO at {where} (tenant diku): logged in as holdshelf; requests readable"
    (call,) = (c for c in folio.calls if c.path == "/circulation/requests")
    assert call.query == {"limit": ["0"]}


def test_check_says_why_it_fails(folio):
    error = refusal(lambda: connect(folio, password="wrong").check(MAIN))
    assert str(error) == "FOLIO refused the login for holdshelf"


# -- privacy -----------------------------------------------------------------------------------

FAULTS: dict[str, Callable[[FolioApi], object]] = {
    "answers": lambda folio: None,
    "expired token": FolioApi.expire_tokens,
    "ended session": FolioApi.end_sessions,
    "tokens refused": lambda folio: setattr(folio, "honour_tokens", False),
    "server error": lambda folio: setattr(folio, "status", 500),
    "malformed": lambda folio: setattr(folio, "malformed", True),
    "no permission": lambda folio: setattr(folio, "permitted", False),
    "slow": lambda folio: setattr(folio, "delay", 5),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_no_patron_data_reaches_a_log_or_an_error(folio, caplog, fault):
    caplog.set_level(logging.DEBUG)
    connector = connect(folio, timeout=0.3)
    connector.trapped_hold(MAIN, f.QUEUE_ONLY)  # a session to expire or refuse
    FAULTS[fault](folio)
    texts = []
    for barcode in (f.WAITING_HERE, f.IN_TRANSIT_EAST, f.NO_REQUESTER_BARCODE, f.UNKNOWN):
        texts += _outcome(lambda b=barcode: connector.trapped_hold(MAIN, b))
    texts += _outcome(lambda: connector.check(MAIN))
    texts += _outcome(lambda: connect(folio, password="wrong").trapped_hold(MAIN, f.QUEUE_ONLY))
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    everything = "\n".join([*texts, logged])
    assert "GET /circulation/requests" in logged, "the calls were logged"
    assert leaked(everything) == []
    assert PASSWORD not in everything and "folioAccessToken" not in everything
    assert "item.barcode" not in logged


def _outcome(scan: Callable[[], object]) -> list[str]:
    """What a caller could print: an error's message and whole traceback, causes included."""
    error = None
    try:
        scan()
    except IlsUnavailable as caught:
        error = caught
    if error is None:
        return []
    assert error.__cause__ is None and error.__context__ is None
    return [str(error), "".join(traceback.format_exception(error))]


# -- the sync's question: is the hold still waiting? -----------------------------------------


def is_ada(card: str) -> bool:
    return card == ADA.card


def test_a_request_still_awaiting_pickup_is_waiting(folio):
    assert connect(folio).hold_state(MAIN, f.WAITING_HERE, is_ada) is HoldState.WAITING
    (call,) = [c for c in folio.calls if c.path == "/circulation/requests"]
    assert "sortby requestDate/sort.descending" in call.query["query"][0]


@pytest.mark.parametrize(
    ("closed", "state"),
    [
        ("Closed - Filled", HoldState.PICKED_UP),
        ("Closed - Pickup expired", HoldState.EXPIRED),
        ("Closed - Cancelled", HoldState.ENDED),
        ("Closed - Unfilled", HoldState.ENDED),
    ],
)
def test_a_closed_request_says_how_the_hold_ended(folio, closed, state):
    folio.close_request(f.WAITING_HERE, ADA, closed)
    assert connect(folio).hold_state(MAIN, f.WAITING_HERE, is_ada) is state


def test_the_patrons_newest_request_decides(folio):
    folio.close_request(f.WAITING_HERE, ADA, "Closed - Cancelled")
    folio.add_newer_request(
        f.WAITING_HERE, ADA, status="Closed - Filled", pickup=point_id(folio, "MAIN")
    )
    assert connect(folio).hold_state(MAIN, f.WAITING_HERE, is_ada) is HoldState.PICKED_UP


def test_an_item_trapped_for_another_patron_has_ended_for_ours(folio):
    assert connect(folio).hold_state(MAIN, f.WAITING_HERE, lambda card: False) is HoldState.ENDED


def test_an_item_folio_has_no_request_for_is_unknown(folio):
    assert connect(folio).hold_state(MAIN, f.UNKNOWN, is_ada) is HoldState.UNKNOWN


def test_a_down_folio_cannot_say(folio):
    folio.status = 503
    assert "503" in str(refusal(lambda: connect(folio).hold_state(MAIN, f.WAITING_HERE, is_ada)))
