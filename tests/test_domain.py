"""The pure rules: hold lifecycle, pickup-by dates, modes, retention, input checks, pseudonyms."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.contacts import clean_email, clean_phone
from holdshelf.domain.holds import (
    ENDINGS,
    MAX_RETENTION_DAYS,
    HoldStatus,
    PickupMode,
    PickupPolicy,
    ShelfEntry,
    end_transition,
    mode_for,
    reuse_cutoff,
    stored_preference,
    unlink_cutoff,
)
from holdshelf.domain.inputs import MAX_BARCODE_LENGTH, clean_barcode, normalise_card, parse_date
from holdshelf.domain.pseudonyms import Pseudonymizer
from holdshelf.errors import Conflict, InvalidInput

MONDAY = dt.date(2026, 11, 23)


@pytest.mark.parametrize("outcome", ENDINGS)
def test_a_ready_hold_ends_exactly_once(outcome: HoldStatus) -> None:
    assert end_transition(HoldStatus.READY, outcome) is outcome
    for second in ENDINGS:
        with pytest.raises(Conflict, match="already ended"):
            end_transition(outcome, second)


def test_ready_is_not_an_ending() -> None:
    with pytest.raises(ValueError, match="does not end"):
        end_transition(HoldStatus.READY, HoldStatus.READY)


def test_patron_choice_wins_over_the_default() -> None:
    assert mode_for(None, PickupMode.SHELF) is PickupMode.SHELF
    assert mode_for(PickupMode.DESK, PickupMode.SHELF) is PickupMode.DESK
    assert mode_for(PickupMode.SHELF, PickupMode.DESK) is PickupMode.SHELF
    # a choice equal to the default is not kept
    assert stored_preference(PickupMode.SHELF, PickupMode.SHELF) is None
    assert stored_preference(PickupMode.DESK, PickupMode.SHELF) is PickupMode.DESK


def test_pickup_by_skips_closed_days() -> None:
    sundays_closed = PickupPolicy(pickup_days=6, closed_weekdays=frozenset({6}))
    assert sundays_closed.pickup_by(MONDAY) == dt.date(2026, 11, 30)  # Sunday 29th -> Monday
    assert PickupPolicy(pickup_days=7).pickup_by(MONDAY) == dt.date(2026, 11, 30)
    weekends = PickupPolicy(pickup_days=5, closed_weekdays=frozenset({5, 6}))
    assert weekends.pickup_by(MONDAY) == dt.date(2026, 11, 30)


@given(st.integers(1, 60), st.sets(st.integers(0, 6), max_size=6), st.dates())
def test_pickup_by_is_an_open_day_at_least_pickup_days_away(days, closed, ready_on) -> None:
    if ready_on > dt.date(9000, 1, 1):
        return
    policy = PickupPolicy(pickup_days=days, closed_weekdays=frozenset(closed))
    due = policy.pickup_by(ready_on)
    assert due.weekday() not in closed
    assert dt.timedelta(days=days) <= due - ready_on < dt.timedelta(days=days + 7)


def test_requested_pickup_by_is_checked() -> None:
    policy = PickupPolicy()
    assert policy.check_requested(MONDAY, MONDAY) == MONDAY
    with pytest.raises(InvalidInput, match="in the past"):
        policy.check_requested(MONDAY - dt.timedelta(days=1), MONDAY)
    with pytest.raises(InvalidInput, match="more than a year"):
        policy.check_requested(MONDAY.replace(year=2028), MONDAY)


def test_policy_bounds() -> None:
    with pytest.raises(ValueError):
        PickupPolicy(pickup_days=0)
    with pytest.raises(ValueError):
        PickupPolicy(closed_weekdays=frozenset(range(7)))


def test_retention_cutoffs() -> None:
    now = dt.datetime(2026, 11, 23, 12)
    assert unlink_cutoff(now, 0) == now
    assert unlink_cutoff(now, 3) == now - dt.timedelta(days=3)
    assert reuse_cutoff(now) == now - dt.timedelta(days=30)
    with pytest.raises(ValueError):
        unlink_cutoff(now, MAX_RETENTION_DAYS + 1)


def test_shelf_entries_carry_no_patron_and_sort_as_shelved() -> None:
    entries = [ShelfEntry(ShelfCode(c), "MAIN", "M", MONDAY, PickupMode.SHELF) for c in "XK3"]
    assert [e.code.compact for e in sorted(entries, key=lambda e: e.code)] == ["3", "K", "X"]
    assert set(entries[0].as_dict()) == {
        "code",
        "section",
        "branch",
        "branch_name",
        "pickup_by",
        "mode",
        "move_to_desk",
        "awaiting_scan",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("1" * (MAX_BARCODE_LENGTH + 1), "longer than"),
        ("3901\x00234", "characters no barcode has"),
        ("3901\n234", "characters no barcode has"),
        ("3901\u200b234", "characters no barcode has"),
    ],
)
def test_bad_barcodes_are_refused_without_echoing_them(raw: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        clean_barcode(raw)
    if raw and raw.strip():
        assert raw.strip() not in str(caught.value)


def test_barcodes_are_trimmed_and_cards_normalised() -> None:
    assert clean_barcode("  39010001234567\t") == "39010001234567"
    assert normalise_card(" 2101-0009 8765 43 ") == "21010009876543"
    assert normalise_card("d123abc") == "D123ABC"
    for only_separators in ("-", "- -", "--\t"):  # every such "card" would be one patron
        with pytest.raises(InvalidInput, match="no digits or letters"):
            normalise_card(only_separators)


def test_dates_are_iso() -> None:
    assert parse_date(" 2026-11-23 ") == MONDAY
    for bad in (
        "2026-13-01",
        "23/11/2026",
        "tomorrow",
        "",
        "2026-W48-1",
        "20261123",
        "２０２６-11-23",
    ):
        with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
            parse_date(bad)


@pytest.mark.parametrize(
    "address",
    [
        "ana.okafor,x@example.org",
        "<ana>@example.org",
        "ana@example.org>",
        "a..b@example.org",
        ".ana@example.org",
        "ana@example",
        "ana@-example.org",
        "an a@example.org",
        "ana@exa_mple.org",
        '"ana"@example.org',
        "ana@exam\nple.org",
        "x" * 65 + "@example.org",
    ],
)
def test_email_addresses_a_mail_library_might_misread_are_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match="does not look like one"):
        clean_email(address)


def test_contacts_are_cleaned() -> None:
    assert clean_email(" a.b+holds@mail.example.co.uk ") == "a.b+holds@mail.example.co.uk"
    assert clean_phone("+1 (555) 123-4567") == "+15551234567"
    for number in (
        "+\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078",
        "\u0661" * 9,
        "123",
        "+1" * 9,
    ):
        with pytest.raises(InvalidInput, match="7 to 15 digits"):
            clean_phone(number)


def test_pseudonyms_are_stable_keyed_and_normalised() -> None:
    key = b"k" * 32
    pseudonym = Pseudonymizer(key)
    assert pseudonym("2101 0009 8765") == pseudonym("21010009-8765")
    assert pseudonym("21010009") != pseudonym("21010008")
    assert pseudonym("21010009") != Pseudonymizer(b"x" * 32)("21010009")
    assert len(pseudonym("21010009")) == 32
    assert "21010009" not in pseudonym("21010009")
    assert "k" * 16 not in repr(pseudonym)
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")
