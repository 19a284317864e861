"""The Koha connector against a real HTTP peer that answers as Koha's REST definitions say
(tests/peers/koha_api.py; every answer is checked against tests/peers/specs/koha/)."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import pytest

from holdshelf.errors import ConfigError
from holdshelf.ils.answers import HoldState, IlsAccount, IlsUnavailable, InTransit, NoHold, Trapped
from holdshelf.ils.koha import KohaConnector
from holdshelf.ils.koha import _answer as koha_answer
from tests.peers import koha_api as k
from tests.peers.base import Gate
from tests.peers.koha_api import CLIENT_ID, CLIENT_SECRET, KohaApi
from tests.peers.people import ADA, leaked

MAIN = IlsAccount(branch_id="main", location="MAIN")


@pytest.fixture
def koha() -> Iterator[KohaApi]:
    peer = k.library().start()
    yield peer
    peer.stop()
    assert peer.violations == [], "the peer answered what Koha's definitions do not allow"


def connect(koha: KohaApi, **options) -> KohaConnector:
    options.setdefault("timeout", 2.0)
    secret = options.pop("secret", CLIENT_SECRET)
    return KohaConnector(koha.url, CLIENT_ID, secret, **options)


def refusal(scan: Callable[[], object]) -> IlsUnavailable:
    with pytest.raises(IlsUnavailable) as caught:
        scan()
    return caught.value


# -- answers -----------------------------------------------------------------------------------


def test_a_waiting_hold_names_the_card_the_pickup_library_and_the_last_pickup_day(koha):
    answer = connect(koha).trapped_hold(MAIN, k.WAITING_HERE)
    assert answer == Trapped(card=ADA.card, location="MAIN", pickup_by=dt.date(2026, 12, 4))


def test_the_queries_ask_koha_for_exact_matches_and_only_found_holds(koha):
    connect(koha).trapped_hold(MAIN, k.WAITING_HERE)
    items, holds = (c for c in koha.calls if c.method == "GET")
    assert items.query == {"external_id": [k.WAITING_HERE], "_match": ["exact"]}
    assert holds.query["item_id"] == ["101"] and holds.query["_match"] == ["exact"]
    assert holds.query["q"] == ['{"status": ["W", "T", "P"]}']
    assert holds.headers["x-koha-embed"] == "patron"


def test_a_hold_in_transit_sends_the_item_to_its_pickup_library(koha):
    assert connect(koha).trapped_hold(MAIN, k.IN_TRANSIT) == InTransit(destination="EAST")


@pytest.mark.parametrize("barcode", [k.QUEUE_ONLY, k.NO_HOLDS])
def test_an_item_without_a_found_hold_goes_back_to_the_shelf(koha, barcode):
    assert connect(koha).trapped_hold(MAIN, barcode) == NoHold()


def test_only_the_waiting_hold_counts_among_several(koha):
    # Item 101 has Grace's and Alan's holds queued around Ada's waiting one.
    assert sum(h["item_id"] == 101 for h in koha.holds) == 3
    koha.holds.sort(key=lambda h: h["status"] != "W")  # the waiting one last in Koha's answer
    koha.holds.reverse()
    assert connect(koha).trapped_hold(MAIN, k.WAITING_HERE).card == ADA.card


def test_a_hold_in_processing_is_not_yet_on_the_shelf(koha):
    answer = connect(koha).trapped_hold(MAIN, k.IN_PROCESSING)
    assert answer == NoHold("Koha has this item's hold in processing")


def test_an_unknown_barcode_is_said_to_be_unknown(koha):
    answer = connect(koha).trapped_hold(MAIN, k.UNKNOWN)
    assert answer == NoHold("Koha knows no item with this barcode")
    assert koha.count("GET", "/api/v1/holds") == 0


def test_a_barcode_contained_in_others_finds_only_its_own_item(koha):
    koha.add_hold(101, 2, status="W", expires="2026-12-04")  # would match item_id 10 "contains"
    assert connect(koha).trapped_hold(MAIN, k.CONTAINED) == NoHold()


def test_an_answer_with_other_items_in_it_is_not_taken_for_this_item(koha):
    koha.loose_matching = True  # belt and braces: Koha filtering more loosely than asked
    koha.add_hold(101, 2, status="W", expires="2026-12-04")
    assert connect(koha).trapped_hold(MAIN, k.CONTAINED) == NoHold()


def test_a_waiting_hold_without_an_expiration_date_has_no_pickup_by(koha):
    assert connect(koha).trapped_hold(MAIN, k.NO_EXPIRY).pickup_by is None


def test_a_card_koha_withholds_is_an_error_not_a_hold(koha):
    error = refusal(lambda: connect(koha).trapped_hold(MAIN, k.WITHHELD))
    assert str(error) == "Koha withheld the card number of the waiting hold's patron"


def test_a_waiting_hold_without_a_pickup_library_is_an_unexpected_shape(koha):
    next(h for h in koha.holds if h["status"] == "W")["pickup_library_id"] = None
    error = refusal(lambda: connect(koha).trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == "Koha answered /api/v1/holds in an unexpected shape"


def test_a_status_that_is_not_a_string_matches_nothing():
    # Outside Koha's definitions (status is a string or null), so no peer sends it.
    assert koha_answer([{"item_id": 101, "status": ["W"]}], 101) == NoHold()


def test_a_koha_that_cannot_embed_patrons_in_holds_says_so(koha):
    koha.without_patron_embed()
    error = refusal(lambda: connect(koha).trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == (
        "Koha answered 400 to /api/v1/holds (this Koha may not embed patrons in holds)"
    )


# -- the token ---------------------------------------------------------------------------------


def test_one_token_serves_many_scans(koha):
    connector = connect(koha)
    for _ in range(3):
        connector.trapped_hold(MAIN, k.WAITING_HERE)
    assert koha.token_requests == 1


def test_a_token_koha_expired_early_is_fetched_again_once(koha):
    connector = connect(koha)
    connector.trapped_hold(MAIN, k.WAITING_HERE)
    koha.expire_tokens()
    assert connector.trapped_hold(MAIN, k.WAITING_HERE).card == ADA.card
    assert koha.token_requests == 2


def test_the_token_is_renewed_shortly_before_it_expires(koha):
    now = [1_000_000.0]
    connector = connect(koha, clock=lambda: now[0])
    connector.trapped_hold(MAIN, k.NO_HOLDS)
    now[0] += 3500  # expires_in is 3600: still good
    connector.trapped_hold(MAIN, k.NO_HOLDS)
    assert koha.token_requests == 1
    now[0] += 50  # within the last minute: renewed before Koha would refuse it
    connector.trapped_hold(MAIN, k.NO_HOLDS)
    assert koha.token_requests == 2
    assert all(c.path != "/api/v1/items" or c.headers.get("authorization") for c in koha.calls)


def test_a_fresh_token_refused_too_is_an_error(koha):
    koha.honour_tokens = False
    error = refusal(lambda: connect(koha).trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == "Koha refused a new token for API client holdshelf (401)"
    assert koha.token_requests == 2  # one renewal, not a loop


def test_a_wrong_client_secret_is_refused(koha):
    error = refusal(lambda: connect(koha, secret="not-the-secret").trapped_hold(MAIN, k.NO_HOLDS))
    assert str(error) == "Koha refused the client credentials for holdshelf"


def test_close_drops_the_token(koha):
    connector = connect(koha)
    connector.trapped_hold(MAIN, k.NO_HOLDS)
    connector.close()
    connector.trapped_hold(MAIN, k.NO_HOLDS)
    assert koha.token_requests == 2


def test_two_desks_at_once_share_one_token_request(koha):
    # The token endpoint holds the first request until a second arrives (or half a second):
    # with the cache serialising renewals no second one comes.
    koha.token_gate = Gate(expected=2, timeout=0.5)
    connector = connect(koha)
    start = threading.Barrier(2)
    answers: list[object] = []

    def desk() -> None:
        start.wait()
        answers.append(connector.trapped_hold(MAIN, k.WAITING_HERE))

    desks = [threading.Thread(target=desk) for _ in range(2)]
    for thread in desks:
        thread.start()
    for thread in desks:
        thread.join(5)
    assert koha.token_requests == 1
    assert [a.card for a in answers] == [ADA.card, ADA.card]


# -- faults ------------------------------------------------------------------------------------


def test_a_server_error_is_one_line(koha):
    koha.status = 503
    error = refusal(lambda: connect(koha).trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == "Koha answered 503 to /api/v1/items"


def test_a_missing_permission_is_named(koha):
    koha.permissions.discard("reserveforothers")
    error = refusal(lambda: connect(koha).trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == (
        "Koha answered 403 to /api/v1/holds (the API client needs reserveforothers (place_holds))"
    )


def test_a_slow_koha_is_given_up_on_after_the_timeout(koha):
    koha.delay = 10
    started = time.monotonic()
    error = refusal(lambda: connect(koha, timeout=0.3).trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == "Koha did not answer within 0.3 s"
    assert time.monotonic() - started < 3


def test_malformed_json_is_an_error(koha):
    koha.malformed = True
    error = refusal(lambda: connect(koha).trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == "Koha answered /api/v1/items with malformed JSON"


def test_an_unreachable_koha_is_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = KohaConnector(f"http://127.0.0.1:{port}", CLIENT_ID, CLIENT_SECRET, timeout=1)
    error = refusal(lambda: connector.trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == f"Koha unreachable at 127.0.0.1:{port} (connection refused)"


def test_a_server_that_does_not_speak_http_is_an_error():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer_garbage() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(f"{ADA.last} {ADA.card}\r\n\r\n".encode())

        threading.Thread(target=answer_garbage, daemon=True).start()
        connector = KohaConnector(f"http://127.0.0.1:{port}", CLIENT_ID, CLIENT_SECRET, timeout=2)
        error = refusal(lambda: connector.trapped_hold(MAIN, k.WAITING_HERE))
    assert str(error) == f"Koha at 127.0.0.1:{port} did not answer in HTTP (BadStatusLine)"


def test_a_url_that_is_not_http_is_a_configuration_error():
    with pytest.raises(ConfigError):
        KohaConnector("koha.example.org", CLIENT_ID, CLIENT_SECRET)


def test_the_url_may_name_the_api_itself(koha):
    connector = KohaConnector(koha.url + "/api/v1/", CLIENT_ID, CLIENT_SECRET)
    assert connector.trapped_hold(MAIN, k.WAITING_HERE).card == ADA.card


# -- check -------------------------------------------------------------------------------------


def test_check_gets_a_token_and_reads_items_and_holds(koha):
    line = connect(koha).check(MAIN)
    where = koha.url.removeprefix("http://")
    assert (
        line
        == f"Koha at {where}: token obtained for API client holdshelf; items and holds readable"
    )
    assert koha.token_requests == 1 and koha.count("GET", "/api/v1/holds") == 1


def test_check_says_why_it_fails(koha):
    error = refusal(lambda: connect(koha, secret="wrong").check(MAIN))
    assert str(error) == "Koha refused the client credentials for holdshelf"


# -- privacy -----------------------------------------------------------------------------------

FAULTS: dict[str, Callable[[KohaApi], object]] = {
    "answers": lambda koha: None,
    "expired token": KohaApi.expire_tokens,
    "tokens refused": lambda koha: setattr(koha, "honour_tokens", False),
    "server error": lambda koha: setattr(koha, "status", 500),
    "malformed": lambda koha: setattr(koha, "malformed", True),
    "no patron embed": KohaApi.without_patron_embed,
    "no permission": lambda koha: koha.permissions.clear(),
    "slow": lambda koha: setattr(koha, "delay", 5),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_no_patron_data_reaches_a_log_or_an_error(koha, caplog, fault):
    caplog.set_level(logging.DEBUG)
    connector = connect(koha, timeout=0.3)
    connector.trapped_hold(MAIN, k.NO_HOLDS)  # a token to expire or refuse
    FAULTS[fault](koha)
    texts = []
    for barcode in (k.WAITING_HERE, k.IN_TRANSIT, k.WITHHELD, k.UNKNOWN):
        texts += _outcome(lambda b=barcode: connector.trapped_hold(MAIN, b))
    texts += _outcome(lambda: connector.check(MAIN))
    texts += _outcome(lambda: connect(koha, secret="wrong").trapped_hold(MAIN, k.WAITING_HERE))
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    everything = "\n".join([*texts, logged])
    assert "GET /api/v1/items" in logged, "the calls were logged"
    assert leaked(everything) == []
    assert CLIENT_SECRET not in everything
    assert "external_id" not in logged and "Bearer" not in everything


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


def test_a_hold_still_waiting_for_its_patron_is_waiting(koha):
    assert connect(koha).hold_state(MAIN, k.WAITING_HERE, is_ada) is HoldState.WAITING


def test_a_waiting_hold_for_another_patron_has_ended_for_ours(koha):
    assert connect(koha).hold_state(MAIN, k.WAITING_HERE, lambda card: False) is HoldState.ENDED


def test_an_item_checked_out_at_a_self_check_was_picked_up(koha):
    koha.check_out(101)
    assert connect(koha).hold_state(MAIN, k.WAITING_HERE, is_ada) is HoldState.PICKED_UP


def test_a_hold_cancelled_at_the_ils_has_ended(koha):
    koha.end_waiting_hold(101)
    assert connect(koha).hold_state(MAIN, k.WAITING_HERE, is_ada) is HoldState.ENDED


def test_an_item_koha_does_not_know_is_unknown_not_ended(koha):
    assert connect(koha).hold_state(MAIN, k.UNKNOWN, is_ada) is HoldState.UNKNOWN


def test_a_withheld_patron_cannot_be_checked(koha):
    with pytest.raises(IlsUnavailable, match="withheld the card number"):
        connect(koha).hold_state(MAIN, k.WITHHELD, is_ada)


def test_the_sync_reads_only(koha):
    connect(koha).hold_state(MAIN, k.WAITING_HERE, is_ada)
    writes = [(c.method, c.path) for c in koha.calls if c.method != "GET"]
    assert writes == [("POST", "/api/v1/oauth/token")]
