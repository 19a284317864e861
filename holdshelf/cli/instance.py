"""Setting up and looking after the instance: ``init``, ``db upgrade`` and ``purge``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from holdshelf.cli.common import Context, check_printers, pass_context

if TYPE_CHECKING:
    from holdshelf.settings import Settings


@click.command()
@click.option("--demo", is_flag=True, help="Write a demo instance with two branches.")
@pass_context
def init(ctx: Context, demo: bool) -> None:
    """Create the instance folder with fresh secrets and the database (safe to repeat)."""
    from holdshelf.instance import write_config
    from holdshelf.storage import database

    report = write_config(ctx.instance_dir, demo=demo)
    if report.created:
        click.echo(f"created {report.config_path} with fresh secrets")
    elif report.secrets_added:
        click.echo(
            f"added missing secrets to {report.config_path}: {', '.join(report.secrets_added)}"
        )
    else:
        click.echo(f"{report.config_path} exists; its settings and secrets are unchanged")
    settings = ctx.settings
    check_printers(settings)
    database.upgrade_url(settings.database_url)
    click.echo(f"database ready ({_database_label(settings)})")
    click.echo(f"branches: {', '.join(f'{b.id} ({b.name})' for b in settings.branches.values())}")


def _database_label(settings: Settings) -> str:
    url = settings.database_url
    return url.removeprefix("sqlite:///") if url.startswith("sqlite") else "PostgreSQL"


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_context
def db_upgrade(ctx: Context) -> None:
    """Bring the database schema up to date after installing a new Holdshelf."""
    from holdshelf.storage import database

    database.upgrade_url(ctx.settings.database_url)
    click.echo("database schema is up to date")


@click.command()
@pass_context
def purge(ctx: Context) -> None:
    """Delete ended holds' links to patrons when due, free codes rested 30 days, and forget
    expired sessions and audit entries past retention.audit_days."""
    report = ctx.root.housekeep()
    click.echo(
        f"deleted {report.unlinked_holds} ended-hold links; "
        f"freed {report.freed_codes} codes for reuse; "
        f"removed {report.forgotten} expired sessions, idempotency keys, sign-in failures and "
        "old audit entries"
    )
