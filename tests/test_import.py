"""Importing holds-ready reports from the ILS (CSV), and the exports for the library."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import os
import re
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from holdshelf.errors import InvalidInput
from holdshelf.importer import import_holds, spreadsheet_safe
from holdshelf.report_reading import parse_columns, parse_report_date
from holdshelf.service import HoldService
from holdshelf.storage.bulk import among, insert_many
from holdshelf.storage.models import Hold, ShelfCodeClaim
from holdshelf.workflow import making_ready, ready_batches
from holdshelf.workflow.ready_batches import ReadyBatches
from tests.conftest import Patron, assert_no_patron_data, raw_database_bytes
from tests.helpers.plans import query_plan


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def generic_report(tmp_path: Path, patrons: list[Patron], bad: bool = True) -> Path:
    rows = ["item_barcode,patron_card,pickup_by,patron_name,address"]
    for n, p in enumerate(patrons[:6]):
        rows.append(f'39010000{n},{p.card},,"{p.name}","12 {p.name.split()[-1]} Street"')
    if bad:
        rows.append(f",{patrons[6].card},,{patrons[6].name},x")  # line 8: no barcode
        rows.append(f"390100099,{patrons[7].card},2026-13-45,{patrons[7].name},x")  # line 9
        rows.append(f"390100098,,2026-12-01,{patrons[8].name},x")  # line 10: no card
    return write(tmp_path / "holds.csv", rows)


def test_good_rows_are_imported_and_bad_rows_listed(service, tmp_path, patrons) -> None:
    report = import_holds(service, generic_report(tmp_path, patrons), "MAIN")
    assert report.rows == 9
    assert len(report.imported) == 6
    assert report.bad == [
        (8, "the item barcode is empty"),
        (9, "the pickup-by date must be a date as YYYY-MM-DD"),
        (10, "the card number is empty"),
    ]
    assert len(service.shelf("MAIN")) == 6
    again = import_holds(service, generic_report(tmp_path, patrons), "MAIN")
    assert (len(again.imported), again.skipped) == (0, 6)  # the same report, minutes later
    assert len(service.shelf("MAIN")) == 6


def test_all_or_nothing(service, tmp_path, patrons) -> None:
    report = import_holds(service, generic_report(tmp_path, patrons), "MAIN", all_or_nothing=True)
    assert report.imported == [] and len(report.bad) == 3
    assert service.shelf() == []
    good = import_holds(
        service, generic_report(tmp_path, patrons, bad=False), "MAIN", all_or_nothing=True
    )
    assert len(good.imported) == 6 and len(service.shelf()) == 6


def test_a_row_failing_in_the_database_rolls_back_alone(service, tmp_path, patrons) -> None:
    service.ready("EAST", "390100003", patrons[9].card)  # this item waits at another branch
    report = import_holds(service, generic_report(tmp_path, patrons, bad=False), "MAIN")
    assert len(report.imported) == 5
    assert report.bad == [
        (
            5,
            "item 390100003 is already on the hold shelf for another patron at EAST (code "
            f"{service.shelf('EAST')[0].code.display})",
        )
    ]
    nothing = import_holds(
        service, generic_report(tmp_path, patrons, bad=False), "EAST", all_or_nothing=True
    )
    assert nothing.imported == [] and len(service.shelf("EAST")) == 1


def test_rows_over_many_batches_are_each_reported(service, tmp_path, patrons, monkeypatch) -> None:
    """On SQLite an import commits every tenth of a second, to let the desk in; on PostgreSQL
    every 2,000 rows. Here every row or two: each row is still imported or listed once."""
    monkeypatch.setattr(making_ready, "BATCH_SIZE", 2)
    monkeypatch.setattr(making_ready, "SQLITE_BATCH_SECONDS", 0)
    service.ready("EAST", "390100003", patrons[9].card)
    report = import_holds(service, generic_report(tmp_path, patrons), "MAIN")
    assert [line for line, _ in report.imported] == [2, 3, 4, 6, 7]
    assert [line for line, _ in report.bad] == [5, 8, 9, 10]
    assert len(service.shelf("MAIN")) == 5
    (main,) = [day for day in service.stats() if day.branch == "MAIN"]
    assert main.counts["ready"] == {"shelf": 5}


def test_dry_run_imports_nothing(service, tmp_path, patrons) -> None:
    report = import_holds(service, generic_report(tmp_path, patrons), "MAIN", dry_run=True)
    assert len(report.imported) == 6 and not report.committed
    assert service.shelf() == []


@pytest.mark.parametrize(
    ("fmt", "header", "row"),
    [
        (
            "koha",
            "barcode;cardnumber;expirationdate;surname;firstname;email;title",
            "{item};{card};2026-12-05 00:00:00;Okafor;Ana;ana@example.org;Middlemarch",
        ),
        (
            "evergreen",
            "Copy Barcode\tPatron Barcode\tShelf Expire Time\tFamily Name\tTitle",
            "{item}\t{card}\t2026-12-05T23:59:59-06\tOkafor\tMiddlemarch",
        ),
        (
            "sierra",
            "ITEM BARCODE,P BARCODE,PICKUP BY DATE,PATRN NAME,TITLE",
            '{item},{card},12-05-2026,"OKAFOR, ANA",Middlemarch',
        ),
    ],
)
def test_ils_report_formats(service, tmp_path, patrons, fmt, header, row) -> None:
    lines = [header] + [row.format(item=f"I{n}", card=p.card) for n, p in enumerate(patrons[:3])]
    report = import_holds(service, write(tmp_path / f"{fmt}.csv", lines), "MAIN", fmt)
    assert (len(report.imported), report.bad) == (3, [])
    assert {e.pickup_by.isoformat() for e in service.shelf()} == {"2026-12-05"}


def test_missing_column_and_unknown_format(service, tmp_path) -> None:
    path = write(tmp_path / "x.csv", ["barcode,name", "1,Ana"])
    with pytest.raises(InvalidInput, match="no column for the card number"):
        import_holds(service, path, "MAIN", "koha")
    with pytest.raises(InvalidInput, match="unknown format 'alma'"):
        import_holds(service, path, "MAIN", "alma")
    with pytest.raises(InvalidInput, match="the file is empty"):
        import_holds(service, write(tmp_path / "empty.csv", []), "MAIN")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("item_barcode,patron_card,title\n1,2,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match="not utf-8-sig text"):
        import_holds(service, latin, "MAIN")
    assert len(import_holds(service, latin, "MAIN", encoding="cp1252").imported) == 1


def test_a_shifted_row_is_refused_not_guessed_at(service, tmp_path, patrons) -> None:
    """An unquoted comma in a name moves the card into the barcode column."""
    ana, ben = patrons[0], patrons[1]
    path = write(
        tmp_path / "shifted.csv",
        ["patron_name,patron_card,item_barcode", f"{ana.name},{ana.card},I1", f"x,{ben.card},I2"],
    )
    path.write_text(path.read_text().replace(ana.name, ana.name.replace(" ", ", ")))
    report = import_holds(service, path, "MAIN")
    assert report.bad == [(2, "4 cells where the header has 3")]
    assert [line for line, _ in report.imported] == [3] and len(service.shelf()) == 1
    # the same with an empty last column: the shifted row's extra cell is empty
    empty_last = write(
        tmp_path / "empty-last.csv",
        ["patron_name,patron_card,item_barcode,title", f"Okafor, Ana,{ana.card},I3,"],
    )
    assert import_holds(service, empty_last, "MAIN").bad == [(2, "5 cells where the header has 4")]
    assert len(service.shelf()) == 1
    assert_no_patron_data(raw_database_bytes(service), [ana])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_big_imports_refresh_the_planner_statistics(service, tmp_path) -> None:
    """Plans cached while the tables were empty would scan them whole for ever (where
    autovacuum is off, as on this machine): a big batch runs ANALYZE, a small one does not."""
    from sqlalchemy import text

    def estimated_holds() -> float:
        with service.engine.connect() as connection:
            return connection.execute(
                text("SELECT reltuples FROM pg_class WHERE relname = 'holds'")
            ).scalar_one()

    small = write(tmp_path / "small.csv", ["item_barcode,patron_card", "S1,2101", "S2,2102"])
    import_holds(service, small, "MAIN")
    assert estimated_holds() <= 0  # never analysed (-1), or empty when last analysed
    big = ["item_barcode,patron_card"] + [f"B{n},31{n:06d}" for n in range(250)]
    assert len(import_holds(service, write(tmp_path / "big.csv", big), "MAIN").imported) == 250
    assert estimated_holds() == 252


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_failing_analyze_loses_nothing(service, caplog) -> None:
    """ANALYZE is an optimisation: its failure is a warning, never a failed import."""
    from holdshelf.storage import database

    database.refresh_statistics(service.engine, ("no_such_table",))
    assert "ANALYZE after a bulk write failed (UndefinedTable)" in caplog.text


def test_unreadable_files_get_one_clear_message(service, tmp_path) -> None:
    runaway = write(tmp_path / "runaway.csv", ["item_barcode,patron_card", '1,"' + "9" * 200_000])
    with pytest.raises(InvalidInput, match="line 2 is not readable as CSV"):
        import_holds(service, runaway, "MAIN")
    good = write(tmp_path / "good.csv", ["item_barcode,patron_card", "1,2"])
    with pytest.raises(InvalidInput, match="unknown encoding 'bogus'"):
        import_holds(service, good, "MAIN", encoding="bogus")
    with pytest.raises(InvalidInput, match="is not utf-16 text"):
        import_holds(service, good, "MAIN", encoding="utf-16")
    assert service.shelf() == []


def test_other_patron_columns_are_never_stored(service, tmp_path, patrons) -> None:
    import_holds(service, generic_report(tmp_path, patrons), "MAIN")
    service.purge()
    raw = raw_database_bytes(service)
    assert_no_patron_data(raw, patrons)


def test_import_and_export_commands(service, tmp_path, patrons, capsys) -> None:
    from holdshelf.cli import main

    instance = str(service.settings.instance_dir)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(["--instance", instance, *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    path = str(generic_report(tmp_path, patrons))
    code, out, err = run("import", path, "--branch", "MAIN", "--dry-run")
    assert code == 1 and out.startswith("9 rows: would import 6, skipped 0 already active, 3 bad")
    code, out, err = run("import", path, "--branch", "MAIN")
    assert code == 1
    assert "  line 8: the item barcode is empty" in out
    assert err == "error: 3 rows were not imported (listed above)\n"
    code, out, _ = run("import", path, "--branch", "MAIN", "--all-or-nothing")
    assert out.startswith("9 rows: imported nothing of them, 3 bad")
    good = str(generic_report(tmp_path, patrons, bad=False))
    assert run("import", good, "--branch", "MAIN")[1].startswith(
        "6 rows: imported 0, skipped 6 already active, 0 bad"
    )
    code, out, _ = run("export", "holds", "--format", "csv")
    lines = out.strip().splitlines()
    assert lines[0] == "code,section,branch,branch_name,pickup_by,mode,move_to_desk"
    assert len(lines) == 7
    code, out, _ = run("export", "holds", "--format", "json")
    assert len(json.loads(out)) == 6
    target = tmp_path / "stats.csv"
    code, out, err = run("export", "stats", "--out", str(target))
    assert target.read_text().splitlines()[1].endswith(",MAIN,ready,shelf,6")
    code, _, err = run("import", str(tmp_path / "missing.csv"), "--branch", "MAIN")
    assert code == 1 and err.startswith("error: cannot read")
    code, _, err = run("export", "holds", "--out", str(tmp_path / "no-such-folder" / "x.csv"))
    assert code == 1 and err.startswith("error: cannot write") and err.count("\n") == 1
    for text in (out, err, target.read_text()):
        assert_no_patron_data(text, patrons)


def small_limit(service, megabytes: int = 1) -> HoldService:
    settings = dataclasses.replace(service.settings, import_max_bytes=megabytes * 1_000_000)
    return HoldService(settings, service.sessions, service.clock)


def test_an_endless_file_ends_with_one_line_at_the_size_limit(service, tmp_path) -> None:
    limited = small_limit(service)
    with pytest.raises(InvalidInput, match=r"/dev/zero is larger than 1 MB"):
        import_holds(limited, Path("/dev/zero"), "MAIN")
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)

    def endless() -> None:  # an ILS job gone wrong: a pipe that never stops
        with contextlib.suppress(BrokenPipeError), fifo.open("w") as pipe:
            pipe.write("item_barcode,patron_card\n")
            for n in range(10**7):
                pipe.write(f"I{n},2101000{n}\n")

    writer = threading.Thread(target=endless, daemon=True)
    writer.start()
    with pytest.raises(InvalidInput, match="is larger than 1 MB"):
        import_holds(limited, fifo, "MAIN")
    writer.join(timeout=10)
    assert service.shelf() == []


def test_a_file_bad_past_its_first_lines_is_reported_in_one_line(service, tmp_path) -> None:
    body = "item_barcode,patron_card\n" + "".join(f"I{n},2101{n}\n" for n in range(2000))
    report = tmp_path / "late.csv"
    report.write_bytes(body.encode() + b"I9,\xff\xfe\n")  # not UTF-8, 30 KB in
    with pytest.raises(InvalidInput, match="is not utf-8-sig text"):
        import_holds(service, report, "MAIN")
    assert service.shelf() == []


@pytest.mark.parametrize(
    ("fmt", "header", "named"),
    [
        ("generic", "item_barcode,patron_card,patron_card", "patron_card, patron_card"),
        ("koha", "barcode,cardnumber,borrowers.cardnumber", "cardnumber, borrowers_cardnumber"),
        ("generic", "item_barcode,Item Barcode,patron_card", "item_barcode, item_barcode"),
    ],
)
def test_a_column_named_twice_is_refused_by_name(service, tmp_path, fmt, header, named) -> None:
    report = write(tmp_path / "twice.csv", [header, "39010001,21010001,21010002"])
    with pytest.raises(InvalidInput, match=f"more than one column .*\\({named}\\)"):
        import_holds(service, report, "MAIN", fmt)
    assert service.shelf() == []


def test_csv_exports_never_carry_a_formula(service) -> None:
    from holdshelf.importer import export_holds

    settings = service.settings
    branch = dataclasses.replace(settings.branches["MAIN"], name='=HYPERLINK("http://x","y")')
    hostile = dataclasses.replace(settings, branches={**settings.branches, "MAIN": branch})
    entries = HoldService(hostile, service.sessions, service.clock)
    entries.ready("MAIN", "I1", "21010001")
    rows = list(csv.reader(io.StringIO(export_holds(entries.shelf(), "csv"))))
    assert rows[1][3] == '\'=HYPERLINK("http://x","y")'
    for cell in ("+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_safe(cell) == "'" + cell
    assert spreadsheet_safe("K7Q-4MX") == "K7Q-4MX" and spreadsheet_safe(3) == 3


def test_one_report_listing_an_item_for_two_patrons_is_refused_not_guessed(
    service, tmp_path, patrons
) -> None:
    anna, ben = patrons[0], patrons[1]
    first = write(tmp_path / "first.csv", ["item_barcode,patron_card", f"39010001,{anna.card}"])
    assert len(import_holds(service, first, "MAIN").imported) == 1
    both = write(
        tmp_path / "both.csv",
        ["item_barcode,patron_card", f"39010001,{anna.card}", f"39010001,{ben.card}"],
    )
    report = import_holds(service, both, "MAIN")
    assert report.skipped == 1  # Anna's hold, reported again: the same hold
    assert report.bad == [(3, "item 39010001 is listed for another patron on line 2")]
    assert report.retrapped == []
    assert_no_patron_data(report.bad[0][1], patrons)
    assert service.patron(ben.card).holds == [] and len(service.patron(anna.card).holds) == 1


def test_a_re_trap_ends_the_other_patrons_hold_and_makes_the_new_one(
    service, tmp_path, patrons
) -> None:
    """Anna's hold was cancelled in the ILS and the item trapped for Ben: his report row ends
    her hold as any cancel does (link erased, code resting, counted) and makes his."""
    from holdshelf.storage.models import ShelfCodeClaim

    anna, ben = patrons[0], patrons[1]
    first = write(tmp_path / "first.csv", ["item_barcode,patron_card", f"39010001,{anna.card}"])
    ((_, annas),) = import_holds(service, first, "MAIN").imported
    retrap = write(tmp_path / "retrap.csv", ["item_barcode,patron_card", f"39010001,{ben.card}"])
    assert import_holds(service, retrap, "MAIN", dry_run=True).retrapped[0][1] == annas
    assert service.patron(anna.card).holds == [annas]  # a dry run ends nothing
    report = import_holds(service, retrap, "MAIN")
    ((line, ended, made),) = report.retrapped
    assert (line, ended.code, report.imported) == (2, annas.code, [(2, made)])
    assert service.patron(anna.card).holds == []
    assert service.patron(ben.card).holds == [made] and made.code != annas.code
    with service.sessions() as session:
        claim = session.get(ShelfCodeClaim, ("MAIN", annas.code.compact))
        assert claim is not None and claim.released_at is not None  # resting, not reissued
    (main,) = [day for day in service.stats() if day.branch == "MAIN"]
    assert (main.counts["ready"], main.counts["cancelled"]) == ({"shelf": 2}, {"shelf": 1})
    again = import_holds(service, retrap, "MAIN")  # Ben's row again: his hold, skipped
    assert (again.skipped, again.retrapped, again.bad) == (1, [], [])
    assert_no_patron_data(raw_database_bytes(service), [anna])


def test_a_re_trap_is_said_by_the_import_command(dated_cli, tmp_path, patrons) -> None:
    anna, ben = patrons[0], patrons[1]
    first = write(tmp_path / "first.csv", ["item_barcode,patron_card", f"39010001,{anna.card}"])
    dated_cli.ok("import", str(first), "--branch", "MAIN")
    (annas,) = dated_cli.ok("shelf", "--json").json
    retrap = write(tmp_path / "retrap.csv", ["item_barcode,patron_card", f"39010001,{ben.card}"])
    out = dated_cli.ok("import", str(retrap), "--branch", "MAIN").out.splitlines()
    (bens,) = dated_cli.ok("shelf", "--json").json
    assert out == [
        "1 rows: imported 1, skipped 0 already active, 0 bad",
        f"  line 2: re-trapped for another patron: {annas['code']} ended as cancelled, new "
        f"hold {bens['code']} (its slip replaces the old one)",
    ]
    assert_no_patron_data("".join(dated_cli.outputs), patrons)


# -- reports as the ILSes export them (tests/fixtures/imports, written from their sources) ---

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
# Everyone the fixtures name: only the cards reach Holdshelf, and none of it may be kept.
FIXTURE_PATRONS = [
    Patron("21010000000011", "Ana Okafor", "ana.okafor@example.org", "+1 312 555 0101"),
    Patron("21010000000029", "Bo Lindqvist", "bo.lindqvist@example.org", "+1 312 555 0102"),
    Patron("21010000000037", "Chidi Marquez", "chidi.marquez@example.org", "+1 312 555 0103"),
    Patron("21010000000045", "Dolores Nakamura", "dolores.n@example.org", "+1 312 555 0104"),
    Patron("21010000000052", "Eun-ji Petrov", "eunji.petrov@example.org", "+1 312 555 0105"),
]
POLARIS_COLUMNS = "title,-,-,-,-,pickup_by,patron_card,item_barcode"
CARD_EMPTY = "the card number is empty"


@pytest.mark.parametrize(
    ("fixture", "fmt", "columns", "bad", "dates"),
    [
        # two awaiting pickup (UTC: 05:59Z on the 28th is the 27th in Chicago), two other
        # statuses left out, one without a requester barcode, one expired in FOLIO
        ("folio-requests.csv", "folio", None, [(5, CARD_EMPTY)], ["2026-11-27", "2026-11-30"]),
        (
            "evergreen-holds-shelf.csv",
            "evergreen",
            None,
            [(4, CARD_EMPTY)],
            ["2026-11-27", "2026-11-28", "2026-11-30"],
        ),
        (
            "evergreen-holds-grid-eg2.csv",
            "evergreen",
            None,
            [(3, "the pickup-by date is not a date")],
            ["2026-11-28"],
        ),
        (
            "shoutbomb-holds.txt",
            "shoutbomb",
            None,
            [(4, CARD_EMPTY)],
            ["2026-11-27", "2026-11-28", "2026-11-30"],
        ),
        (
            "polaris-holds-with-item.txt",
            "generic",
            POLARIS_COLUMNS,
            [(3, "the pickup-by date must be a date as YYYY-MM-DD")],
            ["2026-11-27", "2026-11-28", "2026-11-30"],
        ),
        (
            "koha-waiting-holds.csv",
            "koha",
            None,
            [(4, CARD_EMPTY)],
            ["2026-11-27", "2026-11-28", "2026-11-30"],
        ),
    ],
)
def test_reports_libraries_export(service, fixture, fmt, columns, bad, dates) -> None:
    names = parse_columns(columns) if columns else None
    report = import_holds(service, FIXTURES / fixture, "MAIN", fmt, columns=names)
    assert report.bad == bad
    assert sorted(e.pickup_by.isoformat() for e in service.shelf("MAIN")) == dates
    assert len(report.imported) == len(dates)
    again = import_holds(service, FIXTURES / fixture, "MAIN", fmt, columns=names)
    assert (again.imported, again.skipped) == ([], len(dates))
    service.purge()
    assert_no_patron_data(raw_database_bytes(service), FIXTURE_PATRONS)


def test_a_folio_export_keeps_only_requests_awaiting_pickup(service) -> None:
    report = import_holds(service, FIXTURES / "folio-requests.csv", "MAIN", "folio")
    assert (report.rows, report.not_waiting, len(report.imported)) == (6, 2, 2)
    export = (FIXTURES / "folio-requests.csv").read_text(encoding="utf-8-sig")
    without_status = write(
        Path(service.settings.instance_dir) / "no-status.csv",
        [",".join(line.split(",")[:1] + line.split(",")[2:]) for line in export.splitlines()],
    )
    with pytest.raises(InvalidInput, match="no column for the request status"):
        import_holds(service, without_status, "MAIN", "folio")


@pytest.mark.parametrize(
    ("fixture", "fmt", "columns", "message"),
    [
        ("folio-hold-shelf-clearance.csv", "folio", None, "FOLIO's hold shelf clearance report"),
        ("folio-hold-shelf-clearance.csv", "generic", None, "it lists items to pull"),
        ("koha-holds-awaiting-pickup.csv", "koha", None, "waiting-holds SQL report"),
        ("polaris-holds.txt", "generic", None, "add hn.ItemBarcode (Results.Polaris.HoldNotices)"),
        ("polaris-holds.txt", "shoutbomb", None, "Polaris's hold-notice feed for Shoutbomb"),
        ("koha-waiting-holds.csv", "koha", "title,patron_card,pickup_by", "names no item_barcode"),
        (
            "koha-waiting-holds.csv",
            "koha",
            "item_barcode,patron_card,card",
            "unknown column 'card'",
        ),
        ("koha-waiting-holds.csv", "koha", "item_barcode,patron_card,item_barcode", "twice"),
        ("polaris-holds-with-item.txt", "generic", None, "the first line holds data"),
    ],
)
def test_reports_that_cannot_be_imported_are_refused_by_shape(
    service, fixture, fmt, columns, message
) -> None:
    def run() -> None:
        names = parse_columns(columns) if columns else None
        import_holds(service, FIXTURES / fixture, "MAIN", fmt, columns=names)

    with pytest.raises(InvalidInput, match=re.escape(message)) as refused:
        run()
    assert "\n" not in str(refused.value)
    assert_no_patron_data(str(refused.value), FIXTURE_PATRONS)
    assert service.shelf() == []


def test_columns_override_a_header_and_skip_it(service, tmp_path, patrons) -> None:
    """An odd report's own header (no digits where the barcode and card go) is not a row."""
    odd = write(
        tmp_path / "odd.csv",
        ["ItemBC;Borrower;Due", f"3901;{patrons[0].card};2026-11-30", f"3902;{patrons[1].card};"],
    )
    report = import_holds(
        service, odd, "MAIN", columns=parse_columns("item_barcode,patron_card,pickup_by")
    )
    assert (report.rows, len(report.imported), report.bad) == (2, 2, [])
    short = write(tmp_path / "short.csv", [f"3903,{patrons[2].card},2026-11-30,x"])
    assert import_holds(
        service, short, "MAIN", columns=parse_columns("item_barcode,patron_card,pickup_by")
    ).bad == [(1, "4 cells where --columns names 3")]
    empty = write(tmp_path / "empty.txt", [])  # Polaris writes no bytes when nothing waits
    assert import_holds(service, empty, "MAIN", columns=parse_columns(POLARIS_COLUMNS)).rows == 0


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2026-11-28T05:59:59.000+00:00", "2026-11-27"),  # FOLIO: end of the 27th in Chicago
        ("2026-11-28T06:00:00Z", "2026-11-28"),
        ("2026-12-05T23:59:59-06", "2026-12-05"),
        ("2026-12-05 00:00:00", "2026-12-05"),  # no offset: the date part
        ("11/20/26 1:51 PM", "2026-11-20"),
        ("11/20/26, 1:51 PM", "2026-11-20"),
        ("12-05-2026", "2026-12-05"),
    ],
)
def test_report_dates(text, day) -> None:
    from zoneinfo import ZoneInfo

    assert parse_report_date(text, ZoneInfo("America/Chicago")).isoformat() == day


@pytest.fixture
def dated_cli(cli, clock, monkeypatch):
    """The holdshelf command on the tests' clock (the fixtures' dates are in late 2026)."""
    from holdshelf import bootstrap

    real = bootstrap.Holdshelf  # the command imports it from bootstrap when it runs
    monkeypatch.setattr(bootstrap, "Holdshelf", lambda settings: real(settings, clock=clock))
    return cli


def test_the_import_command_on_the_formats(dated_cli) -> None:
    cli = dated_cli
    out = cli(
        "import", str(FIXTURES / "folio-requests.csv"), "--branch", "MAIN", "--format", "folio"
    )
    assert out.code == 1
    assert out.out.startswith(
        "6 rows: imported 2, skipped 0 already active, 1 bad; 1 expired in the ILS, not "
        "imported; 2 not awaiting pickup, left out\n"
    )
    cli.fails(
        "import",
        str(FIXTURES / "folio-hold-shelf-clearance.csv"),
        "--branch",
        "MAIN",
        "--format",
        "folio",
        message="hold shelf clearance report",
    )
    cli.fails(
        "import",
        str(FIXTURES / "polaris-holds.txt"),
        "--branch",
        "MAIN",
        "--columns",
        "title,-,-,-,-,pickup_by,patron_card",
        message="names no item_barcode",
    )
    for text in cli.outputs:
        assert_no_patron_data(text, FIXTURE_PATRONS)


def test_holds_the_ils_lists_past_their_pickup_by_date_are_not_bad_rows(
    dated_cli, tmp_path, patrons
) -> None:
    """The ILS clears its shelf later than the patron's last day: such rows are counted, not
    failed, so a clean report exits 0 for cron. The pickup-by day itself is still good."""
    report = write(
        tmp_path / "waiting.csv",
        [
            "barcode,cardnumber,expirationdate",
            f"39010001,{patrons[0].card},2026-11-22",  # yesterday: expired in Koha
            f"39010002,{patrons[1].card},2026-11-23",  # today: the patron has all of it
            f"39010003,{patrons[2].card},2026-11-30",
        ],
    )
    done = dated_cli.ok("import", str(report), "--branch", "MAIN", "--format", "koha")
    assert done.out == (
        "3 rows: imported 2, skipped 0 already active, 0 bad; 1 expired in the ILS, not imported\n"
    )
    shelf = dated_cli.ok("shelf", "--branch", "MAIN").out
    assert "Mon 2026-11-23" in shelf and "2026-11-22" not in shelf
    assert_no_patron_data("".join(dated_cli.outputs), patrons)


def written(path: Path, clock, **ago: float) -> Path:
    """Give the file the modification time an export would have left ``ago`` on the clock."""
    moment = (clock() - dt.timedelta(**ago)).timestamp()
    os.utime(path, (moment, moment))
    return path


def test_a_stale_report_is_refused_by_its_age(service, clock, tmp_path, patrons) -> None:
    """An ILS export that stopped leaves its last file behind: importing it every few minutes
    would keep yesterday's shelf."""
    path = generic_report(tmp_path, patrons, bad=False)
    written(path, clock, hours=2, minutes=5)
    with pytest.raises(InvalidInput, match=r"written 2 h 5 min ago, more than --max-age 2 h 0"):
        import_holds(service, path, "MAIN", max_age=dt.timedelta(hours=2))
    assert service.shelf() == []
    assert len(import_holds(service, path, "MAIN", max_age=dt.timedelta(minutes=130)).imported)
    written(path, clock, minutes=-3)  # the ILS server's clock a little ahead: fresh
    assert import_holds(service, path, "MAIN", max_age=dt.timedelta(minutes=1)).skipped == 6


def test_the_max_age_option(dated_cli, clock, tmp_path, patrons) -> None:
    path = str(written(generic_report(tmp_path, patrons, bad=False), clock, minutes=95))
    dated_cli.fails(
        "import", path, "--branch", "MAIN", "--max-age", "90m", message="written 1 h 35 min ago"
    )
    for wrong in ("90", "soon", "0h", "-2h"):
        dated_cli.fails(
            "import", path, "--branch", "MAIN", "--max-age", wrong, message="--max-age takes"
        )
    assert dated_cli.ok("import", path, "--branch", "MAIN", "--max-age", "2h").out.startswith(
        "6 rows: imported 6"
    )


# -- complete reports: the ILS's whole list of a branch's waiting holds ------------------------


def complete_report(tmp_path: Path, clock, name: str, rows: list[tuple[str, Patron]]) -> Path:
    """A report of the given (item, patron) holds, written by the ILS a minute ago."""
    lines = ["item_barcode,patron_card"] + [f"{item},{p.card}" for item, p in rows]
    return written(write(tmp_path / name, lines), clock, minutes=1)


def ready_each(service, items: str, patrons: list[Patron]) -> list:
    """Item n made ready at MAIN for patron n."""
    return [service.ready("MAIN", item, patrons[n].card) for n, item in enumerate(items)]


def codes(entries) -> list[str]:
    return sorted(entry.code.display for entry in entries)


def test_holds_missing_from_two_complete_reports_in_a_row_end(
    service, clock, tmp_path, patrons
) -> None:
    a, b, c = ready_each(service, "ABC", patrons)
    east = service.ready("EAST", "E", patrons[3].card)  # another branch: not this report's
    clock.advance(hours=1)
    first = import_holds(
        service,
        complete_report(tmp_path, clock, "1.csv", [("A", patrons[0]), ("B", patrons[1])]),
        "MAIN",
        complete=True,
    )
    assert first.reconciled is not None
    assert (codes(first.reconciled.flagged), first.reconciled.ended) == (codes([c]), [])
    assert [e.code for e in service.shelf("MAIN") if e.missing_from_ils] == [c.code]

    clock.advance(hours=1)  # C is back (a late export), B is missing for the first time
    second = import_holds(
        service,
        complete_report(tmp_path, clock, "2.csv", [("A", patrons[0]), ("C", patrons[2])]),
        "MAIN",
        complete=True,
    )
    assert second.reconciled is not None
    assert (codes(second.reconciled.flagged), second.reconciled.cleared) == (codes([b]), 1)
    assert second.reconciled.ended == []

    clock.advance(hours=1)
    third_file = complete_report(tmp_path, clock, "3.csv", [("A", patrons[0])])
    desk = service.ready("MAIN", "D", patrons[4].card)  # checked in after the ILS wrote it
    third = import_holds(service, third_file, "MAIN", complete=True)
    assert third.reconciled is not None
    assert codes(third.reconciled.ended) == codes([b])  # missing twice in a row: ended
    assert codes(third.reconciled.flagged) == codes([c])  # missing once (again)
    assert service.patron(patrons[1].card).holds == []  # B's link is gone
    shelf = {e.code: e.missing_from_ils for e in service.shelf()}
    assert shelf == {a.code: False, c.code: True, desk.code: False, east.code: False}
    (main,) = [day for day in service.stats() if day.branch == "MAIN"]
    assert main.counts["cancelled"] == {"shelf": 1}

    # The same file imported again is no second report: C is not ended by it.
    again = import_holds(service, third_file, "MAIN", complete=True)
    assert again.reconciled is not None and again.reconciled.ended == []
    assert len(service.shelf("MAIN")) == 3
    assert_no_patron_data(raw_database_bytes(service), [patrons[1]])


def test_a_complete_report_with_bad_rows_ends_nothing(service, clock, tmp_path, patrons) -> None:
    a, b = ready_each(service, "AB", patrons)
    for minutes in (60, 120):  # two reports in a row that cannot be read whole
        clock.advance(minutes=minutes)
        path = complete_report(tmp_path, clock, "bad.csv", [("A", patrons[0])])
        path.write_text(path.read_text() + f",{patrons[1].card}\n")  # B's row, unreadable
        written(path, clock, minutes=1)
        report = import_holds(service, path, "MAIN", complete=True)
        assert report.bad == [(3, "the item barcode is empty")]
        assert report.reconciled is None
        assert report.unreconciled == "1 rows were bad, so no hold was ended or flagged"
    assert codes(service.shelf("MAIN")) == codes([a, b])
    assert not any(e.missing_from_ils for e in service.shelf("MAIN"))
    empty = written(write(tmp_path / "empty.csv", ["item_barcode,patron_card"]), clock, minutes=1)
    nothing = import_holds(service, empty, "MAIN", complete=True)
    assert nothing.unreconciled == "it lists no waiting hold, so no hold was ended or flagged"


def test_the_complete_option(dated_cli, clock, tmp_path, patrons) -> None:
    cli = dated_cli
    for n, item in enumerate("ABC"):
        cli.ok("ready", "--branch", "MAIN", "--item", item, "--patron", patrons[n].card)
    holds = {h["code"] for h in cli.ok("shelf", "--json").json}
    listed = [("A", patrons[0]), ("B", patrons[1])]
    for n in range(2):  # C is missing twice; the first only flags it
        clock.advance(hours=1)
        path = str(complete_report(tmp_path, clock, f"{n}.csv", listed))
        if n == 1:
            dry = cli.ok("import", path, "--branch", "MAIN", "--complete", "--dry-run").out
            assert "complete report: 1 hold would be ended in the ILS (cancelled)" in dry
        out = cli.ok("import", path, "--branch", "MAIN", "--complete").out.splitlines()
    assert out[1] == (
        "complete report: 1 hold ended in the ILS (cancelled), 0 not in it flagged, 0 listed again"
    )
    assert out[2] == "  ended (not in this report nor the last): pull them if still on the shelf"
    (ended,) = holds - {h["code"] for h in cli.ok("shelf", "--json").json}
    assert out[3].startswith(f"    {ended}  section {ended[0]}  open shelf")
    bad = write(tmp_path / "bad.csv", ["item_barcode,patron_card", "A,"])
    result = cli("import", str(bad), "--branch", "MAIN", "--complete")
    assert result.code == 1
    assert "complete report: 1 rows were bad, so no hold was ended or flagged" in result.out
    assert_no_patron_data("".join(cli.outputs), patrons)


def test_the_shelf_page_shows_holds_not_in_the_ils_last_report(
    client, service, clock, tmp_path, patrons
) -> None:
    kept, missing = ready_each(service, "AB", patrons)
    clock.advance(hours=1)
    path = complete_report(tmp_path, clock, "1.csv", [("A", patrons[0])])
    import_holds(service, path, "MAIN", complete=True)
    page = client.get("/shelf").get_data(as_text=True)
    assert "1 not in the ILS's last report (picked up or cancelled there?" in page
    row = page[page.index(f">{missing.code.display}</a>") :].split("</tr>")[0]
    assert "not in the ILS's last report" in row
    other = page[page.index(f">{kept.code.display}</a>") :].split("</tr>")[0]
    assert "not in the ILS" not in other
    assert_no_patron_data(page, patrons)


def test_rows_taken_together_keep_the_rules_of_one_ready(service, tmp_path, patrons) -> None:
    """An import takes its rows many at a time, with the rules of a ready at the desk: a
    patron who opted out goes to the desk; a known patron's card in the item column is a bad
    row, known from before or from an earlier row of the same report; an item listed twice for
    one patron is made once."""
    service.opt_out(patrons[0].card)
    service.ready("MAIN", "K1", patrons[1].card)
    lines = [
        "item_barcode,patron_card",
        f"I0,{patrons[0].card}",
        f"{patrons[1].card},{patrons[2].card}",  # line 3: a known patron's card
        f"I4,{patrons[3].card}",
        f"{patrons[3].card},{patrons[4].card}",  # line 5: line 4's patron's card
        f"I4,{patrons[3].card}",  # line 4 again
    ]
    report = import_holds(service, write(tmp_path / "rules.csv", lines), "MAIN")
    wrong_field = "this is a patron's card, not an item barcode: scan the item"
    assert report.bad == [(3, wrong_field), (5, wrong_field)]
    assert [(line, entry.mode.value) for line, entry in report.imported] == [
        (2, "desk"),
        (4, "shelf"),
    ]
    assert report.skipped == 1
    (main,) = [day for day in service.stats() if day.branch == "MAIN"]
    assert main.counts["ready"] == {"desk": 1, "shelf": 2}
    assert_no_patron_data(raw_database_bytes(service), patrons[:5])


def test_insert_many_stores_what_sqlalchemys_insert_stores(service: HoldService) -> None:
    """The import's executemany of plain tuples (storage.bulk) sends each value through its
    column's type as SQLAlchemy's own insert does: a row from each reads back the same."""
    holds, claims = Hold.__table__, ShelfCodeClaim.__table__
    evening = dt.datetime(2026, 12, 1, 17, 30, 5, 250_000, tzinfo=ZoneInfo("America/Chicago"))
    row = {"mode": "shelf", "patron": "p" * 32, "pickup_by": dt.date(2026, 12, 8)}
    same = {"branch": "MAIN", "status": "ready", "ready_at": evening, "move_to_desk": True}
    with service.sessions.begin() as session:
        connection = session.connection()
        insert_many(
            connection, claims, [{"code": "BULKAAA"}], {"branch": "MAIN", "released_at": None}
        )
        connection.execute(insert(claims), {"branch": "MAIN", "code": "COREAAA"})
        insert_many(connection, holds, [{**row, "code": "BULKAAA", "item_barcode": "I-BULK"}], same)
        connection.execute(
            insert(holds), {**row, **same, "code": "COREAAA", "item_barcode": "I-CORE"}
        )
    with service.sessions() as session:
        stored = {
            hold.item_barcode: {
                c.name: getattr(hold, c.key)
                for c in holds.c
                if c.name not in ("id", "code", "item_barcode")
            }
            for hold in session.scalars(select(Hold))
        }
    assert stored["I-BULK"] == stored["I-CORE"]
    assert stored["I-BULK"]["ready_at"] == evening and stored["I-BULK"]["move_to_desk"] is True
    with (
        service.sessions.begin() as session,
        pytest.raises(ValueError, match="status, move_to_desk"),
    ):
        insert_many(session.connection(), holds, [{**row, "code": "X", "item_barcode": "I-X"}])


def test_insert_many_breaking_a_constraint_raises_sqlalchemys_integrity_error(
    service: HoldService,
) -> None:
    """PostgreSQL's COPY and SQLite's executemany fail as an INSERT would, and a savepoint
    rolled back leaves the rest of the transaction to commit."""
    claims = ShelfCodeClaim.__table__
    same = {"branch": "MAIN", "released_at": None}
    with service.sessions.begin() as session:
        insert_many(session.connection(), claims, [{"code": "KEPTAAA"}], same)
        twice = [{"code": "TWICEAA"}, {"code": "TWICEAA"}]
        with pytest.raises(IntegrityError), session.begin_nested():
            insert_many(session.connection(), claims, twice, same)  # in the savepoint
    with service.sessions() as session:
        assert list(session.scalars(select(ShelfCodeClaim.code))) == ["KEPTAAA"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_item_trapped_by_another_writer_meanwhile_fails_alone(
    service: HoldService, tmp_path, patrons, monkeypatch
) -> None:
    """A clerk at another branch traps a report's item after the import looked for it and
    before its rows went in: the chunk's insert collides, is rolled back and taken row by row,
    so only that row fails. (SQLite's import holds the write lock: no one writes meanwhile.)"""
    plan = ReadyBatches._plan_chunk
    trapped: list[str] = []

    def planned_then_trapped(self, session, chunk):
        planned = plan(self, session, chunk)
        if not trapped:  # another connection, committed at once
            trapped.append(service.ready("EAST", "390100002", patrons[9].card).code.display)
        return planned

    monkeypatch.setattr(ReadyBatches, "_plan_chunk", planned_then_trapped)
    report = import_holds(service, generic_report(tmp_path, patrons, bad=False), "MAIN")
    assert [line for line, _ in report.imported] == [2, 3, 5, 6, 7]
    assert report.bad == [
        (
            4,
            "item 390100002 is already on the hold shelf for another patron at EAST (code "
            f"{trapped[0]})",
        )
    ]
    assert len(service.shelf("MAIN")) == 5 and len(service.shelf("EAST")) == 1


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        (ready_batches.HOLDS_OF_ITEMS, "ix_holds_item_barcode"),
        (ready_batches.HOLDS_OF_PATRONS, "ix_holds_patron"),
        (ready_batches.CHOICES_OF_PATRONS, "patron_preferences"),
        (ready_batches.CLAIMS_AMONG, "shelf_codes"),
    ],
)
def test_a_chunks_questions_are_answered_from_an_index(service, statement, index) -> None:
    """Each list goes as one parameter (storage.bulk.among); the database still looks each
    value up in the column's index, never walking the table (SQLite did, when the condition
    was sent as "... IN (...) = 1")."""
    dialect = service.engine.dialect
    compiled = statement.compile(dialect=dialect)
    values = {"items": ["I1", "I2"], "patrons": ["p1"], "codes": ["ABCDEFG"], "branch": "MAIN"}
    processed = compiled.construct_params(values)
    for name, processor in compiled._bind_processors.items():
        processed[name] = processor(processed[name])
    if dialect.name == "sqlite":  # positional parameters
        processed = tuple(processed[name] for name in compiled.positiontup)
    plan = query_plan(service.engine, str(compiled), processed)
    assert index in plan, plan
    walked = re.search(r"SCAN (holds|patron_preferences|shelf_codes)\b|Seq Scan", plan)
    assert walked is None, plan


def test_among_names_its_table_and_takes_string_columns_only(service) -> None:
    """A count over ``among`` reads the column's table (its FROM is not lost), and the list it
    binds as strings is refused for a column of another type."""
    holds = Hold.__table__
    counted = select(func.count()).where(among(holds.c.patron, "patrons"))
    with service.engine.connect() as connection:
        assert connection.execute(counted, {"patrons": ["nobody"]}).scalar() == 0
    with pytest.raises(TypeError, match="string column"):
        among(holds.c.id, "ids")
