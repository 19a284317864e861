"""What leaves the machine: the printers (``printers``, ``print-test``), the queues of slips
and notices (``print-queue``, ``notices``) and the ``worker`` that delivers them."""

from __future__ import annotations

import signal
import threading

import click

from holdshelf.cli.common import Context, check_printers, json_option, pass_context, print_json
from holdshelf.errors import HoldshelfError


@click.command()
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
        print_json(rows)
        return
    for row in rows:
        branches = ", ".join(row["branches"]) or "no branch"
        click.echo(
            f"{row['name']}: {row['type']} {row['target']}, profile {row['profile']} "
            f"({row['dots']} dots), for {branches}: {row['status']}"
        )


@click.command("print-test")
@click.argument("name")
@pass_context
def print_test(ctx: Context, name: str) -> None:
    """Print a test slip on printer NAME now (not queued)."""
    from holdshelf.print_worker import send_test_slip

    target = send_test_slip(ctx.settings, name, ctx.root.clock.today())
    click.echo(f"test slip sent to {name} ({target})")


@click.command("print-queue")
@click.option("--all", "include_finished", is_flag=True, help="Include printed and dropped slips.")
@json_option
@pass_context
def print_queue(ctx: Context, include_finished: bool, as_json: bool) -> None:
    """Slips waiting for a printer, with their attempts and last error."""
    jobs = ctx.worker.prints.jobs(include_finished=include_finished)
    if as_json:
        print_json([job.as_dict() for job in jobs])
        return
    if not jobs:
        click.echo("no slips waiting" if not include_finished else "no print jobs")
    for job in jobs:
        problem = f"  attempt {job.attempts}: {job.last_error}" if job.last_error else ""
        click.echo(
            f"#{job.id} {job.code.display} {job.kind} {job.status} -> {job.printer} "
            f"({job.branch}){problem}"
        )


@click.command()
@click.option("--all", "include_finished", is_flag=True, help="Include sent and failed notices.")
@json_option
@pass_context
def notices(ctx: Context, include_finished: bool, as_json: bool) -> None:
    """Notices waiting to be sent (never their addresses or numbers)."""
    waiting = ctx.worker.notices.notices(include_finished=include_finished)
    if as_json:
        print_json([notice.as_dict() for notice in waiting])
        return
    if not waiting:
        click.echo("no notices waiting" if not include_finished else "no notices")
    for notice in waiting:
        problem = f"  attempt {notice.attempts}: {notice.last_error}" if notice.last_error else ""
        click.echo(
            f"#{notice.id} {notice.code.display} {notice.channel} {notice.status} "
            f"({notice.branch}){problem}"
        )


@click.command()
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
