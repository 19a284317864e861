"""``serve``: the staff web app (waitress) with the print worker in the same process, and the
demo it can set up first."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, NoReturn

import click

from holdshelf.cli.common import Context, check_printers, pass_context
from holdshelf.errors import HoldshelfError

if TYPE_CHECKING:
    from holdshelf.worker import Worker

DEMO_ACCOUNT = "demo"


@click.command()
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
        desk.agents.close()  # print agents' long polls end now, not in 25 s
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

    from holdshelf.instance import write_config
    from holdshelf.storage import database

    if not (ctx.instance_dir / "holdshelf.toml").exists():
        write_config(ctx.instance_dir, demo=True)
        click.echo(f"created a demo instance in {ctx.instance_dir}")
    if not ctx.settings.development:
        raise HoldshelfError(
            f"{ctx.instance_dir} is a production instance: --demo only runs demo instances"
        )
    database.upgrade_url(ctx.settings.database_url)
    password = random.token_urlsafe(12)
    if DEMO_ACCOUNT in dict(ctx.accounts.users()):
        ctx.accounts.set_password(DEMO_ACCOUNT, password)
    else:
        ctx.accounts.add_user(DEMO_ACCOUNT, password, "admin")
    click.echo(f"Demo sign-in: account {DEMO_ACCOUNT}, password {password} (new at every start)")
