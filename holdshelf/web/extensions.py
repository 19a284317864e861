"""Per-app objects the views share (FlaskBB's extensions.py): Flask extensions, made once and
bound in the app factory, and the accessor for what the composition root built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_wtf.csrf import CSRFProtect

if TYPE_CHECKING:
    from holdshelf.web import Desk

csrf = CSRFProtect()


def desk() -> Desk:
    """The running app's services, settings and workers."""
    return current_app.extensions["holdshelf"]
