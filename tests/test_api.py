"""The holds API: every endpoint's success and error paths, idempotency under concurrency, the
OpenAPI document against the running app, and no patron data in any response or log."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from holdshelf.integrations import Integrations
from holdshelf.web.api import OPENAPI_FILE
from tests.conftest import assert_no_patron_data

PROBLEM = "application/problem+json"


class Api:
    def __init__(self, client, token: str) -> None:
        self.client, self.token = client, token
        self.bodies: list[str] = []

    def headers(self, extra: dict | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def post(self, path: str, body=None, *, headers: dict | None = None, **kwargs):
        if body is not None:
            kwargs["json"] = body
        response = self.client.post(f"/api/v1{path}", headers=self.headers(headers), **kwargs)
        self.bodies.append(response.get_data(as_text=True))
        return response

    def get(self, path: str, **kwargs):
        response = self.client.get(f"/api/v1{path}", headers=self.headers(), **kwargs)
        self.bodies.append(response.get_data(as_text=True))
        return response


def integrations(app) -> Integrations:
    return app.extensions["holdshelf"].integrations


@pytest.fixture
def api(app) -> Api:
    """A token for every branch."""
    return Api(app.test_client(), integrations(app).create_token("ils", []))


@pytest.fixture
def main_api(app) -> Api:
    """A token limited to MAIN."""
    return Api(app.test_client(), integrations(app).create_token("main-only", ["main"]))


def problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["type"] == f"urn:holdshelf:problem:{kind}"
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def hold(patron, item: str = "39010001234567", **extra) -> dict:
    return {"item_barcode": item, "patron_card": patron.card, **extra}


# -- POST /holds ---------------------------------------------------------------------------------


def test_make_a_hold_ready(api, app, patrons) -> None:
    created = api.post("/holds", hold(patrons[0], branch="MAIN"))
    assert created.status_code == 201
    body = created.get_json()
    assert set(body) == {
        "code",
        "section",
        "branch",
        "branch_name",
        "pickup_by",
        "mode",
        "move_to_desk",
        "awaiting_scan",
        "print_status",
    }
    assert body["branch"] == "MAIN" and body["mode"] == "shelf"
    assert body["pickup_by"] == "2026-11-30"
    assert body["print_status"] == "queued for the printer"
    service = app.extensions["holdshelf"].service
    assert [e.code.display for e in service.shelf()] == [body["code"]]
    again = api.post("/holds", hold(patrons[0], branch="main"))
    assert again.status_code == 200
    assert again.get_json()["code"] == body["code"]  # a retry: the same hold, not a new code
    assert len(service.shelf()) == 1


def test_hold_with_contact_date_and_title(api, app, patrons) -> None:
    response = api.post(
        "/holds", hold(patrons[0], branch="EAST", pickup_by="2026-12-24", title="Middlemarch")
    )
    assert response.status_code == 201
    assert response.get_json()["pickup_by"] == "2026-12-24"
    problem(
        api.post("/holds", hold(patrons[1], "I2", branch="EAST", email=patrons[1].email)),
        400,
        "invalid-input",
    )  # email notices are not set up in this instance


def test_the_same_item_for_someone_else_is_a_conflict(api, patrons) -> None:
    api.post("/holds", hold(patrons[0], branch="MAIN"))
    body = problem(api.post("/holds", hold(patrons[1], branch="MAIN")), 409, "conflict")
    assert "already on the hold shelf for another patron at MAIN" in body["detail"]
    problem(api.post("/holds", hold(patrons[0], branch="EAST")), 409, "conflict")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"patron_card": "21010009"}, "item_barcode"),
        ({"item_barcode": "I1"}, "patron_card"),
        ({"item_barcode": "", "patron_card": "2101"}, "item_barcode"),
        ({"item_barcode": "I\u0007", "patron_card": "2101"}, "item_barcode"),
        ({"item_barcode": "I" * 65, "patron_card": "2101"}, "item_barcode"),
        ({"item_barcode": "I1", "patron_card": "\x00"}, "patron_card"),
        ({"item_barcode": "I1", "patron_card": "2101", "pickup_by": "tomorrow"}, "pickup_by"),
        ({"item_barcode": "I1", "patron_card": "2101", "pickup_by": "2020-01-01"}, "pickup_by"),
        ({"item_barcode": "I1", "patron_card": "2101", "patron_name": "Ana"}, "patron_name"),
        ({"item_barcode": 17, "patron_card": "2101"}, "item_barcode"),
        ({"item_barcode": "I1", "patron_card": "2101", "branch": "MOON"}, "branch"),
        ({"item_barcode": "I1", "patron_card": "2101", "sms": "12"}, "sms"),
        ({"item_barcode": "I1", "patron_card": "2101", "pickup_by": "2026-W49-1"}, "pickup_by"),
        ({"item_barcode": "I1", "patron_card": "2101", "pickup_by": "2030-01-01"}, "pickup_by"),
        ({"item_barcode": "I1", "patron_card": "- -"}, "patron_card"),
        # well-formed contacts, but no notices are set up in this instance
        ({"item_barcode": "I1", "patron_card": "2101", "email": "ana@example.org"}, "email"),
        ({"item_barcode": "I1", "patron_card": "2101", "sms": "+15551234567"}, "sms"),
    ],
)
def test_malformed_input_names_the_field(api, app, body: dict, field: str) -> None:
    body = {"branch": "MAIN", **body}
    answer = problem(api.post("/holds", body), 400, "invalid-input")
    assert answer["field"] == field
    assert app.extensions["holdshelf"].service.shelf() == []


def test_body_must_be_a_json_object(api) -> None:
    problem(
        api.post("/holds", data="not json", content_type="application/json"), 400, "invalid-input"
    )
    problem(api.post("/holds", [1, 2]), 400, "invalid-input")
    for deep in ("[" * 1000 + "]" * 1000, '{"item_barcode": ' + "[" * 3000 + "]" * 3000 + "}"):
        nested = api.post("/holds", data=deep, content_type="application/json")
        problem(nested, 400, "invalid-input")  # not a RecursionError and a 500
    problem(
        api.post("/holds", data=b"\xff\xfe", content_type="application/json"), 400, "invalid-input"
    )
    problem(
        api.post("/holds", data="item_barcode=1", content_type="text/plain"),
        415,
        "unsupported-media-type",
    )
    problem(
        api.post("/holds", data="x" * 100_000, content_type="application/json"), 413, "too-large"
    )


def test_tokens(app, api, main_api, patrons) -> None:
    anonymous = app.test_client()
    response = anonymous.post("/api/v1/holds", json=hold(patrons[0]))
    problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    problem(Api(anonymous, "hs_not-a-token").get("/holds"), 401, "unauthorized")
    problem(
        anonymous.get("/api/v1/holds", headers={"Authorization": "Basic eDp5"}), 401, "unauthorized"
    )
    # a token limited to MAIN: its branch by default, no other branch
    assert main_api.post("/holds", hold(patrons[0])).get_json()["branch"] == "MAIN"
    problem(main_api.post("/holds", hold(patrons[1], "I2", branch="EAST")), 403, "forbidden-branch")
    problem(api.post("/holds", hold(patrons[1], "I2")), 400, "invalid-input")  # which branch?
    integrations(app).revoke("main-only")
    problem(main_api.get("/holds"), 401, "unauthorized")


def test_rate_limit(app, api) -> None:
    app.extensions["holdshelf"].api_limiter.limit = 3
    for _ in range(3):
        assert api.get("/holds").status_code == 200
    response = api.get("/holds")
    problem(response, 429, "rate-limited")
    assert response.headers["Retry-After"] == "60"


# -- idempotency ---------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer(api, app, patrons) -> None:
    key = {"Idempotency-Key": "ils-request-0001"}
    first = api.post("/holds", hold(patrons[0], branch="MAIN"), headers=key)
    again = api.post("/holds", hold(patrons[0], branch="MAIN"), headers=key)
    assert (first.status_code, again.status_code) == (201, 201)  # the very same answer
    assert first.get_json() == again.get_json()
    other = api.post("/holds", hold(patrons[1], "I2", branch="MAIN"), headers=key)
    problem(other, 422, "idempotency-key-reused")
    refused = api.post(
        "/holds", hold(patrons[2], "", branch="MAIN"), headers={"Idempotency-Key": "k2"}
    )
    problem(refused, 400, "invalid-input")
    fixed = api.post(
        "/holds", hold(patrons[2], "I3", branch="MAIN"), headers={"Idempotency-Key": "k2"}
    )
    assert fixed.status_code == 201  # a failed request leaves its key free for the retry
    assert len(app.extensions["holdshelf"].service.shelf()) == 2


def test_concurrent_requests_with_one_key_make_one_hold(app, patrons) -> None:
    token = integrations(app).create_token("busy-ils", [])
    results: list[int] = []
    barrier = threading.Barrier(6)

    def send() -> None:
        client = Api(app.test_client(), token)
        barrier.wait()
        response = client.post(
            "/holds", hold(patrons[0], branch="MAIN"), headers={"Idempotency-Key": "same-key"}
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6
    assert set(results) <= {200, 201, 409}
    assert results.count(201) >= 1
    assert len(app.extensions["holdshelf"].service.shelf()) == 1


# -- pickups, cancellations, lists, numbers ---------------------------------------------------


def test_pickup_by_code_and_item(api, main_api, patrons) -> None:
    code = api.post("/holds", hold(patrons[0], "I1", branch="MAIN")).get_json()["code"]
    other = api.post("/holds", hold(patrons[1], "I2", branch="MAIN")).get_json()["code"]
    east = api.post("/holds", hold(patrons[2], "I3", branch="EAST")).get_json()["code"]
    done = api.post(f"/holds/{code.lower()}/pickup")
    assert done.status_code == 200 and done.get_json()["code"] == code
    problem(api.post(f"/holds/{code}/pickup"), 409, "conflict")
    problem(api.post("/holds/ZZZZZZ/pickup"), 400, "invalid-input")
    problem(main_api.post(f"/holds/{east}/pickup"), 404, "not-found")  # not its branch
    problem(main_api.post(f"/holds/{east}/pickup?branch=EAST"), 403, "forbidden-branch")
    by_item = api.post("/pickups", {"item_barcode": "I2"})
    assert by_item.get_json()["code"] == other
    problem(api.post("/pickups", {"item_barcode": "I2"}), 404, "not-found")
    problem(api.post("/pickups", {}), 400, "invalid-input")
    problem(
        api.post("/pickups", {"item_barcode": "I3", "branch": "EAST", "x": 1}), 400, "invalid-input"
    )


def test_cancel(api, patrons) -> None:
    code = api.post("/holds", hold(patrons[0], branch="MAIN")).get_json()["code"]
    assert api.post(f"/holds/{code}/cancel").status_code == 200
    problem(api.post(f"/holds/{code}/cancel"), 409, "conflict")
    problem(api.post("/holds/K7Q4MX/cancel?branch=NOWHERE"), 400, "invalid-input")


def test_cancel_by_item(api, app, patrons) -> None:
    service = app.extensions["holdshelf"].service
    code = api.post("/holds", hold(patrons[0], "I1", branch="MAIN")).get_json()["code"]
    kept = api.post("/holds", hold(patrons[1], "I2", branch="MAIN")).get_json()["code"]
    done = api.post("/cancellations", {"item_barcode": "I1", "branch": "main"})
    assert done.status_code == 200 and done.mimetype == "application/json"
    assert done.get_json()["code"] == code and done.get_json()["branch"] == "MAIN"
    assert [e.code.display for e in service.shelf()] == [kept]  # only that item's hold ended
    assert service.stats()[0].counts["cancelled"] == {"shelf": 1}
    # the ILS retries (its first answer was lost): the hold has ended, nothing more to do
    again = problem(api.post("/cancellations", {"item_barcode": "I1"}), 404, "not-found")
    assert again["detail"] == "no active hold for item I1"
    problem(api.post(f"/holds/{code}/pickup"), 409, "conflict")  # cancelled, not picked up
    api.post("/pickups", {"item_barcode": "I2"})
    problem(api.post("/cancellations", {"item_barcode": "I2"}), 404, "not-found")  # collected
    problem(api.post("/cancellations", {"item_barcode": "NEVER"}), 404, "not-found")


def test_cancel_by_item_keeps_to_the_tokens_branches(api, main_api, app, patrons) -> None:
    service = app.extensions["holdshelf"].service
    api.post("/holds", hold(patrons[0], "I1", branch="MAIN"))
    east = api.post("/holds", hold(patrons[1], "I2", branch="EAST")).get_json()["code"]
    # a token limited to MAIN: its branch by default, no other branch (as for pickups)
    assert main_api.post("/cancellations", {"item_barcode": "I1"}).get_json()["branch"] == "MAIN"
    problem(main_api.post("/cancellations", {"item_barcode": "I2"}), 404, "not-found")
    body = {"item_barcode": "I2", "branch": "EAST"}
    problem(main_api.post("/cancellations", body), 403, "forbidden-branch")
    problem(api.post("/cancellations", {**body, "branch": "MAIN"}), 404, "not-found")
    assert [e.code.display for e in service.shelf()] == [east]  # refused: still on the shelf
    assert api.post("/cancellations", {"item_barcode": "I2"}).get_json()["code"] == east
    assert service.shelf() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "item_barcode"),
        ({"item_barcode": ""}, "item_barcode"),
        ({"item_barcode": "   "}, "item_barcode"),
        ({"item_barcode": "I\u0007"}, "item_barcode"),
        ({"item_barcode": "I" * 65}, "item_barcode"),
        ({"item_barcode": 17}, "item_barcode"),
        ({"item_barcode": "I1", "branch": "MOON"}, "branch"),
        ({"item_barcode": "I1", "patron_card": "21010009"}, "patron_card"),
        ({"item_barcode": "I1", "reason": "patron request"}, "reason"),
    ],
)
def test_cancellation_bodies_are_checked(api, app, patrons, body: dict, field: str) -> None:
    api.post("/holds", hold(patrons[0], "I1", branch="MAIN"))
    answer = problem(api.post("/cancellations", body), 400, "invalid-input")
    assert answer["field"] == field
    assert len(app.extensions["holdshelf"].service.shelf()) == 1


def test_cancellations_need_a_token_json_and_keep_the_rate_limit(api, app, patrons) -> None:
    api.post("/holds", hold(patrons[0], "I1", branch="MAIN"))
    anonymous = app.test_client().post("/api/v1/cancellations", json={"item_barcode": "I1"})
    problem(anonymous, 401, "unauthorized")
    as_form = api.post("/cancellations", data="item_barcode=I1", content_type="text/plain")
    problem(as_form, 415, "unsupported-media-type")
    problem(api.post("/cancellations", [1]), 400, "invalid-input")
    assert len(app.extensions["holdshelf"].service.shelf()) == 1
    app.extensions["holdshelf"].api_limiter.limit = 1
    problem(api.post("/cancellations", {"item_barcode": "I1"}), 429, "rate-limited")
    assert len(app.extensions["holdshelf"].service.shelf()) == 1


def test_a_registered_hold_cancelled_before_its_scan_never_prints(api, app, patrons) -> None:
    service = app.extensions["holdshelf"].service
    made = api.post("/holds", hold(patrons[0], "I1", branch="MAIN", print="on-scan"))
    assert made.get_json()["awaiting_scan"] is True
    assert api.post("/cancellations", {"item_barcode": "I1"}).status_code == 200
    assert service.print_registered("MAIN", "I1") is None  # the scan finds nothing to print
    assert service.shelf() == []


def test_list_holds_of_the_tokens_branches(api, main_api, patrons) -> None:
    api.post("/holds", hold(patrons[0], "I1", branch="MAIN"))
    api.post("/holds", hold(patrons[1], "I2", branch="EAST"))
    everything = api.get("/holds").get_json()["holds"]
    assert [h["branch"] for h in everything] == ["EAST", "MAIN"]
    assert [h["branch"] for h in main_api.get("/holds").get_json()["holds"]] == ["MAIN"]
    assert [h["branch"] for h in api.get("/holds?branch=EAST").get_json()["holds"]] == ["EAST"]
    problem(main_api.get("/holds?branch=EAST"), 403, "forbidden-branch")


def test_stats(api, main_api, patrons) -> None:
    api.post("/holds", hold(patrons[0], "I1", branch="MAIN"))
    api.post("/holds", hold(patrons[1], "I2", branch="EAST"))
    body = api.get("/stats").get_json()
    assert {d["branch"]: d["ready"] for d in body["days"]} == {
        "MAIN": {"shelf": 1},
        "EAST": {"shelf": 1},
    }
    assert [u["branch"] for u in main_api.get("/stats").get_json()["branches"]] == ["MAIN"]
    assert api.get("/stats?since=2030-01-01").get_json()["days"] == []
    problem(api.get("/stats?since=yesterday"), 400, "invalid-input")
    assert problem(api.get("/stats?since="), 400, "invalid-input")["field"] == "since"


def test_no_html_and_no_traceback_under_api(api, app, monkeypatch) -> None:
    problem(api.get("/no/such/thing"), 404, "not-found")
    for path in ("/api", "/api/", "/api/v2/holds"):
        assert api.client.get(path).content_type == "application/problem+json", path
    problem(api.client.delete("/api/v1/holds", headers=api.headers()), 405, "method-not-allowed")
    monkeypatch.setattr(app.extensions["holdshelf"].service, "shelf_page", lambda *a, **k: 1 / 0)
    body = problem(api.get("/holds"), 500, "internal")
    assert "ZeroDivisionError" not in json.dumps(body)


# -- the OpenAPI document ------------------------------------------------------------------------


def test_openapi_document_is_served_valid_and_matches_the_routes(app) -> None:
    from openapi_spec_validator import validate

    served = app.test_client().get("/api/v1/openapi.json")
    assert served.status_code == 200
    document = served.get_json()
    assert document == json.loads(OPENAPI_FILE.read_text())
    validate(document)
    assert document["openapi"].startswith("3.1")
    documented = {
        (path.replace("{code}", "<code>").replace("{lease}", "<lease_id>"), method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    routed = {
        (rule.rule.removeprefix("/api/v1"), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(("api.", "agents."))
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == routed


# -- privacy -------------------------------------------------------------------------------------


def test_no_patron_data_in_responses_logs_or_exports(api, app, patrons, caplog, tmp_path) -> None:
    from holdshelf.importer import export_holds, export_stats

    caplog.set_level(logging.DEBUG)
    for n, patron in enumerate(patrons[:10]):
        api.post(
            "/holds", hold(patron, f"I{n}", branch="MAIN"), headers={"Idempotency-Key": f"k{n}"}
        )
        api.post("/holds", hold(patron, f"I{n}", branch="MAIN"))  # a retry
        api.post("/holds", hold(patron, f"I{n}", branch="MAIN", email=patron.email))  # refused
    api.get("/holds")
    api.get("/stats")
    api.post("/pickups", {"item_barcode": "I1"})
    api.post("/cancellations", {"item_barcode": "I2"})
    api.post("/cancellations", {"item_barcode": "I2"})  # a retry: 404, naming the item only
    service = app.extensions["holdshelf"].service
    exports = export_holds(service.shelf(), "csv") + export_holds(service.shelf(), "json")
    exports += export_stats(service.stats(), "csv") + export_stats(service.stats(), "json")
    logs = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert_no_patron_data("\n".join(api.bodies) + exports + logs, patrons)
    assert len(service.shelf()) == 8 and ",MAIN," in exports  # the check above saw real data


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app, tmp_path: Path) -> None:
    """Property-based requests from the OpenAPI document (bounded for CI)."""
    import schemathesis

    token = integrations(app).create_token("fuzzer", [])
    app.extensions["holdshelf"].api_limiter.limit = 1_000_000
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6  # every operation (the document itself may be left out)
    for operation in operations:
        fuzz(operation, token, failures)
    assert failures == []


def fuzz(operation, token: str, failures: list[str]) -> None:
    from hypothesis import HealthCheck, given, settings
    from schemathesis import checks

    # No server error, and every response as documented: status, content type, schema,
    # headers. (Not "positive data acceptance": a schema-valid request can still be refused on
    # its meaning, e.g. a pickup-by date in the past, and gets a documented 400.)
    chosen = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
        checks.response_headers_conformance,
    ]

    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy())
    def run(case) -> None:
        if isinstance(case.body, dict) and "branch" in case.body:
            # Steer some requests to a real branch, so success responses are checked too.
            case.body["branch"] = "MAIN"
            for unset in ("pickup_by", "email", "sms"):
                case.body.pop(unset, None)
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        try:
            case.validate_response(response, checks=chosen)
        except Exception as exc:  # collected, reported by the caller
            failures.append(f"{operation.label}: {str(exc).splitlines()[0]}")

    run()


def test_a_method_not_allowed_says_which_are(api) -> None:
    refused = api.client.put("/api/v1/holds", headers=api.headers())
    problem(refused, 405, "method-not-allowed")
    assert set(refused.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_the_schema_refuses_what_the_api_refuses(app) -> None:
    """Barcodes the API refuses for their characters are outside the documented schema too."""
    import jsonschema

    document = json.loads(OPENAPI_FILE.read_text())
    barcode = document["components"]["schemas"]["HoldRequest"]["properties"]["item_barcode"]
    for refused in ("3901\x07", "   ", "\t"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(refused, barcode)
    jsonschema.validate("39010001234560", barcode)
    jsonschema.validate("K 7", barcode)


def test_problems_follow_the_errors_type(api, app, monkeypatch, patrons) -> None:
    from holdshelf.errors import ConfigError

    unknown = problem(api.post("/holds", hold(patrons[0], branch="NOPE")), 400, "invalid-input")
    assert unknown["field"] == "branch" and "unknown branch 'NOPE'" in unknown["detail"]

    def misconfigured(*_args, **_kwargs):
        raise ConfigError("printer front-desk: no such printer")

    monkeypatch.setattr(app.extensions["holdshelf"].service, "hold_request", misconfigured)
    # The server's own configuration is not the client's bad request.
    problem(api.post("/holds", hold(patrons[0], branch="MAIN")), 503, "misconfigured")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"email": None}, "email", "email must be a string"),
        ({"title": "T" * 5000}, "title", "title is longer than 1000 characters"),
        ({"item_barcode": "   "}, "item_barcode", "item_barcode is required"),
        ({"shoe_size": "9"}, "shoe_size", "unknown field 'shoe_size'"),
    ],
)
def test_bodies_are_checked_against_the_served_document(api, app, patrons, body, field, words):
    answer = problem(api.post("/holds", {**hold(patrons[0]), "branch": "MAIN", **body}), 400,
                     "invalid-input")  # fmt: skip
    assert (answer["field"], answer["detail"]) == (field, words)
    assert app.extensions["holdshelf"].service.shelf() == []
    assert patrons[0].card not in json.dumps(answer)


def test_list_holds_in_pages_returns_every_hold_exactly_once(api, main_api, app, patrons) -> None:
    service = app.extensions["holdshelf"].service
    for n, patron in enumerate(patrons[:23]):
        service.ready("MAIN" if n % 3 else "EAST", f"P{n}", patron.card)
    everything = [e.as_dict() for e in service.shelf()]
    assert len(everything) == 23

    def walk(client: Api, query: str, *, end_one_after_first: bool = False) -> list[list[dict]]:
        pages, after = [], None
        while True:
            cursor = f"&after={after}" if after else ""
            response = client.get(f"/holds?{query}{cursor}")
            assert response.status_code == 200, response.get_data(as_text=True)
            body = response.get_json()
            pages.append(body["holds"])
            if end_one_after_first and len(pages) == 1:  # a hold ends between two pages
                service.pickup(body["holds"][-1]["code"], branch_id=body["holds"][-1]["branch"])
            after = body["next"]
            if after is None:
                assert "Link" not in response.headers
                return pages
            assert f"after={after}" in response.headers["Link"]
            assert response.headers["Link"].endswith('>; rel="next"')

    pages = walk(api, "limit=5")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [h for p in pages for h in p] == everything  # each once, in shelving order
    assert walk(api, "limit=23") == [everything]
    assert walk(api, "") == [everything]  # the default page holds them all
    main_only = [h for h in everything if h["branch"] == "MAIN"]
    assert [h for p in walk(main_api, "limit=4") for h in p] == main_only
    assert [h for p in walk(api, "limit=4&branch=MAIN") for h in p] == main_only
    ended_meanwhile = [h for p in walk(api, "limit=6", end_one_after_first=True) for h in p]
    assert ended_meanwhile == everything  # the ended one was on the first page: none skipped
    for bad in ("limit=0", "limit=1001", "limit=-1", "limit=x", "limit="):
        assert problem(api.get(f"/holds?{bad}"), 400, "invalid-input")["field"] == "limit"
    for bad in ("after=", "after=%21%21", "after=bm9uZXdsaW5l"):
        assert problem(api.get(f"/holds?{bad}"), 400, "invalid-input")["field"] == "after"
    assert len(api.get("/holds?limit=1000").get_json()["holds"]) == 22
