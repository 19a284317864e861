"""Reading holds-ready reports as the ILSes export them: which columns carry each field, the
reports refused by their shape (and what to export instead), header-less feeds named with
``--columns``, and the dates.

Only the item barcode, the card number, the pickup-by date, a contact, the title and (FOLIO)
the request's status are read: any other column (a name, an address) is never looked at. The
column names come from the producing systems' own code; the README names each source.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from holdshelf.domain.inputs import parse_date
from holdshelf.errors import InvalidInput


@dataclass(frozen=True)
class ReportFormat:
    """Field -> the column names that carry it (compared as ``column_key`` reads them)."""

    columns: dict[str, tuple[str, ...]]
    delimiter: str | None = None  # None: guessed from the first lines
    # The status of a hold waiting on the shelf, where the report lists other requests too:
    # every other row is left out (a FOLIO export of all requests is not a shelf).
    waiting: str | None = None


FORMATS: dict[str, ReportFormat] = {
    "generic": ReportFormat(
        {
            "item": ("item_barcode",),
            "card": ("patron_card",),
            "pickup_by": ("pickup_by",),
            "email": ("email",),
            "sms": ("sms",),
            "title": ("title",),
        }
    ),
    "koha": ReportFormat(  # a Koha SQL report on reserves, borrowers and items
        {
            "item": ("barcode", "items_barcode"),
            "card": ("cardnumber", "borrowers_cardnumber"),
            "pickup_by": ("expirationdate", "reserves_expirationdate"),
            "email": ("email", "borrowers_email"),
            "sms": ("smsalertnumber", "borrowers_smsalertnumber"),
            "title": ("title", "biblio_title"),
        }
    ),
    "evergreen": ReportFormat(  # a holds-shelf report, or the web client's Holds Shelf grid
        {
            "item": ("copy_barcode", "item_barcode", "current_item"),
            "card": ("patron_barcode", "usr_barcode", "card_barcode", "user_barcode"),
            "pickup_by": ("shelf_expire_time", "hold_shelf_expire_time"),
            "email": ("email",),
            "sms": ("sms_notify", "notifications_sms_number"),
            "title": ("title",),
        }
    ),
    "sierra": ReportFormat(  # a Sierra Create Lists export of holds on the shelf
        {
            "item": ("item_barcode", "i_barcode"),
            "card": ("patron_barcode", "p_barcode"),
            "pickup_by": ("pickup_by_date", "hold_shelf_expiration_date"),
            "email": ("email_addr", "email"),
            "sms": ("sms_phone", "mobile_phone"),
            "title": ("title",),
        }
    ),
    "folio": ReportFormat(  # the Requests app's "Export search results (CSV)"
        {
            "item": ("item_barcode",),
            "card": ("requester_barcode",),
            "pickup_by": ("hold_shelf_expiration_date",),
            "title": ("title",),
            "status": ("request_status",),
        },
        waiting="Open - Awaiting pickup",
    ),
    "shoutbomb": ReportFormat(  # the hold-ready extract sent to Shoutbomb, pipe-separated
        {
            "item": ("item_barcode",),
            "card": ("patron_barcode",),
            "pickup_by": ("hold_pickup_date",),
            "title": ("title",),
        },
        delimiter="|",
    ),
}
REQUIRED = ("item", "card")
FIELD_NAMES = {
    "item": "item barcode",
    "card": "card number",
    "pickup_by": "pickup-by date",
    "status": "request status",
}
# --columns takes the generic format's column names; "-" (or nothing) skips a column.
GENERIC_FIELDS = {name: field for field, (name,) in FORMATS["generic"].columns.items()}
SKIPPED_COLUMN = "-"

POLARIS_WITHOUT_ITEM = (
    "this is Polaris's hold-notice feed for Shoutbomb (BTitle|CreationDate|SysHoldRequestID|"
    "PatronID|PickupOrganizationID|HoldTillDate|PBarcode), which has no item barcode: add "
    "hn.ItemBarcode (Results.Polaris.HoldNotices) to its query and name the columns with "
    "--columns"
)


@dataclass(frozen=True)
class RefusedShape:
    """A report known by its columns that cannot be imported, with what to use instead."""

    has: frozenset[str]
    lacks: frozenset[str]
    message: str

    def matches(self, header: Sequence[str]) -> bool:
        return self.has <= set(header) and not self.lacks & set(header)


REFUSED_SHAPES = (
    RefusedShape(  # ui-requests' expiredHoldsReportHeaders: no request type, unlike the export
        frozenset({"requester_barcode", "item_barcode", "hold_shelf_expiration_date"}),
        frozenset({"request_type"}),
        "this is FOLIO's hold shelf clearance report: it lists items to pull from the shelf, "
        "not holds to make ready; export the Requests app's search results (CSV) instead",
    ),
    RefusedShape(  # Koha's circ/waitingreserves.pl table, exported from the page
        frozenset({"title", "patron", "expiration_date"}),
        frozenset({"barcode", "items_barcode", "cardnumber", "borrowers_cardnumber"}),
        "this is Koha's Holds awaiting pickup page, which puts the barcode in the Title cell "
        "and the card in the Patron cell: import the waiting-holds SQL report instead (see "
        "the README, Holds-ready reports)",
    ),
    RefusedShape(
        frozenset({"pbarcode", "holdtilldate"}),
        frozenset({"itembarcode", "item_barcode"}),
        POLARIS_WITHOUT_ITEM,
    ),
)

_SEPARATORS = re.compile(r"[\s.\-]+")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d", re.ASCII)
# Sierra's 12-05-2026, and the Evergreen grid's 11/20/26 1:51 PM (AngularJS and Angular's
# "short" formats, with or without the comma): the date shown is the library's date.
_US_DATE = re.compile(
    r"(\d{1,2})[-/](\d{1,2})[-/](\d{2}|\d{4})(?:,?\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AP]M)?)?",
    re.ASCII | re.IGNORECASE,
)
# What some exporters write instead of rows: sqlcmd's count without SET NOCOUNT ON, and Koha's
# runreport.pl when the report found nothing.
_NOT_DATA = re.compile(r"\(\d+ rows? affected\)|NO OUTPUT: 0 results from execute_query")
_DIGIT = re.compile(r"\d")
SAMPLE_CHARS = 4096  # what the separator is guessed from
DELIMITERS = ",;\t|"


def column_key(name: str) -> str:
    return _SEPARATORS.sub("_", name.strip().lower()).strip("_")


def parse_report_date(text: str, zone: ZoneInfo | None) -> dt.date:
    """A pickup-by date as reports write it: a timestamp with an offset (FOLIO's are UTC) is
    the library's date in ``zone``; any other timestamp's date part counts (Koha, Evergreen);
    US month/day/year as Sierra and the Evergreen grid show it."""
    text = text.strip()
    if us := _US_DATE.fullmatch(text):
        month, day, year = (int(part) for part in us.groups())
        try:
            return dt.date(year + 2000 if year < 100 else year, month, day)
        except ValueError:
            raise InvalidInput("the pickup-by date is not a date") from None
    if _ISO_TIMESTAMP.match(text):
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.astimezone(zone).date()
    return parse_date(text[:10], "pickup-by date")


def parse_columns(text: str) -> list[str]:
    """``--columns``: the file's columns in order, by the generic format's names."""
    names = [name.strip().lower() for name in text.split(",")]
    for name in names:
        if name not in GENERIC_FIELDS and name not in (SKIPPED_COLUMN, ""):
            raise InvalidInput(
                f"--columns: unknown column {name!r} (known: {', '.join(GENERIC_FIELDS)}; "
                f"{SKIPPED_COLUMN} for one to leave out)"
            )
    named = [name for name in names if name in GENERIC_FIELDS]
    if len(set(named)) < len(named):
        raise InvalidInput("--columns names a column twice")
    if "item_barcode" not in named:
        raise InvalidInput(
            "--columns names no item_barcode (Polaris's hold-notice feed has none: add "
            "hn.ItemBarcode from Results.Polaris.HoldNotices to its query)"
        )
    if "patron_card" not in named:
        raise InvalidInput("--columns names no patron_card")
    return names


def is_waiting(fmt: str, fields: dict[str, str]) -> bool:
    """Whether a row is a hold waiting on the shelf (always, where the report has no status)."""
    waiting = FORMATS[fmt].waiting
    return waiting is None or fields.get("status", waiting).casefold() == waiting.casefold()


def read_rows(
    lines: str | Iterable[str], fmt: str, columns: Sequence[str] | None = None
) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number, mapped fields or what is wrong with the row) for every data row of a
    report given whole or as lines (a file read as it goes). ``columns`` (from --columns)
    names the columns instead of the header."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    stream = iter(io.StringIO(lines) if isinstance(lines, str) else lines)
    first = _first_lines(stream)
    reader = csv.reader(itertools.chain(first, stream), _dialect(first, FORMATS[fmt]))
    rows = _rows(reader)
    head = next(rows, None)
    if head is not None and _is_not_data(head):
        return  # the exporter's word for "no holds"
    if columns is not None:
        positions = {
            GENERIC_FIELDS[name]: n for n, name in enumerate(columns) if name in GENERIC_FIELDS
        }
        width = len(columns)
        if head is not None and not _is_header(head, positions):
            yield from _mapped(reader.line_num, head, positions, width, "--columns names")
    else:
        if not head:
            raise InvalidInput("the file is empty")
        positions, width = _columns(head, FORMATS[fmt]), len(head)
    for row in rows:
        if any(cell.strip() for cell in row) and not _is_not_data(row):
            yield from _mapped(reader.line_num, row, positions, width, "the header has")


def _mapped(
    line: int, row: list[str], positions: dict[str, int], width: int, names: str
) -> Iterator[tuple[int, dict[str, str] | str]]:
    if len(row) > width:
        # An unquoted comma ("Okafor, Ana") shifts every later cell: a card number would be
        # read as the barcode. Such a row is refused, never guessed at, even when the extra
        # cell is empty (an empty last column shifted into it).
        yield line, f"{len(row)} cells where {names} {width}"
        return
    yield line, {name: row[n].strip() if n < len(row) else "" for name, n in positions.items()}


def _dialect(first: list[str], fmt: ReportFormat) -> Any:
    if fmt.delimiter is not None:

        class Fixed(csv.excel):
            delimiter = fmt.delimiter

        return Fixed
    sample = [line for line in first if line.strip() and not _NOT_DATA.fullmatch(line.strip())]
    try:
        return csv.Sniffer().sniff("".join(sample), delimiters=DELIMITERS)
    except csv.Error:  # too few lines to compare: the first line's most frequent candidate
        counts = {mark: sample[0].count(mark) for mark in DELIMITERS} if sample else {}
        if not any(counts.values()):
            return csv.excel

        class Counted(csv.excel):
            delimiter = max(counts, key=counts.__getitem__)

        return Counted


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


def _is_not_data(row: list[str]) -> bool:
    cells = [cell.strip() for cell in row if cell.strip()]
    return len(cells) == 1 and _NOT_DATA.fullmatch(cells[0]) is not None


def _is_header(row: list[str], positions: dict[str, int]) -> bool:
    """With --columns, a first line is the report's own header when neither the item's nor
    the card's cell holds a digit: barcodes have digits, column names do not."""
    cells = [row[positions[field]] if positions[field] < len(row) else "" for field in REQUIRED]
    return not any(_DIGIT.search(cell) for cell in cells)


def _looks_like_data(header: list[str]) -> bool:
    """A "header" that is a row: a cell that is a date or a long number (a barcode)."""
    return any(
        _ISO_DAY.fullmatch(cell.strip())
        or _US_DATE.fullmatch(cell.strip())
        or re.fullmatch(r"\d{6,}", cell.strip())
        for cell in header
    )


def _is_polaris_feed(row: list[str]) -> bool:
    """The stock Polaris hold feed without its header (sqlcmd -h-1): seven cells, dates in
    the second and sixth, ids in the fourth and fifth."""
    cells = [cell.strip() for cell in row]
    return (
        len(cells) == 7
        and all(_ISO_DAY.fullmatch(cells[n]) for n in (1, 5))
        and all(cells[n].isdigit() for n in (3, 4))
    )


def _columns(head: list[str], fmt: ReportFormat) -> dict[str, int]:
    header = [column_key(name) for name in head]
    for shape in REFUSED_SHAPES:
        if shape.matches(header):
            raise InvalidInput(shape.message)
    if _is_polaris_feed(head):
        raise InvalidInput(POLARIS_WITHOUT_ITEM)
    required = REQUIRED + (("status",) if fmt.waiting else ())
    positions = {}
    for name, aliases in fmt.columns.items():
        named = [column for column in header if column in aliases]
        if len(named) > 1:  # which one holds the card? Never guessed.
            raise InvalidInput(
                f"the header has more than one column for the {FIELD_NAMES.get(name, name)} "
                f"({', '.join(named)}): keep one"
            )
        index = next((header.index(a) for a in aliases if a in header), None)
        if index is not None:
            positions[name] = index
        elif name in required and _looks_like_data(head):
            raise InvalidInput(
                "the first line holds data, not column names: name the columns with --columns"
            )
        elif name in required:
            raise InvalidInput(
                f"the file has no column for the {FIELD_NAMES[name]} (one of: {', '.join(aliases)})"
            )
    return positions
