"""The holds API for the ILS (JSON under /api/v1), described by openapi.json beside this file.

Named integration tokens (Bearer), limited to branches. Errors are RFC 9457 problem details
with a stable ``type``; never an HTML page, never a traceback. Retries are safe: a repeated
POST for an item whose hold is active returns that hold, and an Idempotency-Key replays the
first answer; a repeated pickup or cancellation by item finds no active hold (404).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, g, jsonify, request

from holdshelf.domain.holds import ShelfEntry
from holdshelf.domain.inputs import checked, clean_barcode, parse_date
from holdshelf.errors import InvalidInput, UnknownBranch
from holdshelf.integrations import API, ApiClient, Integrations, KeyInUse, KeyReused
from holdshelf.service import SlipState, SlipStatus
from holdshelf.web.extensions import desk
from holdshelf.web.json_api import OPENAPI_FILE, answer_with_problems, bearer_client, json_body
from holdshelf.web.problems import Problem
from holdshelf.workflow.checkin import branch_at

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def init_app(app: Flask, csrf: Any) -> None:
    csrf.exempt(bp)  # token authentication, no cookies: nothing to forge


answer_with_problems(bp)


def integrations() -> Integrations:
    return desk().integrations


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "api.openapi":
        return
    refused = "a print agent's token may only fetch its branch's slips"
    client = bearer_client(API, whose="integration", refused=refused)
    limiter = desk().api_limiter
    if not limiter.allow(f"token:{client.id}"):
        raise Problem(429, "rate-limited", f"at most {limiter.limit} requests a minute per token")
    g.api_client = client


def _client() -> ApiClient:
    return g.api_client


def _branch(requested: str | None, *, required: bool) -> str | None:
    """The branch asked for (checked against the token), or the token's only branch."""
    client = _client()
    if not requested:
        if len(client.branches) == 1:
            return next(iter(client.branches))
        if required:
            raise Problem(400, "invalid-input", "branch is required", field="branch")
        return None
    branch = _branch_named(requested)
    if not client.may_use(branch):
        raise Problem(403, "forbidden-branch", f"this token may not act for branch {branch}")
    return branch


def _branch_named(name: str) -> str:
    """A branch by its Holdshelf id or by the ILS's code for it (``ils_location``): an ILS
    pushes its own library codes. UnknownBranch otherwise, a 400 naming the field."""
    settings = desk().settings
    try:
        return settings.branch(name).id
    except UnknownBranch:
        found = branch_at(settings, name)
        if found is None:
            raise
        return found.id


def _within() -> frozenset[str] | None:
    return _client().branches or None


# The API's words for a slip's state: a contract of its own, kept apart from the desk's.
def _slip_words(slip: SlipStatus) -> str:
    if slip.state is SlipState.RETRYING:
        return f"waiting to print (attempt {slip.attempts}: {slip.error})"
    return {
        SlipState.NONE: "no slip",
        SlipState.AWAITING_SCAN: "waiting for the item's scan at the desk",
        SlipState.QUEUED: "queued for the printer",
        SlipState.PRINTED: "printed",
        SlipState.DROPPED: "not printed (hold ended)",
    }[slip.state]


def _hold(entry: ShelfEntry, slip: SlipStatus | None = None) -> dict[str, Any]:
    """The hold as the API shows it; ``slip``, when the caller knows it, saves reading it."""
    if slip is None:
        slip = desk().service.print_status(entry.code, entry.branch)
    return entry.as_dict() | {"print_status": _slip_words(slip)}


# -- holds ---------------------------------------------------------------------------------------


@bp.post("/holds")
def create_hold() -> Any:
    raw = request.get_data(cache=True)
    data = json_body("HoldRequest")
    branch = _branch(data.get("branch"), required=True)
    key = request.headers.get("Idempotency-Key")
    client = _client()
    if key is not None:
        try:
            replay = integrations().begin(client, key, integrations().fingerprint(raw))
        except KeyReused as exc:
            raise Problem(422, "idempotency-key-reused", str(exc)) from None
        except KeyInUse as exc:
            raise Problem(409, "idempotency-key-in-use", str(exc)) from None
        except InvalidInput as exc:
            raise Problem(400, "invalid-input", str(exc), field="Idempotency-Key") from None
        if replay is not None:
            return replay.body, replay.status
    try:
        body, status = _make_ready(data, branch)
    except Exception:
        if key is not None:
            integrations().abandon(client, key)
        raise
    if key is not None:
        integrations().complete(client, key, status, body)
    return body, status


def _make_ready(data: dict[str, str], branch: str | None) -> tuple[dict[str, Any], int]:
    assert branch is not None
    service = desk().service
    pickup_by = checked("pickup_by", parse_date, data["pickup_by"]) if "pickup_by" in data else None
    request_ = service.hold_request(  # a bad value's InvalidInput names its field
        branch,
        data["item_barcode"],
        data["patron_card"],
        pickup_by,
        title=data.get("title"),
        email=data.get("email"),
        sms=data.get("sms"),
    )
    on_scan = data.get("print") == "on-scan"
    entry, made = service.ready_once(request_, on_scan=on_scan)
    if not made:
        return _hold(entry), 200
    if on_scan:
        return _hold(entry, SlipStatus(SlipState.AWAITING_SCAN)), 201
    desk().wake_worker()
    # Just queued, in the transaction that made the hold: no need to read it back.
    return _hold(entry, SlipStatus(SlipState.QUEUED)), 201


LIST_LIMIT = 500  # holds per page of GET /holds by default
LIST_LIMIT_MAX = 1000


@bp.get("/holds")
def list_holds() -> Any:
    """Active holds in shelving order (branch, then code), a page at a time: ``next`` is the
    cursor of the page after (pass it as ``after``), null on the last page."""
    branch = _branch(request.args.get("branch"), required=False)
    limit = _limit(request.args.get("limit"))
    after_text = request.args.get("after")
    after = _cursor_value(after_text) if after_text is not None else None
    entries, more = desk().service.shelf_page(branch, within=_within(), limit=limit, after=after)
    cursor = _cursor(entries[-1]) if more else None
    body = {"holds": [entry.as_dict() for entry in entries], "next": cursor}
    response = jsonify(body)
    if cursor is not None:
        args = {k: v for k, v in request.args.items() if k != "after"} | {"after": cursor}
        response.headers["Link"] = f'<{request.base_url}?{urlencode(args)}>; rel="next"'
    return response


def _limit(text: str | None) -> int:
    if text is None:
        return LIST_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= LIST_LIMIT_MAX:
        raise Problem(
            400, "invalid-input", f"limit must be a whole number 1..{LIST_LIMIT_MAX}", field="limit"
        )
    return int(text)


def _cursor(entry: ShelfEntry) -> str:
    """Opaque to clients: the branch and code of a page's last hold."""
    raw = f"{entry.branch}\n{entry.code.compact}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_value(text: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        branch, code = raw.split("\n")
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            400, "invalid-input", "after must be the next cursor of a page", field="after"
        ) from None
    if not branch or not code:
        raise Problem(
            400, "invalid-input", "after must be the next cursor of a page", field="after"
        )
    return branch, code


@bp.post("/holds/<code>/pickup")
def pickup_by_code(code: str) -> Any:
    branch = _branch(request.args.get("branch"), required=False)
    return desk().service.pickup(code, branch_id=branch, within=_within()).as_dict()


@bp.post("/holds/<code>/cancel")
def cancel(code: str) -> Any:
    branch = _branch(request.args.get("branch"), required=False)
    return desk().service.cancel(code, branch_id=branch, within=_within()).as_dict()


@bp.post("/pickups")
def pickup_by_item() -> Any:
    item, branch = _item_and_branch("PickupRequest")
    return desk().service.pickup(item=item, branch_id=branch, within=_within()).as_dict()


@bp.post("/cancellations")
def cancel_by_item() -> Any:
    """The ILS cancelled the item's hold. A repeat finds no active hold: 404, as for pickups."""
    item, branch = _item_and_branch("CancellationRequest")
    return desk().service.cancel(item=item, branch_id=branch, within=_within()).as_dict()


def _item_and_branch(schema: str) -> tuple[str, str | None]:
    """The item barcode and branch of a body that ends an item's hold."""
    data = json_body(schema)
    branch = _branch(data.get("branch"), required=False)
    return checked("item_barcode", clean_barcode, data["item_barcode"]), branch


@bp.get("/stats")
def stats() -> Any:
    service = desk().service
    since_text = request.args.get("since")
    since = (  # given but empty is a mistake, not "the default"
        checked("since", parse_date, since_text)
        if since_text is not None
        else service.today() - dt.timedelta(days=30)
    )
    branch = _branch(request.args.get("branch"), required=False)
    allowed = _client().branches
    days = [d for d in service.stats(since, branch) if not allowed or d.branch in allowed]
    usage = [
        u
        for u in service.usage()
        if (not allowed or u.branch in allowed) and (branch is None or u.branch == branch)
    ]
    return {"days": [d.as_dict() for d in days], "branches": [u.as_dict() for u in usage]}


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(OPENAPI_FILE.read_bytes(), mimetype="application/json")
