"""The hold-shelf workflow against real databases (every test runs on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.codes import ShelfCodec
from holdshelf.domain.holds import PickupMode
from holdshelf.errors import (
    CodesExhausted,
    Conflict,
    InvalidInput,
    InvalidShelfCode,
    NotFound,
    UnknownBranch,
)
from holdshelf.service import HoldService
from holdshelf.settings import Settings, load_settings
from holdshelf.storage import database
from holdshelf.storage.models import DailyCount, Hold, PatronPreference, PrintJob, ShelfCodeClaim
from tests.conftest import Clock, make_instance

ITEM = "39010001234567"


def count(service: HoldService, model: type) -> int:
    with service._sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def snapshot(service: HoldService) -> tuple[int, ...]:
    """Row counts of every table: equal before and after a refused request."""
    with service._sessions() as session:
        rows = [
            session.scalar(select(func.count()).select_from(model))
            for model in (Hold, ShelfCodeClaim, PatronPreference, DailyCount, PrintJob)
        ]
        total = session.scalar(select(func.coalesce(func.sum(DailyCount.count), 0)))
        return (*rows, total)


def fixed_numbers(*numbers: int) -> Callable[[int], int]:
    """A randbelow that returns ``numbers`` in turn, then the last one forever."""
    queue = list(numbers)

    def randbelow(_: int) -> int:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return randbelow


def issuable(settings: Settings, branch: str = "MAIN", skip: int = 0) -> list[int]:
    codec = ShelfCodec(settings.hashids_salt, settings.branch(branch).code_length)
    return [n for n in range(2000) if codec.encode(n) is not None][skip:]


def rigged(service: HoldService, randbelow: Callable[[int], int], clock: Clock) -> HoldService:
    return HoldService(service.settings, service._sessions, clock, randbelow=randbelow)


# -- ready ------------------------------------------------------------------------------------


def test_property_no_active_duplicate_and_no_early_reissue(
    service: HoldService, clock: Clock, patrons
) -> None:
    """Hypothesis drives ready / pickup / time / purge over a pool of six numbers, so codes
    collide all the time. A model kept apart from the database checks that no two active holds
    of a branch share a code, no code is issued again within 30 days of its hold's end, and
    "no free code" is said only when the pool is truly used up."""
    import random

    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    pool = issuable(service.settings)[:6]
    codec = ShelfCodec(service.settings.hashids_salt, service.settings.branch("MAIN").code_length)
    pool_codes = {codec.encode(n).compact for n in pool}
    active: set[str] = set()  # the codes on the shelf, as the model sees it
    released: dict[str, dt.datetime] = {}  # code -> when its hold ended, until purge frees it

    def rested(code: str) -> dt.timedelta:  # real time, not wall-clock time across a DST change
        return clock.now.astimezone(dt.UTC) - released[code].astimezone(dt.UTC)

    items = iter(range(10**9))
    operation = st.one_of(
        st.tuples(st.just("ready"), st.integers(0, 10**6)),
        st.tuples(st.just("pickup"), st.integers(0, 10**6)),
        st.tuples(st.just("advance"), st.integers(1, 40)),
        st.tuples(st.just("purge"), st.just(0)),
    )

    @hypothesis_settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(st.lists(operation, min_size=1, max_size=12))
    def run(operations: list[tuple[str, int]]) -> None:
        for kind, number in operations:
            if kind == "ready":
                draw = random.Random(number)
                svc = rigged(service, lambda _, draw=draw: draw.choice(pool), clock)
                recent = {c for c in released if rested(c) < dt.timedelta(30)}
                try:
                    entry = svc.ready("MAIN", f"P{next(items)}", patrons[number % 20].card)
                except CodesExhausted:  # only when every code of the pool is taken or resting
                    assert pool_codes <= active | set(released)
                    continue
                code = entry.code.compact
                assert code not in active, "an active code was issued twice"
                assert code not in recent, "a code was issued again within 30 days"
                active.add(code)
                released.pop(code, None)
            elif kind == "pickup" and active:
                code = sorted(active)[number % len(active)]
                service.pickup(code)
                active.remove(code)
                released[code] = clock.now
            elif kind == "advance":
                clock.advance(days=number)
            elif kind == "purge":  # frees the codes that have rested 30 days
                service.purge()
                for code in list(released):
                    if rested(code) >= dt.timedelta(30):
                        del released[code]
            shelf = [e.code.compact for e in service.shelf("MAIN")]
            assert sorted(shelf) == sorted(active)  # the database agrees with the model

    run()


def test_ready_gives_a_code_section_and_pickup_by(service: HoldService, patrons) -> None:
    entry = service.ready("main", ITEM, patrons[0].card)
    assert entry.branch == "MAIN" and entry.branch_name == "Central Library"
    assert entry.mode is PickupMode.SHELF
    assert entry.section == entry.code.compact[0]
    assert len(entry.code.compact) == 6 and entry.code.display[3] == "-"
    # demo MAIN: 7 days, closed Sundays; Monday 23rd + 7 = Monday 30th
    assert entry.pickup_by == dt.date(2026, 11, 30)
    assert service.shelf() == [entry]


def test_explicit_pickup_by(service: HoldService, patrons) -> None:
    entry = service.ready("MAIN", ITEM, patrons[0].card, pickup_by=dt.date(2026, 12, 24))
    assert entry.pickup_by == dt.date(2026, 12, 24)


def test_holds_of_one_patron_get_unrelated_codes(service: HoldService, patrons) -> None:
    codes = {service.ready("MAIN", f"{ITEM}{n}", patrons[0].card).code for n in range(30)}
    assert len(codes) == 30
    assert len({code.section for code in codes}) > 5


def test_same_item_twice_is_a_conflict_that_writes_nothing(service: HoldService, patrons) -> None:
    first = service.ready("MAIN", ITEM, patrons[0].card)
    before = snapshot(service)
    with pytest.raises(Conflict, match=f"already on the hold shelf at MAIN \\(code {first.code}"):
        service.ready("EAST", ITEM, patrons[1].card)
    assert snapshot(service) == before


@pytest.mark.parametrize(
    ("branch", "item", "card", "pickup_by", "error", "message"),
    [
        ("NOWHERE", ITEM, "21010009", None, UnknownBranch, "unknown branch 'NOWHERE'"),
        ("MAIN", "", "21010009", None, InvalidInput, "item barcode is empty"),
        ("MAIN", "x" * 65, "21010009", None, InvalidInput, "longer than 64"),
        ("MAIN", "3901\x1b[2J", "21010009", None, InvalidInput, "characters no barcode has"),
        ("MAIN", ITEM, " ", None, InvalidInput, "card number is empty"),
        ("MAIN", ITEM, "2101\x00", None, InvalidInput, "characters no barcode has"),
        ("MAIN", ITEM, "21010009", dt.date(2026, 11, 1), InvalidInput, "in the past"),
        ("MAIN", ITEM, "21010009", dt.date(2031, 1, 1), InvalidInput, "more than a year"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    service: HoldService, branch, item, card, pickup_by, error, message
) -> None:
    before = snapshot(service)
    with pytest.raises(error, match=message):
        service.ready(branch, item, card, pickup_by=pickup_by)
    assert snapshot(service) == before


# -- ending holds -----------------------------------------------------------------------------


def test_pickup_by_code_as_typed(service: HoldService, patrons) -> None:
    entry = service.ready("MAIN", ITEM, patrons[0].card)
    typed = entry.code.compact.lower()
    assert service.pickup(f" {typed[:2]} {typed[2:]} ") == entry
    assert service.shelf() == []


def test_pickup_by_item(service: HoldService, patrons) -> None:
    entry = service.ready("EAST", ITEM, patrons[0].card)
    assert service.pickup(item=f" {ITEM} ") == entry
    with pytest.raises(NotFound, match="no active hold for item"):
        service.pickup(item=ITEM)


def test_second_pickup_unknown_and_invalid_codes_change_nothing(
    service: HoldService, patrons
) -> None:
    entry = service.ready("MAIN", ITEM, patrons[0].card)
    kept = service.ready("MAIN", ITEM + "9", patrons[1].card)
    service.pickup(entry.code.display)
    before = snapshot(service)
    with pytest.raises(Conflict, match=f"hold with code {entry.code.display} has already ended"):
        service.pickup(entry.code.display)
    with pytest.raises(Conflict, match="already ended"):
        service.cancel(entry.code.display)
    unknown = next(
        code
        for n in range(5000)
        if (code := ShelfCodec(service.settings.hashids_salt, 6).encode(n))
        and code not in {entry.code, kept.code}
    )
    with pytest.raises(NotFound, match=f"no active hold has code {unknown.display}"):
        service.pickup(unknown.display)
    with pytest.raises(InvalidShelfCode, match="not a valid shelf code"):
        service.pickup(kept.code.compact[:-1] + ("C" if kept.code.compact[-1] != "C" else "D"))
    with pytest.raises(InvalidInput, match="either a shelf code or an item"):
        service.pickup()
    assert snapshot(service) == before
    assert service.shelf() == [kept]


def test_cancel(service: HoldService, patrons) -> None:
    entry = service.ready("MAIN", ITEM, patrons[0].card)
    assert service.cancel(entry.code.display) == entry
    assert service.shelf() == []


def test_expire_ends_overdue_holds_and_lists_them_in_shelving_order(
    service: HoldService, clock: Clock, patrons
) -> None:
    early = [service.ready("MAIN", f"A{n}", p.card) for n, p in enumerate(patrons[:8])]
    clock.advance(days=3)
    late = service.ready("MAIN", "B1", patrons[9].card)
    desk = service.ready("EAST", "B2", patrons[10].card, pickup_by=dt.date(2026, 11, 27))
    clock.advance(days=5)  # Tue 1 Dec: the early ones (pickup by Mon 30th) are overdue
    assert service.expire() == sorted([*early, desk], key=lambda e: (e.branch, e.code))
    assert service.shelf() == [late]
    assert service.expire() == []
    # an explicit day; any future day is refused, tomorrow too: the patron has all of the
    # pickup-by day (a nightly job runs after midnight)
    clock.advance(days=2)  # Thu 3 Dec, the late hold's last day
    for future in (dt.date(2026, 12, 4), dt.date(2026, 12, 31)):
        with pytest.raises(InvalidInput, match="ahead of time"):
            service.expire(on=future)
    assert service.shelf() == [late]
    assert service.expire(on=dt.date(2026, 12, 2)) == []  # a past day: nothing was due then
    clock.advance(days=1)
    assert service.expire(on=dt.date(2026, 12, 4)) == [late]


# -- modes and patrons ------------------------------------------------------------------------


def test_opt_out_moves_future_holds_to_the_desk_and_lists_shelf_holds(
    service: HoldService, patrons
) -> None:
    patron, other = patrons[0], patrons[1]
    on_shelf = service.ready("MAIN", "I1", patron.card)
    others = service.ready("MAIN", "I2", other.card)
    view = service.opt_out(patron.card.replace("", " ").strip())  # typed with spaces
    assert view.preference is PickupMode.DESK and view.chosen
    assert [(h.code, h.move_to_desk) for h in view.holds] == [(on_shelf.code, True)]
    # repeatable, no reason needed
    assert service.opt_out(patron.card) == view
    new = service.ready("MAIN", "I3", patron.card)
    assert new.mode is PickupMode.DESK and not new.move_to_desk
    to_move = [e for e in service.shelf() if e.move_to_desk]
    assert [e.code for e in to_move] == [on_shelf.code]
    moved = service.moved_to_desk(on_shelf.code.display)
    assert moved.mode is PickupMode.DESK and not moved.move_to_desk
    with pytest.raises(Conflict, match="already at the desk"):
        service.moved_to_desk(on_shelf.code.display)
    assert {e.code: e.mode for e in service.shelf()} == {
        on_shelf.code: PickupMode.DESK,
        others.code: PickupMode.SHELF,
        new.code: PickupMode.DESK,
    }


def test_opt_in_reverses_and_deletes_the_preference(service: HoldService, patrons) -> None:
    patron = patrons[0]
    shelf_hold = service.ready("MAIN", "I1", patron.card)
    service.opt_out(patron.card)
    assert count(service, PatronPreference) == 1
    view = service.opt_in(patron.card)
    assert view.preference is PickupMode.SHELF and not view.chosen
    assert [h.move_to_desk for h in view.holds] == [False]
    assert count(service, PatronPreference) == 0
    assert service.ready("MAIN", "I2", patron.card).mode is PickupMode.SHELF
    assert service.opt_in(patron.card).preference is PickupMode.SHELF  # repeatable
    assert shelf_hold.code in {h.code for h in service.patron(patron.card).holds}


def test_patron_show_tells_what_the_library_holds(service: HoldService, patrons) -> None:
    patron = patrons[0]
    assert service.patron(patron.card).as_dict() == {
        "preference": "shelf",
        "chosen": False,
        "holds": [],
    }
    a = service.ready("MAIN", "I1", patron.card)
    b = service.ready("EAST", "I2", patron.card)
    service.ready("MAIN", "I3", patrons[1].card)
    assert {h.code for h in service.patron(patron.card).holds} == {a.code, b.code}


def test_library_default_of_desk(tmp_path: Path, service: HoldService, clock, patrons) -> None:
    """Where the library keeps every hold at the desk, a patron may opt into the open shelf."""
    settings = load_settings(
        service.settings.instance_dir, environ={"HOLDSHELF_DEFAULT_PICKUP": "desk"}
    )
    desk_first = HoldService(settings, service._sessions, clock)
    assert desk_first.ready("MAIN", "I1", patrons[0].card).mode is PickupMode.DESK
    assert desk_first.opt_in(patrons[0].card).chosen
    assert desk_first.ready("MAIN", "I2", patrons[0].card).mode is PickupMode.SHELF


# -- codes: uniqueness, quarantine, exhaustion --------------------------------------------------


def test_a_code_rests_30_days_before_reuse(service: HoldService, clock: Clock, patrons) -> None:
    first, second = issuable(service.settings)[:2]
    always_first = rigged(service, fixed_numbers(first), clock)
    entry = always_first.ready("MAIN", "I1", patrons[0].card)
    always_first.pickup(entry.code.display)
    clock.advance(days=29)
    service.purge()
    again = rigged(service, fixed_numbers(first, second), clock).ready(
        "MAIN", "I2", patrons[1].card
    )
    assert again.code != entry.code
    clock.advance(days=1, seconds=1)
    assert service.purge().freed_codes == 1
    reused = rigged(service, fixed_numbers(first), clock).ready("MAIN", "I3", patrons[2].card)
    assert reused.code == entry.code


def test_the_30_days_of_rest_are_real_days_across_a_clock_change(
    service: HoldService, clock: Clock, patrons
) -> None:
    """Released the day before Chicago's clocks spring forward, a code has rested only
    29 days 23 hours at the same wall-clock time 30 days later: it stays resting an hour more."""
    number = issuable(service.settings)[0]
    only = rigged(service, fixed_numbers(number), clock)
    clock.now = dt.datetime(2027, 3, 13, 9, 30, tzinfo=clock.now.tzinfo)
    entry = only.ready("MAIN", "I1", patrons[0].card)
    only.pickup(entry.code.display)
    clock.now = dt.datetime(2027, 4, 12, 9, 30, tzinfo=clock.now.tzinfo)  # 30 days on the wall
    assert service.purge().freed_codes == 0
    with pytest.raises(CodesExhausted):
        only.ready("MAIN", "I2", patrons[1].card)
    clock.advance(hours=1)
    assert service.purge().freed_codes == 1
    assert only.ready("MAIN", "I3", patrons[2].card).code == entry.code


def test_codes_are_per_branch(service: HoldService, clock: Clock, patrons) -> None:
    number = issuable(service.settings)[0]
    same = rigged(service, fixed_numbers(number), clock)
    main = same.ready("MAIN", "I1", patrons[0].card)
    east = same.ready("EAST", "I2", patrons[1].card)
    assert main.code == east.code
    with pytest.raises(InvalidInput, match="active at EAST, MAIN: name the branch"):
        service.pickup(main.code.display)
    assert service.pickup(main.code.display, branch_id="east") == east
    assert service.pickup(main.code.display) == main


def test_a_full_branch_says_so(service: HoldService, clock: Clock, patrons) -> None:
    number = issuable(service.settings)[0]
    same = rigged(service, fixed_numbers(number), clock)
    same.ready("MAIN", "I1", patrons[0].card)
    before = snapshot(service)
    with pytest.raises(CodesExhausted, match="no free shelf code left: raise its code_length"):
        same.ready("MAIN", "I2", patrons[1].card)
    assert snapshot(service) == before


def test_code_length_per_branch(tmp_path: Path, database_url: str, clock, patrons) -> None:
    instance = make_instance(tmp_path / "instance", database_url)
    config = instance / "holdshelf.toml"
    config.write_text(
        config.read_text().replace("pickup_days = 5", "pickup_days = 5\ncode_length = 8")
    )
    if database_url.startswith("sqlite"):
        database.upgrade(database.make_engine(database_url))
    service = Holdshelf(load_settings(instance, environ={}), clock=clock).service
    entry = service.ready("EAST", "I1", patrons[0].card)
    assert (
        len(entry.code.compact) == 8
        and entry.code.display == entry.code.compact[:4] + "-" + entry.code.compact[4:]
    )
    assert service.pickup(entry.code.display) == entry
    service.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_claim_of_one_code_takes_another(
    service: HoldService, clock: Clock, patrons
) -> None:
    """A writer whose candidate was claimed by an uncommitted concurrent transaction waits,
    finds its INSERT ... ON CONFLICT DO NOTHING did nothing, and takes the next candidate."""
    # (SQLite serialises writers with BEGIN IMMEDIATE: this race cannot happen there.)
    first, second = issuable(service.settings)[:2]
    contested = ShelfCodec(service.settings.hashids_salt, 6).encode(first)
    blocker = service.engine.connect()
    transaction = blocker.begin()
    blocker.execute(
        text("INSERT INTO shelf_codes (branch, code) VALUES ('MAIN', :code)"),
        {"code": contested.compact},
    )
    result: dict[str, object] = {}

    def clerk() -> None:
        writer = rigged(service, fixed_numbers(*[first] * 16, second), clock)
        try:
            result["entry"] = writer.ready("MAIN", "I1", patrons[0].card)
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=clerk)
    thread.start()
    thread.join(timeout=1.5)
    assert thread.is_alive(), "the clerk should be waiting on the uncommitted claim"
    transaction.commit()
    blocker.close()
    thread.join(timeout=10)
    assert "error" not in result
    assert result["entry"].code != contested
    assert result["entry"].code == ShelfCodec(service.settings.hashids_salt, 6).encode(second)


# -- retention --------------------------------------------------------------------------------


def test_ended_holds_leave_no_link_by_default(service: HoldService, patrons) -> None:
    a = service.ready("MAIN", "I1", patrons[0].card)
    b = service.ready("MAIN", "I2", patrons[1].card)
    c = service.ready("MAIN", "I3", patrons[2].card)
    service.pickup(a.code.display)
    service.cancel(b.code.display)
    with service._sessions() as session:
        rows = session.execute(select(Hold.code, Hold.patron, Hold.status)).all()
    assert [(code, status) for code, _, status in rows] == [(c.code.compact, "ready")]


def test_retention_days_keep_the_link_until_purge(
    service: HoldService, clock: Clock, patrons
) -> None:
    settings = load_settings(
        service.settings.instance_dir, environ={"HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": "3"}
    )
    keeping = HoldService(settings, service._sessions, clock)
    entry = keeping.ready("MAIN", "I1", patrons[0].card)
    keeping.pickup(entry.code.display)
    with pytest.raises(Conflict, match="already ended"):
        keeping.pickup(entry.code.display)
    with keeping._sessions() as session:
        ended = session.scalars(select(Hold)).one()
    assert ended.status == "picked_up" and ended.patron is not None
    clock.advance(days=2)
    assert keeping.purge().unlinked_holds == 0
    clock.advance(days=1)
    assert keeping.purge().unlinked_holds == 1
    assert count(service, Hold) == 0
    assert count(service, ShelfCodeClaim) == 1  # the code still rests


def test_daily_counts_are_all_that_remains(service: HoldService, clock: Clock, patrons) -> None:
    entries = [service.ready("MAIN", f"I{n}", p.card) for n, p in enumerate(patrons[:5])]
    service.opt_out(patrons[5].card)
    service.ready("EAST", "D1", patrons[5].card)
    service.pickup(entries[0].code.display)
    service.pickup(entries[1].code.display)
    service.cancel(entries[2].code.display)
    service.moved_to_desk(entries[3].code.display)
    clock.advance(days=8)
    service.expire()
    by_day = {(d.day, d.branch): d.counts for d in service.stats()}
    assert by_day[(dt.date(2026, 11, 23), "MAIN")] == {
        "ready": {"shelf": 5},
        "picked_up": {"shelf": 2},
        "cancelled": {"shelf": 1},
        "moved_to_desk": {"desk": 1},
    }
    assert by_day[(dt.date(2026, 11, 23), "EAST")] == {"ready": {"desk": 1}}
    assert by_day[(dt.date(2026, 12, 1), "MAIN")] == {"expired": {"desk": 1, "shelf": 1}}
    assert by_day[(dt.date(2026, 12, 1), "EAST")] == {"expired": {"desk": 1}}
    assert [d.day for d in service.stats(since=dt.date(2026, 12, 1))] == [dt.date(2026, 12, 1)] * 2
    assert {u.branch: u.active_holds for u in service.usage()} == {"MAIN": 0, "EAST": 0}
    assert {u.branch: u.codes_in_use for u in service.usage()} == {"MAIN": 5, "EAST": 1}


@pytest.mark.parametrize("kept_days", [0, 7])
def test_expire_ends_exactly_the_overdue_holds_with_every_effect_of_ending_one(
    instance_dir: Path, clock: Clock, patrons, kept_days: int
) -> None:
    """Expiry ends its holds in a few statements over the overdue set: each must still do all
    that ending one hold does (status, time, code released, counters, queued notices dropped
    with their contacts, a registered hold's sealed contacts, the row itself at 0 days), and
    touch nothing of a hold that is not overdue."""
    from holdshelf.storage.models import Notice

    config = instance_dir / "holdshelf.toml"  # a mail server (never reached: no worker runs)
    head, sep, tail = config.read_text().partition("\n[branches.")
    mail = '[mail]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"\nsender = "h@example.org"\n'
    config.write_text(head + "\n" + mail + sep + tail)
    settings = load_settings(
        instance_dir, environ={"HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": str(kept_days)}
    )
    parts = Holdshelf(settings, clock=clock)
    try:
        service = parts.service
        service.opt_out(patrons[3].card)  # a desk hold among them
        overdue = [
            service.ready(b, f"O{n}", p.card, email=p.email)
            for n, (b, p) in enumerate(
                zip(["MAIN", "EAST", "MAIN", "MAIN"], patrons[:4], strict=True)
            )
        ]
        registered = service.ready_request(
            service.hold_request("EAST", "R1", patrons[4].card, email=patrons[4].email),
            on_scan=True,
        )
        clock.advance(days=3)
        waiting = service.ready("MAIN", "W1", patrons[5].card, email=patrons[5].email)
        clock.advance(days=5)
        now = clock()
        pulled = service.expire()
        expected = sorted([*overdue, registered], key=lambda e: (e.branch, e.code))
        assert [(e.branch, e.code) for e in pulled] == [(e.branch, e.code) for e in expected]
        assert pulled[[e.code for e in expected].index(registered.code)].awaiting_scan_since is None
        assert service.shelf() == [waiting]
        ended = {(e.branch, e.code.compact) for e in expected}
        with parts.sessions() as session:
            holds = session.scalars(select(Hold)).all()
            claims = {
                (c.branch, c.code): c.released_at for c in session.scalars(select(ShelfCodeClaim))
            }
            notices = session.scalars(select(Notice)).all()
            counts = {
                (d.day, d.branch, d.event, d.mode): d.count
                for d in session.scalars(select(DailyCount).where(DailyCount.event == "expired"))
            }
        if kept_days == 0:
            assert [(h.branch, h.code) for h in holds] == [("MAIN", waiting.code.compact)]
        else:
            done = [h for h in holds if (h.branch, h.code) in ended]
            assert len(done) == len(ended) and len(holds) == len(ended) + 1
            assert all(h.status == "expired" and h.ended_at == now for h in done)
            assert all(h.on_scan is None and h.patron for h in done)
        assert all(
            h.status == "ready" and h.ended_at is None
            for h in holds
            if h.code == waiting.code.compact
        )
        assert {k for k, v in claims.items() if v is not None} == ended
        assert all(v == now for k, v in claims.items() if k in ended)
        by_code = {(n.branch, n.code): n for n in notices}
        assert len(notices) == 5  # the registered hold's notices never queued
        for key, notice in by_code.items():
            if key in ended:
                assert (notice.status, notice.sealed, notice.finished_at) == ("dropped", None, now)
            else:
                assert notice.status == "queued" and notice.sealed
        assert counts == {
            (now.date(), "EAST", "expired", "shelf"): 2,
            (now.date(), "MAIN", "expired", "shelf"): 2,
            (now.date(), "MAIN", "expired", "desk"): 1,
        }
        assert service.expire() == []
    finally:
        parts.close()


def test_shelf_sections_count_what_stands_where(
    service: HoldService, clock: Clock, patrons
) -> None:
    """The counts by section read an index, not the rows: they must still agree with the
    holds themselves, a registered hold awaiting its scan in neither place."""
    service.opt_out(patrons[1].card)
    for n, patron in enumerate(patrons[:6]):
        service.ready("MAIN", f"S{n}", patron.card)
    registered = service.hold_request("MAIN", "R1", patrons[6].card)
    service.ready_request(registered, on_scan=True)
    clock.advance(days=30)  # the first holds are past their pickup-by date ...
    service.ready("MAIN", "LATE", patrons[7].card)  # ... this one is not
    sections = service.shelf_sections("MAIN")
    entries = service.shelf("MAIN")
    today = clock.today()
    expected: dict[str, list[int]] = {}
    for entry in entries:
        counts = expected.setdefault(entry.code.compact[0], [0, 0, 0, 0])
        counts[0] += 1
        if not entry.awaits_scan:
            counts[1 if entry.mode is PickupMode.SHELF else 2] += 1
        counts[3] += entry.pickup_by < today
    assert {s.section: [s.holds, s.on_shelf, s.at_desk, s.overdue] for s in sections} == expected
    assert sum(s.holds for s in sections) == 8
    assert sum(s.on_shelf + s.at_desk for s in sections) == 7
    assert sum(s.at_desk for s in sections) == 1
    assert sum(s.overdue for s in sections) == 7
