"""The typed checks every configuration table is read with (settings, printers, the ILS).

Each takes the table, the key and where the table sits (``"mail."``) and returns the value
or raises a one-line ConfigError naming the key. TOML's true and false are never numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from holdshelf.errors import ConfigError


def text(table: Mapping[str, Any], key: str, where: str = "") -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}{key} must be a string")
    return value.strip()


def flag(table: Mapping[str, Any], key: str, where: str = "") -> bool:
    value = table[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{where}{key} must be true or false")
    return value


def choice(table: Mapping[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> str:
    value = text(table, key, where)
    if value not in allowed:
        raise ConfigError(f"{where}{key} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def whole(table: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``."""
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}{key} must be {low}..{high} (a whole number)")
    return value


def number(table: Mapping[str, Any], key: str, where: str, low: float, high: float) -> float:
    """A number from ``low`` to ``high``, fractions allowed."""
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}{key} must be a number from {low} to {high}")
    return float(value)


def seconds(table: Mapping[str, Any], where: str, key: str = "timeout") -> float:
    """A timeout: 1 to 120 seconds, fractions allowed."""
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 120:
        raise ConfigError(f"{where}{key} must be 1..120 seconds")
    return float(value)


def pem_file(table: Mapping[str, Any], key: str, where: str, instance_dir: Path) -> str:
    """An absolute path to an existing file (relative paths are in the instance folder), or ""."""
    value = text(table, key, where)
    if not value:
        return ""
    path = Path(value) if Path(value).is_absolute() else instance_dir / value
    if not path.is_file():
        raise ConfigError(f"{where}{key}: no such file {path}")
    return str(path)


def http_url(table: Mapping[str, Any], key: str, where: str) -> str:
    """An http(s) address without a trailing slash, or ""."""
    value = text(table, key, where).rstrip("/")
    if value and not value.startswith(("https://", "http://")):
        raise ConfigError(f"{where}{key} must be an http(s) address")
    return value
