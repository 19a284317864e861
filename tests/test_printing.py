"""Slips reach a real TCP listener playing the branch's network receipt printer.

The listener keeps the bytes; the tests read them with a strict ESC/POS parser. Faults (printer
off, paper out, connection dropped mid-slip, a print server whose printer does not answer) must
leave every slip queued until it prints, exactly once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from holdshelf.printers import connections
from holdshelf.printers.render_png import qr_matrix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.holds import PickupMode
from holdshelf.outbox import FIRST_RETRY, JITTER, LONGEST_RETRY, retry_delay
from holdshelf.print_worker import PrinterTrouble, PrintWorker
from holdshelf.service import HoldService, SlipState, SlipStatus
from holdshelf.storage.models import PrintJob
from tests.conftest import Clock, Patron, assert_no_patron_data
from tests.helpers.escpos_parser import parse, raster_modules, strip_status_requests
from tests.helpers.fake_printer import FakePrinter


def add_printer(instance: Path, branch: str, table: str) -> None:
    """Give ``branch`` a printer called front-desk, described by TOML ``table`` lines."""
    config = instance / "holdshelf.toml"
    text = config.read_text().replace(
        f"[branches.{branch}]\n", f'[branches.{branch}]\nprinter = "front-desk"\n'
    )
    config.write_text(text + f"\n[printers.front-desk]\n{table}\n")


@pytest.fixture
def printer() -> Iterator[FakePrinter]:
    fake = FakePrinter().start()
    yield fake
    fake.stop()


@pytest.fixture
def instance_dir(instance_dir: Path, printer: FakePrinter) -> Path:
    add_printer(
        instance_dir,
        "MAIN",
        f'type = "network"\nhost = "127.0.0.1"\nport = {printer.port}\nprofile = "TM-T88V"\n'
        "connect_timeout = 1\nsend_timeout = 2",
    )
    return instance_dir


@pytest.fixture
def worker(service: HoldService, clock: Clock) -> PrintWorker:
    return PrintWorker(service.settings, service.sessions, clock)


ITEMS = itertools.count()


def printed_slips(printer: FakePrinter, count: int) -> list:
    printer.wait_for_connections(count)
    return [parse(strip_status_requests(job)) for job in printer.jobs]


def job_rows(service: HoldService) -> list[PrintJob]:
    with service.sessions() as session:
        return list(session.scalars(select(PrintJob).order_by(PrintJob.id)))


# -- what the printer receives --------------------------------------------------------------


def test_shelf_slip_on_the_printer(service, worker, printer, patrons) -> None:
    entry = service.ready("MAIN", "39010001234567", patrons[0].card)
    assert worker.run_once().sent == 1
    (slip,) = printed_slips(printer, 1)
    assert slip.initialised
    assert slip.cuts == 1
    code_run = next(run for run in slip.texts if run.text == entry.code.display)
    assert code_run.width == 6  # as large as 80 mm paper allows (42 columns / 7)
    assert code_run.height == 6
    assert f"Section {entry.section}" in slip.lines
    assert "PICK UP BY" in slip.lines
    assert entry.pickup_by.strftime("%a %d %b %Y").upper() in slip.lines
    assert "MON 30 NOV 2026" in slip.lines
    assert slip.qr_payloads == [entry.code.display]  # the printer's own QR command (TM-T88V)
    assert "Check this item out before you leave." in slip.lines
    assert not any(run.inverted for run in slip.texts)
    assert "Central Library" in slip.lines
    assert "4567" not in slip.all_text  # item tail is off by default
    # the queries around the job: status before and after (DLE EOT 1, 2, 4 each)
    assert parse(printer.jobs[0]).status_requests == [1, 2, 4, 1, 2, 4]


def test_desk_slip_carries_the_band(service, worker, printer, patrons) -> None:
    service.opt_out(patrons[0].card)
    entry = service.ready("MAIN", "I1", patrons[0].card)
    assert entry.mode is PickupMode.DESK
    worker.run_once()
    (slip,) = printed_slips(printer, 1)
    bands = [run for run in slip.texts if run.inverted]
    assert [run.text.strip() for run in bands] == ["HOLD AT DESK", "STAFF PICKUP"] * 2
    assert all(len(run.text) * run.width == 42 for run in bands)  # full width
    assert "Check this item out before you leave." not in slip.lines
    assert slip.qr_payloads == [entry.code.display]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    card=st.text("0123456789ABCDEFX", min_size=8, max_size=16),
    name=st.text("abcdefghijklmnopqrstuvwxyz", min_size=6, max_size=14).map(str.title),
    email_user=st.text("abcdefghijklmnopqrstuvwxyz0123456789.", min_size=3, max_size=12),
    phone=st.integers(2_000_000, 9_999_999),
    desk=st.booleans(),
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_patron_data_on_any_slip(
    service, worker, printer, card, name, email_user, phone, desk
) -> None:
    """Whatever the patron is called, their card number, name or contact never reaches the
    printer, the queued job or the preview."""
    patron = Patron(
        card, f"{name} {name[::-1].title()}", f"{email_user}@example.org", f"+1 555 {phone}"
    )
    if desk:
        service.opt_out(card)
    before = len(printer.connections)
    entry = service.ready("MAIN", f"39-{next(ITEMS)}", card)
    worker.run_once()
    data = printer.wait_for_connections(before + 1)[-1]
    assert parse(strip_status_requests(data)).qr_payloads == [entry.code.display]
    assert_no_patron_data(data, [patron])
    for job in job_rows(service):
        assert_no_patron_data(job.payload, [patron])
        assert set(json.loads(job.payload)) == {
            "branch_name",
            "code",
            "pickup_by",
            "desk",
            "item_tail",
            "title",
            "test",
            "language",
        }
    branch, slip = service.slip(entry.code.display)
    from holdshelf.printers.slips import RenderedSlip

    rendered = RenderedSlip(slip, service.settings.printer_of(branch))
    assert_no_patron_data("\n".join(getattr(b, "text", "") for b in rendered.blocks), [patron])
    service.pickup(entry.code.display)
    if desk:
        service.opt_in(card)


@contextlib.contextmanager
def plain_printer(tmp_path: Path, database_url: str, clock) -> Iterator[tuple]:
    """MAIN on a POS-5890 (no QR command, no process IDs) at a fake TCP printer: (the printer,
    the service, its print worker)."""
    from holdshelf.settings import load_settings
    from holdshelf.storage import database
    from tests.conftest import make_instance

    fake = FakePrinter().start()
    try:
        instance = make_instance(tmp_path / "instance", database_url)
        add_printer(
            instance,
            "MAIN",
            f'type = "network"\nhost = "127.0.0.1"\nport = {fake.port}\nprofile = "POS-5890"',
        )
        if database_url.startswith("sqlite"):
            database.upgrade(database.make_engine(database_url))
        settings_ = load_settings(instance, environ={})
        service = Holdshelf(settings_, clock=clock).service
        yield fake, service, PrintWorker(settings_, service.sessions, clock)
        service.engine.dispose()
    finally:
        fake.stop()


def test_raster_qr_for_printers_without_a_qr_command(
    tmp_path, database_url, clock, patrons
) -> None:
    with plain_printer(tmp_path, database_url, clock) as (fake, service, worker):
        entry = service.ready("MAIN", "I1", patrons[0].card)
        assert worker.run_once().sent == 1
        (slip,) = printed_slips(fake, 1)
        assert slip.qr_payloads == []  # POS-5890 has no QR command: an image instead
        (image,) = slip.rasters
        expected = [row[1:-1] for row in qr_matrix(entry.code.display)[1:-1]]  # no border
        assert raster_modules(image, 5) == expected
        code_run = next(run for run in slip.texts if run.text == entry.code.display)
        assert code_run.width == 4  # 58 mm: 32 columns / 7 characters


# -- faults: nothing is lost, nothing prints twice ------------------------------------------------


def test_retry_delay_doubles_with_jitter_within_bounds() -> None:
    rng = random.Random(11)
    for attempts, step in [(1, 5), (2, 10), (3, 20), (7, 300), (30, 300)]:
        delays = [retry_delay(attempts, rng).total_seconds() for _ in range(400)]
        assert step * (1 - JITTER) <= min(delays) and max(delays) <= step * (1 + JITTER)
        assert max(delays) - min(delays) > step * JITTER  # spread, not a constant
    assert retry_delay(0) <= FIRST_RETRY * (1 + JITTER)
    assert retry_delay(99) <= LONGEST_RETRY * (1 + JITTER)


def test_printer_off_then_back(service, worker, printer, clock, patrons) -> None:
    printer.stop()
    entries = [service.ready("MAIN", f"I{n}", p.card) for n, p in enumerate(patrons[:3])]
    report = worker.run_once()
    assert report.sent == 0
    assert "refused the connection" in report.failed["front-desk"]
    waiting = worker.jobs()
    assert [job.attempts for job in waiting] == [1, 0, 0]  # the printer is skipped after a failure
    assert "refused" in waiting[0].last_error
    clock.advance(seconds=1)
    assert worker.run_once().sent == 0  # backing off: nothing is due yet
    back = FakePrinter(port=printer.port).start()
    try:
        clock.advance(seconds=(FIRST_RETRY * (1 + JITTER)).total_seconds())  # the longest wait
        assert worker.run_once().sent == 3
        slips = printed_slips(back, 3)
        assert sorted(s.qr_payloads[0] for s in slips) == sorted(e.code.display for e in entries)
        assert worker.run_once().sent == 0
        assert worker.jobs() == []
    finally:
        back.stop()


def test_connection_dropped_mid_slip(service, worker, printer, clock, patrons) -> None:
    printer.close_after = 60  # status answered, then the cable comes out mid-slip
    entry = service.ready("MAIN", "I1", patrons[0].card)
    report = worker.run_once()
    assert report.sent == 0
    (job,) = worker.jobs()
    assert job.last_error  # dropped connection or a status request left unanswered
    printer.close_after = None
    clock.advance(minutes=1)
    assert worker.run_once().sent == 1
    complete = printed_slips(printer, 2)
    assert [s.qr_payloads for s in complete] == [[entry.code.display]]


def test_paper_out_keeps_the_slip(service, worker, printer, clock, patrons) -> None:
    printer.paper_out = True
    entry = service.ready("MAIN", "I1", patrons[0].card)
    report = worker.run_once()
    assert "paper out" in report.failed["front-desk"]
    printer.wait_for_connections(1)
    assert printer.jobs == []  # only status requests went out: no slip was sent into the void
    printer.paper_out = False
    clock.advance(minutes=1)
    assert worker.run_once().sent == 1
    assert printed_slips(printer, 2)[0].qr_payloads == [entry.code.display]


def test_printer_that_swallows_jobs_is_caught(service, worker, printer, clock, patrons) -> None:
    """A print server whose printer is off accepts the connection but answers nothing."""
    printer.silent = True
    service.ready("MAIN", "I1", patrons[0].card)
    report = worker.run_once()
    assert "did not answer a status request" in report.failed["front-desk"]
    assert len(worker.jobs()) == 1


def test_verify_status_can_be_switched_off(tmp_path, database_url, clock, patrons) -> None:
    from holdshelf.settings import load_settings
    from holdshelf.storage import database
    from tests.conftest import make_instance

    fake = FakePrinter(silent=True).start()
    try:
        instance = make_instance(tmp_path / "instance", database_url)
        add_printer(
            instance,
            "MAIN",
            f'type = "network"\nhost = "127.0.0.1"\nport = {fake.port}\nverify_status = false',
        )
        if database_url.startswith("sqlite"):
            database.upgrade(database.make_engine(database_url))
        settings_ = load_settings(instance, environ={})
        service = Holdshelf(settings_, clock=clock).service
        service.ready("MAIN", "I1", patrons[0].card)
        assert PrintWorker(settings_, service.sessions, clock).run_once().sent == 1
        assert len(printed_slips(fake, 1)) == 1
        assert parse(fake.jobs[0]).status_requests == []
        service.engine.dispose()
    finally:
        fake.stop()


def test_a_crashed_workers_lease_runs_out(service, worker, printer, clock, patrons) -> None:
    service.ready("MAIN", "I1", patrons[0].card)
    with service.sessions.begin() as session:
        session.execute(
            update(PrintJob).values(
                leased_until=clock() + dt.timedelta(minutes=2),
                attempts=1,
            )
        )
    assert worker.run_once().sent == 0  # another worker holds it
    clock.advance(minutes=3)
    assert worker.run_once().sent == 1
    assert len(printed_slips(printer, 1)) == 1


def test_two_workers_print_each_slip_once(service, clock, printer, patrons) -> None:
    entries = [service.ready("MAIN", f"I{n}", p.card) for n, p in enumerate(patrons[:12])]
    workers = [PrintWorker(service.settings, service.sessions, clock) for _ in range(2)]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    slips = printed_slips(printer, 12)
    assert sorted(s.qr_payloads[0] for s in slips) == sorted(e.code.display for e in entries)
    assert {row.status for row in job_rows(service)} == {"sent"}


def test_slip_of_an_ended_hold_is_dropped(service, worker, printer, patrons) -> None:
    printer.stop()
    entry = service.ready("MAIN", "I1", patrons[0].card)
    worker.run_once()
    service.cancel(entry.code.display)
    report = worker.run_once(ignore_backoff=True)
    assert report.dropped == 1
    assert [row.status for row in job_rows(service)] == ["dropped"]


def test_reprint_queues_the_same_slip_again(service, worker, printer, patrons) -> None:
    entry = service.ready("MAIN", "I1", patrons[0].card)
    worker.run_once()
    assert service.reprint(entry.code.display.lower()) == entry
    worker.run_once()
    first, second = printed_slips(printer, 2)
    assert first.lines == second.lines
    assert [row.kind for row in job_rows(service)] == ["slip", "reprint"]


def test_reprint_keeps_the_title_where_titles_are_shown(service, printer, clock, patrons):
    from holdshelf.settings import load_settings

    environ = {"HOLDSHELF_SLIPS__SHOW_TITLE": "true"}
    settings = load_settings(service.settings.instance_dir, environ=environ)
    titled = HoldService(settings, service.sessions, clock)
    entry = titled.ready("MAIN", "I1", patrons[0].card, title="Middlemarch")
    titled.reprint(entry.code.display)
    PrintWorker(settings, service.sessions, clock).run_once()
    first, second = printed_slips(printer, 2)
    assert "Middlemarch" in first.all_text and first.lines == second.lines


def test_preview_printer_writes_png_and_bin(service, worker, printer, patrons, monkeypatch) -> None:
    monkeypatch.setattr(connections, "PREVIEW_KEEP", 3)
    entries = [service.ready("EAST", f"E{n}", p.card) for n, p in enumerate(patrons[:5])]
    assert worker.run_once().sent == 5
    folder = service.settings.instance_dir / "slips"
    bins = sorted(folder.glob("*.bin"))
    assert len(bins) == 3 and len(list(folder.glob("*.png"))) == 3
    assert bins[-1].name.endswith(f"-{entries[-1].code.compact}.bin")
    assert parse(bins[-1].read_bytes()).qr_payloads == [entries[-1].code.display]
    assert bins[-1].with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_print_status_and_trouble_for_the_desk(service, worker, printer, clock, patrons) -> None:
    entry = service.ready("MAIN", "I1", patrons[0].card)
    assert service.print_status(entry.code, "MAIN") == SlipStatus(SlipState.QUEUED)
    assert worker.trouble("MAIN") is None  # queued a moment ago: no trouble yet
    clock.advance(seconds=61)  # and nobody tried it: the worker is not running
    assert worker.trouble("MAIN") == PrinterTrouble("front-desk", 1, None)
    printer.stop()
    worker.run_once()
    status = service.print_status(entry.code, "MAIN")
    assert (status.state, status.attempts, status.settled) == (SlipState.RETRYING, 1, False)
    assert "127.0.0.1" in (status.error or "")
    trouble = worker.trouble("MAIN")
    assert trouble is not None and trouble.waiting == 1 and trouble.error == status.error
    assert worker.trouble("EAST") is None
    back = FakePrinter(port=printer.port).start()
    try:
        worker.run_once(ignore_backoff=True)
        assert service.print_status(entry.code, "MAIN").state is SlipState.PRINTED
        assert worker.trouble("MAIN") is None
    finally:
        back.stop()


def test_printer_resetting_during_a_status_request(service, worker, printer, clock, patrons):
    """A printer that reboots while answering: status says so, the slip waits, nothing breaks."""
    printer.reset_on_status = True
    settings = service.settings
    status = connections.connect(settings.printers["front-desk"], settings.instance_dir).status()
    assert not status.reachable and "connection dropped" in status.detail
    service.ready("MAIN", "I1", patrons[0].card)
    assert "connection dropped" in worker.run_once().failed["front-desk"]
    printer.reset_on_status = False
    clock.advance(minutes=1)
    assert worker.run_once().sent == 1


def test_device_file_printer(tmp_path: Path) -> None:
    """A printer at a device path (/dev/usb/lp0), written through python-escpos's File class."""
    from holdshelf.printers.slips import RenderedSlip

    from tests.test_slips import printer as make_printer
    from tests.test_slips import slip

    device = tmp_path / "lp0"
    printer_ = make_printer(type="file", device=str(device), profile="TM-T20II")
    connection = connections.connect(printer_, tmp_path)
    assert not connection.status().reachable
    device.touch()
    assert connection.status().reachable
    rendered = RenderedSlip(slip(), printer_)
    connection.send(rendered.escpos)
    assert parse(device.read_bytes()).qr_payloads == ["K7Q-4MX"]
    missing = connections.connect(
        make_printer(type="file", device=str(tmp_path / "no/lp9")), tmp_path
    )
    with pytest.raises(connections.PrinterError, match="no/lp9"):
        missing.send(rendered.escpos)


def test_a_slip_given_up_for_good_is_recorded_as_failed(service, worker, monkeypatch, patrons):
    """The shared outbox writes 'failed' for a permanent failure; print jobs may hold it."""
    from holdshelf.outbox import Outcome

    service.ready("MAIN", "I1", patrons[0].card)
    monkeypatch.setattr(worker, "deliver", lambda row: Outcome("refused for good", permanent=True))
    assert worker.run_once().given_up == 1
    assert [row.status for row in job_rows(service)] == ["failed"]
