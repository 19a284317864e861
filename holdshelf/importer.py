"""Importing a holds-ready report from the ILS (CSV), and exporting the shelf and the counts.

Each ILS names its columns differently; the formats below map them. Only the item barcode, the
card number, the pickup-by date, a contact and the title are read: any other column (a name,
an address) is ignored and never stored. Rows whose item is already active at the branch are
skipped, so the same report can be imported every few minutes.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from holdshelf.domain.inputs import parse_date
from holdshelf.errors import HoldshelfError, InvalidInput

if TYPE_CHECKING:  # for the annotations only: `holdshelf import --help` needs FORMATS, not these
    from holdshelf.domain.holds import ShelfEntry
    from holdshelf.service import DayCounts, HoldRequest, HoldService

# Field -> the column names that carry it, per format (compared lower-case, with spaces,
# dots and hyphens read as underscores). Documented in the README.
FORMATS: dict[str, dict[str, tuple[str, ...]]] = {
    "generic": {
        "item": ("item_barcode",),
        "card": ("patron_card",),
        "pickup_by": ("pickup_by",),
        "email": ("email",),
        "sms": ("sms",),
        "title": ("title",),
    },
    "koha": {  # a Koha report on reserves, borrowers and items
        "item": ("barcode", "items_barcode"),
        "card": ("cardnumber", "borrowers_cardnumber"),
        "pickup_by": ("expirationdate", "reserves_expirationdate"),
        "email": ("email", "borrowers_email"),
        "sms": ("smsalertnumber", "borrowers_smsalertnumber"),
        "title": ("title", "biblio_title"),
    },
    "evergreen": {  # an Evergreen holds-shelf report
        "item": ("copy_barcode", "item_barcode"),
        "card": ("patron_barcode", "usr_barcode", "card_barcode"),
        "pickup_by": ("shelf_expire_time", "hold_shelf_expire_time"),
        "email": ("email",),
        "sms": ("sms_notify",),
        "title": ("title",),
    },
    "sierra": {  # a Sierra Create Lists export of holds on the shelf
        "item": ("item_barcode", "i_barcode"),
        "card": ("patron_barcode", "p_barcode"),
        "pickup_by": ("pickup_by_date", "hold_shelf_expiration_date"),
        "email": ("email_addr", "email"),
        "sms": ("sms_phone", "mobile_phone"),
        "title": ("title",),
    },
}
REQUIRED = ("item", "card")
FIELD_NAMES = {"item": "item barcode", "card": "card number", "pickup_by": "pickup-by date"}
_SEPARATORS = re.compile(r"[\s.\-]+")
_US_DATE = re.compile(r"^(\d{1,2})[-/](\d{1,2})[-/](\d{2}|\d{4})$")


def column_key(name: str) -> str:
    return _SEPARATORS.sub("_", name.strip().lower()).strip("_")


def parse_report_date(text: str) -> dt.date:
    """ISO dates and timestamps (Koha, Evergreen: the date part counts), and US month/day/year
    as Sierra exports them."""
    text = text.strip()
    if us := _US_DATE.match(text):
        month, day, year = (int(part) for part in us.groups())
        try:
            return dt.date(year + 2000 if year < 100 else year, month, day)
        except ValueError:
            raise InvalidInput("the pickup-by date is not a date") from None
    return parse_date(text[:10], "pickup-by date")


@dataclass
class ImportReport:
    rows: int = 0
    imported: list[tuple[int, ShelfEntry]] = field(default_factory=list)
    skipped: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False
    all_or_nothing: bool = False

    @property
    def committed(self) -> bool:
        return not self.dry_run and not (self.all_or_nothing and self.bad)


SAMPLE_CHARS = 4096  # what the separator is guessed from


def read_rows(lines: str | Iterable[str], fmt: str) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, mapped fields or what is wrong with the row) for every data row of a
    report given whole or as lines (a file read as it goes)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    stream = iter(io.StringIO(lines) if isinstance(lines, str) else lines)
    first = _first_lines(stream)
    try:
        dialect: Any = csv.Sniffer().sniff("".join(first), delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(itertools.chain(first, stream), dialect)
    header = next(_rows(reader), None)
    if not header:
        raise InvalidInput("the file is empty")
    positions = _columns([column_key(name) for name in header], FORMATS[fmt])
    for row in _rows(reader):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            # An unquoted comma ("Okafor, Ana") shifts every later cell: a card number
            # would be read as the barcode. Such a row is refused, never guessed at, even
            # when the extra cell is empty (an empty last column shifted into it).
            yield reader.line_num, f"{len(row)} cells where the header has {len(header)}"
            continue
        yield (
            reader.line_num,
            {
                name: row[index].strip() if index < len(row) else ""
                for name, index in positions.items()
            },
        )


def _first_lines(stream: Iterator[str]) -> list[str]:
    first: list[str] = []
    while sum(map(len, first)) < SAMPLE_CHARS and (line := next(stream, None)) is not None:
        first.append(line)
    return first


def _rows(reader: Any) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:  # a runaway quote or a field over the csv module's limit
        raise InvalidInput(f"line {reader.line_num} is not readable as CSV ({exc})") from None


def _columns(header: list[str], mapping: dict[str, tuple[str, ...]]) -> dict[str, int]:
    positions = {}
    for name, aliases in mapping.items():
        named = [column for column in header if column in aliases]
        if len(named) > 1:  # which one holds the card? Never guessed.
            raise InvalidInput(
                f"the header has more than one column for the {FIELD_NAMES.get(name, name)} "
                f"({', '.join(named)}): keep one"
            )
        index = next((header.index(a) for a in aliases if a in header), None)
        if index is not None:
            positions[name] = index
        elif name in REQUIRED:
            raise InvalidInput(
                f"the file has no column for the {FIELD_NAMES[name]} (one of: {', '.join(aliases)})"
            )
    return positions


def import_holds(
    service: HoldService,
    path: Path,
    branch: str,
    fmt: str = "generic",
    *,
    dry_run: bool = False,
    all_or_nothing: bool = False,
    encoding: str = "utf-8-sig",
) -> ImportReport:
    branch = service.settings.branch(branch).id
    report = ImportReport(dry_run=dry_run, all_or_nothing=all_or_nothing)
    requests: list[tuple[int, HoldRequest]] = []
    with _open_report(path, encoding, service.settings.import_max_bytes) as lines:
        rows = list(_decoded(read_rows(lines, fmt), path, encoding))
    for line, fields in rows:
        report.rows += 1
        if isinstance(fields, str):
            report.bad.append((line, fields))
            continue
        try:
            requests.append((line, _request(service, branch, fields)))
        except HoldshelfError as exc:
            report.bad.append((line, str(exc)))
    if all_or_nothing and report.bad:
        return report
    outcomes = service.ready_many(
        [request for _, request in requests], atomic=all_or_nothing, dry_run=dry_run
    )
    for (line, _), outcome in zip(requests, outcomes, strict=True):
        if outcome.error:
            report.bad.append((line, outcome.error))
        elif outcome.skipped:
            report.skipped += 1
        elif outcome.entry is not None:
            report.imported.append((line, outcome.entry))
    if all_or_nothing and report.bad:
        report.imported = []  # rolled back, every one
    report.bad.sort()
    return report


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


def _request(service: HoldService, branch: str, fields: dict[str, str]) -> HoldRequest:
    pickup_by = parse_report_date(fields["pickup_by"]) if fields.get("pickup_by") else None
    settings = service.settings
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
