"""Instance configuration: shipped defaults, the instance's holdshelf.toml, environment overrides.

Branches and printers are configuration, not data. Unknown keys are refused with their name, so
a typo in a config file is caught at start-up instead of being silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from holdshelf import config_checks as checks
from holdshelf.config_sources import BARCODE_KEYS, ENV_PREFIX, merged_config
from holdshelf.domain.barcodes import BarcodeRules
from holdshelf.domain.codes import MAX_LENGTH, MIN_LENGTH
from holdshelf.domain.holds import (
    MAX_RETENTION_DAYS,
    WEEKDAYS,
    PickupMode,
    PickupPolicy,
)
from holdshelf.domain.pseudonyms import MIN_KEY_BYTES
from holdshelf.domain.slips import SlipOptions
from holdshelf.errors import ConfigError, UnknownBranch
from holdshelf.printers.config import PrinterSettings, printer_from_table

CONFIG_FILE = "holdshelf.toml"
SQLITE_FILE = "holdshelf.sqlite3"
SECRET_KEYS = ("hashids_salt", "pseudonym_key", "secret_key", "data_key")
EXAMPLE_SECRET_MARK = "change-me"  # noqa: S105 (a marker, not a secret)
MIN_SECRET_LENGTH = 32
ENVIRONMENTS = ("production", "development")
BRANCH_ID_MAX = 32
ILS_KINDS = ("none", "sip2", "koha", "folio")
SIP_LOOKUPS = ("checkin", "item-information")
LANGUAGES = ("en", "es")  # patron-facing text; a translation catalog away from more
MAX_PUBLIC_URL = 60  # the opt-out link must leave room in a 160-character text message

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A reverse proxy on this machine: what `behind_proxy = true` trusts unless trusted_proxy says.
LOOPBACK_PROXIES = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
# What each connection type needs installed, and the extra that installs it.
PRINTER_EXTRAS = {"usb": ("usb", "usb"), "serial": ("serial", "serial"), "cups": ("cups", "cups")}


@dataclass(frozen=True)
class BranchSettings:
    id: str
    name: str
    pickup_days: int
    code_length: int
    closed_days: frozenset[int]
    printer: str
    language: str
    barcodes: BarcodeRules
    ils_location: str = ""  # the ILS's code for this branch (the branch id unless set)
    ils_login: str = ""
    ils_password: str = field(default="", repr=False)

    @functools.cached_property  # read once per row of an import: made once, not per row
    def policy(self) -> PickupPolicy:
        return PickupPolicy(pickup_days=self.pickup_days, closed_weekdays=self.closed_days)


@dataclass(frozen=True)
class IlsSettings:
    """The ILS connection ([ils]); each branch's account and location are in BranchSettings."""

    kind: str  # one of ILS_KINDS
    timeout: float
    # A hold an ILS registered ahead of its item (API "print": "on-scan") and not scanned
    # this long shows on the desk as waiting for its slip.
    scan_within: dt.timedelta = dt.timedelta(minutes=30)
    # How often the worker asks the ILS whether active holds ended there (None: never), and
    # how many holds a second it asks about at most.
    sync_every: dt.timedelta | None = dt.timedelta(minutes=5)
    sync_per_second: float = 20.0
    host: str = ""
    port: int = 6001
    tls: bool = False
    ca_file: str = ""
    institution: str = ""
    lookup: str = "checkin"
    base_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    okapi_url: str = ""
    tenant: str = ""
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)
    sender: str = ""
    timeout: float = 10
    ca_file: str = ""  # the CA of a relay with a private certificate; "" = the system's CAs

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class SmsSettings:
    gateway: str
    email_domain: str
    url: str
    token: str = field(repr=False)
    timeout: float = 10

    @property
    def enabled(self) -> bool:
        return bool(self.gateway)


@dataclass(frozen=True)
class NoticeSettings:
    show_title: bool
    link_days: int
    privacy_library: str
    privacy_contact: str


@dataclass(frozen=True)
class WebSettings:
    host: str
    port: int
    public_url: str
    behind_proxy: bool
    # Peers whose X-Forwarded-For / -Proto are believed; empty when not behind a proxy.
    trusted_proxies: tuple[IPNetwork, ...]
    session_idle: dt.timedelta
    session_max: dt.timedelta
    login_attempts: int  # failed sign-ins per account name
    login_attempts_per_address: int  # failed sign-ins from one address, over all names
    login_window: dt.timedelta
    # The bearer token /metrics asks of requests from beyond loopback; "" = loopback only.
    metrics_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    instance_dir: Path
    environment: str
    database_url: str
    timezone: ZoneInfo | None
    default_pickup: PickupMode
    retention_days: int
    audit_days: int
    web: WebSettings
    api_requests_per_minute: int
    import_max_bytes: int
    mail: MailSettings
    sms: SmsSettings
    notices: NoticeSettings
    branches: Mapping[str, BranchSettings]
    printers: Mapping[str, PrinterSettings]
    slip_options: SlipOptions
    ils: IlsSettings
    barcodes: BarcodeRules  # the library's; each branch has its own (BranchSettings.barcodes)
    hashids_salt: str = field(repr=False)
    pseudonym_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    data_key: str = field(repr=False)

    @property
    def development(self) -> bool:
        return self.environment == "development"

    def branch(self, branch_id: str) -> BranchSettings:
        """The branch with this id (case-insensitive), or a one-line error naming the known ones."""
        found = self.branches.get(branch_id.strip().upper())
        if found is None:
            known = ", ".join(self.branches) or "none configured"
            raise UnknownBranch(f"unknown branch {branch_id.strip()!r} (known: {known})")
        return found

    def printer_of(self, branch_id: str) -> PrinterSettings:
        return self.printers[self.branch(branch_id).printer]

    def language_of(self, branch_id: str) -> str:
        """The branch's patron-facing language; the first one for a branch no longer set up
        (a slip or notice queued before the configuration changed)."""
        branch = self.branches.get(branch_id)
        return branch.language if branch else LANGUAGES[0]

    def printer(self, name: str) -> PrinterSettings:
        found = self.printers.get(name)
        if found is None:
            known = ", ".join(self.printers)
            raise ConfigError(f"unknown printer {name!r} (known: {known})")
        return found


def load_settings(instance_dir: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check an instance's configuration. Raises :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    config_path = instance_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {instance_dir}: run `holdshelf --instance {instance_dir} init`"
        )
    return _build(instance_dir, merged_config(config_path, environ))


def _build(instance_dir: Path, config: dict[str, Any]) -> Settings:
    environment = checks.choice(config, "environment", "", ENVIRONMENTS)
    secrets = {key: checks.text(config, key) for key in SECRET_KEYS}
    check_secrets(secrets, development=environment == "development")
    database_url = checks.text(config, "database_url") or _sqlite_url(instance_dir)
    # true is no number of days: TOML's booleans are refused wherever a number is asked for
    retention = checks.whole(
        config["retention"], "ended_hold_days", "retention.", 0, MAX_RETENTION_DAYS
    )
    audit_days = checks.whole(config["retention"], "audit_days", "retention.", 1, 3660)
    printers = _printers(config)
    barcodes = _barcodes(config["barcodes"], "barcodes.")
    branches = _branches(config, printers, config["barcodes"])
    mail = _mail(config["mail"], instance_dir)
    return Settings(
        instance_dir=instance_dir,
        environment=environment,
        database_url=database_url,
        timezone=_timezone(checks.text(config, "timezone")),
        default_pickup=PickupMode(checks.choice(config, "default_pickup", "", tuple(PickupMode))),
        retention_days=retention,
        audit_days=audit_days,
        web=_web(config["web"]),
        api_requests_per_minute=_api_rate(config["api"]),
        import_max_bytes=checks.whole(config["imports"], "max_file_mb", "imports.", 1, 10_000)
        * 1_000_000,
        mail=mail,
        sms=_sms(config["sms"], mail),
        notices=_notices(config, branches),
        branches=branches,
        printers=printers,
        slip_options=_slip_options(config["slips"]),
        ils=_ils(config["ils"], instance_dir, branches),
        barcodes=barcodes,
        **secrets,
    )


def _sqlite_url(instance_dir: Path) -> str:
    return f"sqlite:///{(instance_dir / SQLITE_FILE).resolve()}"


def _timezone(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}") from None


def check_secrets(secrets: Mapping[str, str], *, development: bool) -> None:
    """Missing secrets stop every start; example or short ones stop a production start."""
    missing = [key for key, value in secrets.items() if not value]
    if missing:
        raise ConfigError(
            f"missing secret {missing[0]}: run `holdshelf init` or set {ENV_PREFIX}"
            f"{missing[0].upper()}"
        )
    if len(secrets["pseudonym_key"].encode("utf-8")) < MIN_KEY_BYTES:
        raise ConfigError(
            f"pseudonym_key is shorter than {MIN_KEY_BYTES} bytes: run `holdshelf init`"
        )
    if development:
        return
    for key, value in secrets.items():
        if EXAMPLE_SECRET_MARK in value.lower():
            raise ConfigError(f"{key} is the example value: refusing to start in production")
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(f"{key} is shorter than {MIN_SECRET_LENGTH} characters")
    if not _is_fernet_key(secrets["data_key"]):
        raise ConfigError("data_key is not a Fernet key (32 url-safe base64-encoded bytes)")


def _is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


def _web(table: Mapping[str, Any]) -> WebSettings:
    def number(key: str, low: int, high: int) -> int:
        return checks.whole(table, key, "web.", low, high)

    host, port = checks.text(table, "host", "web.") or "127.0.0.1", number("port", 1, 65535)
    public_url = checks.text(table, "public_url", "web.").rstrip("/") or f"http://{host}:{port}"
    if not public_url.startswith(("https://", "http://")) or len(public_url) > MAX_PUBLIC_URL:
        raise ConfigError(
            f"web.public_url must be an http(s) address of at most {MAX_PUBLIC_URL} characters"
        )
    login_attempts = number("login_attempts", 1, 100)
    per_address = number("login_attempts_per_address", 1, 10_000)
    if per_address < login_attempts:  # or one clerk's typos would lock out the whole desk
        raise ConfigError("web.login_attempts_per_address must be at least web.login_attempts")
    return WebSettings(
        host=host,
        port=port,
        public_url=public_url,
        behind_proxy=table["behind_proxy"],
        trusted_proxies=_trusted_proxies(table),
        session_idle=dt.timedelta(minutes=number("session_idle_minutes", 5, 24 * 60)),
        session_max=dt.timedelta(hours=number("session_max_hours", 1, 7 * 24)),
        login_attempts=login_attempts,
        login_attempts_per_address=per_address,
        login_window=dt.timedelta(minutes=number("login_window_minutes", 1, 24 * 60)),
        metrics_token=_metrics_token(table),
    )


def _metrics_token(table: Mapping[str, Any]) -> str:
    token = checks.text(table, "metrics_token", "web.")
    if token and len(token) < MIN_SECRET_LENGTH:  # a scraper's token is guessed like any other
        raise ConfigError(f"web.metrics_token is shorter than {MIN_SECRET_LENGTH} characters")
    return token


def _trusted_proxies(table: Mapping[str, Any]) -> tuple[IPNetwork, ...]:
    """The proxy (an address, or a network of them) whose forwarded headers are believed:
    loopback unless ``trusted_proxy`` names another; none unless ``behind_proxy``."""
    if not isinstance(table["behind_proxy"], bool):
        raise ConfigError("web.behind_proxy must be true or false")
    named = checks.text(table, "trusted_proxy", "web.")
    if not table["behind_proxy"]:
        if named:  # silently ignoring it would leave every patron behind one address
            raise ConfigError("web.trusted_proxy is set but web.behind_proxy is not true")
        return ()
    if not named:
        return LOOPBACK_PROXIES
    return (_proxy_network(named),)


def _proxy_network(named: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(named)
    except ValueError:
        pass
    try:  # "10.0.0.5/24": say which network was meant rather than guess
        network = ipaddress.ip_network(named, strict=False)
    except ValueError:
        hint = ": name the proxy, or any client could claim any address" if named == "*" else ""
        raise ConfigError(
            f"web.trusted_proxy must be an IP address or network such as 10.0.0.0/24, "
            f"not {named!r}{hint}"
        ) from None
    raise ConfigError(f"web.trusted_proxy {named} has host bits set: did you mean {network}?")


def _api_rate(table: Mapping[str, Any]) -> int:
    return checks.whole(table, "requests_per_minute", "api.", 1, 1_000_000)


def _mail(table: Mapping[str, Any], instance_dir: Path) -> MailSettings:
    where = "mail."
    security = checks.text(table, "security", where)
    if security not in ("starttls", "tls", "none"):
        raise ConfigError("mail.security must be one of starttls, tls, none")
    mail = MailSettings(
        host=checks.text(table, "host", where),
        port=checks.whole(table, "port", where, 1, 65535),
        security=security,
        username=checks.text(table, "username", where),
        password=checks.text(table, "password", where),
        sender=checks.text(table, "sender", where),
        timeout=checks.seconds(table, where),
        ca_file=checks.pem_file(table, "ca_file", where, instance_dir),
    )
    if mail.enabled and "@" not in mail.sender:
        raise ConfigError('mail.sender must be an address, e.g. "Library <holds@example.org>"')
    return mail


def _sms(table: Mapping[str, Any], mail: MailSettings) -> SmsSettings:
    where = "sms."
    gateway = checks.text(table, "gateway", where)
    sms = SmsSettings(
        gateway=gateway,
        email_domain=checks.text(table, "email_domain", where),
        url=checks.text(table, "url", where),
        token=checks.text(table, "token", where),
        timeout=checks.seconds(table, where),
    )
    if gateway not in ("", "email", "http"):
        raise ConfigError('sms.gateway must be "", "email" or "http"')
    if gateway == "email" and not (sms.email_domain and mail.enabled):
        raise ConfigError('sms.gateway = "email" needs sms.email_domain and a [mail] host')
    if gateway == "http" and not sms.url.startswith(("https://", "http://")):
        raise ConfigError('sms.gateway = "http" needs sms.url, an http(s) address')
    return sms


def _notices(config: Mapping[str, Any], branches: Mapping[str, BranchSettings]) -> NoticeSettings:
    table, privacy = config["notices"], config["privacy"]
    link_days = checks.whole(table, "link_days", "notices.", 7, 365)
    if not isinstance(table["show_title"], bool):
        raise ConfigError("notices.show_title must be true or false")
    first_branch = next(iter(branches.values())).name
    return NoticeSettings(
        show_title=table["show_title"],
        link_days=link_days,
        privacy_library=checks.text(privacy, "library", "privacy.") or first_branch,
        privacy_contact=checks.text(privacy, "contact", "privacy."),
    )


def _slip_options(table: Mapping[str, Any]) -> SlipOptions:
    flags = {key: table[key] for key in ("show_item_tail", "show_title")}
    if any(not isinstance(value, bool) for value in flags.values()):
        raise ConfigError("slips.show_item_tail and slips.show_title must be true or false")
    length = checks.whole(table, "title_length", "slips.", 8, 80)
    return SlipOptions(title_length=length, **flags)


def _printers(config: Mapping[str, Any]) -> dict[str, PrinterSettings]:
    printers = {}
    for name, table in config["printers"].items():
        printer = printer_from_table(name, table)
        if printer.type in PRINTER_EXTRAS:
            module, extra = PRINTER_EXTRAS[printer.type]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"printer {name} is a {printer.type} printer: pip install 'holdshelf[{extra}]'"
                )
        printers[name] = printer
    return printers


def _barcodes(table: Mapping[str, Any], where: str) -> BarcodeRules:
    for key in BARCODE_KEYS:
        if not isinstance(table[key], str):
            raise ConfigError(f"{where}{key} must be a string")
    try:
        return BarcodeRules(**{key: table[key] for key in BARCODE_KEYS})
    except ValueError as exc:  # re.error is one: the message names the pattern's key
        raise ConfigError(f"{where}{exc}") from None


def _branches(
    config: Mapping[str, Any],
    printers: Mapping[str, PrinterSettings],
    library_barcodes: Mapping[str, Any],
) -> dict[str, BranchSettings]:
    branches: dict[str, BranchSettings] = {}
    for raw_id, table in config["branches"].items():
        branch_id = raw_id.strip().upper()
        where = f"branches.{raw_id}."
        if not branch_id or len(branch_id) > BRANCH_ID_MAX or not branch_id.isprintable():
            raise ConfigError(f"branch id {raw_id!r} must be 1..{BRANCH_ID_MAX} characters")
        if branch_id in branches:
            raise ConfigError(f"branch {branch_id} is defined twice")
        branches[branch_id] = _branch(branch_id, table, where, library_barcodes)
        if branches[branch_id].printer not in printers:
            raise ConfigError(f"{where}printer names no [printers.{branches[branch_id].printer}]")
    if not branches:
        raise ConfigError("no branches configured: add a [branches.MAIN] table")
    return branches


def _branch(
    branch_id: str, table: Mapping[str, Any], where: str, library_barcodes: Mapping[str, Any]
) -> BranchSettings:
    name = checks.text(table, "name", where) or branch_id
    pickup_days = checks.whole(table, "pickup_days", where, 1, 366)
    code_length = checks.whole(table, "code_length", where, MIN_LENGTH, MAX_LENGTH)
    closed = table["closed_days"]
    if not isinstance(closed, list) or any(
        not isinstance(d, str) or d.strip().lower()[:3] not in WEEKDAYS for d in closed
    ):
        raise ConfigError(f'{where}closed_days must list weekdays such as "sun"')
    closed_days = frozenset(WEEKDAYS.index(d.strip().lower()[:3]) for d in closed)
    if len(closed_days) == 7:
        raise ConfigError(f"{where}closed_days closes the branch every day")
    return BranchSettings(
        id=branch_id,
        name=name,
        pickup_days=pickup_days,
        code_length=code_length,
        closed_days=closed_days,
        printer=checks.text(table, "printer", where),
        language=_language(table, where),
        ils_location=checks.text(table, "ils_location", where) or branch_id,
        ils_login=checks.text(table, "ils_login", where),
        ils_password=checks.text(table, "ils_password", where),
        barcodes=_barcodes(
            {
                key: library_barcodes[key] if value is None else value
                for key, value in table["barcodes"].items()
            },
            f"{where}barcodes.",
        ),
    )


def _language(table: Mapping[str, Any], where: str) -> str:
    language = checks.text(table, "language", where)
    if language not in LANGUAGES:
        raise ConfigError(f"{where}language must be one of {', '.join(LANGUAGES)}")
    return language


def _ils(
    table: Mapping[str, Any], instance_dir: Path, branches: Mapping[str, BranchSettings]
) -> IlsSettings:
    where = "ils."
    text = {key: checks.text(table, key, where) for key in _ILS_TEXT}
    ils = IlsSettings(
        kind=checks.choice(table, "kind", where, ILS_KINDS),
        timeout=checks.number(table, "timeout", where, 0.5, 60),
        scan_within=dt.timedelta(
            minutes=checks.whole(table, "scan_within_minutes", where, 1, 7 * 24 * 60)
        ),
        sync_every=_minutes_or_never(checks.whole(table, "sync_minutes", where, 0, 1440)),
        sync_per_second=checks.number(table, "sync_per_second", where, 0.1, 1000),
        port=checks.whole(table, "port", where, 1, 65535),
        tls=checks.flag(table, "tls", where),
        ca_file=checks.pem_file(table, "ca_file", where, instance_dir),
        lookup=checks.choice(table, "lookup", where, SIP_LOOKUPS),
        base_url=checks.http_url(table, "base_url", where),
        okapi_url=checks.http_url(table, "okapi_url", where),
        **text,
    )
    for key in _ILS_NEEDS.get(ils.kind, ()):
        if not getattr(ils, key):
            raise ConfigError(f'ils.{key} is needed when ils.kind = "{ils.kind}"')
    _check_ils_locations(branches)
    if ils.kind == "sip2":
        for branch in branches.values():
            if not (branch.ils_login and branch.ils_password):
                raise ConfigError(
                    f"branches.{branch.id}: ils_login and ils_password are needed for SIP2 "
                    "(one SIP account per branch)"
                )
    return ils


def _minutes_or_never(minutes: int) -> dt.timedelta | None:
    return dt.timedelta(minutes=minutes) if minutes else None


_ILS_TEXT = ("host", "institution", "client_id", "client_secret", "tenant", "username", "password")
_ILS_NEEDS = {
    "sip2": ("host", "institution"),
    "koha": ("base_url", "client_id", "client_secret"),
    "folio": ("okapi_url", "tenant", "username", "password"),
}


def _check_ils_locations(branches: Mapping[str, BranchSettings]) -> None:
    """Two branches with one ILS location would make a trapped hold's branch a guess."""
    seen: dict[str, str] = {}
    for branch in branches.values():
        other = seen.setdefault(branch.ils_location.upper(), branch.id)
        if other != branch.id:
            raise ConfigError(
                f"branches {other} and {branch.id} have the same ils_location "
                f"{branch.ils_location!r}"
            )
