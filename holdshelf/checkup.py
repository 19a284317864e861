"""`holdshelf check`: is every configured part of this instance working, one line each.

The configuration, the database and its schema, each printer (asked for its status: nothing
prints), the mail server (connect, EHLO, STARTTLS and login as configured: no message), the SMS
gateway (a connection: no message) and the ILS (each branch's login and status call). Each is
given a few seconds. A part that is not configured says so and is no failure. No line carries
a secret: every configured secret is masked out of every line, whatever a server answered.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from holdshelf.errors import ConfigError
from holdshelf.settings import Settings, load_settings

CHECK_SECONDS = 5.0  # the longest any one part is waited for
MASK = "***"


@dataclass(frozen=True)
class Line:
    part: str
    state: str  # OK | FAIL | NOT_CONFIGURED | NOT_CHECKED
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.state == FAIL

    def render(self) -> str:
        if self.state == FAIL:
            return f"{self.part}: FAIL: {self.detail}"
        if self.state == NOT_CHECKED:
            return f"{self.part}: not checked here ({self.detail})"
        return f"{self.part}: {self.state}" + (f" ({self.detail})" if self.detail else "")


OK, FAIL, NOT_CONFIGURED, NOT_CHECKED = "ok", "fail", "not configured", "not checked"


def run_checks(instance_dir: Path) -> Iterator[Line]:
    """Every check, each line as soon as it is known (a slow part is seen being slow)."""
    try:
        settings = load_settings(instance_dir)
        _check_profiles(settings)
    except ConfigError as exc:
        yield Line("configuration", FAIL, str(exc))
        return
    secrets = _secrets(settings)
    for line in _checks(settings):
        yield Line(line.part, line.state, _masked(line.detail, secrets))


def _checks(settings: Settings) -> Iterator[Line]:
    yield Line("configuration", OK)
    yield check_database(settings.database_url)
    for printer in settings.printers.values():
        yield check_printer(settings, printer.name)
    mail = check_mail(settings)
    yield mail
    yield check_sms(settings, mail)
    yield from check_ils(settings)


def _check_profiles(settings: Settings) -> None:
    from holdshelf.printers.render_escpos import profile_for

    for printer in settings.printers.values():
        profile_for(printer)


# -- the database ---------------------------------------------------------------------------


def check_database(database_url: str) -> Line:
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from holdshelf.storage import database

    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(int(CHECK_SECONDS))})
    engine = database.make_engine(url.render_as_string(hide_password=False))
    try:
        database.check_schema(engine)
    except ConfigError as exc:
        return Line("database", FAIL, str(exc))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Line("database", FAIL, f"cannot open the database: {reason}")
    finally:
        engine.dispose()
    return Line("database", OK, f"{url.get_backend_name()}, schema {database.SCHEMA_REVISION}")


# -- printers -------------------------------------------------------------------------------


def _device_status(settings: Settings, name: str) -> Line:
    """Ask the printer for its status as `holdshelf printers` does: nothing is printed."""
    from holdshelf.printers.connections import connect

    printer = settings.printer(name)
    short = replace(
        printer,
        connect_timeout=min(printer.connect_timeout, CHECK_SECONDS),
        send_timeout=min(printer.send_timeout, CHECK_SECONDS),
    )
    status = connect(short, settings.instance_dir).status()
    said = status.describe()
    detail = said if printer.target in said else f"{printer.type} {printer.target}: {said}"
    working = status.reachable and status.online is not False
    return Line(f"printer {name}", OK if working else FAIL, detail)


def _agent_status(settings: Settings, name: str) -> Line:
    """A branch print agent's printer is out of this server's reach: what its agent last
    reported, and whether it has been in touch lately (as the desk's banner judges it)."""
    from sqlalchemy.exc import SQLAlchemyError

    from holdshelf.agents import AGENT_SILENT
    from holdshelf.bootstrap import Holdshelf

    part = f"printer {name}"
    branches = {b.id for b in settings.branches.values() if b.printer == name}
    root = Holdshelf(settings)
    try:
        now = root.clock()
        agents = [v for v in root.agents.views() if v.branch in branches and not v.revoked]
    except (ConfigError, SQLAlchemyError):
        return Line(part, FAIL, "cannot read the print agents' reports (see the database line)")
    finally:
        root.close()
    if not agents:
        return Line(
            part,
            FAIL,
            "no print agent token for its branch: holdshelf token create "
            "NAME --branch BRANCH --print-agent",
        )
    for agent in agents:
        if agent.last_seen_at is None:
            return Line(part, FAIL, f"print agent {agent.name} has never been in touch")
        silent = now - agent.last_seen_at
        if silent > AGENT_SILENT:
            minutes = int(silent.total_seconds() // 60)
            return Line(part, FAIL, f"print agent {agent.name} silent for {minutes} minutes")
        if agent.printer_ok is False:
            return Line(part, FAIL, f"print agent {agent.name}: {agent.printer_status}")
    said = ", ".join(f"{a.name}: {a.printer_status or 'in touch'}" for a in agents)
    return Line(part, OK, f"print agent {said}")


# What checks each type of printer here: a device this server reaches, or what a branch's
# print agent reported. A type not listed reads as not checked here, never as a crash.
PRINTER_CHECKS: dict[str, Callable[[Settings, str], Line]] = dict.fromkeys(
    ("network", "usb", "serial", "file", "cups", "preview"), _device_status
) | {"agent": _agent_status}


def check_printer(settings: Settings, name: str) -> Line:
    printer = settings.printer(name)
    checker = PRINTER_CHECKS.get(printer.type)
    if checker is None:
        return Line(f"printer {name}", NOT_CHECKED, f"a {printer.type} printer")
    return checker(settings, name)


# -- mail and SMS ---------------------------------------------------------------------------


def check_mail(settings: Settings) -> Line:
    """Connect, EHLO, STARTTLS and log in as the notices would; no message is sent."""
    mail = settings.mail
    if not mail.enabled:
        return Line("mail", NOT_CONFIGURED)
    timeout = min(mail.timeout, CHECK_SECONDS)
    where = f"{mail.host}:{mail.port}"
    try:
        context = ssl.create_default_context(cafile=mail.ca_file or None)
        if mail.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                mail.host, mail.port, timeout=timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(mail.host, mail.port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if mail.security == "starttls":
                if not smtp.has_extn("starttls"):
                    return Line("mail", FAIL, f"{where} offers no STARTTLS (check mail.security)")
                smtp.starttls(context=context)
                smtp.ehlo()
            if mail.username:
                smtp.login(mail.username, mail.password)
    except smtplib.SMTPAuthenticationError as exc:
        return Line("mail", FAIL, f"{where} refused the login ({exc.smtp_code})")
    except smtplib.SMTPResponseException as exc:
        return Line("mail", FAIL, f"{where} answered {exc.smtp_code}")
    except ssl.SSLCertVerificationError as exc:
        return Line("mail", FAIL, f"{where}: certificate not trusted ({exc.verify_message})")
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        return Line("mail", FAIL, f"{where} unreachable ({_reason(exc)})")
    return Line("mail", OK, where)


def check_sms(settings: Settings, mail: Line) -> Line:
    """The HTTP gateway is connected to (TLS handshake included), never sent a request: any
    request could be a message."""
    sms = settings.sms
    if not sms.enabled:
        return Line("sms", NOT_CONFIGURED)
    if sms.gateway == "email":
        if mail.failed:
            return Line("sms", FAIL, "the email-to-SMS gateway goes through mail, which failed")
        return Line("sms", OK, f"through mail to @{sms.email_domain}")
    parts = urlsplit(sms.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=min(sms.timeout, CHECK_SECONDS)) as s:
            if parts.scheme == "https":
                with ssl.create_default_context().wrap_socket(s, server_hostname=host):
                    pass
    except ssl.SSLCertVerificationError as exc:
        return Line("sms", FAIL, f"{where}: certificate not trusted ({exc.verify_message})")
    except (ssl.SSLError, OSError) as exc:
        return Line("sms", FAIL, f"{where} unreachable ({_reason(exc)})")
    return Line("sms", OK, f"{where} reachable; nothing sent")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    return type(exc).__name__


# -- the ILS --------------------------------------------------------------------------------


def check_ils(settings: Settings) -> Iterator[Line]:
    """Each branch's login and the ILS's status, as `holdshelf ils check` asks them."""
    from holdshelf.bootstrap import make_connector
    from holdshelf.ils.answers import IlsUnavailable
    from holdshelf.workflow.checkin import account_of

    if settings.ils.kind == "none":
        yield Line("ils", NOT_CONFIGURED)
        return
    quick = replace(settings, ils=replace(settings.ils, timeout=min(settings.ils.timeout, 5.0)))
    connector = make_connector(quick)
    assert connector is not None  # a kind other than "none" has one
    try:
        for branch in settings.branches.values():
            part = f"ils {settings.ils.kind} {branch.id}"
            try:
                yield Line(part, OK, connector.check(account_of(branch)))
            except IlsUnavailable as exc:
                yield Line(part, FAIL, str(exc))
    finally:
        connector.close()


# -- secrets --------------------------------------------------------------------------------


def _secrets(settings: Settings) -> list[str]:
    from sqlalchemy import make_url

    found = [
        settings.hashids_salt,
        settings.pseudonym_key,
        settings.secret_key,
        settings.data_key,
        settings.mail.password,
        settings.sms.token,
        settings.ils.client_secret,
        settings.ils.password,
        settings.web.metrics_token,
        make_url(settings.database_url).password or "",
        *(branch.ils_password for branch in settings.branches.values()),
    ]
    # Longest first, so a secret containing another is masked whole.
    return sorted({str(s) for s in found if len(str(s)) >= 3}, key=len, reverse=True)


def _masked(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
