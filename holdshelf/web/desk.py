"""Circulation desk pages: check-in, pickup, hold shelf, clear shelf, patron desk, numbers.

Every state change is a POST followed by a redirect (so a reload never repeats it). Card
numbers arrive in forms and leave as pseudonyms: no page ever contains one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from holdshelf.domain.holds import PickupMode
from holdshelf.errors import HoldshelfError
from holdshelf.web import charts
from holdshelf.web.auth import desk, login_required

bp = Blueprint("desk", __name__)

# What each choice means, in the words staff can read out to the patron.
CHOICES = {
    PickupMode.SHELF: (
        "open shelf",
        "Their holds wait on the self-service shelf under a code only they are sent, and they "
        "check them out themselves.",
    ),
    PickupMode.DESK: (
        "desk pickup",
        "Their holds are kept behind the desk, and staff hand them over after checking the "
        "library card.",
    ),
}
NUMBERS_DAYS = 30


def _branch() -> str:
    return g.staff.branch


@bp.app_template_filter("day")
def day(date: dt.date) -> str:
    """A pickup-by date for the desk: "Mon 30 Nov", with the year when it is not this year."""
    this_year = desk().service.today().year
    return date.strftime("%a %d %b" if date.year == this_year else "%a %d %b %Y")


@bp.get("/")
@login_required
def home() -> Response:
    return redirect(url_for("desk.checkin"))


# -- check-in -----------------------------------------------------------------------------------


@bp.get("/checkin")
@login_required
def checkin() -> str:
    return _checkin_page(last=request.args.get("code"))


def _checkin_page(
    last: str | None = None, error: str | None = None, focus: str = "item", item: str = ""
) -> str:
    service = desk().service
    result = status = None
    if last:
        try:
            result = service.find(last, _branch())
            status = service.print_status(result.code, _branch())
        except HoldshelfError:
            result = None
    return render_template(
        "checkin.html",
        result=result,
        print_status=status,
        error=error,
        focus=focus,
        item=item,
        show_title=desk().settings.slip_options.show_title,
        email=desk().settings.mail.enabled,
        sms=desk().settings.sms.enabled,
    )


@bp.post("/checkin")
@login_required
def checkin_post() -> Any:
    item = request.form.get("item", "")
    card = request.form.get("card", "")
    title = request.form.get("title") or None
    try:
        entry = desk().service.ready(
            _branch(),
            item,
            card,
            title=title,
            email=request.form.get("email"),
            sms=request.form.get("sms"),
        )
    except HoldshelfError as exc:
        # The cursor goes where the fault is; contacts are never put back into the page.
        focus = "card" if getattr(exc, "field", None) == "patron_card" else "item"
        keep = item.strip() if focus == "card" else ""
        return _checkin_page(error=str(exc), focus=focus, item=keep), 422
    desk().wake_worker()
    return redirect(url_for("desk.checkin", code=entry.code.display))


@bp.get("/slips/<code>.png")
@login_required
def slip_preview(code: str) -> Any:
    from holdshelf.printers.slips import RenderedSlip

    try:
        branch, slip = desk().service.slip(code, _branch())
    except HoldshelfError:
        return Response("no such slip", status=404, mimetype="text/plain")
    rendered = RenderedSlip(slip, desk().settings.printer_of(branch))
    return Response(rendered.png(), mimetype="image/png")


# -- pickup --------------------------------------------------------------------------------------


@bp.get("/pickup")
@login_required
def pickup() -> str:
    return render_template("pickup.html", error=None)


@bp.post("/pickup")
@login_required
def pickup_post() -> Any:
    scanned = request.form.get("scan", "")
    service = desk().service
    try:
        entry = service.pickup(scan=scanned, branch_id=_branch())
    except HoldshelfError as exc:
        return render_template("pickup.html", error=str(exc)), 422
    flash(f"{entry.code.display} picked up. The patron can check it out now.")
    return redirect(url_for("desk.pickup"))


# -- the hold shelf ------------------------------------------------------------------------------


@bp.get("/shelf")
@login_required
def shelf() -> str:
    entries = desk().service.shelf(_branch())
    return render_template(
        "shelf.html",
        on_shelf=[e for e in entries if e.mode is PickupMode.SHELF],
        at_desk=[e for e in entries if e.mode is PickupMode.DESK],
        to_move=[e for e in entries if e.move_to_desk],
    )


@bp.post("/shelf/moved")
@login_required
def moved_to_desk() -> Any:
    try:
        entry = desk().service.moved_to_desk(request.form.get("code", ""), _branch())
    except HoldshelfError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{entry.code.display} is now a desk hold.")
    return redirect(url_for("desk.shelf"))


@bp.get("/clear")
@login_required
def clear() -> str:
    overdue = desk().service.overdue(_branch())
    return render_template("clear.html", overdue=overdue)


@bp.post("/clear")
@login_required
def clear_post() -> Any:
    codes = [*request.form.getlist("code"), request.form.get("scan", "")]
    done, problems = [], []
    for code in filter(None, (c.strip() for c in codes)):
        try:
            done.append(desk().service.expire_hold(code, _branch()).code.display)
        except HoldshelfError as exc:  # not echoing the scan: it may be a card scanned by mistake
            problems.append(str(exc))
    if done:
        flash(f"Ended as expired: {', '.join(done)}.")
    for problem in problems:
        flash(problem, "error")
    if not done and not problems:
        flash("Scan a slip or tick the items you pulled.", "error")
    return redirect(url_for("desk.clear"))


# -- the patron desk -----------------------------------------------------------------------------

# The patron in focus is shown only on the page its card scan led to (``?focus=`` carries the
# focus's tag): any other page, a new scan, or coming back later ends it.
PATRON_PAGES = {"desk.patron", "desk.patron_lookup", "desk.patron_choice", "desk.patron_done"}
KEEP_PATRON_FOCUS = PATRON_PAGES | {"static"}


@bp.before_app_request
def end_patron_focus_elsewhere() -> None:
    staff = g.get("staff")
    if staff is not None and staff.patron and request.endpoint not in KEEP_PATRON_FOCUS:
        _end_patron_focus()


def _end_patron_focus() -> None:
    desk().accounts.focus_patron(session["token"], None)
    g.staff = replace(g.staff, patron=None, focus=None)


def _patron_page(error: str | None = None, status: int = 200) -> tuple[str, int]:
    view = desk().service.patron_view(g.staff.patron) if g.staff.patron else None
    return render_template(
        "patron.html", view=view, focus=g.staff.focus, choices=CHOICES, error=error
    ), status


@bp.get("/patron")
@login_required
def patron() -> tuple[str, int]:
    if g.staff.patron and request.args.get("focus") != g.staff.focus:
        _end_patron_focus()  # back on the page later, or from the menu: a new patron
    return _patron_page()


@bp.post("/patron")
@login_required
def patron_lookup() -> Any:
    try:
        pseudonym = desk().service.pseudonym(request.form.get("card", ""), _branch())
    except HoldshelfError as exc:
        if g.staff.patron:  # a failed scan does not leave the previous patron on screen
            _end_patron_focus()
        return _patron_page(error=str(exc), status=422)
    desk().accounts.focus_patron(session["token"], pseudonym)
    desk().accounts.audit(g.staff, "looked up a patron")
    return _to_patron_in_focus()


def _to_patron_in_focus() -> Response:
    focus = desk().accounts.session(session["token"])
    return redirect(url_for("desk.patron", focus=focus.focus if focus else None))


@bp.post("/patron/choice")
@login_required
def patron_choice() -> Any:
    if not g.staff.patron or request.form.get("focus") != g.staff.focus:
        flash("The patron on that page is no longer in focus: scan their card again.", "error")
        return redirect(url_for("desk.patron"))
    try:
        choice = PickupMode(request.form.get("choice", ""))
    except ValueError:
        flash("Choose open shelf or desk pickup.", "error")
        return _to_patron_in_focus()
    view = desk().service.choose(g.staff.patron, choice)
    desk().accounts.audit(g.staff, f"set pickup to {choice.value}")
    moves = sum(1 for hold in view.holds if hold.move_to_desk)
    note = f" Their holds to move from the open shelf to the desk: {moves}." if moves else ""
    flash(f"Saved: {CHOICES[choice][0]}.{note}")
    return _to_patron_in_focus()


@bp.post("/patron/done")
@login_required
def patron_done() -> Any:
    _end_patron_focus()
    return redirect(url_for("desk.patron"))


# -- numbers -------------------------------------------------------------------------------------


@bp.get("/numbers")
@login_required
def numbers() -> str:
    service = desk().service
    today = service.today()
    since = today - dt.timedelta(days=NUMBERS_DAYS)
    days = service.stats(since)
    names = {b.id: b.name for b in desk().settings.branches.values()}
    return render_template(
        "numbers.html",
        days=days,
        usage=service.usage(),
        since=since,
        names=names,
        daily=charts.branch_charts(days, names, since, today),
        draw=charts,
    )
