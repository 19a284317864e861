"""Where the shipped data folders are: inside the installed package, or beside it in a checkout.

The repository keeps the user's layout (``static/``, ``templates/``, ``config/`` at the top);
a wheel installs them inside the ``holdshelf`` package (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name
