"""Administrator pages: printers with their queue, test prints and reprints; staff accounts
and their sign-in lockouts; the audit log; the privacy audit and disclosure lookups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from holdshelf.accounts import minutes_text
from holdshelf.errors import HoldshelfError
from holdshelf.print_worker import send_test_slip
from holdshelf.web.extensions import desk
from holdshelf.web.guards import admin_required

if TYPE_CHECKING:
    from holdshelf.privacy_audit import Disclosure

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/printers")
@admin_required
def printers() -> str:
    from holdshelf.printers.connections import connect

    settings = desk().settings
    agents = desk().agents.views()
    rows = [
        {
            "printer": printer,
            "branches": [b.id for b in settings.branches.values() if b.printer == name],
            "status": _agent_printer_status(name, agents)
            if printer.type == "agent"
            else connect(printer, settings.instance_dir).status().describe(),
        }
        for name, printer in settings.printers.items()
    ]
    return render_template(
        "printers.html", rows=rows, jobs=desk().worker.prints.jobs(), agents=agents
    )


def _agent_printer_status(name: str, agents: list[Any]) -> str:
    """What the agents printing to ``name`` last said of it (see Branch print agents)."""
    said = [a.printer_status for a in agents if a.printer == name and a.last_seen_at]
    return "; ".join(said) or "no print agent has been in touch"


@bp.post("/printers/test")
@admin_required
def print_test() -> Any:
    name = request.form.get("printer", "")
    try:
        target = send_test_slip(desk().settings, name, desk().service.today())
    except HoldshelfError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Test slip sent to {name} ({target}).")
    return redirect(url_for("admin.printers"))


@bp.get("/accounts")
@admin_required
def accounts() -> str:
    rows = [
        {"account": view, "wait": minutes_text(view.locked_for) if view.locked_for else None}
        for view in desk().accounts.account_views()
    ]
    web = desk().settings.web
    window = int(web.login_window.total_seconds() // 60)
    return render_template("accounts.html", rows=rows, web=web, window=window)


@bp.post("/accounts/unlock")
@admin_required
def unlock() -> Any:
    name = request.form.get("name", "")
    try:
        cleared = desk().accounts.unlock(name, by=g.staff)
    except HoldshelfError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{name} may sign in again ({cleared} failed sign-ins forgotten).")
    return redirect(url_for("admin.accounts"))


@bp.post("/accounts/unlock-address")
@admin_required
def unlock_address() -> Any:
    address = request.form.get("address", "")
    try:
        cleared = desk().accounts.unlock_address(address, by=g.staff)
    except HoldshelfError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Sign-ins from {address.strip()} are open again ({cleared} failures forgotten).")
    return redirect(url_for("admin.accounts"))


@bp.get("/audit")
@admin_required
def audit() -> str:
    return render_template("audit.html", entries=desk().accounts.audit_entries())


# -- for the privacy officer ---------------------------------------------------------------------


def _privacy_page(
    disclosure: Disclosure | None = None, error: str | None = None, status: int = 200
) -> tuple[str, int]:
    report = desk().privacy.report()
    page = render_template("privacy.html", report=report, disclosure=disclosure, error=error)
    return page, status


@bp.get("/privacy")
@admin_required
def privacy() -> tuple[str, int]:
    return _privacy_page()


@bp.post("/privacy/disclose")
@admin_required
def disclose() -> tuple[str, int]:
    """The disclosure is the answer to this POST, never a redirect: the card stays out of every
    URL, and the result is gone once the page is left."""
    staff = g.staff
    try:
        found = desk().privacy.disclose(
            request.form.get("card", ""), lambda action: desk().accounts.audit(staff, action)
        )
    except HoldshelfError as exc:
        return _privacy_page(error=str(exc), status=422)
    return _privacy_page(disclosure=found)
