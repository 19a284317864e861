"""The branch print agent: fetches its branch's slips from the central server and prints them.

Runs at the branch (``holdshelf print-agent``), next to a printer the server cannot reach.
Outgoing connections only: it long-polls the server over HTTPS (holdshelf.web.agents) and
sends each slip to its printer with the same connection code as the server's print worker
(holdshelf.printers.connections). The delivery rules are the worker's (holdshelf.agents): the
attempt's phase is reported before the first byte leaves, so a crash leaves a record; the
outcome and the printer's status are reported after. No job is written to disk: a job lives
in memory from its lease to its acknowledgement.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from holdshelf.errors import InvalidInput

log = logging.getLogger(__name__)

LONG_POLL = 25.0  # seconds the server may hold a lease request
HTTP_TIMEOUT = LONG_POLL + 15.0
FIRST_BACKOFF, LONGEST_BACKOFF = 1.0, 30.0
HOLD_LIMIT = 15 * 60.0  # as the print worker: a printer keeping a slip unprinted this long
RENEW_EVERY = 30.0  # seconds between lease renewals while the printer holds a slip
ACK_GIVE_UP_ON_STOP = 10.0  # seconds a stopping agent still tries to report a printed slip
BUSY_SERVER_PAUSE = 2.0  # seconds before asking again when a long poll came back at once
PRINTER_KINDS = ("network", "usb", "serial", "file")


class ServerUnreachable(Exception):
    """The server did not answer (network down, server restarting, 5xx): try again later."""


class LeaseEnded(Exception):
    """The server says this lease is over (409) or its job is gone (404, purged): the slip
    must not be printed under it, and there is nothing left to report."""


class Refused(InvalidInput):
    """The server refused the token (401, 403) or the request: no point in trying again."""


def check_server_url(url: str) -> str:
    """The server's base URL: HTTPS, or plain HTTP to a loopback address only (tests)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"--server must be an https:// URL, not {url!r}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise InvalidInput(
            f"refusing plain http to {parts.hostname}: the token and slips need https:// "
            "(plain http is only for a server on this machine)"
        )
    return url.strip().rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def printer_table(spec: str, profile: str) -> dict[str, Any]:
    """``network:HOST[:PORT]``, ``usb:VENDOR:PRODUCT``, ``serial:DEVICE[:BAUD]`` or
    ``file:PATH`` as the keys of a ``[printers.X]`` table (see the README's printers)."""
    kind, _, rest = spec.partition(":")
    if kind not in PRINTER_KINDS or not rest:
        raise InvalidInput(
            f"--printer {spec!r}: expected network:HOST[:PORT], usb:VENDOR:PRODUCT, "
            "serial:DEVICE[:BAUD] or file:PATH"
        )
    table: dict[str, Any] = {"type": kind, "profile": profile}
    if kind == "network":
        host, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
        table["host"] = host or rest
        if port:
            table["port"] = _number(port, spec)
    elif kind == "usb":
        vendor, _, product = rest.partition(":")
        table["vendor_id"], table["product_id"] = vendor, product
    elif kind == "serial":
        device, _, baud = rest.partition(":")
        table["device"] = device
        if baud:
            table["baudrate"] = _number(baud, spec)
    else:
        table["device"] = rest
    return table


def _number(text: str, spec: str) -> int:
    if not text.isdigit():
        raise InvalidInput(f"--printer {spec!r}: {text!r} is not a number")
    return int(text)


def printer_settings(table: Mapping[str, Any]) -> Any:
    """The printer as the server's configuration would describe it, over its defaults."""
    from holdshelf.config_sources import read_toml
    from holdshelf.printers.config import printer_from_table
    from holdshelf.resources import resource_dir

    defaults = read_toml(resource_dir("config") / "default.toml")["printer_defaults"]
    unknown = set(table) - set(defaults)
    if unknown:
        raise InvalidInput(f"unknown printer key {sorted(unknown)[0]!r}")
    return printer_from_table("agent", {**defaults, **table})


class Server:
    """The central server's agent API, over HTTPS, with the agent's token."""

    def __init__(self, base_url: str, token: str, ca_file: Path | None = None) -> None:
        self.base_url = base_url
        self._token = token
        self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def post(self, path: str, body: dict[str, Any], timeout: float = HTTP_TIMEOUT) -> Any:
        # The base URL passed check_server_url: https, or http to loopback; no other scheme.
        request = urllib.request.Request(  # noqa: S310
            f"{self.base_url}/api/v1/agent{path}",
            data=json.dumps(body).encode("utf-8"),
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "User-Agent": "holdshelf-print-agent",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 (see above)
                request, timeout=timeout, context=self._context
            ) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(f"the server did not answer ({reason})") from None


def _http_error(exc: urllib.error.HTTPError) -> Exception:
    try:
        detail = json.loads(exc.read()).get("detail", "")
    except (ValueError, AttributeError, OSError):
        detail = ""
    if exc.code in (404, 409):
        return LeaseEnded(detail or exc.reason)
    if exc.code in (401, 403):
        return Refused(f"the server refused the token ({exc.code}: {detail or exc.reason})")
    if exc.code >= 500 or exc.code == 429:
        return ServerUnreachable(f"the server answered {exc.code} {detail or exc.reason}")
    return Refused(f"the server refused the request ({exc.code}: {detail or exc.reason})")


@dataclass
class Backoff:
    """1 s doubling to 30 s, each ±20%: an agent whose server or printer is away."""

    delay: float = 0.0

    def next(self) -> float:
        self.delay = min(LONGEST_BACKOFF, max(FIRST_BACKOFF, self.delay * 2))
        return self.delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)

    def reset(self) -> None:
        self.delay = 0.0


@dataclass(frozen=True)
class Result:
    """A slip's outcome, as it is acknowledged; None for a job not to acknowledge."""

    outcome: str  # printed | failed
    error: str = ""


class PrintAgent:
    """Lease, print, acknowledge, until stopped."""

    def __init__(self, server: Server, printer: Any, work_dir: Path) -> None:
        self.server = server
        self.printer = printer
        self._work_dir = work_dir  # only the preview printer writes there; the agent does not
        self.busy = threading.Event()  # set from a lease to its acknowledgement
        self._status: dict[str, Any] = {"ok": None, "status": "not asked yet"}
        self.printed = 0

    def run(self, stop: threading.Event) -> None:
        server_backoff, printer_backoff = Backoff(), Backoff()
        self._refresh_status()
        while not stop.is_set():
            wait = LONG_POLL if self._status["ok"] is not False else 0
            asked = time.monotonic()
            try:
                jobs = self.server.post("/jobs/lease", {"wait": wait, "printer": self._status})
            except ServerUnreachable as exc:
                log.warning("%s; trying again", exc)
                stop.wait(server_backoff.next())
                continue
            server_backoff.reset()
            if not jobs or not jobs.get("jobs"):
                if self._status["ok"] is False:
                    stop.wait(printer_backoff.next())
                elif wait and time.monotonic() - asked < 1:  # the server had no thread to wait
                    stop.wait(BUSY_SERVER_PAUSE)
                self._refresh_status()
                continue
            self.busy.set()
            try:
                result = self._print(jobs["jobs"][0])
                if result is not None:
                    self._acknowledge(jobs["jobs"][0]["lease"], result, stop)
            finally:
                self.busy.clear()
            if result is not None and result.outcome == "failed":
                stop.wait(printer_backoff.next())  # the printer is away: give it time
                self._refresh_status()
            else:
                printer_backoff.reset()

    def _print(self, job: Mapping[str, Any]) -> Result | None:
        """Send one slip to the printer, reporting its phases; None when it must not print."""
        from holdshelf.printers.connections import Attempt, PrinterError, connect

        lease = job["lease"]
        attempt = Attempt(
            job["process_id"],
            on_sending=lambda: self._phase(lease, "sending"),
            on_accepted=lambda: self._phase_if_reachable(lease, "accepted"),
        )
        try:
            data = base64.b64decode(job["escpos"], validate=True)
            held = connect(self.printer, self._work_dir).send(data, label="agent", attempt=attempt)
        except (LeaseEnded, ServerUnreachable) as exc:  # from on_sending: nothing went out
            log.warning("job %s not printed: %s", job["id"], exc or "its lease has ended")
            return None
        except PrinterError as exc:
            self._note_printer(str(exc), ok=exc.accepted)
            if exc.accepted:  # it read the whole slip and was online: it prints it
                return Result("printed")
            log.warning("job %s not printed: %s", job["id"], exc)
            return Result("failed", str(exc)[:300])
        if held is not None:
            return self._follow(job, held)
        self._note_printer("online", ok=True)
        return Result("printed")

    def _follow(self, job: Mapping[str, Any], held: Any) -> Result:
        """The printer holds the slip on an open connection (cover, paper, jam): wait for it,
        renewing the lease, as the print worker does; never send the slip a second time."""
        from holdshelf.printers.connections import PrinterError

        self._note_printer("holds a slip unprinted (cover, paper?)", ok=False)
        accepted_reported = held.accepted  # reported by the connection's own on_accepted
        while time.monotonic() - held.since < HOLD_LIMIT:
            try:
                if held.wait(RENEW_EVERY):
                    self._note_printer("online", ok=True)
                    return Result("printed")
            except PrinterError as exc:
                return Result("printed") if exc.accepted else Result("failed", str(exc)[:300])
            if held.accepted and not accepted_reported:
                accepted_reported = True
                self._phase_if_reachable(job["lease"], "accepted")
            else:
                self._phase_if_reachable(job["lease"], "waiting")
        held.close()
        if held.accepted:
            return Result("printed")
        return Result("failed", "the printer kept the slip 15 minutes without printing it")

    def _phase(self, lease: str, phase: str) -> None:
        self.server.post(f"/jobs/{lease}/phase", {"phase": phase})

    def _phase_if_reachable(self, lease: str, phase: str) -> None:
        """Best effort: unreported, ``accepted`` only makes a later attempt print a marked copy."""
        try:
            self._phase(lease, phase)
        except (ServerUnreachable, LeaseEnded) as exc:
            log.warning("could not report %s: %s", phase, exc)

    def _acknowledge(self, lease: str, result: Result, stop: threading.Event) -> None:
        """Report the outcome, trying until the server has it: a printed slip left unreported
        prints again (marked) once its lease runs out. A stopping agent tries a little longer."""
        backoff = Backoff()
        body = {"outcome": result.outcome, "error": result.error, "printer": self._status}
        stopping_since: float | None = None
        while True:
            try:
                self.server.post(f"/jobs/{lease}/ack", body)
                if result.outcome == "printed":
                    self.printed += 1
                log.info("job %s: %s", lease, result.outcome)
                return
            except LeaseEnded as exc:  # the job is gone from the server: nothing to record
                log.warning("job %s: the server no longer has it (%s)", lease, exc)
                return
            except ServerUnreachable as exc:
                log.warning("reporting job %s: %s; trying again", lease, exc)
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > ACK_GIVE_UP_ON_STOP:
                    log.warning("job %s printed but not reported; it may print again", lease)
                    return
            time.sleep(backoff.next())

    def _refresh_status(self) -> None:
        from holdshelf.printers.connections import PrinterError, connect

        try:
            status = connect(self.printer, self._work_dir).status()
        except PrinterError as exc:
            self._note_printer(str(exc), ok=False)
            return
        ok = status.reachable and status.online is not False
        self._note_printer(status.describe(), ok=ok if status.reachable else False)

    def _note_printer(self, status: str, *, ok: bool | None) -> None:
        self._status = {"ok": ok, "status": status[:200]}
