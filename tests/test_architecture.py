"""The layers, as a test: the domain knows nothing of Flask, SQLAlchemy, storage, the web or
printers; storage knows nothing of the web; blueprints do not import one another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "holdshelf"
BLUEPRINTS = {"admin", "agents", "api", "auth", "desk", "ops", "patron"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names), at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def offending(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / folder).rglob("*.py")
        for name in imports_of(path)
        if name == forbidden or name.startswith(forbidden)
    )


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        (
            "domain",
            (
                "flask",
                "sqlalchemy",
                "werkzeug",
                "escpos",
                "PIL",
                "holdshelf.storage",
                "holdshelf.web",
                "holdshelf.printers",
                "holdshelf.service",
                "holdshelf.settings",
            ),
        ),
        ("storage", ("flask", "werkzeug", "holdshelf.web", "holdshelf.service")),
        (
            "ils",  # connectors talk to the ILS and answer; the workflow decides what follows
            (
                "flask",
                "sqlalchemy",
                "holdshelf.storage",
                "holdshelf.web",
                "holdshelf.workflow",
                "holdshelf.service",
                "holdshelf.settings",
            ),
        ),
    ],
)
def test_a_layer_imports_nothing_above_it(folder: str, forbidden: tuple[str, ...]) -> None:
    assert offending(folder, forbidden) == []


def test_blueprints_do_not_import_one_another() -> None:
    crossings = [
        f"{name} imports {imported}"
        for name in sorted(BLUEPRINTS)
        for imported in imports_of(PACKAGE / "web" / f"{name}.py")
        if imported.removeprefix("holdshelf.web.").split(".")[0] in BLUEPRINTS - {name}
        and imported.startswith("holdshelf.web.")
    ]
    assert crossings == []


def test_the_contract_catches_a_crossing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from holdshelf.web.api import OPENAPI_FILE\nimport sqlalchemy.orm\n")
    assert imports_of(bad) >= {"holdshelf.web.api", "sqlalchemy.orm"}
