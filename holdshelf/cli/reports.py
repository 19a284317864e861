"""Reports in and out, none with patron data: holds-ready reports from the ILS (``import``),
the shelf and the daily counts for the library's own reporting (``export``, ``stats``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from holdshelf.cli.common import (
    Context,
    branch_option,
    json_option,
    optional_date,
    pass_context,
    print_json,
    write_out,
)
from holdshelf.errors import HoldshelfError
from holdshelf.importer import FORMATS, export_holds, export_stats, import_holds


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
@pass_context
def import_report(
    ctx: Context,
    file: Path,
    branch_id: str,
    fmt: str,
    dry_run: bool,
    all_or_nothing: bool,
    encoding: str,
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
    )
    verb = "would import" if dry_run else "imported"
    if all_or_nothing and report.bad:
        verb = "imported nothing of"
        click.echo(f"{report.rows} rows: {verb} them, {len(report.bad)} bad")
    else:
        click.echo(
            f"{report.rows} rows: {verb} {len(report.imported)}, "
            f"skipped {report.skipped} already active, {len(report.bad)} bad"
        )
    for line, reason in report.bad:
        click.echo(f"  line {line}: {reason}")
    if report.bad:
        raise HoldshelfError(f"{len(report.bad)} rows were not imported (listed above)")


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
