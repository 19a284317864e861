"""Reports in and out, none with patron data: holds-ready reports from the ILS (``import``),
the shelf and the daily counts for the library's own reporting (``export``, ``stats``)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from holdshelf.cli.common import (
    Context,
    branch_option,
    entry_line,
    json_option,
    optional_date,
    pass_context,
    print_json,
    write_out,
)
from holdshelf.errors import HoldshelfError, InvalidInput
from holdshelf.importer import export_holds, export_stats, import_holds
from holdshelf.report_reading import FORMATS, parse_columns

if TYPE_CHECKING:  # annotations only: the domain (hashids) loads when a command runs
    from holdshelf.domain.holds import ShelfEntry
    from holdshelf.importer import ImportReport


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--branch", "branch_id", required=True, help="Pickup branch of every row.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="generic",
    show_default=True,
    help="Which ILS report the columns come from.",
)
@click.option("--dry-run", is_flag=True, help="Check and report; import nothing.")
@click.option("--all-or-nothing", is_flag=True, help="Import nothing if any row is bad.")
@click.option("--encoding", default="utf-8-sig", show_default=True)
@click.option(
    "--columns",
    "columns_text",
    metavar="NAMES",
    help="The file's columns in order, for a report without a header (or to override it): "
    "item_barcode, patron_card, pickup_by, email, sms, title; - for one to leave out.",
)
@click.option(
    "--max-age",
    "max_age_text",
    metavar="AGE",
    help="Refuse a file written longer ago than this (by its modification time): 90m, 2h.",
)
@click.option(
    "--complete",
    is_flag=True,
    help="The file lists every hold waiting at the branch: a hold two such files in a row "
    "leave out ended in the ILS (the first only flags it).",
)
@pass_context
def import_report(
    ctx: Context,
    file: Path,
    branch_id: str,
    fmt: str,
    dry_run: bool,
    all_or_nothing: bool,
    encoding: str,
    columns_text: str | None,
    max_age_text: str | None,
    complete: bool,
) -> None:
    """Make the holds of a holds-ready report (CSV) ready; rows already active are skipped."""
    report = import_holds(
        ctx.service,
        file,
        branch_id,
        fmt,
        dry_run=dry_run,
        all_or_nothing=all_or_nothing,
        encoding=encoding,
        columns=parse_columns(columns_text) if columns_text is not None else None,
        max_age=parse_age(max_age_text) if max_age_text is not None else None,
        complete=complete,
    )
    _print_report(report)
    if complete:
        _print_reconciliation(report)
    if report.bad:
        raise HoldshelfError(f"{len(report.bad)} rows were not imported (listed above)")


AGE = re.compile(r"(\d+)\s*(m|min|minutes?|h|hours?)", re.IGNORECASE)


def parse_age(text: str) -> dt.timedelta:
    """``--max-age``: minutes or hours, as 90m or 2h."""
    age = AGE.fullmatch(text.strip())
    if age is None or int(age.group(1)) == 0:
        raise InvalidInput("--max-age takes minutes or hours, as 90m or 2h")
    unit = (
        dt.timedelta(hours=1) if age.group(2).lower().startswith("h") else dt.timedelta(minutes=1)
    )
    return int(age.group(1)) * unit


def _print_report(report: ImportReport) -> None:
    verb = "would import" if report.dry_run else "imported"
    if report.all_or_nothing and report.bad:
        click.echo(f"{report.rows} rows: imported nothing of them, {len(report.bad)} bad")
    else:
        click.echo(
            f"{report.rows} rows: {verb} {len(report.imported)}, "
            f"skipped {report.skipped} already active, {len(report.bad)} bad" + _left_out(report)
        )
    verb = "would end" if report.dry_run else "ended"
    for line, ended, made in report.retrapped:
        click.echo(
            f"  line {line}: re-trapped for another patron: {ended.code.display} {verb} as "
            f"cancelled, new hold {made.code.display} (its slip replaces the old one)"
        )
    for line, reason in report.bad:
        click.echo(f"  line {line}: {reason}")


def _print_reconciliation(report: ImportReport) -> None:
    done = report.reconciled
    if done is None:
        click.echo(f"complete report: {report.unreconciled}")
        return
    would = "would be " if report.dry_run else ""
    click.echo(
        f"complete report: {len(done.ended)} {_holds(done.ended)} {would}ended in the ILS "
        f"(cancelled), {len(done.flagged)} not in it {would}flagged, {done.cleared} listed again"
    )
    if done.ended:
        click.echo("  ended (not in this report nor the last): pull them if still on the shelf")
    for entry in done.ended:
        click.echo(f"    {entry_line(entry)}")
    if done.flagged:
        click.echo("  flagged (not in this report): the next complete report ends them if missing")
    for entry in done.flagged:
        click.echo(f"    {entry_line(entry)}")


def _holds(entries: list[ShelfEntry]) -> str:
    return "hold" if len(entries) == 1 else "holds"


def _left_out(report: ImportReport) -> str:
    """The rows that are neither holds to make ready nor bad, said after the counts."""
    parts = []
    if report.expired:
        parts.append(f"{report.expired} expired in the ILS, not imported")
    if report.not_waiting:
        parts.append(f"{report.not_waiting} not awaiting pickup, left out")
    return "".join(f"; {part}" for part in parts)


@click.group()
def export() -> None:
    """The shelf and the daily counts for the library's own reporting (no patron data)."""


format_option = click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
out_option = click.option("--out", default="-", show_default=True, help="File, or - for stdout.")


@export.command("holds")
@branch_option
@format_option
@out_option
@pass_context
def export_holds_command(ctx: Context, branch_id: str | None, fmt: str, out: str) -> None:
    """Active holds in shelving order."""
    write_out(out, export_holds(ctx.service.shelf(branch_id), fmt))


@export.command("stats")
@click.option("--since", help="First day, YYYY-MM-DD (default: everything kept).")
@branch_option
@format_option
@out_option
@pass_context
def export_stats_command(
    ctx: Context, since: str | None, branch_id: str | None, fmt: str, out: str
) -> None:
    """Daily counts per branch, event and mode."""
    write_out(out, export_stats(ctx.service.stats(optional_date(since, "date"), branch_id), fmt))


@click.command()
@click.option("--since", help="First day to show, YYYY-MM-DD (default: 30 days ago).")
@branch_option
@json_option
@pass_context
def stats(ctx: Context, since: str | None, branch_id: str | None, as_json: bool) -> None:
    """Aggregate daily counts per branch: all the history Holdshelf keeps."""
    from holdshelf.domain.holds import PickupMode

    first = optional_date(since, "date") or ctx.root.clock.today() - dt.timedelta(days=30)
    days = ctx.service.stats(first, branch_id)
    usage = ctx.service.usage()
    if as_json:
        print_json({"days": [d.as_dict() for d in days], "branches": [u.as_dict() for u in usage]})
        return
    for branch in usage:
        click.echo(
            f"{branch.branch}: {branch.active_holds} active holds; "
            f"{branch.codes_in_use} of about {branch.code_capacity} codes in use"
        )
    events = ("ready", "picked_up", "expired", "cancelled")
    click.echo(
        f"{'day':<12}{'branch':<8}"
        + "".join(f"{e.replace('_', ' '):>11}" for e in events)
        + f"{'of them desk':>14}"
    )
    for day in days:
        totals = [sum(day.counts.get(e, {}).values()) for e in events]
        desk = day.counts.get("ready", {}).get(PickupMode.DESK.value, 0)
        click.echo(
            f"{day.day.isoformat():<12}{day.branch:<8}"
            + "".join(f"{n:>11}" for n in totals)
            + f"{desk:>14}"
        )
    if not days:
        click.echo("no activity in this period")
