"""Circulation desk pages: check-in, pickup, hold shelf, clear shelf, patron desk, numbers.

Every state change is a POST followed by a redirect (so a reload never repeats it). Card
numbers arrive in forms and leave as pseudonyms: no page ever contains one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from holdshelf.domain.holds import PickupMode, ShelfEntry, desk_day
from holdshelf.domain.inputs import parse_date
from holdshelf.errors import HoldshelfError, InvalidInput
from holdshelf.ils.answers import IlsUnavailable
from holdshelf.sealing import Sealer
from holdshelf.service import SlipState, SlipStatus
from holdshelf.web import charts
from holdshelf.web.extensions import desk
from holdshelf.web.guards import login_required
from holdshelf.workflow.checkin import CheckIn, SendElsewhere, Shelved, scan_registered

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
def day_with_year(date: dt.date) -> str:
    return desk_day(date, desk().service.today())


@bp.app_template_filter("moment")
def moment(instant: dt.datetime) -> str:
    """An instant in the library's zone: the time for today, the day and time before."""
    local = instant.astimezone(desk().settings.timezone)
    if local.date() == desk().service.today():
        return local.strftime("at %H:%M")
    return f"{desk_day(local.date(), desk().service.today())} at {local.strftime('%H:%M')}"


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
    last: str | None = None,
    error: str | None = None,
    focus: str = "item",
    item: str = "",
    card_kept: str = "",
    ils: IlsOutcome | None = None,
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
        awaiting=service.awaiting_scan(_branch()),
        scan_within=int(desk().settings.ils.scan_within.total_seconds() // 60),
        result=result,
        print_status=status,
        error=error,
        focus=focus,
        item=item,
        card_kept=card_kept,
        ils=ils or IlsOutcome(),
        asks_ils=desk().checkin is not None,
        show_title=desk().settings.slip_options.show_title,
        email=desk().settings.mail.enabled,
        sms=desk().settings.sms.enabled,
    )


# A card kept across a refused contact is sealed (encrypted, expiring) in the form, never put
# into the page in clear.
CARD_KEPT_SECONDS = 300


def _scanned_card() -> str:
    card = request.form.get("card", "")
    kept = request.form.get("card_kept", "")
    if card.strip() or not kept:
        return card
    try:
        sealed = Sealer(desk().settings.data_key).unseal(kept, CARD_KEPT_SECONDS)
        if sealed["desk"] != _desk_tag():  # kept for this signed-in desk only
            raise KeyError("desk")
        return str(sealed["card"])
    except (HoldshelfError, KeyError, TypeError):
        raise InvalidInput("scan the patron's card again", field="patron_card") from None


def _desk_tag() -> str:
    return hashlib.sha256(session["token"].encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class IlsOutcome:
    """What the ILS said about the scanned item, for the check-in page (never stored)."""

    down: str | None = None  # the ILS could not be asked: why; the card field shows
    send_to: str | None = None  # in transit: the library the item goes to
    no_hold: bool = False
    repeated: bool = False  # scanned again: the hold is ready already
    message: str | None = None  # the ILS's own words for the clerk


@bp.post("/checkin")
@login_required
def checkin_post() -> Any:
    item = request.form.get("item", "")
    checkin = desk().checkin
    typed_card = (request.form.get("card") or "").strip() or request.form.get("card_kept")
    if checkin is not None and not typed_card:
        return _checkin_by_item(checkin, item)
    return _checkin_with_card(item)


def _checkin_by_item(checkin: CheckIn, item: str) -> Any:
    """One scan: the ILS says whose hold; its answer is shown on this page, not redirected,
    so the ILS's words never reach a URL (or an access log)."""
    contacts = {"email": request.form.get("email"), "sms": request.form.get("sms")}
    try:
        outcome = checkin.scan(_branch(), item, **contacts)
    except IlsUnavailable as exc:
        down = IlsOutcome(down=str(exc))
        return _checkin_page(focus="card", item=item.strip(), ils=down)
    except HoldshelfError as exc:
        return _refused_checkin(exc, item, ""), 422
    if isinstance(outcome, Shelved):
        desk().wake_worker()
        shown = IlsOutcome(message=outcome.message, repeated=outcome.repeated)
        return _checkin_page(last=outcome.entry.code.display, ils=shown)
    if isinstance(outcome, SendElsewhere):
        return _checkin_page(ils=IlsOutcome(send_to=outcome.destination, message=outcome.message))
    return _checkin_page(ils=IlsOutcome(no_hold=True, message=outcome.message))


def _checkin_with_card(item: str) -> Any:
    card = ""
    contacts = {"email": request.form.get("email"), "sms": request.form.get("sms")}
    try:
        known = scan_registered(desk().service, _branch(), item, **contacts)
        if isinstance(known, SendElsewhere):
            return _checkin_page(ils=IlsOutcome(send_to=known.destination))
        if known is not None:  # an ILS registered the hold: no card needed
            desk().wake_worker()
            return redirect(url_for("desk.checkin", code=known.entry.code.display))
        card = _scanned_card()
        entry = desk().service.ready(
            _branch(),
            item,
            card,
            title=request.form.get("title") or None,
            **contacts,
        )
    except HoldshelfError as exc:
        return _refused_checkin(exc, item, card), 422
    desk().wake_worker()
    return redirect(url_for("desk.checkin", code=entry.code.display))


def _refused_checkin(exc: HoldshelfError, item: str, card: str) -> str:
    """The page again with the cursor where the fault is. A refused contact keeps the item and
    the card (sealed); contacts themselves are never put back into the page."""
    field = getattr(exc, "field", None)
    if field not in ("email", "sms", "patron_card"):
        return _checkin_page(error=str(exc), focus="item")
    # An item field holding a patron's card (a swapped scan) is never put back into the page.
    item = "" if desk().service.is_a_card(item, _branch()) else item.strip()
    if field == "patron_card":
        return _checkin_page(error=str(exc), focus="card", item=item)
    kept = ""
    if card.strip():
        kept = Sealer(desk().settings.data_key).seal({"card": card, "desk": _desk_tag()})
    return _checkin_page(error=str(exc), focus=field, item=item, card_kept=kept)


@bp.get("/status")
@login_required
def status() -> Response:
    """For the check-in page's script: the newest slip of a hold, and the printer banner."""
    slip = None
    code = request.args.get("code")
    if code:
        try:
            found = desk().service.find(code, _branch())
        except HoldshelfError:
            pass
        else:
            state = desk().service.print_status(found.code, _branch())
            slip = {"state": state.state.value, "text": slip_words(state), "settled": state.settled}
    trouble = desk().printer_trouble(_branch())
    return jsonify(slip=slip, banner=render_template("banner.html", trouble=trouble).strip())


@bp.app_template_filter("slip_words")
def slip_words(slip: SlipStatus) -> str:
    """A slip's state in the desk's words."""
    if slip.state is SlipState.RETRYING:
        return (
            f"not printed yet: {slip.error} (attempt {slip.attempts}). "
            "It prints by itself once the printer answers."
        )
    return {
        SlipState.NONE: "no slip",
        SlipState.AWAITING_SCAN: "waiting for the item's scan",
        SlipState.QUEUED: "waiting for the printer",
        SlipState.PRINTED: "printed",
        SlipState.DROPPED: "not printed (the hold ended)",
    }[slip.state]


@bp.app_context_processor
def printer_banner() -> dict[str, Any]:
    """Every staff page says when the branch's slips are not printing."""
    staff = g.get("staff")
    if staff is None or not staff.branch or request.endpoint == "desk.status":
        return {}
    return {"printer_trouble": desk().printer_trouble(staff.branch)}


# -- one hold: reprint, new date, cancel, notices ----------------------------------------------

# Where a reprint or an action sends the clerk back to (never a URL from the form).
RETURN_TO = {
    "checkin": "desk.checkin",
    "shelf": "desk.shelf",
    "pickup": "desk.pickup",
    "printers": "admin.printers",
}


def _back(default: str = "desk.shelf", **values: Any) -> Response:
    endpoint = RETURN_TO.get(request.form.get("back", ""), default)
    if endpoint.startswith("admin.") and not g.staff.admin:
        endpoint = default
    return redirect(url_for(endpoint, **values))


@bp.post("/reprint")
@login_required
def reprint() -> Response:
    """Staff reprint a slip (torn, lost, wet): by its code, or by scanning the slip or item."""
    code, scan = request.form.get("code"), request.form.get("scan")
    try:
        entry = desk().service.reprint(code, _branch(), scan=None if code else (scan or ""))
    except HoldshelfError as exc:
        flash(str(exc), "error")
        return _back()
    desk().wake_worker()
    flash(f"The slip of {entry.code.display} is printing again (no message to the patron).")
    if request.form.get("back") == "checkin":
        return redirect(url_for("desk.checkin", code=entry.code.display))
    return _back()


def _active_hold(code: str) -> ShelfEntry:
    """This branch's active hold with this code; an ended or unknown one sends the clerk back
    to the hold shelf, saying why."""
    try:
        return desk().service.find(code, _branch())
    except HoldshelfError as exc:
        flash(str(exc), "error")
        abort(redirect(url_for("desk.shelf")))


@bp.get("/holds/<code>")
@login_required
def hold(code: str) -> Any:
    entry = _active_hold(code)
    return render_template(
        "hold.html",
        hold=entry,
        slip=desk().service.print_status(entry.code, _branch()),
        notices=desk().worker.notices.of_branch(_branch()).get(entry.code.compact, []),
        overdue=entry.pickup_by < desk().service.today(),
        today=desk().service.today(),
    )


@bp.post("/holds/<code>/pickup-by")
@login_required
def change_pickup_by(code: str) -> Response:
    try:
        day = parse_date(request.form.get("pickup_by", ""), "pickup-by date")
        entry = desk().service.change_pickup_by(code, day, _branch())
    except HoldshelfError as exc:
        flash(str(exc), "error")
        return redirect(url_for("desk.hold", code=code))
    desk().wake_worker()
    flash(
        f"{entry.code.display} can be picked up until {day_with_year(entry.pickup_by)}; "
        "its new slip is printing."
    )
    return redirect(url_for("desk.hold", code=entry.code.display))


@bp.get("/holds/<code>/cancel")
@login_required
def cancel_confirm(code: str) -> Any:
    return render_template("cancel.html", hold=_active_hold(code))


@bp.post("/holds/<code>/cancel")
@login_required
def cancel(code: str) -> Response:
    try:
        entry = desk().service.cancel(code, branch_id=_branch())
    except HoldshelfError as exc:
        flash(str(exc), "error")
        return redirect(url_for("desk.shelf"))
    flash(
        f"{entry.code.display} is cancelled: take the item off the shelf. "
        "Its link to the patron is deleted."
    )
    return redirect(url_for("desk.shelf"))


@bp.post("/holds/<code>/notice")
@login_required
def resend_notice(code: str) -> Response:
    entry = _active_hold(code)
    if desk().worker.notices.resend(_branch(), entry.code):
        desk().wake_worker()
        flash(f"The notice for {entry.code.display} is being sent again.")
    else:
        flash(
            f"No notice of {entry.code.display} can be resent: its contact is no longer held "
            "(sent, failed for good, or never given). Ask the patron at the desk.",
            "error",
        )
    return redirect(url_for("desk.hold", code=entry.code.display))


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


SHELF_WHOLE = 200  # a branch with at most this many active holds shows them on one page
SHELF_PAGE = 200  # holds per page of one section (each row carries its reprint form)


@bp.get("/shelf")
@login_required
def shelf() -> str:
    """The branch's holds by shelf section, with counts: the whole shelf while it is small,
    else one section at a time (the first by default), a page of it at a time."""
    service = desk().service
    branch = _branch()
    sections = service.shelf_sections(branch)
    total = sum(s.holds for s in sections)
    chosen = request.args.get("section")
    if chosen is not None and chosen not in {s.section for s in sections}:
        chosen = None  # a section emptied meanwhile, or a made-up one: the first
    if chosen is None and total > SHELF_WHOLE and sections:
        chosen = sections[0].section
    after = request.args.get("after") if chosen is not None else None
    entries, more = service.shelf_page(
        branch,
        limit=SHELF_PAGE if chosen is not None else SHELF_WHOLE,
        after=(service.settings.branch(branch).id, after) if after else None,
        section=chosen,
    )
    shelved = [e for e in entries if not e.awaits_scan]  # a registered item is not here yet
    return render_template(
        "shelf.html",
        sections=sections,
        section=chosen,
        next_after=entries[-1].code.compact if more else None,
        on_shelf=[e for e in shelved if e.mode is PickupMode.SHELF],
        at_desk=[e for e in shelved if e.mode is PickupMode.DESK],
        on_shelf_count=sum(s.on_shelf for s in sections),
        at_desk_count=sum(s.at_desk for s in sections),
        awaiting=service.awaiting_scan(branch),
        to_move=service.to_move(branch),
        overdue=sum(s.overdue for s in sections),
        missing=sum(s.missing for s in sections),
        notices=desk().worker.notices.of_branch(branch, [e.code.compact for e in entries]),
        today=service.today(),
    )


@bp.post("/shelf/moved")
@login_required
def moved_to_desk() -> Any:
    try:
        entry = desk().service.moved_to_desk(request.form.get("code", ""), _branch())
    except HoldshelfError as exc:
        flash(str(exc), "error")
    else:
        desk().wake_worker()
        flash(
            f"{entry.code.display} is now a desk hold: its new slip with the desk band is "
            "printing. Wrap it round the item and shelve it behind the desk."
        )
    return redirect(url_for("desk.shelf"))


@bp.get("/clear")
@login_required
def clear() -> str:
    overdue = desk().service.overdue(_branch())
    return render_template("clear.html", overdue=overdue)


@bp.get("/clear/list")
@login_required
def pull_list() -> str:
    """The holds to pull as a printable list, in shelving order (open shelf first)."""
    overdue = desk().service.overdue(_branch())
    ordered = sorted(overdue, key=lambda e: (e.mode is PickupMode.DESK, e.code.compact))
    return render_template("pull_list.html", overdue=ordered, today=desk().service.today())


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
KEEP_PATRON_FOCUS = PATRON_PAGES | {"static", "desk.status"}


@bp.before_app_request
def end_patron_focus_elsewhere() -> None:
    staff = g.get("staff")
    if staff is None or not staff.patron or request.endpoint in KEEP_PATRON_FOCUS:
        return
    if request.endpoint is None:  # a 404 (a browser's /favicon.ico) is not leaving the page
        return
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
