"""The ``holdshelf`` command line.

User errors print one line on stderr and exit 1, never a traceback (``--debug`` shows one for
a real bug). A card number may be given as ``-`` to read it from standard input, which keeps it
out of the shell history and the process list.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from functools import cached_property, wraps
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError

from holdshelf import __version__
from holdshelf.accounts import Accounts, minutes_text
from holdshelf.bootstrap import Holdshelf
from holdshelf.domain.holds import PickupMode, ShelfEntry
from holdshelf.domain.inputs import parse_date
from holdshelf.errors import HoldshelfError, InvalidInput
from holdshelf.importer import FORMATS, export_holds, export_stats, import_holds
from holdshelf.instance import write_config
from holdshelf.integrations import Integrations
from holdshelf.print_worker import send_test_slip
from holdshelf.service import HoldService, PatronView
from holdshelf.settings import Settings, default_instance_dir, load_settings
from holdshelf.storage import database
from holdshelf.worker import Worker

log = logging.getLogger("holdshelf")


class Context:
    """What every command needs, loaded only when a command asks for it."""

    def __init__(self, instance_dir: Path) -> None:
        self.instance_dir = instance_dir

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.instance_dir)

    @cached_property
    def root(self) -> Holdshelf:
        """What the composition root builds (holdshelf.bootstrap), each part when first used."""
        return Holdshelf(self.settings)

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
    ctx.meta["debug"] = debug


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: turns every expected failure into one line on stderr and exit status 1."""
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        result = cli.main(args=argv, prog_name="holdshelf", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted")
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}")
    except click.ClickException as exc:
        _fail(exc.format_message())
    except HoldshelfError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        if debug:
            raise
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(f"database error: {cause}")
    except Exception as exc:
        if debug:
            raise
        _fail(f"internal error ({type(exc).__name__}); run again with --debug for details")
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


# -- output ---------------------------------------------------------------------------------


def _day(day: dt.date) -> str:
    return f"{day:%a} {day.isoformat()}"


def _place(entry: ShelfEntry) -> str:
    return "open shelf" if entry.mode is PickupMode.SHELF else "AT THE DESK"


def _entry_line(entry: ShelfEntry) -> str:
    return (
        f"{entry.code.display}  section {entry.section}  {_place(entry):<11}  "
        f"pick up by {_day(entry.pickup_by)}  {entry.branch_name} ({entry.branch})"
    )


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _print_entries(entries: Iterable[ShelfEntry], as_json: bool, empty: str) -> None:
    entries = list(entries)
    if as_json:
        _print_json([entry.as_dict() for entry in entries])
    elif not entries:
        click.echo(empty)
    else:
        for entry in entries:
            click.echo(_entry_line(entry))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
branch_option = click.option("--branch", "branch_id", help="Branch id, e.g. MAIN.")


def _card(value: str) -> str:
    """A card number argument; ``-`` reads it from standard input."""
    if value == "-":
        return sys.stdin.readline().strip()
    return value


def _date_option(value: str | None, what: str) -> dt.date | None:
    return None if value is None else parse_date(value, what)


# -- set-up ---------------------------------------------------------------------------------


@cli.command()
@click.option("--demo", is_flag=True, help="Write a demo instance with two branches.")
@pass_context
def init(ctx: Context, demo: bool) -> None:
    """Create the instance folder with fresh secrets and the database (safe to repeat)."""
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
    database.upgrade(database.make_engine(settings.database_url))
    click.echo(f"database ready ({_database_label(settings)})")
    click.echo(f"branches: {', '.join(f'{b.id} ({b.name})' for b in settings.branches.values())}")


def check_printers(settings: Settings) -> None:
    """Printer profiles and code pages are checked against python-escpos (slow to load, so
    only by the commands that set up or use printers)."""
    from holdshelf.printers.render_escpos import profile_for

    for printer in settings.printers.values():
        profile_for(printer)


def _database_label(settings: Settings) -> str:
    url = settings.database_url
    return url.removeprefix("sqlite:///") if url.startswith("sqlite") else "PostgreSQL"


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_context
def db_upgrade(ctx: Context) -> None:
    """Bring the database schema up to date after installing a new Holdshelf."""
    database.upgrade(database.make_engine(ctx.settings.database_url))
    click.echo("database schema is up to date")


# -- the workflow ---------------------------------------------------------------------------


@cli.command()
@click.option("--branch", "branch_id", required=True, help="Pickup branch id, e.g. MAIN.")
@click.option("--item", required=True, help="Item barcode.")
@click.option("--patron", "card", required=True, help="Patron card number, or - for stdin.")
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
    card: str,
    pickup_by: str | None,
    title: str | None,
    email: str | None,
    sms: str | None,
    as_json: bool,
) -> None:
    """Mark a trapped item ready: queue its slip (and notices) and print its shelf code."""
    entry = ctx.service.ready(
        branch_id,
        item,
        _card(card),
        pickup_by=_date_option(pickup_by, "pickup-by date"),
        title=title,
        email=email,
        sms=sms,
    )
    if as_json:
        _print_json(entry.as_dict())
    else:
        click.echo(_entry_line(entry))


def _code_or_item(command: Callable[..., Any]) -> Callable[..., Any]:
    @click.argument("code", required=False)
    @click.option("--item", help="Item barcode instead of the code.")
    @branch_option
    @json_option
    @wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        return command(**kwargs)

    return wrapper


@cli.command()
@_code_or_item
@pass_context
def pickup(
    ctx: Context, code: str | None, item: str | None, branch_id: str | None, as_json: bool
) -> None:
    """Record that a patron collected a hold (by shelf code or item barcode)."""
    entry = ctx.service.pickup(code, item=item, branch_id=branch_id)
    _report_end(entry, "picked up", as_json)


@cli.command()
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
        _print_json(entry.as_dict())
    else:
        click.echo(f"{entry.code.display} {what} ({entry.branch})")


@cli.command()
@click.option("--on", "on", help="Expire holds whose pickup-by date is before this day.")
@json_option
@pass_context
def expire(ctx: Context, on: str | None, as_json: bool) -> None:
    """End holds past their pickup-by date and list the items to pull, in shelving order."""
    pulled = ctx.service.expire(_date_option(on, "date"))
    if not as_json and pulled:
        click.echo(f"{len(pulled)} expired; pull from the shelf:")
    _print_entries(pulled, as_json, "nothing to expire")


@cli.command()
@branch_option
@json_option
@pass_context
def shelf(ctx: Context, branch_id: str | None, as_json: bool) -> None:
    """List active holds in shelving order. Never shows patron data."""
    entries = ctx.service.shelf(branch_id)
    if as_json:
        _print_json([entry.as_dict() for entry in entries])
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
                click.echo(f"  {_entry_line(entry)}")


@cli.command("move-to-desk")
@click.argument("code")
@branch_option
@pass_context
def move_to_desk(ctx: Context, code: str, branch_id: str | None) -> None:
    """Record that an open-shelf hold was moved behind the desk."""
    entry = ctx.service.moved_to_desk(code, branch_id)
    click.echo(f"{entry.code.display} is now a desk hold ({entry.branch})")


# -- slips and printers --------------------------------------------------------------------


@cli.command()
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
    _write(out, rendered.escpos if fmt == "escpos" else rendered.png())


@cli.command()
@json_option
@pass_context
def printers(ctx: Context, as_json: bool) -> None:
    """List printers, the branches they serve and whether they answer."""
    from holdshelf.printers.connections import connect
    from holdshelf.printers.render_escpos import paper_for

    check_printers(ctx.settings)
    rows = []
    for printer in ctx.settings.printers.values():
        serves = [b.id for b in ctx.settings.branches.values() if b.printer == printer.name]
        status = connect(printer, ctx.instance_dir).status()
        rows.append(
            {
                "name": printer.name,
                "type": printer.type,
                "target": printer.target,
                "profile": printer.profile or "generic",
                "dots": paper_for(printer).dots,
                "branches": serves,
                "reachable": status.reachable,
                "online": status.online,
                "paper": status.paper,
                "status": status.describe(),
            }
        )
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        branches = ", ".join(row["branches"]) or "no branch"
        click.echo(
            f"{row['name']}: {row['type']} {row['target']}, profile {row['profile']} "
            f"({row['dots']} dots), for {branches}: {row['status']}"
        )


@cli.command("print-test")
@click.argument("name")
@pass_context
def print_test(ctx: Context, name: str) -> None:
    """Print a test slip on printer NAME now (not queued)."""
    target = send_test_slip(ctx.settings, name, ctx.root.clock.today())
    click.echo(f"test slip sent to {name} ({target})")


@cli.command("print-queue")
@click.option("--all", "include_finished", is_flag=True, help="Include printed and dropped slips.")
@json_option
@pass_context
def print_queue(ctx: Context, include_finished: bool, as_json: bool) -> None:
    """Slips waiting for a printer, with their attempts and last error."""
    jobs = ctx.worker.prints.jobs(include_finished=include_finished)
    if as_json:
        _print_json([job.as_dict() for job in jobs])
        return
    if not jobs:
        click.echo("no slips waiting" if not include_finished else "no print jobs")
    for job in jobs:
        problem = f"  attempt {job.attempts}: {job.last_error}" if job.last_error else ""
        click.echo(
            f"#{job.id} {job.code.display} {job.kind} {job.status} -> {job.printer} "
            f"({job.branch}){problem}"
        )


@cli.command()
@click.option("--all", "include_finished", is_flag=True, help="Include sent and failed notices.")
@json_option
@pass_context
def notices(ctx: Context, include_finished: bool, as_json: bool) -> None:
    """Notices waiting to be sent (never their addresses or numbers)."""
    waiting = ctx.worker.notices.notices(include_finished=include_finished)
    if as_json:
        _print_json([notice.as_dict() for notice in waiting])
        return
    if not waiting:
        click.echo("no notices waiting" if not include_finished else "no notices")
    for notice in waiting:
        problem = f"  attempt {notice.attempts}: {notice.last_error}" if notice.last_error else ""
        click.echo(
            f"#{notice.id} {notice.code.display} {notice.channel} {notice.status} "
            f"({notice.branch}){problem}"
        )


@cli.command()
@click.argument("code")
@branch_option
@pass_context
def reprint(ctx: Context, code: str, branch_id: str | None) -> None:
    """Print an active hold's slip again (no new notice to the patron)."""
    entry = ctx.service.reprint(code, branch_id)
    click.echo(
        f"{entry.code.display}: slip queued for {ctx.settings.printer_of(entry.branch).name}"
    )


@cli.command()
@click.option("--once", is_flag=True, help="Try every queued slip once, then exit.")
@pass_context
def worker(ctx: Context, once: bool) -> None:
    """Send queued slips to the printers and notices to patrons (until stopped, or --once)."""
    if once:
        report = ctx.worker.run_once(ignore_backoff=True)
        prints, notices = report.prints, report.notices
        dropped = prints.dropped + notices.dropped
        click.echo(
            f"slips printed: {prints.sent}; notices sent: {notices.sent}"
            + (f"; dropped (hold ended): {dropped}" if dropped else "")
            + (f"; notices refused for good: {notices.given_up}" if notices.given_up else "")
        )
        failed = {**prints.failed, **notices.failed}
        if failed:
            waiting = len(ctx.worker.prints.jobs()) + len(ctx.worker.notices.notices())
            problems = "; ".join(f"{route}: {error}" for route, error in failed.items())
            raise HoldshelfError(f"{waiting} still waiting ({problems})")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo("worker running (Ctrl-C to stop)")
    try:
        ctx.worker.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    click.echo("worker stopped")


# -- staff accounts and the web app ---------------------------------------------------------


@cli.group()
def user() -> None:
    """Staff accounts for the web app (there is no default account)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["staff", "admin"]), default="staff", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_context
def user_add(ctx: Context, name: str, role: str, password_stdin: bool) -> None:
    """Add a staff account (asks for its password)."""
    ctx.accounts.add_user(name, _password(password_stdin), role)
    click.echo(f"added {role} account {name}")


@user.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_context
def user_password(ctx: Context, name: str, password_stdin: bool) -> None:
    """Set a new password (and sign the account out everywhere)."""
    ctx.accounts.set_password(name, _password(password_stdin))
    click.echo(f"new password set for {name}")


@user.command("remove")
@click.argument("name")
@pass_context
def user_remove(ctx: Context, name: str) -> None:
    """Remove a staff account."""
    ctx.accounts.remove_user(name)
    click.echo(f"removed {name}")


@user.command("unlock")
@click.argument("name", required=False)
@click.option("--address", help="Unlock this address (a desk PC) instead of an account.")
@pass_context
def user_unlock(ctx: Context, name: str | None, address: str | None) -> None:
    """Let an account (or, with --address, an address) locked out by failed sign-ins sign in
    again now."""
    if (name is None) == (address is None):
        raise InvalidInput("name an account, or give --address ADDRESS")
    if address is not None:
        cleared = ctx.accounts.unlock_address(address)
        click.echo(f"unlocked {address} ({cleared} failed sign-ins forgotten)")
        return
    assert name is not None
    cleared = ctx.accounts.unlock(name)
    click.echo(f"unlocked {name} ({cleared} failed sign-ins forgotten)")


@user.command("list")
@pass_context
def user_list(ctx: Context) -> None:
    """List staff accounts, and how long any locked-out account must still wait."""
    for view in ctx.accounts.account_views():
        locked = f", locked out for {minutes_text(view.locked_for)}" if view.locked_for else ""
        click.echo(f"{view.name} ({view.role}{locked})")


DEMO_ACCOUNT = "demo"


@cli.command()
@click.option("--host", help="Address to listen on [default: web.host, 127.0.0.1].")
@click.option("--port", type=int, help="Port [default: web.port, 5000].")
@click.option("--demo", is_flag=True, help="Create a demo instance and a demo admin first.")
@pass_context
def serve(ctx: Context, host: str | None, port: int | None, demo: bool) -> None:
    """Run the staff web app (waitress) with the print worker in the same process."""
    import waitress

    from holdshelf.web import create_app

    if demo:
        _prepare_demo(ctx)
    settings = ctx.settings
    check_printers(settings)
    app = create_app(ctx.root)
    desk = app.extensions["holdshelf"]
    stop = threading.Event()
    worker_thread = threading.Thread(
        target=desk.worker.run_forever, args=(stop,), name="print-worker", daemon=True
    )
    worker_thread.start()
    host, port = host or settings.web.host, port or settings.web.port
    try:
        server = waitress.create_server(
            app,
            host=host,
            port=port,
            threads=8,
            ident="holdshelf",
            # waitress would drop X-Forwarded-* from all but its one trusted_proxy; the app
            # believes them from [web] trusted_proxy only (holdshelf.web.proxy), so that exactly
            # one layer reads them and a network of proxies can be named.
            clear_untrusted_proxy_headers=False,
        )
    except OSError as exc:
        raise HoldshelfError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        signal.signal(signal.SIGTERM, _interrupt)
        click.echo(f"Holdshelf is serving at http://{host}:{port}/ (Ctrl-C to stop)")
        server.run()  # returns on Ctrl-C or SIGTERM: waitress ends its loop on KeyboardInterrupt
    except KeyboardInterrupt:
        pass  # one that came just before or after the loop
    finally:
        server.close()  # the port is free for a successor while the last slip finishes
        _stop_worker(desk.worker, worker_thread, stop)


STOP_WAIT_SECONDS = 60.0  # a slip's longest send (connect, status, data timeouts), with room


def _interrupt(signum: int, frame: object) -> NoReturn:
    """SIGTERM (systemd, containers) stops `serve` as Ctrl-C does."""
    raise KeyboardInterrupt


def _stop_worker(
    worker: Worker,
    thread: threading.Thread,
    stop: threading.Event,
    wait: float = STOP_WAIT_SECONDS,
) -> None:
    """Let the worker finish what it is sending and record it, then stop it. A second Ctrl-C
    or SIGTERM stops at once: a slip cut off mid-send is sent again when its lease runs out."""
    sending = worker.sending()
    click.echo(f"stopping: finishing the {sending} being sent" if sending else "stopping")
    stop.set()
    worker.wake()
    thread.join(timeout=wait)
    if not thread.is_alive():
        click.echo("stopped")
        return
    late = worker.sending()
    click.echo(
        f"stopped; the {late} being sent did not finish within {wait:g} s: it stays queued and "
        "is sent again"
        if late
        else f"stopped; the worker did not stop within {wait:g} s",
        err=True,
    )


def _prepare_demo(ctx: Context) -> None:
    """A demo instance (created if missing) and a demo admin with a fresh password each start."""
    import secrets as random

    if not (ctx.instance_dir / "holdshelf.toml").exists():
        write_config(ctx.instance_dir, demo=True)
        click.echo(f"created a demo instance in {ctx.instance_dir}")
    if not ctx.settings.development:
        raise HoldshelfError(
            f"{ctx.instance_dir} is a production instance: --demo only runs demo instances"
        )
    database.upgrade(database.make_engine(ctx.settings.database_url))
    password = random.token_urlsafe(12)
    if DEMO_ACCOUNT in dict(ctx.accounts.users()):
        ctx.accounts.set_password(DEMO_ACCOUNT, password)
    else:
        ctx.accounts.add_user(DEMO_ACCOUNT, password, "admin")
    click.echo(f"Demo sign-in: account {DEMO_ACCOUNT}, password {password} (new at every start)")


# -- ILS integration ------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Integration tokens for the holds API (/api/v1)."""


@token.command("create")
@click.argument("name")
@click.option("--branch", "branches", multiple=True, help="Limit to this branch (repeatable).")
@pass_context
def token_create(ctx: Context, name: str, branches: tuple[str, ...]) -> None:
    """Create a token and print it, once: only its hash is kept."""
    secret = ctx.integrations.create_token(name, list(branches))
    scope = ", ".join(sorted({ctx.settings.branch(b).id for b in branches})) or "every branch"
    click.echo(f"token {name} ({scope}); store it now, it is not shown again:")
    click.echo(secret)


@token.command("list")
@pass_context
def token_list(ctx: Context) -> None:
    """List tokens (never the tokens themselves)."""
    for view in ctx.integrations.tokens():
        scope = ", ".join(view.branches) or "every branch"
        state = "revoked" if view.revoked else "active"
        click.echo(f"{view.name}: {state}, {scope}, created {view.created_at:%Y-%m-%d}")


@token.command("revoke")
@click.argument("name")
@pass_context
def token_revoke(ctx: Context, name: str) -> None:
    """Revoke a token: it stops working at once."""
    ctx.integrations.revoke(name)
    click.echo(f"revoked {name}")


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--branch", "branch_id", required=True, help="Pickup branch of every row.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="generic",
    show_default=True,
    help="Which ILS report the columns come from.",
)
@click.option("--dry-run", is_flag=True, help="Check and report; import nothing.")
@click.option("--all-or-nothing", is_flag=True, help="Import nothing if any row is bad.")
@click.option("--encoding", default="utf-8-sig", show_default=True)
@pass_context
def import_report(
    ctx: Context,
    file: Path,
    branch_id: str,
    fmt: str,
    dry_run: bool,
    all_or_nothing: bool,
    encoding: str,
) -> None:
    """Make the holds of a holds-ready report (CSV) ready; rows already active are skipped."""
    report = import_holds(
        ctx.service,
        file,
        branch_id,
        fmt,
        dry_run=dry_run,
        all_or_nothing=all_or_nothing,
        encoding=encoding,
    )
    verb = "would import" if dry_run else "imported"
    if all_or_nothing and report.bad:
        verb = "imported nothing of"
        click.echo(f"{report.rows} rows: {verb} them, {len(report.bad)} bad")
    else:
        click.echo(
            f"{report.rows} rows: {verb} {len(report.imported)}, "
            f"skipped {report.skipped} already active, {len(report.bad)} bad"
        )
    for line, reason in report.bad:
        click.echo(f"  line {line}: {reason}")
    if report.bad:
        raise HoldshelfError(f"{len(report.bad)} rows were not imported (listed above)")


@cli.group()
def export() -> None:
    """The shelf and the daily counts for the library's own reporting (no patron data)."""


def _write(out: str, data: str | bytes) -> None:
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


format_option = click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
out_option = click.option("--out", default="-", show_default=True, help="File, or - for stdout.")


@export.command("holds")
@branch_option
@format_option
@out_option
@pass_context
def export_holds_command(ctx: Context, branch_id: str | None, fmt: str, out: str) -> None:
    """Active holds in shelving order."""
    _write(out, export_holds(ctx.service.shelf(branch_id), fmt))


@export.command("stats")
@click.option("--since", help="First day, YYYY-MM-DD (default: everything kept).")
@branch_option
@format_option
@out_option
@pass_context
def export_stats_command(
    ctx: Context, since: str | None, branch_id: str | None, fmt: str, out: str
) -> None:
    """Daily counts per branch, event and mode."""
    _write(out, export_stats(ctx.service.stats(_date_option(since, "date"), branch_id), fmt))


# -- patrons --------------------------------------------------------------------------------


@cli.group()
def patron() -> None:
    """A patron's pickup choice: open shelf or staff-mediated pickup at the desk."""


def _print_patron(view: PatronView, as_json: bool) -> None:
    if as_json:
        _print_json(view.as_dict())
        return
    if view.preference is PickupMode.DESK:
        click.echo("pickup: at the desk (holds are kept behind the desk, staff hand them over)")
    else:
        click.echo("pickup: open shelf (holds are shelved under a code only the patron is sent)")
    if not view.holds:
        click.echo("no active holds")
    for entry in view.holds:
        note = "  -> move to the desk" if entry.move_to_desk else ""
        click.echo(f"  {_entry_line(entry)}{note}")


card_argument = click.argument("card")


@patron.command("opt-out")
@card_argument
@json_option
@pass_context
def patron_opt_out(ctx: Context, card: str, as_json: bool) -> None:
    """Send this patron's holds to the desk from now on (CARD, or - for stdin)."""
    _print_patron(ctx.service.opt_out(_card(card)), as_json)


@patron.command("opt-in")
@card_argument
@json_option
@pass_context
def patron_opt_in(ctx: Context, card: str, as_json: bool) -> None:
    """Return this patron to the library's default pickup (CARD, or - for stdin)."""
    _print_patron(ctx.service.opt_in(_card(card)), as_json)


@patron.command("show")
@card_argument
@json_option
@pass_context
def patron_show(ctx: Context, card: str, as_json: bool) -> None:
    """What the library holds about this patron: the choice and active holds' codes."""
    _print_patron(ctx.service.patron(_card(card)), as_json)


# -- retention and numbers ------------------------------------------------------------------


@cli.command()
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


@cli.command()
@click.option("--since", help="First day to show, YYYY-MM-DD (default: 30 days ago).")
@branch_option
@json_option
@pass_context
def stats(ctx: Context, since: str | None, branch_id: str | None, as_json: bool) -> None:
    """Aggregate daily counts per branch: all the history Holdshelf keeps."""
    first = _date_option(since, "date") or ctx.root.clock.today() - dt.timedelta(days=30)
    days = ctx.service.stats(first, branch_id)
    usage = ctx.service.usage()
    if as_json:
        _print_json({"days": [d.as_dict() for d in days], "branches": [u.as_dict() for u in usage]})
        return
    for branch in usage:
        click.echo(
            f"{branch.branch}: {branch.active_holds} active holds; "
            f"{branch.codes_in_use} of about {branch.code_capacity} codes in use"
        )
    events = ("ready", "picked_up", "expired", "cancelled")
    click.echo(
        f"{'day':<12}{'branch':<8}"
        + "".join(f"{e.replace('_', ' '):>11}" for e in events)
        + f"{'of them desk':>14}"
    )
    for day in days:
        totals = [sum(day.counts.get(e, {}).values()) for e in events]
        desk = day.counts.get("ready", {}).get(PickupMode.DESK.value, 0)
        click.echo(
            f"{day.day.isoformat():<12}{day.branch:<8}"
            + "".join(f"{n:>11}" for n in totals)
            + f"{desk:>14}"
        )
    if not days:
        click.echo("no activity in this period")
