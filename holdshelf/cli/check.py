"""``check``: one line per configured part of the instance, and whether it works."""

from __future__ import annotations

import click

from holdshelf.cli.common import Context, fail, pass_context


@click.command("check")
@pass_context
def check(ctx: Context) -> None:
    """Check the configuration, the database, each printer, mail, SMS and the ILS, one line
    each (ok, FAIL: reason, or not configured); exit 1 if any configured part fails. Nothing
    is printed or sent."""
    from holdshelf.checkup import run_checks

    failed = 0
    for line in run_checks(ctx.instance_dir):
        click.echo(line.render())
        failed += line.failed
    if failed:
        fail(f"{failed} check{'s' if failed > 1 else ''} failed")
