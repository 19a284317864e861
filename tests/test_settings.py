"""Instance folders, secrets and configuration precedence."""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path

import pytest

from holdshelf.domain.holds import PickupMode
from holdshelf.errors import ConfigError
from holdshelf.instance import write_config
from holdshelf.resources import resource_dir
from holdshelf.settings import SECRET_KEYS, load_settings
from holdshelf.storage import database


def config_of(instance: Path) -> Path:
    return instance / "holdshelf.toml"


def test_init_writes_private_config_with_fresh_secrets(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert write_config(a).created
    write_config(b)
    assert stat.S_IMODE(config_of(a).stat().st_mode) == 0o600
    assert stat.S_IMODE(a.stat().st_mode) == 0o700
    settings_a, settings_b = load_settings(a, environ={}), load_settings(b, environ={})
    for key in SECRET_KEYS:
        assert getattr(settings_a, key) != getattr(settings_b, key)
        assert len(getattr(settings_a, key)) >= 32
    assert settings_a.environment == "production"
    assert list(settings_a.branches) == ["MAIN"]


def test_init_never_overwrites_secrets_or_settings(tmp_path: Path) -> None:
    write_config(tmp_path)
    config = config_of(tmp_path)
    config.write_text(config.read_text().replace('name = "Main Library"', 'name = "Our Library"'))
    before = config.read_bytes()
    report = write_config(tmp_path, demo=True)
    assert not report.created
    assert report.secrets_added == []
    assert config.read_bytes() == before


def test_init_adds_only_missing_secrets_and_keeps_comments(tmp_path: Path) -> None:
    write_config(tmp_path)
    config = config_of(tmp_path)
    original = load_settings(tmp_path, environ={})
    lines = [line for line in config.read_text().splitlines() if not line.startswith("data_key")]
    text = "\n".join(lines).replace('pseudonym_key = "', 'pseudonym_key = "" # was "')
    config.write_text(text + "\n# a librarian's note\n")
    report = write_config(tmp_path)
    assert sorted(report.secrets_added) == ["data_key", "pseudonym_key"]
    updated = load_settings(tmp_path, environ={})
    assert updated.hashids_salt == original.hashids_salt
    assert updated.secret_key == original.secret_key
    assert updated.pseudonym_key not in {"", original.pseudonym_key}
    assert "# a librarian's note" in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_demo_instance_has_two_branches(tmp_path: Path) -> None:
    write_config(tmp_path, demo=True)
    settings = load_settings(tmp_path, environ={})
    assert {b.id: b.name for b in settings.branches.values()} == {
        "MAIN": "Central Library",
        "EAST": "Eastside Branch",
    }
    assert settings.branch("main").closed_days == frozenset({6})
    assert settings.branch("EAST").pickup_days == 5


def test_example_secrets_are_refused_in_production_only(tmp_path: Path) -> None:
    shutil.copy(resource_dir("config") / "example.toml", config_of(tmp_path))
    with pytest.raises(ConfigError, match="example value: refusing to start in production"):
        load_settings(tmp_path, environ={})
    development = load_settings(tmp_path, environ={"HOLDSHELF_ENVIRONMENT": "development"})
    assert set(development.branches) == {"MAIN", "EAST"}
    assert development.branch("EAST").code_length == 7
    assert development.timezone is not None


def test_missing_and_weak_secrets(tmp_path: Path) -> None:
    write_config(tmp_path)
    with pytest.raises(ConfigError, match="missing secret pseudonym_key: run `holdshelf init`"):
        load_settings(tmp_path, environ={"HOLDSHELF_PSEUDONYM_KEY": ""})
    with pytest.raises(ConfigError, match="shorter than 32"):
        load_settings(tmp_path, environ={"HOLDSHELF_SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match="not a Fernet key"):
        load_settings(tmp_path, environ={"HOLDSHELF_DATA_KEY": "x" * 44})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, demo=True)
    key = "k" * 40
    settings = load_settings(
        tmp_path,
        environ={
            "HOLDSHELF_PSEUDONYM_KEY": key,
            "HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": "7",
            "HOLDSHELF_BRANCHES__main__PICKUP_DAYS": "10",
            "HOLDSHELF_BRANCHES__EAST__CLOSED_DAYS": '["sat", "Sunday"]',
            "HOLDSHELF_DEFAULT_PICKUP": "desk",
            "HOLDSHELF_INSTANCE": "/elsewhere",  # picks the folder, not a key
            "HOLDSHELF_TEST_POSTGRES_URL": "ignored",
            "OTHER": "ignored",
        },
    )
    assert settings.pseudonym_key == key
    assert settings.retention_days == 7
    assert settings.branch("MAIN").pickup_days == 10
    assert settings.branch("EAST").closed_days == frozenset({5, 6})
    assert settings.default_pickup is PickupMode.DESK


def test_sign_in_limits_per_account_and_per_address_are_separate(tmp_path: Path) -> None:
    write_config(tmp_path)
    web = load_settings(tmp_path, environ={}).web
    assert (web.login_attempts, web.login_attempts_per_address) == (5, 50)
    changed = load_settings(
        tmp_path, environ={"HOLDSHELF_WEB__LOGIN_ATTEMPTS_PER_ADDRESS": "200"}
    ).web
    assert (changed.login_attempts, changed.login_attempts_per_address) == (5, 200)


def test_behind_proxy_trusts_loopback_unless_trusted_proxy_names_another(tmp_path: Path) -> None:
    write_config(tmp_path)
    assert load_settings(tmp_path, environ={}).web.trusted_proxies == ()
    behind = {"HOLDSHELF_WEB__BEHIND_PROXY": "true"}
    loopback = load_settings(tmp_path, environ=behind).web.trusted_proxies
    assert [str(network) for network in loopback] == ["127.0.0.1/32", "::1/128"]
    for named, network in [
        ("10.0.0.5", "10.0.0.5/32"),
        (" 10.1.0.0/16 ", "10.1.0.0/16"),
        ("fd00::/64", "fd00::/64"),
        ("::ffff:10.0.0.5", "::ffff:a00:5/128"),
    ]:
        environ = behind | {"HOLDSHELF_WEB__TRUSTED_PROXY": named}
        assert [str(n) for n in load_settings(tmp_path, environ=environ).web.trusted_proxies] == [
            network
        ]


@pytest.mark.parametrize(
    ("named", "message"),
    [
        ("10.0.0.5/24", "trusted_proxy 10.0.0.5/24 has host bits set: did you mean 10.0.0.0/24"),
        ("proxy.library.example", "must be an IP address or network such as 10.0.0.0/24, not 'p"),
        ("10.0.0.0/33", "must be an IP address or network"),
        ("*", "not '\\*': name the proxy, or any client could claim any address"),
    ],
)
def test_trusted_proxy_must_be_an_address_or_network(
    tmp_path: Path, named: str, message: str
) -> None:
    write_config(tmp_path)
    environ = {"HOLDSHELF_WEB__BEHIND_PROXY": "true", "HOLDSHELF_WEB__TRUSTED_PROXY": named}
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ=environ)


def test_trusted_proxy_without_behind_proxy_is_refused(tmp_path: Path) -> None:
    write_config(tmp_path)
    config = config_of(tmp_path)
    config.write_text(config.read_text() + '\n[web]\ntrusted_proxy = "10.0.0.5"\n')
    with pytest.raises(ConfigError, match=r"is set but web\.behind_proxy is not true"):
        load_settings(tmp_path, environ={})
    config.write_text(config.read_text().replace("[web]", '[web]\nbehind_proxy = "yes"'))
    with pytest.raises(ConfigError, match=r"web\.behind_proxy must be true or false"):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HOLDSHELF_PSEUDONYM": "x"}, "HOLDSHELF_PSEUDONYM names no configuration key"),
        ({"HOLDSHELF_NOPE__X": "1"}, "names no configuration table"),
        ({"HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": "three"}, "must be a int"),
        ({"HOLDSHELF_RETENTION__ENDED_HOLD_DAYS": "31"}, "ended_hold_days must be 0..30"),
        ({"HOLDSHELF_DEFAULT_PICKUP": "lobby"}, "default_pickup must be one of shelf, desk"),
        ({"HOLDSHELF_TIMEZONE": "Mars/Olympus"}, "unknown time zone"),
        ({"HOLDSHELF_ENVIRONMENT": "staging"}, "environment must be one of"),
        ({"HOLDSHELF_BRANCHES__MAIN__CODE_LENGTH": "5"}, "code_length must be 6..10"),
        ({"HOLDSHELF_BRANCHES__MAIN__PICKUP_DAYS": "0"}, "pickup_days must be"),
        ({"HOLDSHELF_BRANCHES__MAIN__CLOSED_DAYS": '["funday"]'}, "closed_days must list"),
        ({"HOLDSHELF_DATABASE_URL": "not a url"}, None),
        ({"HOLDSHELF_WEB": "1"}, "HOLDSHELF_WEB names a table, not a key"),
        ({"HOLDSHELF_BRANCHES__MAIN": "x"}, "HOLDSHELF_BRANCHES__MAIN names a table"),
        ({"HOLDSHELF_PSEUDONYM_KEY": "short"}, "pseudonym_key is shorter than 16 bytes"),
        ({"HOLDSHELF_MAIL__CA_FILE": "relay-ca.pem"}, "mail.ca_file: no such file .*relay-ca"),
        (
            {"HOLDSHELF_WEB__LOGIN_ATTEMPTS_PER_ADDRESS": "0"},
            "web.login_attempts_per_address must be 1..10000",
        ),
        (
            {
                "HOLDSHELF_WEB__LOGIN_ATTEMPTS": "10",
                "HOLDSHELF_WEB__LOGIN_ATTEMPTS_PER_ADDRESS": "9",
            },
            "web.login_attempts_per_address must be at least web.login_attempts",
        ),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, environ: dict, message: str | None) -> None:
    write_config(tmp_path)
    if message is None:  # the URL is only parsed when the database is opened
        settings = load_settings(tmp_path, environ=environ)
        with pytest.raises(ConfigError, match="database_url is not a valid database URL"):
            database.make_engine(settings.database_url)
        return
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ=environ)


@pytest.mark.parametrize(
    ("addition", "message"),
    [
        ("pickup_dayz = 3\n", "unknown configuration key 'pickup_dayz'"),
        ("[branches.MAIN]\nnmae = 'x'\n", "unknown configuration key 'branches.MAIN.nmae'"),
        ("[retention]\nforever = true\n", "unknown configuration key 'retention.forever'"),
        ("this is = not toml\n", "is not valid TOML"),
        ('web = "x"\n', r"'web' must be a table \(\[web\]\)"),
        ("api = []\n", "'api' must be a table"),
        ("[mail.host]\nname = 'x'\n", "'mail.host' must be a value, not a table"),
        ("[branches]\nWEST = 'x'\n", "'branches.WEST' must be a table"),
    ],
)
def test_config_file_typos_are_named(tmp_path: Path, addition: str, message: str) -> None:
    tmp_path.mkdir(exist_ok=True)
    config = config_of(tmp_path)
    secrets = "\n".join(f'{k} = "{"s" * 40}"' for k in SECRET_KEYS[:-1])
    data_key = 'data_key = "' + "A" * 43 + '="\n'
    config.write_text(secrets + "\n" + data_key + addition + "\n[branches.EAST]\nname='E'\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ={})


def test_no_branches_and_no_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no holdshelf.toml in .*: run `holdshelf --instance"):
        load_settings(tmp_path, environ={})
    write_config(tmp_path)
    config = config_of(tmp_path)
    config.write_text(config.read_text().split("[branches.MAIN]")[0])
    with pytest.raises(ConfigError, match=r"no branches configured: add a \[branches.MAIN\]"):
        load_settings(tmp_path, environ={})


def test_default_database_is_sqlite_in_the_instance(tmp_path: Path) -> None:
    write_config(tmp_path)
    settings = load_settings(tmp_path, environ={})
    assert settings.database_url == f"sqlite:///{(tmp_path / 'holdshelf.sqlite3').resolve()}"
    engine = database.make_engine(settings.database_url)
    with pytest.raises(ConfigError, match="no Holdshelf schema: run `holdshelf init`"):
        database.check_schema(engine)
    database.upgrade(engine)
    database.upgrade(engine)  # idempotent
    database.check_schema(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_schema_revision_constant_is_the_migrations_head() -> None:
    assert database.head_revision() == database.SCHEMA_REVISION


def test_shipped_files_are_found() -> None:
    for folder, name in (("config", "default.toml"), ("config", "example.toml")):
        assert (resource_dir(folder) / name).is_file()
    assert (database.MIGRATIONS_DIR / "env.py").is_file()


# -- printers ---------------------------------------------------------------------------------


def add_config(instance: Path, text: str) -> None:
    config = config_of(instance)
    config.write_text(config.read_text() + "\n" + text + "\n")


def test_default_printer_is_the_preview(tmp_path: Path) -> None:
    write_config(tmp_path, demo=True)
    settings = load_settings(tmp_path, environ={})
    assert settings.printer_of("MAIN").type == "preview"
    assert settings.printer_of("EAST").name == "preview"
    assert settings.slip_options.show_item_tail is False
    assert settings.slip_options.show_title is False


def test_network_printer_for_a_branch(tmp_path: Path) -> None:
    write_config(tmp_path, demo=True)
    add_config(
        tmp_path, '[printers.front-desk]\ntype = "network"\nhost = "10.0.0.5"\nprofile = "TM-T88V"'
    )
    settings = load_settings(tmp_path, environ={"HOLDSHELF_BRANCHES__MAIN__PRINTER": "front-desk"})
    printer = settings.printer_of("MAIN")
    assert (printer.host, printer.port, printer.profile) == ("10.0.0.5", 9100, "TM-T88V")
    assert printer.target == "10.0.0.5:9100"
    assert printer.verify_status is True
    override = load_settings(tmp_path, environ={"HOLDSHELF_PRINTERS__FRONT-DESK__PORT": "9101"})
    assert override.printer("front-desk").port == 9101


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[printers.p]\ntype = "laser"', "printers.p.type must be one of network, usb"),
        ('[printers.p]\ntype = "network"', "printers.p.host is needed for a network printer"),
        ('[printers.p]\ntype = "file"', "printers.p.device is needed for a file printer"),
        ('[printers.p]\ntype = "cups"', "printers.p.queue is needed"),
        ('[printers.p]\ntype = "preview"\npaper = "A4"', "paper must be one of 80mm, 58mm"),
        ('[printers.p]\ntype = "preview"\ncodepage = "EBCDIC-X"', "not a known code page"),
        ('[printers.p]\ntype = "preview"\nport = 0', r"port must be 1\.\.65535 \(a whole number\)"),
        (
            '[printers.p]\ntype = "preview"\ncolour = true',
            "unknown configuration key 'printers.p.colour'",
        ),
        ('[printers.p]\ntype = "usb"\nvendor_id = "zz"\nproduct_id = 1', "must be a USB id"),
        ('[slips]\nshow_title = "yes"', "must be true or false"),
    ],
)
def test_printer_mistakes_are_named(tmp_path: Path, table: str, message: str) -> None:
    write_config(tmp_path)
    add_config(tmp_path, table)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ={})


def test_branch_printer_must_exist(tmp_path: Path) -> None:
    write_config(tmp_path)
    with pytest.raises(ConfigError, match=r"branches.MAIN.printer names no \[printers.lobby\]"):
        load_settings(tmp_path, environ={"HOLDSHELF_BRANCHES__MAIN__PRINTER": "lobby"})


def test_missing_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "usb" else real(name, *a)
    )
    write_config(tmp_path)
    add_config(tmp_path, '[printers.p]\ntype = "usb"\nvendor_id = "0x04b8"\nproduct_id = 514')
    with pytest.raises(
        ConfigError, match=r"printer p is a usb printer: pip install 'holdshelf\[usb\]'"
    ):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ("retention", "ended_hold_days", r"retention\.ended_hold_days must be 0\.\.30"),
        ("retention", "audit_days", r"retention\.audit_days must be 1\.\.3660"),
        ("slips", "title_length", r"slips\.title_length must be 8\.\.80"),
        ("branches.MAIN", "pickup_days", r"branches\.MAIN\.pickup_days must be 1\.\.366"),
        ("branches.MAIN", "code_length", r"branches\.MAIN\.code_length must be 6\.\.10"),
    ],
)
def test_true_is_no_number(tmp_path: Path, table: str, key: str, message: str) -> None:
    """TOML's true is an int to Python: a privacy setting must not read it as one day."""
    write_config(tmp_path, demo=True)
    config = tmp_path / "holdshelf.toml"
    text = config.read_text()
    header = f"[{table}]\n"
    text = re.sub(rf"(?m)^{key} = .*\n", "", text)  # the demo's own value, if it sets one
    if header in text:
        text = text.replace(header, f"{header}{key} = true\n", 1)
    else:
        text = text.replace("\n[branches.", f"\n{header}{key} = true\n\n[branches.", 1)
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ={})
