"""Signing in and out, and the branch a desk works at (the guards are in guards.py)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from holdshelf.accounts import SignInRefused, SignInThrottled
from holdshelf.web.extensions import desk

bp = Blueprint("auth", __name__)


def init_app(app: Flask) -> None:
    @app.before_request
    def load_staff() -> None:
        g.staff = None
        if request.endpoint == "static" or request.blueprint == "ops":  # monitoring: no sign-in
            return
        token = session.get("token")
        g.staff = desk().accounts.session(token)
        if token and g.staff is None:
            session.pop("token", None)

    @app.context_processor
    def page_context() -> dict[str, Any]:
        settings = desk().settings
        staff = g.get("staff")
        branch = settings.branches.get(staff.branch) if staff and staff.branch else None
        return {"staff": staff, "branch": branch, "branches": settings.branches}


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never an open redirect to another origin. Browsers and
    Werkzeug drop tabs and newlines from URLs ("/<tab>/evil.example" becomes "//evil.example"),
    so a target with any control character, space or backslash is refused outright."""
    if not target or any(ch <= " " or ch in "\\\x7f" for ch in target):
        return None
    parts = urlsplit(target)
    if (
        target.startswith("/")
        and not target.startswith("//")
        and not (parts.scheme or parts.netloc)
    ):
        return target
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error, status, headers = None, 200, {}
    if request.method == "POST":
        try:
            token = desk().accounts.sign_in(
                request.form.get("name", ""),
                request.form.get("password", ""),
                request.remote_addr or "unknown",
            )
        except SignInThrottled as exc:
            error, status = str(exc), 429
            headers["Retry-After"] = str(math.ceil(exc.wait.total_seconds()))
        except SignInRefused as exc:
            error, status = str(exc), 401
        else:
            session.clear()  # a fresh session (and CSRF token) for the signed-in desk
            session["token"] = token
            return redirect(_safe_next(request.args.get("next")) or url_for("desk.checkin"))
    return render_template("login.html", error=error), status, headers


@bp.post("/logout")
def logout() -> Any:
    desk().accounts.sign_out(session.get("token"))
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


@bp.route("/branch", methods=["GET", "POST"])
def branch() -> Any:
    if g.staff is None:
        return redirect(url_for("auth.login"))
    settings = desk().settings
    if request.method == "POST":
        choice = request.form.get("branch", "")
        if choice in settings.branches:
            desk().accounts.set_branch(session["token"], choice)
            return redirect(url_for("desk.checkin"))
        flash("Choose one of the branches listed.")
    return render_template("branch.html")
