"""A patron's pickup choice: ``patron opt-out``, ``opt-in`` and ``show``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from holdshelf.cli.common import (
    Context,
    entry_line,
    json_option,
    pass_context,
    print_json,
    read_card,
)

if TYPE_CHECKING:
    from holdshelf.service import PatronView


@click.group()
def patron() -> None:
    """A patron's pickup choice: open shelf or staff-mediated pickup at the desk."""


def print_patron(view: PatronView, as_json: bool) -> None:
    from holdshelf.domain.holds import PickupMode

    if as_json:
        print_json(view.as_dict())
        return
    if view.preference is PickupMode.DESK:
        click.echo("pickup: at the desk (holds are kept behind the desk, staff hand them over)")
    else:
        click.echo("pickup: open shelf (holds are shelved under a code only the patron is sent)")
    if not view.holds:
        click.echo("no active holds")
    for entry in view.holds:
        note = "  -> move to the desk" if entry.move_to_desk else ""
        click.echo(f"  {entry_line(entry)}{note}")


card_argument = click.argument("card")


@patron.command("opt-out")
@card_argument
@json_option
@pass_context
def patron_opt_out(ctx: Context, card: str, as_json: bool) -> None:
    """Send this patron's holds to the desk from now on (CARD, or - for stdin)."""
    print_patron(ctx.service.opt_out(read_card(card)), as_json)


@patron.command("opt-in")
@card_argument
@json_option
@pass_context
def patron_opt_in(ctx: Context, card: str, as_json: bool) -> None:
    """Return this patron to the library's default pickup (CARD, or - for stdin)."""
    print_patron(ctx.service.opt_in(read_card(card)), as_json)


@patron.command("show")
@card_argument
@json_option
@pass_context
def patron_show(ctx: Context, card: str, as_json: bool) -> None:
    """What the library holds about this patron: the choice and active holds' codes."""
    print_patron(ctx.service.patron(read_card(card)), as_json)
