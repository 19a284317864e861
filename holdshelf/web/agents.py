"""The branch print agents' API (JSON under /api/v1/agent), described in openapi.json.

Only a print agent's token (scope ``print-agent``, one branch) is let in; the holds API turns
such a token away, and these endpoints turn away the holds API's tokens (403 problem JSON).
The rules of leases, phases and acknowledgements are holdshelf.agents'.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify

from holdshelf.agents import LONGEST_WAIT, AgentJob, PrintAgents, PrinterReport
from holdshelf.integrations import PRINT_AGENT, ApiClient
from holdshelf.web.extensions import desk
from holdshelf.web.json_api import answer_with_problems, bearer_client, json_body

bp = Blueprint("agents", __name__, url_prefix="/api/v1/agent")


def init_app(app: Flask, csrf: Any) -> None:
    csrf.exempt(bp)  # token authentication, no cookies: nothing to forge


answer_with_problems(bp)


def agents() -> PrintAgents:
    return desk().agents


@bp.before_request
def _authenticate() -> None:
    refused = "only a print agent's token may fetch slips"
    # No per-minute limit: a busy branch's agent makes three requests a slip, and the token
    # can do nothing but print its own branch's slips.
    g.agent_client = bearer_client(PRINT_AGENT, whose="print agent", refused=refused)


def _client() -> ApiClient:
    return g.agent_client


def _body(schema: str) -> dict[str, Any]:
    return json_body(schema, may_be_empty=True)


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
