"""``print-agent``: print a branch's slips from the central server (holdshelf.print_agent).

Needs no instance folder: the server, the token and the printer are all it knows.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

import click

from holdshelf.errors import InvalidInput

TOKEN_VARIABLE = "HOLDSHELF_AGENT_TOKEN"  # noqa: S105 (the variable's name, not a token)
CONFIG_KEYS = {"server", "token_file", "printer", "profile", "ca_file"}
BUSY_GRACE = 60.0  # seconds a stopping agent waits for the slip it is printing


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from holdshelf.config_sources import read_toml

    table = read_toml(path)
    unknown = set(table) - CONFIG_KEYS
    if unknown:
        raise InvalidInput(f"{path}: unknown key {sorted(unknown)[0]!r}")
    return table


def _token(token: str | None, token_file: Path | None) -> str:
    """From --token-file, else $HOLDSHELF_AGENT_TOKEN, else --token (seen in `ps`)."""
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read the token file: {exc.strerror}") from None
    found = os.environ.get(TOKEN_VARIABLE) or token
    if not found:
        raise InvalidInput(f"give the agent's token: --token-file FILE or ${TOKEN_VARIABLE}")
    return found.strip()


@click.command("print-agent")
@click.option("--server", help="The central server, https://holds.example.org.")
@click.option("--token", help=f"The agent's token (better: --token-file or ${TOKEN_VARIABLE}).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--printer", "printer_spec", help="network:HOST[:PORT], usb:VID:PID, serial:DEV, file:PATH"
)
@click.option("--profile", help="python-escpos profile of the printer, e.g. TM-T88V.")
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="Extra CA.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A TOML file with server, token_file, printer, profile, ca_file.")  # fmt: skip
def print_agent(
    server: str | None,
    token: str | None,
    token_file: Path | None,
    printer_spec: str | None,
    profile: str | None,
    ca_file: Path | None,
    config_file: Path | None,
) -> None:
    """Print this branch's slips from the central server, until stopped."""
    from holdshelf.print_agent import (
        PrintAgent,
        Server,
        check_server_url,
        printer_settings,
        printer_table,
    )

    config = _config(config_file)
    url = check_server_url(server or config.get("server", "") or "")
    spec = printer_spec or config.get("printer")
    if not spec:
        raise InvalidInput("give the printer: --printer network:HOST[:PORT] (or usb, serial, file)")
    printer = printer_settings(printer_table(spec, profile or config.get("profile", "")))
    token_path = token_file or (Path(config["token_file"]) if "token_file" in config else None)
    ca = ca_file or (Path(config["ca_file"]) if "ca_file" in config else None)
    with tempfile.TemporaryDirectory(prefix="holdshelf-agent-") as work:
        agent = PrintAgent(Server(url, _token(token, token_path), ca), printer, Path(work))
        _run(agent, url, printer.target)


def _run(agent: Any, url: str, target: str) -> None:
    """Run the agent in a thread; SIGTERM or Ctrl-C stops it after the slip it is printing."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            agent.run(stop)
        except BaseException as exc:
            failure.append(exc)
            stop.set()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=loop, name="print-agent", daemon=True)
    thread.start()
    click.echo(f"print agent running: slips from {url} to {target} (Ctrl-C to stop)")
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        stop.set()
    if failure:
        raise failure[0]
    if agent.busy.is_set():
        click.echo("stopping: finishing the slip being printed")
        deadline = BUSY_GRACE
        while agent.busy.is_set() and deadline > 0:
            thread.join(0.2)
            deadline -= 0.2
    click.echo(f"print agent stopped ({agent.printed} printed)")
