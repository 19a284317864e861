"""Creating an instance folder: configuration with fresh secrets, then the database schema.

``init`` is safe to repeat: it never overwrites an existing secret or setting, it only adds what
is missing and brings the database schema up to date.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from holdshelf.clock import LibraryClock
from holdshelf.settings import CONFIG_FILE, ENV_PREFIX, SECRET_KEYS


def fresh_secret(key: str) -> str:
    if key == "data_key":  # a Fernet key: 32 random bytes, url-safe base64
        return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    return secrets.token_urlsafe(48)


_HEADER = """\
# Holdshelf instance configuration, written by `holdshelf init` on {today}.
# Any key of the shipped defaults may be set here (see config/example.toml in the source);
# environment variables HOLDSHELF_<KEY> override this file.

environment = "{environment}"
# database_url = "postgresql+psycopg://holdshelf@localhost/holdshelf"  # default: SQLite here
timezone = ""           # IANA name such as "America/Chicago"; empty: this machine's
default_pickup = "shelf"

# Secrets of this installation. Keep this file private and backed up: without pseudonym_key
# no patron's opt-out can be recognised again.
{secrets}

[retention]
ended_hold_days = 0     # days an ended hold stays linked to its patron pseudonym (0..30)
"""

# Barcode rules catch a card scanned into the item field before the card is stored as an item.
_BARCODES = """
[barcodes]
# What your cards and item barcodes look like (regular expressions for the whole barcode),
# and their check digit. The common 14-digit Codabar layout: cards start with 2, items with 3.
{mark}card_pattern = '^2\\d{{13}}$'
{mark}item_pattern = '^3\\d{{13}}$'
{mark}check_digit = "luhn"    # "none" | "luhn"
"""

_BRANCHES = """
[branches.MAIN]
name = "Main Library"
pickup_days = 7
"""

_DEMO_BRANCHES = """
[branches.MAIN]
name = "Central Library"
pickup_days = 7
closed_days = ["sun"]

[branches.EAST]
name = "Eastside Branch"
pickup_days = 5
"""


@dataclass
class InitReport:
    config_path: Path
    created: bool = False
    secrets_added: list[str] = field(default_factory=list)


def write_config(instance_dir: Path, *, demo: bool = False) -> InitReport:
    """Create ``holdshelf.toml`` with fresh secrets, or add the secrets an existing one lacks."""
    instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = instance_dir / CONFIG_FILE
    if not path.exists():
        fresh = {key: fresh_secret(key) for key in SECRET_KEYS}
        text = _HEADER.format(
            today=_library_today().isoformat(),
            environment="development" if demo else "production",
            secrets="\n".join(f'{key} = "{value}"' for key, value in fresh.items()),
        )
        text += _BARCODES.format(mark="" if demo else "# ")
        text += _DEMO_BRANCHES if demo else _BRANCHES
        _write_private(path, text)
        return InitReport(path, created=True, secrets_added=list(SECRET_KEYS))
    return InitReport(path, secrets_added=_add_missing_secrets(path))


def _library_today() -> dt.date:
    """Today where the new instance's library is: the file written leaves ``timezone`` empty
    (this machine's zone), and HOLDSHELF_TIMEZONE overrides it as it does any setting (a
    container runs on UTC with the library's zone in its environment)."""
    name = os.environ.get(f"{ENV_PREFIX}TIMEZONE", "").strip()
    try:
        zone = ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None  # loading the settings, next, refuses the unknown zone in one line
    return LibraryClock(zone).today()


def _add_missing_secrets(path: Path) -> list[str]:
    import tomlkit  # only needed here; keeps start-up of every other command light

    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    missing = [key for key in SECRET_KEYS if not str(document.get(key, "")).strip()]
    if not missing:
        return []
    # Top-level keys must come before the first table: rebuild with the secrets first.
    updated = tomlkit.document()
    for key in missing:
        updated.add(key, fresh_secret(key))
    for key, value in document.body:
        if key is None:
            updated.add(value)  # comments and whitespace
        elif key.key not in missing:
            updated.add(key, value)
    _write_private(path, tomlkit.dumps(updated))
    return missing


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically: a crash leaves the old file intact."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)
