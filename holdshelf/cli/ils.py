"""The ILS connection: ``ils check`` says per branch whether it works; ``sync`` asks the ILS
which holds ended there."""

from __future__ import annotations

import click

from holdshelf.cli.common import Context, branch_option, fail, json_option, pass_context, print_json


@click.group()
def ils() -> None:
    """The connection to the library's ILS ([ils] in the configuration)."""


@ils.command("check")
@branch_option
@pass_context
def check(ctx: Context, branch_id: str | None) -> None:
    """Log in and ask the ILS's status, one line per branch; exit 1 if any branch fails."""
    from holdshelf.ils.answers import IlsUnavailable

    checkin = ctx.root.checkin
    if checkin is None:
        fail('no ILS is configured: set [ils] kind to "sip2", "koha" or "folio"')
    branches = [ctx.settings.branch(branch_id)] if branch_id else ctx.settings.branches.values()
    failed = 0
    for branch in branches:
        try:
            click.echo(f"{branch.id}: {checkin.check(branch.id)}")
        except IlsUnavailable as exc:
            failed += 1
            click.echo(f"{branch.id}: FAILED: {exc}")
    if failed:
        fail(f"{failed} of {len(branches)} branches cannot reach the ILS")


@click.command("sync")
@branch_option
@json_option
@pass_context
def sync(ctx: Context, branch_id: str | None, as_json: bool) -> None:
    """Ask the ILS about every active hold now (the worker does every [ils] sync_minutes):
    holds picked up, cancelled or expired there end here. Exit 1 if any could not be asked."""
    from holdshelf.domain.holds import ENDINGS

    syncing = ctx.root.sync
    if syncing is None:
        fail('no ILS is configured to sync with: set [ils] kind to "sip2", "koha" or "folio"')
    if branch_id:
        branch_id = ctx.settings.branch(branch_id).id
    report = syncing.run(branch_id)
    if as_json:
        print_json(
            {
                "checked": report.checked,
                "waiting": report.waiting,
                "ended": {status.value: report.ended[status] for status in ENDINGS},
                "unchecked": report.unchecked,
                "problems": report.problems,
            }
        )
    else:
        for problem in report.problems:
            click.echo(problem)
        click.echo(report.line())
    if report.unchecked:
        fail(f"{report.unchecked} holds could not be checked with the ILS; they stay as they are")
