"""The guards on every staff page: signed in, at a branch, and (for some) an administrator."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import abort, g, redirect, request, session, url_for

from holdshelf.web.extensions import desk


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Staff only; and a desk works at one branch, chosen once per sign-in."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if g.staff is None:
            target = request.full_path if request.method == "GET" else None
            return redirect(url_for("auth.login", next=target))
        if g.staff.branch is None:
            branches = list(desk().settings.branches)
            if len(branches) > 1:
                return redirect(url_for("auth.branch"))
            desk().accounts.set_branch(session["token"], branches[0])
            g.staff = desk().accounts.session(session["token"])
        return view(*args, **kwargs)

    return guarded


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if g.staff is not None and not g.staff.admin:
            abort(403)
        return view(*args, **kwargs)

    return login_required(guarded)
