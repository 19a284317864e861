"""`pip install .` (not editable) must give a working install with data files and migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("holdshelf-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_carries_config_and_migrations(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = {
        "holdshelf/config/default.toml",
        "holdshelf/config/example.toml",
        "holdshelf/migrations/env.py",
        "holdshelf/migrations/script.py.mako",
        "holdshelf/cli/__init__.py",
        "holdshelf/domain/codes.py",
        "holdshelf/printers/fonts/DejaVuSansMono-Bold.ttf",
        "holdshelf/printers/fonts/LICENSE-DejaVu.txt",
        "holdshelf/static/style.css",
        "holdshelf/static/desk.js",
        "holdshelf/templates/base.html",
        "holdshelf/templates/checkin.html",
        "holdshelf/web/desk.py",
        "holdshelf/web/openapi.json",
        "holdshelf/templates/notices/ready.txt",
        "holdshelf/templates/notices/sms.txt",
        "holdshelf/templates/public/find.html",
        "holdshelf/translations/messages.pot",
        "holdshelf/translations/es/LC_MESSAGES/messages.po",
        "holdshelf/translations/es/LC_MESSAGES/messages.mo",
    }
    assert expected <= names
    versions = [
        n for n in names if n.startswith("holdshelf/migrations/versions/") and n.endswith(".py")
    ]
    assert len(versions) >= 2  # __init__ and at least the initial revision
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_metadata(wheel: zipfile.ZipFile) -> None:
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    text = wheel.read(metadata).decode()
    assert "Requires-Python: >=3.11" in text
    assert "Provides-Extra: test" in text
    assert "Provides-Extra: postgres" in text
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "holdshelf = holdshelf.cli:main" in wheel.read(entry_points).decode()


def test_wheel_carries_every_module_of_the_checkout(wheel: zipfile.ZipFile) -> None:
    """A new subpackage missing from pyproject's package list installs without it (and the
    installed app fails to start): every Python file of holdshelf/ and printers/ is in it."""
    names = set(wheel.namelist())
    sources = [
        *(
            f"holdshelf/{p.relative_to(ROOT / 'holdshelf')}"
            for p in (ROOT / "holdshelf").rglob("*.py")
        ),
        *(
            f"holdshelf/printers/{p.relative_to(ROOT / 'printers')}"
            for p in (ROOT / "printers").rglob("*.py")
        ),
    ]
    missing = sorted(name for name in sources if name not in names and "__pycache__" not in name)
    assert missing == []
