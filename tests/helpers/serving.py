"""`holdshelf serve` as systemd or a container runs it: its own process, on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from tests.helpers.cli import Result
from tests.helpers.servers import free_port

SCRIPT = Path(sys.executable).with_name("holdshelf")  # this venv's console script


def child_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}


class Serving:
    """`holdshelf serve` as systemd or a container runs it: the console script, its own
    process, a free port, stopped by a signal."""

    def __init__(self, *args: str, cwd: Path | None = None, port: int | None = None) -> None:
        """``args``: the arguments up to `serve` and its options (a free port is added, or
        ``port``: a restart on the port clients know)."""
        self.port = port or free_port()
        self.process = subprocess.Popen(
            [str(SCRIPT), *args, "--port", str(self.port)],
            env=child_environment(),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._watchdog = threading.Timer(90, self.process.kill)  # a hung server fails the test
        self._watchdog.start()
        self.said: list[str] = []  # what it printed before serving (the demo's sign-in)
        while not (line := self.line()).startswith("Holdshelf is serving at"):
            if not line:  # it exited
                self._watchdog.cancel()
                raise AssertionError("".join(self.said) + self.process.communicate()[1])
            self.said.append(line)

    def line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def stop(self, signum: int | None = signal.SIGTERM) -> Result:
        """Send ``signum`` (None: it was sent already), then wait for the exit."""
        if signum is not None:
            self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=80)
        self._watchdog.cancel()
        return Result(self.process.returncode, out, err)

    def listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def port_is_free(self) -> bool:
        """A successor can listen on the port (as waitress does, with SO_REUSEADDR)."""
        with socket.socket() as successor:
            successor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                successor.bind(("127.0.0.1", self.port))
                successor.listen()
            except OSError:
                return False
            return True
