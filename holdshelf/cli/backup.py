"""Operations: ``backup`` and ``restore`` of the SQLite database (PostgreSQL: pg_dump)."""

from __future__ import annotations

from pathlib import Path

import click

from holdshelf.cli.common import Context, pass_context
from holdshelf.errors import InvalidInput

ACCEPT_FLAG = "--accept-resurrected-links"


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_context
def backup(ctx: Context, file: Path) -> None:
    """Copy the SQLite database to FILE (a new file) while the server runs: a consistent copy
    with nothing erased in it. On PostgreSQL use pg_dump (README: Backup and restore)."""
    from sqlalchemy.exc import DBAPIError

    from holdshelf.storage import backups
    from holdshelf.storage.models import BACKED_UP

    root = ctx.root
    info = backups.back_up(root.engine, file, root.clock())
    try:  # for the privacy audit; the copy carries its own time
        root.privacy.record(BACKED_UP)
    except DBAPIError as exc:
        click.echo(
            f"note: the backup's time is not in the audit ({type(exc.orig).__name__})", err=True
        )
    click.echo(
        f"backed up to {info.path} ({info.size:,} bytes, {info.active_holds} active holds, "
        f"schema {info.revision})"
    )
    click.echo(
        "It holds patron pseudonyms and sealed contacts: keep it as safe as the instance's "
        "secrets, and apart from them (it is useless without them, and they without it)."
    )


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    ACCEPT_FLAG,
    "accept_old",
    is_flag=True,
    help="Restore a backup older than the retention window for hold links, knowing that it "
    "brings back the links of holds that have ended since it was taken.",
)
@pass_context
def restore(ctx: Context, file: Path, accept_old: bool) -> None:
    """Replace the SQLite database with the backup FILE, after checking it (a Holdshelf
    database, a schema this version knows, SQLite's integrity check) and that no server or
    worker uses the database. Refuses a backup older than the retention window for hold links
    unless --accept-resurrected-links."""
    from holdshelf.storage import backups, database

    settings = ctx.settings
    engine = database.make_engine(settings.database_url)  # no schema check: it may be lost
    backups.sqlite_file(engine)
    info = backups.inspect(file)
    upgrade = backups.check_revision(
        info.revision, database.SCHEMA_REVISION, database.known_revisions()
    )
    _refuse_while_running(engine)
    reason = backups.too_old(info, ctx.root.clock(), settings.retention_days)
    if reason and not accept_old:
        raise InvalidInput(
            f"{reason}; restoring it brings back the links to patrons of holds that have "
            f"ended since. To restore it anyway: {ACCEPT_FLAG} (README: Backup and restore)"
        )
    backups.restore(info.path, engine)
    if upgrade:
        database.upgrade_url(settings.database_url)
    report = ctx.root.housekeep()  # what is due by the retention rules goes at once
    taken = f"{info.taken_at:%Y-%m-%d %H:%M} UTC" if info.taken_at else "an unknown time"
    click.echo(
        f"restored {info.path} (taken {taken}): {info.active_holds} active holds; "
        f"{report.unlinked_holds} ended-hold links past retention deleted"
        + ("; schema upgraded" if upgrade else "")
    )
    if reason:
        click.echo(
            "Holds that ended after the backup was taken are waiting again, linked to their "
            "patrons: run `holdshelf sync` (or import a complete report) so the ILS ends "
            "them again, and `holdshelf expire` for those past their pickup-by date."
        )


def _refuse_while_running(engine: object) -> None:
    from holdshelf.storage import wakeup

    listening = wakeup.for_engine(engine)  # type: ignore[arg-type]
    running = listening.listeners() if isinstance(listening, wakeup.SocketWakeup) else 0
    if running:
        raise InvalidInput(
            f"{running} server or worker process(es) use this database: stop `holdshelf "
            "serve` and `holdshelf worker`, then restore"
        )
