"""The README's pushes from the ILS, run as the ILS runs them, against Holdshelf on a loopback
port: Evergreen's action-trigger templates through the CallHTTP reactor's own steps (Template
Toolkit, Config::General, LWP: tests/helpers/evergreen_callhttp.pl), and the Koha plugin
itself, its hooks called with the parameters Koha passes (tests/helpers/koha_plugin.pl)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_no_patron_data

ROOT = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).parent / "helpers"
PERL_MODULES = ("Template", "Config::General", "LWP::UserAgent", "JSON::PP", "Modern::Perl")
REQUIRE = os.environ.get("HOLDSHELF_TEST_REQUIRE_PERL") == "1"
PLACEHOLDERS = ("https://holdshelf.library.example.org", "hs_THE_INTEGRATION_TOKEN")
KOHA_CLASS = "Koha::Plugin::Org::Example::Holdshelf"
ITEM = "39010001234567"


def _perl_missing() -> str | None:
    loads = ["perl", *(f"-M{module}" for module in PERL_MODULES), "-e", "1"]
    try:
        found = subprocess.run(loads, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return "perl is not installed"
    if found.returncode != 0:
        packages = "libtemplate-perl libconfig-general-perl libmodern-perl-perl libwww-perl"
        first = found.stderr.splitlines()[0] if found.stderr else "perl failed"
        return f"the ILS side's Perl modules are missing (apt-get install {packages}): {first}"
    return None


@pytest.fixture(scope="module")
def perl() -> None:
    reason = _perl_missing()
    if reason:
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def server(app, perl) -> Iterator[str]:
    """The app on a free loopback port, stopped cleanly after the test."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=30)


@pytest.fixture
def token(app) -> str:
    return app.extensions["holdshelf"].integrations.create_token("ils-push", [])


def readme_block(name: str) -> str:
    """The code between <!-- name --> and <!-- /name --> in README.md, without its fences."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name} -->\n```\w*\n(.*?)```\n<!-- /{name} -->", text, re.S)
    assert found, f"README.md has no {name} block"
    return found.group(1)


def run_perl(script: str, payload: dict[str, Any], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["perl", str(HELPERS / script), *args],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def counts(app, event: str) -> dict[str, int]:
    days = app.extensions["holdshelf"].service.stats()
    return {d.branch: sum(d.counts[event].values()) for d in days if event in d.counts}


# -- Evergreen: the action-trigger templates through the CallHTTP reactor ----------------------


def evergreen_templates(server: str, token: str) -> dict[str, str]:
    """The README's three templates, for hold.available, checkout and the cancel hooks, with
    this server's address and token in place of the placeholders."""
    sql = readme_block("evergreen-recipe")
    templates = re.findall(r"\$TT\$\n(.*?)\$TT\$", sql, re.S)
    assert len(templates) == 3
    hooks = ("hold.available", "checkout", "hold_request.cancel.*")
    for hook in ("'hold.available'", "'checkout'", "'hold_request.cancel.staff'"):
        assert hook in sql
    url, secret = PLACEHOLDERS
    return {
        hook: template.replace(url, server).replace(secret, token)
        for hook, template in zip(hooks, templates, strict=True)
    }


def call_http(template: str, target: dict[str, Any]) -> dict[str, Any]:
    return run_perl("evergreen_callhttp.pl", {"template": template, "target": target})


def on_the_shelf(patron, item: str = ITEM, branch: str = "MAIN", **fields: Any) -> dict:
    """An action.hold_request as the environment (current_copy, pickup_lib, usr.card)
    fleshes it, once the item is on the holds shelf."""
    return {
        "id": 7001,
        "current_copy": {"id": 51, "barcode": item},
        "usr": {"id": 9, "card": {"id": 12, "barcode": patron.card}},
        "pickup_lib": {"id": 4, "shortname": branch},
        "capture_time": "2026-11-23T09:15:02-0600",
        "shelf_time": "2026-11-23T09:15:02-0600",
        "shelf_expire_time": "2026-12-01T23:59:59-0600",
        **fields,
    }


def test_evergreen_registers_a_hold_on_the_shelf(app, server, token, patrons) -> None:
    service = app.extensions["holdshelf"].service
    templates = evergreen_templates(server, token)
    result = call_http(templates["hold.available"], on_the_shelf(patrons[0], branch="main"))
    assert result["sent"] and result["status"] == 201, result
    request = result["request"]
    assert (request["method"], request["uri"]) == ("POST", f"{server}/api/v1/holds")
    assert request["headers"]["User-Agent"] == "EvergreenReactor/1.0"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == f"Bearer {token}"
    assert json.loads(request["content"]) == {
        "item_barcode": ITEM,
        "patron_card": patrons[0].card,
        "branch": "main",
        "pickup_by": "2026-12-01",
        "print": "on-scan",
    }
    answer = json.loads(result["body"])
    assert answer["branch"] == "MAIN" and answer["awaiting_scan"] is True
    assert answer["pickup_by"] == "2026-12-01"
    assert_no_patron_data(result["body"], patrons)  # Evergreen keeps the answer as output
    # the clerk's scan of the item prints its slip
    assert [e.awaits_scan for e in service.shelf("MAIN")] == [True]
    assert service.print_registered("MAIN", ITEM) is not None
    assert [e.awaits_scan for e in service.shelf("MAIN")] == [False]


def test_evergreen_checkout_records_the_pickup(app, server, token, patrons) -> None:
    templates = evergreen_templates(server, token)
    shelved = on_the_shelf(patrons[0], shelf_expire_time=None)  # no expiry: the branch's rule
    registered = call_http(templates["hold.available"], shelved)
    assert "pickup_by" not in json.loads(registered["request"]["content"])
    assert json.loads(registered["body"])["pickup_by"] == "2026-11-30"
    circulation = {"id": 300, "target_copy": {"barcode": ITEM}, "circ_lib": {"shortname": "MAIN"}}
    picked = call_http(templates["checkout"], circulation)
    assert picked["status"] == 200, picked
    assert picked["request"]["uri"].endswith("/api/v1/pickups")
    assert json.loads(picked["request"]["content"]) == {"item_barcode": ITEM}
    assert app.extensions["holdshelf"].service.shelf() == []
    assert counts(app, "picked_up") == {"MAIN": 1}
    again = call_http(templates["checkout"], circulation)  # any later checkout of the item
    assert again["status"] == 404
    assert json.loads(again["body"])["type"] == "urn:holdshelf:problem:not-found"


def test_evergreen_cancels_a_hold_that_was_on_the_shelf(app, server, token, patrons) -> None:
    templates = evergreen_templates(server, token)
    cancel = templates["hold_request.cancel.*"]
    call_http(templates["hold.available"], on_the_shelf(patrons[0]))
    call_http(templates["hold.available"], on_the_shelf(patrons[1], "I2", branch="EAST"))
    done = call_http(cancel, on_the_shelf(patrons[0]))
    assert done["status"] == 200, done
    assert done["request"]["uri"].endswith("/api/v1/cancellations")
    assert json.loads(done["request"]["content"]) == {"item_barcode": ITEM, "branch": "MAIN"}
    assert patrons[0].card not in done["request"]["content"]
    assert [e.branch for e in app.extensions["holdshelf"].service.shelf()] == ["EAST"]
    assert counts(app, "cancelled") == {"MAIN": 1}
    assert call_http(cancel, on_the_shelf(patrons[0]))["status"] == 404  # a second cancel
    # a hold cancelled before it reached the shelf, or before it had an item: no request
    assert call_http(cancel, on_the_shelf(patrons[1], "I2", shelf_time=None)) == {"sent": False}
    assert call_http(cancel, on_the_shelf(patrons[1], current_copy=None)) == {"sent": False}
    assert len(app.extensions["holdshelf"].service.shelf()) == 1


def test_evergreen_barcodes_with_quotes_and_backslashes_arrive_whole(
    app, server, token, patrons
) -> None:
    odd = '39"01\\23#4$5'
    templates = evergreen_templates(server, token)
    result = call_http(templates["hold.available"], on_the_shelf(patrons[0], odd))
    assert result["status"] == 201, result
    assert json.loads(result["request"]["content"])["item_barcode"] == odd
    assert app.extensions["holdshelf"].service.print_registered("MAIN", odd) is not None
    # The usual JSON escape does not survive Config::General: why the templates use \u0022.
    usual = templates["checkout"].replace('"[% text(target.target_copy.barcode) %]"', '"39\\"01"')
    broken = call_http(usual, {"target_copy": {}})
    assert broken["request"]["content"] == '{"item_barcode": "39"01"}'
    assert broken["status"] == 400


# -- Koha: the plugin, its hooks called as Koha calls them --------------------------------------


def koha_hold(who, item: str | None = ITEM, branch: str = "MAIN", **fields: Any) -> dict:
    """A Koha::Hold (or the Koha::Old::Hold of fill and cancel) as far as the plugin reads it."""
    return {
        "item": {"barcode": item} if item else None,
        "patron": {"cardnumber": who.card},
        "branchcode": branch,
        "expirationdate": "2026-12-01",
        **fields,
    }


def hold_action(action: str, hold: dict) -> dict:
    return {"hook": "after_hold_action", "action": action, "hold": hold}


def checkout(item: str = ITEM) -> dict:
    return {
        "hook": "after_circ_action",
        "action": "checkout",
        "type": "issue",
        "checkout": {"item": {"barcode": item}, "branchcode": "MAIN"},
    }


@pytest.fixture
def koha(tmp_path: Path, server: str, token: str):
    """Runs the README's plugin on a list of hook calls; returns what it sent and warned."""
    module = tmp_path / "plugins" / (KOHA_CLASS.replace("::", "/") + ".pm")
    module.parent.mkdir(parents=True)
    module.write_text(readme_block("koha-plugin"), encoding="utf-8")
    data = {"base_url": server, "token": token}

    def run(*calls: dict) -> dict[str, Any]:
        payload = {"class": KOHA_CLASS, "data": data, "calls": list(calls)}
        return run_perl("koha_plugin.pl", payload, str(module.parents[4]))

    run.data = data
    return run


def bodies(result: dict[str, Any]) -> list[tuple[str, int, dict]]:
    return [
        (e["uri"].rsplit("/api/v1", 1)[1], e["status"], json.loads(e["content"]))
        for e in result["exchanges"]
    ]


def test_koha_waiting_registers_and_fill_then_checkout_record_the_pickup(
    app, koha, token, patrons
) -> None:
    service = app.extensions["holdshelf"].service
    waiting = koha(hold_action("waiting", koha_hold(patrons[0])))
    assert bodies(waiting) == [
        (
            "/holds",
            201,
            {
                "item_barcode": ITEM,
                "branch": "MAIN",
                "patron_card": patrons[0].card,
                "print": "on-scan",
                "pickup_by": "2026-12-01",
            },
        )
    ]
    (sent,) = waiting["exchanges"]
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["Authorization"] == f"Bearer {token}"
    assert_no_patron_data(sent["body"], patrons)
    assert [e.awaits_scan for e in service.shelf("MAIN")] == [True]
    # a checkout of the hold: Koha fills it, then reports the checkout; the second finds it ended
    done = koha(hold_action("fill", koha_hold(patrons[0])), checkout())
    assert bodies(done) == [
        ("/pickups", 200, {"item_barcode": ITEM, "branch": "MAIN"}),
        ("/pickups", 404, {"item_barcode": ITEM}),
    ]
    assert done["warnings"] == [] and waiting["warnings"] == []
    assert service.shelf() == [] and counts(app, "picked_up") == {"MAIN": 1}


def test_koha_cancel_cancels_and_a_repeat_is_quiet(app, koha, patrons) -> None:
    result = koha(
        hold_action("waiting", koha_hold(patrons[0], expirationdate=None)),
        hold_action("waiting", koha_hold(patrons[1], "I2", branch="EAST")),
        hold_action("cancel", koha_hold(patrons[0])),
        hold_action("cancel", koha_hold(patrons[0])),
    )
    sent = bodies(result)
    assert "pickup_by" not in sent[0][2]  # no expiration date: the branch's rule
    assert [(path, status) for path, status, _ in sent] == [
        ("/holds", 201),
        ("/holds", 201),
        ("/cancellations", 200),
        ("/cancellations", 404),
    ]
    assert sent[2][2] == {"item_barcode": ITEM, "branch": "MAIN"}
    assert result["warnings"] == []
    assert [e.branch for e in app.extensions["holdshelf"].service.shelf()] == ["EAST"]
    assert counts(app, "cancelled") == {"MAIN": 1}


def test_koha_sends_nothing_for_what_a_shelf_does_not_need(app, koha, patrons) -> None:
    result = koha(
        hold_action("waiting", koha_hold(patrons[0], item=None)),  # record-level, no item yet
        hold_action("waiting", koha_hold(patrons[0], patron={"cardnumber": None})),
        *(hold_action(a, koha_hold(patrons[0])) for a in ("place", "transfer", "suspend")),
        {**checkout(), "action": "checkin"},
    )
    assert result == {"exchanges": [], "warnings": []}
    assert app.extensions["holdshelf"].service.shelf() == []


def test_koha_warns_of_a_refusal_without_stopping(app, koha, patrons) -> None:
    koha.data["token"] = "hs_revoked"
    result = koha(
        hold_action("waiting", koha_hold(patrons[0])),
        hold_action("waiting", koha_hold(patrons[1], "I2")),
    )
    assert [e["status"] for e in result["exchanges"]] == [401, 401]
    assert result["warnings"] == ["Holdshelf holds: 401 UNAUTHORIZED\n"] * 2
    assert app.extensions["holdshelf"].service.shelf() == []
