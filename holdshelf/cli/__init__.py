"""The ``holdshelf`` command line: the group and its entry point; the commands live in one
module per area beside this one and share ``holdshelf.cli.common``.

User errors print one line on stderr and exit 1, never a traceback (``--debug`` shows one for
a real bug). A card number may be given as ``-`` to read it from standard input, which keeps it
out of the shell history and the process list.

Importing the command line loads click and little else: SQLAlchemy, the web app, the printer
and image libraries and Argon2 are imported by the commands that use them, inside the command,
so that ``--help`` and quick commands start at once (tests/test_cli.py checks it). Module level
in holdshelf/cli/ keeps to what click needs to build the commands and their help.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

import click

from holdshelf import __version__
from holdshelf.cli import (
    access,
    agent,
    backup,
    check,
    delivery,
    holds,
    ils,
    instance,
    patrons,
    privacy,
    reports,
    serve,
)
from holdshelf.cli.common import Context, fail
from holdshelf.config_sources import default_instance_dir
from holdshelf.errors import HoldshelfError

__all__ = ["cli", "main"]

# tests/test_cli.py imports it from here, as it did when the command line was one module.
_stop_worker = serve._stop_worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--instance",
    "instance_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_instance_dir,
    show_default="$HOLDSHELF_INSTANCE or ./instance",
    help="Instance folder: configuration, secrets and the SQLite database.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log what happens (opaque ids only).")
@click.option("--debug", is_flag=True, hidden=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, prog_name="holdshelf")
@click.pass_context
def cli(ctx: click.Context, instance_dir: Path, verbose: bool, debug: bool) -> None:
    """Holdshelf: pseudonymous shelf codes for self-service hold shelves."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Context(instance_dir)
    ctx.call_on_close(ctx.obj.close)
    ctx.meta["debug"] = debug


# Every command, by area; click lists them in --help sorted by name.
for _command in (
    instance.init,
    instance.db,
    instance.purge,
    check.check,
    holds.ready,
    holds.pickup,
    holds.cancel,
    holds.expire,
    holds.shelf,
    holds.move_to_desk,
    holds.slip,
    holds.reprint,
    delivery.printers,
    delivery.print_test,
    delivery.print_queue,
    delivery.notices,
    delivery.worker,
    agent.print_agent,
    patrons.patron,
    privacy.privacy_audit,
    backup.backup,
    backup.restore,
    access.user,
    access.token,
    reports.import_report,
    reports.export,
    reports.stats,
    serve.serve,
    ils.ils,
    ils.sync,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: turns every expected failure into one line on stderr and exit status 1."""
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        result = cli.main(args=argv, prog_name="holdshelf", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        fail(f"{exc.format_message()}{hint}")
    except click.ClickException as exc:
        fail(exc.format_message())
    except HoldshelfError as exc:
        fail(str(exc))
    except Exception as exc:
        if debug:
            raise
        fail(_unexpected(exc))
    sys.exit(result if isinstance(result, int) else 0)


def _unexpected(exc: Exception) -> str:
    """One line for what no command expected: the database's own words, else the type."""
    # Not `except SQLAlchemyError`: importing SQLAlchemy would cost every command ~150 ms. An
    # error of SQLAlchemy's can only come from a command that imported it.
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"database error: {cause}"
    return f"internal error ({type(exc).__name__}); run again with --debug for details"
