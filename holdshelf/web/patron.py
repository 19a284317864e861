"""Pages for patrons: find your hold, the privacy notice, and the link from a notice.

No sign-in, no cookies, nothing from another origin. Find-your-hold answers an unknown, ended
or invalid code with the same page, from the same work, so it tells nobody which codes exist;
it is rate-limited per address (in memory only: requests are not recorded).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, render_template, request
from flask_babel import Babel, get_locale

from holdshelf.domain.holds import CODE_QUARANTINE, PickupMode
from holdshelf.domain.links import LinkExpired, LinkInvalid, read_token
from holdshelf.i18n import TRANSLATIONS_DIR, long_day
from holdshelf.settings import LANGUAGES
from holdshelf.web.extensions import desk

bp = Blueprint("public", __name__)


def _locale() -> str:
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        return asked
    return request.accept_languages.best_match(LANGUAGES) or LANGUAGES[0]


def init_app(app: Flask, csrf: Any) -> None:
    Babel(app, locale_selector=_locale, default_translation_directories=str(TRANSLATIONS_DIR))
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # as the messages are extracted
    app.add_template_filter(lambda day: long_day(day, str(get_locale())), "long_day")

    @app.context_processor
    def public_context() -> dict[str, Any]:
        return {"locale": str(get_locale()), "library": desk().settings.notices.privacy_library}

    csrf.exempt(link_post)  # the signed token in the URL is what proves the request genuine


@bp.get("/find")
def find() -> Any:
    code = request.args.get("code")
    if code is None:
        return render_template("public/find.html", asked=False, entries=[], limited=False)
    limiter = desk().find_limiter
    if not limiter.allow(request.remote_addr or "unknown"):
        return render_template("public/find.html", asked=True, entries=[], limited=True), 429
    entries = desk().service.lookup(code)
    branches = {entry.branch_name for entry in entries}
    return render_template(
        "public/find.html",
        asked=True,
        entries=entries,
        limited=False,
        today=desk().service.today(),
        # the page's heading names the hold's library, not the first one configured
        **({"library": branches.pop()} if len(branches) == 1 else {}),
    )


@bp.get("/privacy")
def privacy() -> str:
    settings = desk().settings
    return render_template(
        "public/privacy.html",
        settings=settings,
        quarantine_days=CODE_QUARANTINE.days,
        contact_kept=settings.mail.enabled or settings.sms.enabled,
    )


def _pseudonym(token: str) -> tuple[str | None, str | None]:
    """(pseudonym, None) for a good token, else (None, "invalid" | "expired")."""
    key = desk().settings.secret_key.encode("utf-8")
    try:
        return read_token(token, key, desk().service.today()), None
    except LinkExpired:
        return None, "expired"
    except LinkInvalid:
        return None, "invalid"


def _bad_link(problem: str | None) -> tuple[str, int]:
    status = 410 if problem == "expired" else 400
    return render_template("public/link.html", problem=problem), status


@bp.get("/p/<token>")
def link(token: str) -> Any:
    pseudonym, problem = _pseudonym(token)
    if pseudonym is None:
        return _bad_link(problem)
    view = desk().service.patron_view(pseudonym)
    return render_template("public/link.html", problem=None, view=view, saved=False, token=token)


@bp.post("/p/<token>")
def link_post(token: str) -> Any:
    pseudonym, problem = _pseudonym(token)
    if pseudonym is None:
        return _bad_link(problem)
    try:
        choice = PickupMode(request.form.get("choice", ""))
    except ValueError:
        return _bad_link("invalid")
    view = desk().service.choose(pseudonym, choice)
    return render_template("public/link.html", problem=None, view=view, saved=True, token=token)
