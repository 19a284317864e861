"""What every command module shares: the context that opens the instance, the common options,
reading a card number or a date, and printing results (one line on stderr for an error)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from holdshelf.errors import InvalidInput

if TYPE_CHECKING:  # imported when a command first asks for them (see holdshelf.cli)
    from holdshelf.accounts import Accounts
    from holdshelf.bootstrap import Holdshelf
    from holdshelf.domain.holds import ShelfEntry
    from holdshelf.integrations import Integrations
    from holdshelf.service import HoldService
    from holdshelf.settings import Settings
    from holdshelf.worker import Worker


class Context:
    """What every command needs, loaded (and imported) only when a command asks for it."""

    def __init__(self, instance_dir: Path) -> None:
        self.instance_dir = instance_dir

    @cached_property
    def settings(self) -> Settings:
        from holdshelf.settings import load_settings

        return load_settings(self.instance_dir)

    @cached_property
    def root(self) -> Holdshelf:
        """What the composition root builds (holdshelf.bootstrap), each part when first used."""
        from holdshelf.bootstrap import Holdshelf

        return Holdshelf(self.settings)

    def close(self) -> None:
        """When the command is done: its database connections close (as at a process's exit,
        also when the command runs in-process), so none holds the database after it."""
        if "root" in self.__dict__:
            self.root.close()

    @property
    def service(self) -> HoldService:
        return self.root.service

    @property
    def accounts(self) -> Accounts:
        return self.root.accounts

    @property
    def integrations(self) -> Integrations:
        return self.root.integrations

    @property
    def worker(self) -> Worker:
        return self.root.worker


pass_context = click.make_pass_decorator(Context)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
branch_option = click.option("--branch", "branch_id", help="Branch id, e.g. MAIN.")


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def check_printers(settings: Settings) -> None:
    """Printer profiles and code pages are checked against python-escpos (slow to load, so
    only by the commands that set up or use printers)."""
    from holdshelf.printers.render_escpos import profile_for

    for printer in settings.printers.values():
        profile_for(printer)


# -- input ----------------------------------------------------------------------------------


def read_card(value: str) -> str:
    """A card number argument; ``-`` reads it from standard input."""
    if value == "-":
        return sys.stdin.readline().strip()
    return value


def optional_date(value: str | None, what: str) -> dt.date | None:
    from holdshelf.domain.inputs import parse_date

    return None if value is None else parse_date(value, what)


# -- output ---------------------------------------------------------------------------------


def _day(day: dt.date) -> str:
    return f"{day:%a} {day.isoformat()}"


def _place(entry: ShelfEntry) -> str:
    from holdshelf.domain.holds import PickupMode

    return "open shelf" if entry.mode is PickupMode.SHELF else "AT THE DESK"


def entry_line(entry: ShelfEntry) -> str:
    return (
        f"{entry.code.display}  section {entry.section}  {_place(entry):<11}  "
        f"pick up by {_day(entry.pickup_by)}  {entry.branch_name} ({entry.branch})"
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_entries(entries: Iterable[ShelfEntry], as_json: bool, empty: str) -> None:
    entries = list(entries)
    if as_json:
        print_json([entry.as_dict() for entry in entries])
    elif not entries:
        click.echo(empty)
    else:
        for entry in entries:
            click.echo(entry_line(entry))


def write_out(out: str, data: str | bytes) -> None:
    """To a file, or to standard output for "-"; a file that cannot be written is one line."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if out == "-":
        click.echo(raw, nl=False)  # bytes go to the binary stream as they are
        return
    try:
        Path(out).write_bytes(raw)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out} ({len(raw):,} bytes)", err=True)
