"""What the two token APIs under /api/v1 share: the holds API for the ILS (api.py) and the
branch print agents' (agents.py). One OpenAPI document describes both; bodies are checked
against its schemas, errors are RFC 9457 problem details, and a Bearer token is let in only
with its own scope."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from flask import Blueprint, Response, request

from holdshelf.errors import HoldshelfError
from holdshelf.integrations import ApiClient
from holdshelf.resources import PACKAGE_DIR
from holdshelf.web.extensions import desk
from holdshelf.web.problems import Problem, problem_from

OPENAPI_FILE = PACKAGE_DIR / "web" / "openapi.json"
TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def answer_with_problems(bp: Blueprint) -> None:
    """Every error of ``bp`` as problem JSON: never an HTML page, never a traceback."""
    bp.register_error_handler(Problem, lambda error: error.response())
    bp.register_error_handler(HoldshelfError, _domain_problem)


def _domain_problem(error: HoldshelfError) -> Response:
    return problem_from(error).response()


def bearer_client(scope: str, *, whose: str, refused: str) -> ApiClient:
    """The client of the request's Bearer token, if its scope is ``scope``: else a 401 asking
    for ``whose`` token, or a 403 saying ``refused``."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    client = desk().integrations.authenticate(token.strip()) if kind.lower() == "bearer" else None
    if client is None:
        raise Problem(401, "unauthorized", f"send Authorization: Bearer <{whose} token>")
    if client.scope != scope:
        raise Problem(403, "forbidden-scope", refused)
    return client


def json_body(schema: str, *, may_be_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object, checked against ``components/schemas/<schema>`` of the
    document the API serves: one source for what a body may hold. ``may_be_empty``: no body
    at all is an empty object."""
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "the body must be application/json")
    raw = request.get_data(cache=True)
    try:  # RecursionError: a small body nested a thousand deep is still just a bad body
        data = json.loads(raw or b"{}") if may_be_empty else json.loads(raw)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise Problem(400, "invalid-input", "the body must be a JSON object")
    fault = jsonschema.exceptions.best_match(_validator(schema).iter_errors(data))
    if fault is not None:
        field, message = _fault_words(fault, data)
        raise Problem(400, "invalid-input", message, field=field)
    return data


@functools.cache
def _validator(schema: str) -> jsonschema.protocols.Validator:
    document = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    referenced = {"$ref": f"#/components/schemas/{schema}", **document}
    return jsonschema.Draft202012Validator(referenced)


def _fault_words(fault: jsonschema.ValidationError, data: dict[str, Any]) -> tuple[str, str]:
    """The field at fault and a sentence for the client's log (never the value: it may be a
    card)."""
    if fault.validator == "required":
        field = next(key for key in fault.validator_value if key not in data)
        return field, f"{field} is required"
    if fault.validator == "additionalProperties":
        allowed = fault.schema.get("properties", {})
        field = next(key for key in data if key not in allowed)
        return field, f"unknown field {field!r}"
    field = str(fault.path[0]) if fault.path else "body"
    value = data.get(field)
    if fault.validator == "type":
        expected = fault.validator_value
        kinds = expected if isinstance(expected, list) else [expected]
        return field, f"{field} must be {' or '.join(TYPE_WORDS.get(k, k) for k in kinds)}"
    if isinstance(value, str) and not value.strip():
        return field, f"{field} is required"
    if fault.validator == "maxLength":
        return field, f"{field} is longer than {fault.validator_value} characters"
    if fault.validator == "pattern":
        return field, f"{field} contains characters no barcode has"
    return field, f"{field} is not valid here"
