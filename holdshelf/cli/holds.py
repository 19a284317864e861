"""The hold workflow at the desk: ``ready``, ``pickup``, ``cancel``, ``expire``, ``shelf``,
``move-to-desk``, and a hold's slip (``slip`` renders it, ``reprint`` queues it again)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

import click

from holdshelf.cli.common import (
    Context,
    branch_option,
    entry_line,
    fail,
    json_option,
    optional_date,
    pass_context,
    print_entries,
    print_json,
    read_card,
    write_out,
)

if TYPE_CHECKING:
    from holdshelf.domain.holds import ShelfEntry


@click.command()
@click.option("--branch", "branch_id", required=True, help="Pickup branch id, e.g. MAIN.")
@click.option("--item", required=True, help="Item barcode.")
@click.option(
    "--patron",
    "card",
    help="Patron card number, or - for stdin (without it: the hold an ILS registered for the "
    "item, else the connected ILS is asked).",
)
@click.option("--pickup-by", help="Last pickup day, YYYY-MM-DD (default: the branch's rule).")
@click.option("--title", help="Title, shown only where slips or notices show titles.")
@click.option("--email", help="Send the patron the code by email (kept encrypted until sent).")
@click.option("--sms", help="Send the patron the code by text message (likewise).")
@json_option
@pass_context
def ready(
    ctx: Context,
    branch_id: str,
    item: str,
    card: str | None,
    pickup_by: str | None,
    title: str | None,
    email: str | None,
    sms: str | None,
    as_json: bool,
) -> None:
    """Mark a trapped item ready: queue its slip (and notices) and print its shelf code."""
    if card is None:
        if pickup_by or title:
            fail("--pickup-by and --title go with --patron (the ILS gives the pickup-by date)")
        entry = _ready_from_ils(ctx, branch_id, item, email=email, sms=sms)
    else:
        entry = ctx.service.ready(
            branch_id,
            item,
            read_card(card),
            pickup_by=optional_date(pickup_by, "pickup-by date"),
            title=title,
            email=email,
            sms=sms,
        )
    if as_json:
        print_json(entry.as_dict())
    else:
        click.echo(entry_line(entry))


def _ready_from_ils(
    ctx: Context, branch_id: str, item: str, *, email: str | None, sms: str | None
) -> ShelfEntry:
    """The hold the ILS registered for the item or says it fills; exit 1 with one line for
    anything else."""
    from holdshelf.workflow.checkin import NothingTrapped, SendElsewhere, scan_registered

    checkin = ctx.root.checkin
    contacts = {"email": email, "sms": sms}
    if checkin is not None:
        outcome = checkin.scan(branch_id, item, **contacts)
    else:
        outcome = scan_registered(ctx.service, branch_id, item, **contacts)
    if outcome is None:
        fail('give --patron: no ILS is connected ([ils] kind = "none") to ask whose hold it is')
    if isinstance(outcome, SendElsewhere):
        fail(f"in transit: no code made; send the item to {outcome.destination}")
    if isinstance(outcome, NothingTrapped):
        fail("no hold for this item: it goes back to the shelf")
    if outcome.message:
        click.echo(f"the ILS says: {outcome.message}", err=True)
    return outcome.entry


def _code_or_item(command: Callable[..., Any]) -> Callable[..., Any]:
    @click.argument("code", required=False)
    @click.option("--item", help="Item barcode instead of the code.")
    @branch_option
    @json_option
    @wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        return command(**kwargs)

    return wrapper


@click.command()
@_code_or_item
@pass_context
def pickup(
    ctx: Context, code: str | None, item: str | None, branch_id: str | None, as_json: bool
) -> None:
    """Record that a patron collected a hold (by shelf code or item barcode)."""
    entry = ctx.service.pickup(code, item=item, branch_id=branch_id)
    _report_end(entry, "picked up", as_json)


@click.command()
@_code_or_item
@pass_context
def cancel(
    ctx: Context, code: str | None, item: str | None, branch_id: str | None, as_json: bool
) -> None:
    """Cancel an active hold (by shelf code or item barcode)."""
    entry = ctx.service.cancel(code, item=item, branch_id=branch_id)
    _report_end(entry, "cancelled", as_json)


def _report_end(entry: ShelfEntry, what: str, as_json: bool) -> None:
    if as_json:
        print_json(entry.as_dict())
    else:
        click.echo(f"{entry.code.display} {what} ({entry.branch})")


@click.command()
@click.option("--on", "on", help="Expire holds whose pickup-by date is before this day.")
@json_option
@pass_context
def expire(ctx: Context, on: str | None, as_json: bool) -> None:
    """End holds past their pickup-by date and list the items to pull, in shelving order."""
    pulled = ctx.service.expire(optional_date(on, "date"))
    if not as_json and pulled:
        click.echo(f"{len(pulled)} expired; pull from the shelf:")
    print_entries(pulled, as_json, "nothing to expire")


@click.command()
@branch_option
@json_option
@pass_context
def shelf(ctx: Context, branch_id: str | None, as_json: bool) -> None:
    """List active holds in shelving order. Never shows patron data."""
    from holdshelf.domain.holds import PickupMode

    entries = ctx.service.shelf(branch_id)
    if as_json:
        print_json([entry.as_dict() for entry in entries])
        return
    if not entries:
        click.echo("no active holds")
        return
    groups = (
        ("On the open shelf", [e for e in entries if e.mode is PickupMode.SHELF]),
        ("At the desk", [e for e in entries if e.mode is PickupMode.DESK]),
        ("To move to the desk (patron chose staff pickup)", [e for e in entries if e.move_to_desk]),
    )
    for title, group in groups:
        if group:
            click.echo(f"{title}: {len(group)}")
            for entry in group:
                click.echo(f"  {entry_line(entry)}")


@click.command("move-to-desk")
@click.argument("code")
@branch_option
@pass_context
def move_to_desk(ctx: Context, code: str, branch_id: str | None) -> None:
    """Record that an open-shelf hold was moved behind the desk."""
    entry = ctx.service.moved_to_desk(code, branch_id)
    click.echo(f"{entry.code.display} is now a desk hold ({entry.branch})")


@click.command()
@click.argument("code")
@branch_option
@click.option(
    "--format", "fmt", type=click.Choice(["escpos", "png"]), default="png", show_default=True
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File to write, or - for standard output.",
)
@pass_context
def slip(ctx: Context, code: str, branch_id: str | None, fmt: str, out: str) -> None:
    """Render an active hold's slip for its branch printer, without printing it."""
    from holdshelf.printers.slips import RenderedSlip

    branch, slip_ = ctx.service.slip(code, branch_id)
    rendered = RenderedSlip(slip_, ctx.settings.printer_of(branch))
    write_out(out, rendered.escpos if fmt == "escpos" else rendered.png())


@click.command()
@click.argument("code")
@branch_option
@pass_context
def reprint(ctx: Context, code: str, branch_id: str | None) -> None:
    """Print an active hold's slip again (no new notice to the patron)."""
    entry = ctx.service.reprint(code, branch_id)
    click.echo(
        f"{entry.code.display}: slip queued for {ctx.settings.printer_of(entry.branch).name}"
    )
