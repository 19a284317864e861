"""The branch print agents' API (JSON under /api/v1/agent), described in openapi.json.

Only a print agent's token (scope ``print-agent``, one branch) is let in; the holds API turns
such a token away, and these endpoints turn away the holds API's tokens (403 problem JSON).
The rules of leases, phases and acknowledgements are holdshelf.agents'.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import jsonschema
from flask import Blueprint, Flask, Response, g, jsonify, request

from holdshelf.agents import LONGEST_WAIT, AgentJob, PrintAgents, PrinterReport
from holdshelf.errors import HoldshelfError
from holdshelf.integrations import PRINT_AGENT, ApiClient
from holdshelf.resources import PACKAGE_DIR
from holdshelf.web.extensions import desk
from holdshelf.web.problems import Problem, problem_from

bp = Blueprint("agents", __name__, url_prefix="/api/v1/agent")

OPENAPI_FILE = PACKAGE_DIR / "web" / "openapi.json"


def init_app(app: Flask, csrf: Any) -> None:
    csrf.exempt(bp)  # token authentication, no cookies: nothing to forge


def agents() -> PrintAgents:
    return desk().agents


@bp.errorhandler(Problem)
def _problem(error: Problem) -> Response:
    return error.response()


@bp.errorhandler(HoldshelfError)
def _domain_error(error: HoldshelfError) -> Response:
    return problem_from(error).response()


@bp.before_request
def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    found = desk().integrations.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise Problem(401, "unauthorized", "send Authorization: Bearer <print agent token>")
    if found.scope != PRINT_AGENT:
        raise Problem(403, "forbidden-scope", "only a print agent's token may fetch slips")
    # No per-minute limit: a busy branch's agent makes three requests a slip, and the token
    # can do nothing but print its own branch's slips.
    g.agent_client = found


def _client() -> ApiClient:
    return g.agent_client


def _body(schema: str) -> dict[str, Any]:
    """The request's JSON object, checked against ``components/schemas/<schema>``."""
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "the body must be application/json")
    try:
        data = json.loads(request.get_data(cache=True) or b"{}")
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise Problem(400, "invalid-input", "the body must be a JSON object")
    fault = jsonschema.exceptions.best_match(_validator(schema).iter_errors(data))
    if fault is not None:
        field = str(fault.path[0]) if fault.path else "body"
        raise Problem(400, "invalid-input", f"{field}: {fault.message}"[:200], field=field)
    return data


@functools.cache
def _validator(schema: str) -> jsonschema.protocols.Validator:
    document = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", **document})


def _job_json(job: AgentJob) -> dict[str, Any]:
    return {
        "lease": job.lease,
        "id": job.job_id,
        "escpos": base64.b64encode(job.escpos).decode("ascii"),
        "process_id": job.process_id,
        "possible_duplicate": job.possible_duplicate,
        "lease_seconds": job.lease_seconds,
    }


@bp.post("/jobs/lease")
def lease() -> Response:
    """The branch's next slip (at most one), waiting up to ``wait`` seconds for one."""
    data = _body("AgentLease")
    wait = min(float(data.get("wait", 0)), LONGEST_WAIT)
    printer = PrinterReport.from_json(data.get("printer"))
    job = agents().lease(_client(), wait, printer)
    return jsonify(jobs=[_job_json(job)] if job else [])


@bp.post("/jobs/<lease_id>/phase")
def phase(lease_id: str) -> Response:
    """How far the agent got: ``sending`` (before the first byte), ``accepted``, ``waiting``."""
    data = _body("AgentPhase")
    seconds = agents().set_phase(_client(), lease_id, data["phase"])
    return jsonify(lease_seconds=seconds)


@bp.post("/jobs/<lease_id>/ack")
def acknowledge(lease_id: str) -> Response:
    """The lease's outcome and the printer's status; a second acknowledgement is harmless."""
    data = _body("AgentAck")
    printer = PrinterReport.from_json(data.get("printer"))
    result = agents().acknowledge(
        _client(), lease_id, data["outcome"], data.get("error", ""), printer
    )
    return jsonify(result=result)
