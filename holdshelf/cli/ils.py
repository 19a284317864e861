"""The ILS connection: ``ils check`` says per branch whether it works."""

from __future__ import annotations

import click

from holdshelf.cli.common import Context, branch_option, fail, pass_context
from holdshelf.ils.answers import IlsUnavailable


@click.group()
def ils() -> None:
    """The connection to the library's ILS ([ils] in the configuration)."""


@ils.command("check")
@branch_option
@pass_context
def check(ctx: Context, branch_id: str | None) -> None:
    """Log in and ask the ILS's status, one line per branch; exit 1 if any branch fails."""
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
