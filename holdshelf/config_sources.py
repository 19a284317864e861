"""Where the configuration comes from: the shipped defaults, the instance's holdshelf.toml laid
over them (unknown keys refused with their name), and environment overrides for secrets."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from holdshelf.errors import ConfigError
from holdshelf.resources import resource_dir

ENV_PREFIX = "HOLDSHELF_"
# HOLDSHELF_INSTANCE picks the folder; HOLDSHELF_TEST_* belong to the test suite;
# HOLDSHELF_AGENT_* to `holdshelf print-agent` (its token), which loads no instance.
_ENV_NOT_CONFIG = ("INSTANCE", "TEST_", "AGENT_")
# Tables whose keys are names the library chooses; each entry is merged onto its defaults.
OPEN_TABLES = {"branches": "branch_defaults", "printers": "printer_defaults"}
BARCODE_KEYS = ("card_pattern", "item_pattern", "check_digit")


def default_instance_dir() -> Path:
    """$HOLDSHELF_INSTANCE, else ./instance. Here, not in holdshelf.settings, because the CLI
    needs it for every command, even `--help`, and this module loads in a few milliseconds."""
    return Path(os.environ.get(f"{ENV_PREFIX}INSTANCE") or "instance")


def merged_config(config_path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The defaults with the instance's file and the environment laid over them."""
    merged = _merge(read_toml(resource_dir("config") / "default.toml"), read_toml(config_path))
    _fill_open_tables(merged)  # so the environment can override any key of a branch or printer
    _apply_environment(merged, environ)
    return merged


def _fill_open_tables(config: dict[str, Any]) -> None:
    for table, defaults_key in OPEN_TABLES.items():
        defaults = config[defaults_key] | (_BRANCH_EXTRAS if table == "branches" else {})
        for name, entry in config[table].items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{table}.{name} must be a table")
            config[table][name] = _merge(defaults, entry, f"{table}.{name}.")


# A branch's own [branches.X.barcodes] keys; None means "as the library's [barcodes]".
_BRANCH_EXTRAS: dict[str, Any] = {"name": "", "barcodes": dict.fromkeys(BARCODE_KEYS)}


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``override`` laid over ``base``; keys unknown to ``base`` are refused, except inside
    open tables (``branches``) whose keys are names chosen by the library."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}{key}"
        open_table = where.rstrip(".") in OPEN_TABLES
        if key not in base and not open_table:
            raise ConfigError(f"unknown configuration key {path!r}")
        table_expected = open_table or isinstance(base.get(key), Mapping)
        if table_expected != isinstance(value, Mapping):
            kind = "a table ([" + path + "])" if table_expected else "a value, not a table"
            raise ConfigError(f"configuration key {path!r} must be {kind}")
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            result[key] = _merge(base[key], value, f"{path}.")
        else:
            result[key] = copy.deepcopy(value)
    return result


def _apply_environment(config: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if rest.startswith(_ENV_NOT_CONFIG):
            continue
        *tables, key = rest.split("__")
        target = config
        for table in tables:
            target = _subtable(target, table, name)
        actual = _existing_key(target, key)
        if actual is None:
            raise ConfigError(f"environment variable {name} names no configuration key")
        target[actual] = _coerce(raw, target[actual], name)


def _existing_key(table: Mapping[str, Any], key: str) -> str | None:
    return next((k for k in table if k.lower() == key.lower()), None)


def _subtable(config: dict[str, Any], table: str, env_name: str) -> dict[str, Any]:
    actual = _existing_key(config, table)
    if actual is None or not isinstance(config[actual], dict):
        raise ConfigError(f"environment variable {env_name} names no configuration table")
    return config[actual]


def _coerce(raw: str, current: Any, env_name: str) -> Any:
    """The environment's string as the type the key already has."""
    if isinstance(current, dict):
        raise ConfigError(f"environment variable {env_name} names a table, not a key")
    try:
        if isinstance(current, bool):
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError
            return raw.lower() in {"1", "true", "yes"}
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, list):
            return tomllib.loads(f"v = {raw}")["v"]
    except (ValueError, tomllib.TOMLDecodeError):
        kind = type(current).__name__
        raise ConfigError(f"environment variable {env_name} must be a {kind}") from None
    return raw
