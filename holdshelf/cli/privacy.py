"""For the privacy officer: ``privacy-audit`` (the inventory, or one patron's disclosure)."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import click

from holdshelf.cli.common import Context, json_option, pass_context, print_json
from holdshelf.errors import InvalidInput

if TYPE_CHECKING:
    from holdshelf.privacy_audit import Disclosure, PrivacyReport


@click.command("privacy-audit")
@json_option
@click.option(
    "--disclose",
    metavar="-",
    help="What Holdshelf holds about one patron: give - and type or pipe the card number on "
    "standard input (never on the command line, where `ps` shows it). The lookup is in the "
    "audit log; the card is not.",
)
@pass_context
def privacy_audit(ctx: Context, as_json: bool, disclose: str | None) -> int:
    """Every kind of record that can touch a patron, now, against its retention rule; the
    retention schedule; the last purge. Exit status 1 when anything is kept past retention."""
    privacy = ctx.root.privacy
    if disclose is not None:
        card = _card_from_stdin(disclose)
        _print_disclosure(privacy.disclose(card, ctx.accounts.audit_command_line), as_json)
        return 0
    report = privacy.report()
    if as_json:
        print_json(report.as_dict())
    else:
        _print_report(report)
    return 1 if report.failures else 0


def _card_from_stdin(value: str) -> str:
    if value != "-":
        raise InvalidInput(
            "give the card number on standard input (--disclose -), never on the command line"
        )
    if sys.stdin.isatty():
        return click.prompt("card number", hide_input=True, err=True).strip()
    card = sys.stdin.readline().strip()
    if not card:
        raise InvalidInput("no card number on standard input")
    return card


def _when(moment: object) -> str:
    return "never recorded" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def _print_report(report: PrivacyReport) -> None:
    click.echo(f"Holdshelf privacy audit, {_when(report.at)} ({report.database})")
    click.echo("")
    click.echo("Records that can touch a patron:")
    for kind in report.records:
        oldest = f"; oldest {_when(kind.oldest)}" if kind.oldest else ""
        status = "FAIL" if kind.failure else "ok"
        click.echo(f"  [{status}] {kind.what}: {kind.count}{oldest}")
        _detail(f"kept: {kind.rule}")
        if kind.failure:
            _detail(f"FAILURE: {kind.failure}")
        if kind.note:
            _detail(f"note: {kind.note}")
    click.echo("")
    click.echo("Retention schedule (as configured):")
    for entry in report.schedule:
        setting = f"  [{entry.setting}]" if entry.setting else ""
        click.echo(f"  {entry.record}: {entry.kept}{setting}")
    click.echo("")
    click.echo(f"Last purge: {_when(report.last_purge)}")
    click.echo(f"Last backup: {_when(report.last_backup)}")
    if report.failures:
        click.echo(f"{len(report.failures)} FAILURES: " + "; ".join(report.failures))
    else:
        click.echo("Nothing is kept past its retention.")


def _detail(line: str) -> None:
    """A record's rule or failure, under it, wrapped for a terminal or a printout."""
    click.echo(textwrap.fill(line, width=96, initial_indent=" " * 9, subsequent_indent=" " * 15))


def _print_disclosure(found: Disclosure, as_json: bool) -> None:
    from holdshelf.cli.patrons import print_patron

    if as_json:
        print_json(found.as_dict())
        return
    click.echo("What Holdshelf holds about this patron:")
    print_patron(found.patron, as_json=False)
    click.echo(f"notices waiting with a sealed contact: {found.sealed_notices}")
    click.echo(f"holds waiting for the item's scan with sealed contacts: {found.sealed_for_scan}")
    click.echo(
        "stored for no patron: card number, name, title in the clear; contacts only sealed, "
        "until their notice is sent"
    )
    click.echo(found.statement)
