"""Importing a holds-ready report from the ILS (CSV), and exporting the shelf and the counts.

Each ILS names its columns differently; holdshelf.report_reading maps them. Only the item
barcode, the card number, the pickup-by date, a contact and the title are kept: any other
column (a name, an address) is ignored and never stored. Rows whose item is already active at
the branch are skipped, so the same report can be imported every few minutes.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from holdshelf.domain.inputs import checked
from holdshelf.errors import HoldshelfError, InvalidInput
from holdshelf.report_reading import is_waiting, parse_report_date, read_rows

if TYPE_CHECKING:  # for the annotations only: `holdshelf import --help` must start at once
    from holdshelf.domain.holds import ShelfEntry
    from holdshelf.service import BatchOutcome, DayCounts, HoldRequest, HoldService, Reconciliation


@dataclass
class ImportReport:
    rows: int = 0
    imported: list[tuple[int, ShelfEntry]] = field(default_factory=list)
    skipped: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    not_waiting: int = 0  # requests of another status (FOLIO lists them all): left out
    # Waiting past their pickup-by date: expired in the ILS, which has not cleared them yet.
    expired: int = 0
    # (line, the other patron's hold it ended, the new hold): imported, and said apart
    retrapped: list[tuple[int, ShelfEntry, ShelfEntry]] = field(default_factory=list)
    # --complete: what the report did to the branch's other holds, or why it did nothing
    reconciled: Reconciliation | None = None
    unreconciled: str | None = None
    dry_run: bool = False
    all_or_nothing: bool = False

    @property
    def committed(self) -> bool:
        return not self.dry_run and not (self.all_or_nothing and self.bad)


def import_holds(
    service: HoldService,
    path: Path,
    branch: str,
    fmt: str = "generic",
    *,
    dry_run: bool = False,
    all_or_nothing: bool = False,
    encoding: str = "utf-8-sig",
    columns: Sequence[str] | None = None,
    max_age: dt.timedelta | None = None,
    complete: bool = False,
) -> ImportReport:
    """Make the report's holds ready at ``branch``; ``columns`` (--columns) names the file's
    columns in order instead of its header; a file last written more than ``max_age`` ago is
    refused (an export that stopped leaves yesterday's shelf behind). ``complete``: the file
    lists every hold waiting at the branch (see Reconciling)."""
    branch = service.settings.branch(branch).id
    written = _written_at(path)
    if max_age is not None:
        _check_age(path, service.clock() - written, max_age)
    report = ImportReport(dry_run=dry_run, all_or_nothing=all_or_nothing)
    with _open_report(path, encoding, service.settings.import_max_bytes) as lines:
        rows = list(_decoded(read_rows(lines, fmt, columns), path, encoding))
    listed: set[str] = set()
    requests = _planned(service, branch, fmt, rows, report, listed)
    if not (all_or_nothing and report.bad):
        outcomes = service.ready_many(
            [request for _, request in requests], atomic=all_or_nothing, dry_run=dry_run
        )
        _record(report, requests, outcomes)
    if complete:
        _reconcile(service, branch, report, listed, written)
    return report


def _reconcile(
    service: HoldService, branch: str, report: ImportReport, listed: set[str], written: dt.datetime
) -> None:
    """The branch's other holds against a complete report, unless it could not be read whole
    (a bad row might be the very hold it would end) or lists nothing (an export that failed
    more often than a shelf that emptied)."""
    if report.bad:
        report.unreconciled = f"{len(report.bad)} rows were bad, so no hold was ended or flagged"
    elif not listed:
        report.unreconciled = "it lists no waiting hold, so no hold was ended or flagged"
    else:
        report.reconciled = service.reconcile(branch, listed, written, dry_run=report.dry_run)


def _planned(
    service: HoldService,
    branch: str,
    fmt: str,
    rows: list[tuple[int, dict[str, str] | str]],
    report: ImportReport,
    listed: set[str],
) -> list[tuple[int, HoldRequest]]:
    """The requests the rows make, counting in ``report`` the rows that make none; the items
    of the holds the report lists as waiting (expired ones too) go into ``listed``."""
    requests: list[tuple[int, HoldRequest]] = []
    first_listed: dict[str, tuple[int, str]] = {}  # item -> the first line and patron for it
    for line, fields in rows:
        report.rows += 1
        if isinstance(fields, str):
            report.bad.append((line, fields))
            continue
        if not is_waiting(fmt, fields):
            report.not_waiting += 1
            continue
        try:
            request = _request(service, branch, fields)
            listed.add(request.item if request else _item(service, branch, fields))
        except HoldshelfError as exc:
            report.bad.append((line, str(exc)))
            continue
        if request is None:
            report.expired += 1
            continue
        first, patron = first_listed.setdefault(request.item, (line, request.patron))
        if patron != request.patron:  # one item cannot wait for two holds: never guessed
            report.bad.append(
                (line, f"item {request.item} is listed for another patron on line {first}")
            )
            continue
        requests.append((line, request))
    return requests


def _record(
    report: ImportReport, requests: list[tuple[int, HoldRequest]], outcomes: list[BatchOutcome]
) -> None:
    for (line, _), outcome in zip(requests, outcomes, strict=True):
        if outcome.error:
            report.bad.append((line, outcome.error))
        elif outcome.skipped:
            report.skipped += 1
        elif outcome.entry is not None:
            report.imported.append((line, outcome.entry))
            if outcome.replaced is not None:
                report.retrapped.append((line, outcome.replaced, outcome.entry))
    if report.all_or_nothing and report.bad:
        report.imported, report.retrapped = [], []  # rolled back, every one
    report.bad.sort()


def _written_at(path: Path) -> dt.datetime:
    """The file's modification time: when the ILS's export wrote it."""
    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _check_age(path: Path, age: dt.timedelta, max_age: dt.timedelta) -> None:
    if age > max_age:
        raise InvalidInput(
            f"{path} was written {_span(age)} ago, more than --max-age {_span(max_age)}: "
            "is the ILS's export still running?"
        )


def _span(span: dt.timedelta) -> str:
    hours, minutes = divmod(int(span.total_seconds()) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class _Limited(io.RawIOBase):
    """A file read as it goes, refused once it passes ``limit`` bytes: /dev/zero or an
    endless pipe ends with an error, never with the whole of it in memory."""

    def __init__(self, raw: BinaryIO, path: Path, limit: int) -> None:
        self._raw, self._path, self._limit, self._read = raw, path, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self._read += count or 0
        if self._read > self._limit:
            megabytes = self._limit // 1_000_000
            raise InvalidInput(
                f"{self._path} is larger than {megabytes} MB: not a holds report? "
                "([imports] max_file_mb)"
            )
        return count or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


@contextlib.contextmanager
def _open_report(path: Path, encoding: str, limit: int) -> Iterator[io.TextIOWrapper]:
    try:
        raw = path.open("rb", buffering=0)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = io.TextIOWrapper(io.BufferedReader(_Limited(raw, path, limit)), encoding, newline="")
    except LookupError:
        raw.close()
        raise InvalidInput(f"unknown encoding {encoding!r} (try utf-8 or cp1252)") from None
    with text:
        yield text


def _decoded(rows: Iterator[Any], path: Path, encoding: str) -> Iterator[Any]:
    """The rows, with a decoding failure anywhere in the file reported in one line."""
    try:
        yield from rows
    except UnicodeError:
        raise InvalidInput(f"{path} is not {encoding} text (try --encoding cp1252)") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _item(service: HoldService, branch: str, fields: dict[str, str]) -> str:
    """The row's item barcode as the branch's rules read it (as its hold would store it)."""
    return checked("item_barcode", service.settings.branch(branch).barcodes.item, fields["item"])


def _request(service: HoldService, branch: str, fields: dict[str, str]) -> HoldRequest | None:
    """The row's request; None for a hold the ILS still lists past its pickup-by date (the
    patron had all of that day): expired there, not yet cleared from its shelf."""
    settings = service.settings
    due = fields.get("pickup_by")
    pickup_by = parse_report_date(due, settings.timezone) if due else None
    if pickup_by is not None and pickup_by < service.today():
        return None
    # Reports carry contacts whether or not notices are set up here: where a channel is not,
    # the ILS sends its own notice, and the contact is not even read.
    return service.hold_request(
        branch,
        fields["item"],
        fields["card"],
        pickup_by,
        title=fields.get("title") or None,
        email=(fields.get("email") or None) if settings.mail.enabled else None,
        sms=(fields.get("sms") or None) if settings.sms.enabled else None,
    )


# -- exports: the data the API returns, never patron data ------------------------------------


def export_holds(entries: list[ShelfEntry], fmt: str) -> str:
    rows = [entry.as_dict() for entry in entries]
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    columns = ["code", "section", "branch", "branch_name", "pickup_by", "mode", "move_to_desk"]
    return _csv(columns, ([row[c] for c in columns] for row in rows))


def export_stats(days: list[DayCounts], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([day.as_dict() for day in days], indent=2)
    rows = (
        [day.day.isoformat(), day.branch, event, mode, count]
        for day in days
        for event, modes in sorted(day.counts.items())
        for mode, count in sorted(modes.items())
    )
    return _csv(["day", "branch", "event", "mode", "count"], rows)


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such a
# cell (a branch name set to "=HYPERLINK(...)") is exported with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv(columns: list[str], rows: Any) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([spreadsheet_safe(value) for value in row] for row in rows)
    return buffer.getvalue()
