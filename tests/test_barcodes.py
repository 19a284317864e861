"""Barcode rules and swapped scans: a card scanned as the item is refused everywhere (desk, CLI,
API, CSV import) before anything is written, with the rules and without them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from holdshelf.domain.barcodes import BarcodeRules, describe_pattern, luhn_valid
from holdshelf.errors import ConfigError, InvalidInput
from holdshelf.importer import import_holds
from holdshelf.settings import load_settings
from holdshelf.storage.models import Hold, Notice, PrintJob
from tests.conftest import assert_no_patron_data, codabar, make_instance, raw_database_bytes
from tests.helpers.cli import Cli
from tests.helpers.web import post

CODABAR = BarcodeRules(r"^2\d{13}$", r"^3\d{13}$", "luhn")
ITEM = codabar("3901000012345")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

rules_on = pytest.mark.barcode_rules


def wrong_check_digit(barcode: str) -> str:
    return barcode[:-1] + str((int(barcode[-1]) + 1) % 10)


def written(service) -> tuple[int, int, int]:
    with service.sessions() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Hold, PrintJob, Notice)
        )


# -- the rules themselves ---------------------------------------------------------------------


def test_luhn_check_digit() -> None:
    assert luhn_valid("79927398713")  # the textbook example
    assert not luhn_valid("79927398710")
    assert luhn_valid(codabar("2101000987654"))
    assert not luhn_valid(wrong_check_digit(codabar("2101000987654")))
    assert not luhn_valid("2101O009876543")  # a letter O is not a digit
    assert not luhn_valid("")


def test_rules_name_the_field_and_what_was_expected() -> None:
    card = codabar("2101000987654")
    assert CODABAR.card(card) == card
    assert CODABAR.item(ITEM) == ITEM
    with pytest.raises(InvalidInput, match="this looks like a patron card, not an item barcode"):
        CODABAR.item(card)
    with pytest.raises(InvalidInput, match="this looks like an item barcode, not a patron card"):
        CODABAR.card(ITEM)
    with pytest.raises(InvalidInput, match="the item barcode should be 14 digits starting with 3"):
        CODABAR.item("39010001")
    with pytest.raises(InvalidInput, match="the patron card has a wrong check digit"):
        CODABAR.card(wrong_check_digit(card))
    assert describe_pattern(r"^[A-Z]{2}\d+$") == r"the form ^[A-Z]{2}\d+$"


def test_nfkc_makes_fullwidth_digits_the_same_card() -> None:
    card = codabar("2101000987654")
    assert CODABAR.card(card.translate(FULLWIDTH)) == card
    assert CODABAR.item(f" {ITEM.translate(FULLWIDTH)} ") == ITEM


def test_no_rules_take_any_barcode() -> None:
    anything = BarcodeRules()
    assert anything.item("X-1") == "X-1"
    assert anything.card("ab 12") == "AB12"
    assert not anything.is_card("21010009876543")


# -- configuration ------------------------------------------------------------------------------


def test_library_rules_with_a_branch_override(tmp_path, database_url) -> None:
    extra = "[branches.EAST.barcodes]\ncard_pattern = '^D\\d{6}$'\ncheck_digit = \"none\"\n"
    instance = make_instance(tmp_path / "i", database_url, barcode_rules=True)
    text = (
        (instance / "holdshelf.toml")
        .read_text()
        .replace(
            '\n[branches.EAST]\nname = "Eastside Branch"\npickup_days = 5\n',
            '\n[branches.EAST]\nname = "Eastside Branch"\npickup_days = 5\n\n' + extra,
        )
    )
    (instance / "holdshelf.toml").write_text(text)
    settings = load_settings(instance, environ={})
    assert settings.barcodes == CODABAR
    assert settings.branches["MAIN"].barcodes == CODABAR
    assert settings.branches["EAST"].barcodes == BarcodeRules(r"^D\d{6}$", r"^3\d{13}$", "none")
    # The environment overrides the library's rules and a branch's own.
    environ = {
        "HOLDSHELF_BARCODES__ITEM_PATTERN": r"^39\d{12}$",
        "HOLDSHELF_BRANCHES__EAST__BARCODES__ITEM_PATTERN": "",
    }
    overridden = load_settings(instance, environ=environ)
    assert overridden.branches["MAIN"].barcodes.item_pattern == r"^39\d{12}$"
    assert overridden.branches["EAST"].barcodes.item_pattern == ""


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("card_pattern = '^2(\\d{13}$'", "barcodes.card_pattern is not a regular expression"),
        ('check_digit = "mod11"', "barcodes.check_digit must be one of none, luhn"),
        ("item_pattern = 3", "barcodes.item_pattern must be a string"),
        ("card_rule = ''", "unknown configuration key 'barcodes.card_rule'"),
    ],
)
def test_bad_rules_are_refused_by_name(tmp_path, database_url, table, message) -> None:
    instance = make_instance(tmp_path / "i", database_url)
    config = instance / "holdshelf.toml"
    config.write_text(config.read_text().replace("\n[barcodes]\n", f"\n[barcodes]\n{table}\n"))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(instance, environ={})


def test_init_writes_the_rules_commented_out_and_the_demo_turns_them_on(tmp_path) -> None:
    from holdshelf.instance import write_config

    write_config(tmp_path / "prod")
    write_config(tmp_path / "demo", demo=True)
    prod = (tmp_path / "prod" / "holdshelf.toml").read_text()
    assert "# card_pattern = '^2\\d{13}$'" in prod
    assert '\n# check_digit = "luhn"' in prod
    demo = (tmp_path / "demo" / "holdshelf.toml").read_text()
    assert "\ncard_pattern = '^2\\d{13}$'" in demo
    assert load_settings(tmp_path / "demo", environ={}).barcodes == CODABAR


# -- the service: nothing is written -------------------------------------------------------------


@rules_on
def test_swapped_scans_are_refused_with_the_rules(service, patrons) -> None:
    card = patrons[0].card
    with pytest.raises(InvalidInput, match="looks like a patron card") as refused:
        service.ready("MAIN", card, ITEM)
    assert refused.value.field == "item_barcode"
    with pytest.raises(InvalidInput, match="looks like an item barcode") as refused:
        service.ready("MAIN", ITEM, ITEM)
    assert refused.value.field == "patron_card"
    assert written(service) == (0, 0, 0)
    assert_no_patron_data(raw_database_bytes(service), patrons)
    assert service.ready("MAIN", ITEM, card).branch == "MAIN"


def test_without_rules_the_card_itself_is_refused_as_an_item(service, patrons) -> None:
    card = patrons[0].card
    with pytest.raises(InvalidInput, match="this is a patron's card") as refused:
        service.ready("MAIN", card, f"{card[:4]} {card[4:]}")  # the same card, spaced
    assert refused.value.field == "item_barcode"
    assert written(service) == (0, 0, 0)


@pytest.mark.parametrize("known_by", ["active hold", "stored choice"])
def test_without_rules_a_known_patrons_card_is_refused_as_an_item(
    service, patrons, known_by
) -> None:
    anna, ben = patrons[0], patrons[1]
    if known_by == "active hold":
        service.ready("MAIN", "ITEM-1", anna.card)
    else:
        service.opt_out(anna.card)
    before = written(service)
    with pytest.raises(InvalidInput, match="this is a patron's card") as refused:
        service.ready("EAST", anna.card.translate(FULLWIDTH), ben.card)
    assert refused.value.field == "item_barcode"
    assert written(service) == before
    assert_no_patron_data(raw_database_bytes(service), patrons)
    # A card nobody is known by is still just a barcode to Holdshelf (nothing to compare).
    assert service.ready("MAIN", patrons[2].card, ben.card).branch == "MAIN"


def test_fullwidth_digits_are_the_same_patron(service, patrons) -> None:
    card = patrons[0].card
    service.opt_out(card.translate(FULLWIDTH))
    assert service.ready("MAIN", "ITEM-1", card).mode.value == "desk"


@rules_on
def test_the_patron_desk_applies_the_card_rule(service) -> None:
    with pytest.raises(InvalidInput, match="looks like an item barcode"):
        service.pseudonym(ITEM, "MAIN")
    with pytest.raises(InvalidInput, match="looks like an item barcode"):
        service.opt_out(ITEM)


# -- every way in: desk, CLI, API, import --------------------------------------------------------


@rules_on
def test_the_desk_refuses_a_swapped_scan(client, service, patrons) -> None:
    page = post(client, "/checkin", {"item": patrons[0].card, "card": ITEM})
    assert page.status_code == 422
    assert "this looks like a patron card, not an item barcode" in page.get_data(as_text=True)
    assert patrons[0].card not in page.get_data(as_text=True)
    assert written(service) == (0, 0, 0)


@rules_on
def test_the_cli_refuses_a_swapped_scan(cli: Cli, patrons) -> None:
    cli.fails(
        "ready", "--branch", "MAIN", "--item", ITEM, "--patron", "-",
        message="this looks like an item barcode, not a patron card",
        stdin=codabar("3901000099999"),
    )  # fmt: skip
    cli.fails(
        "ready", "--branch", "MAIN", "--item", patrons[0].card, "--patron", ITEM,
        message="this looks like a patron card, not an item barcode",
    )  # fmt: skip
    assert cli.ok("shelf", "--json").json == []


@rules_on
def test_the_api_names_the_field(app, service, patrons) -> None:
    from tests.test_api import Api, problem

    api = Api(app.test_client(), app.extensions["holdshelf"].integrations.create_token("ils", []))
    response = api.post(
        "/holds", {"item_barcode": patrons[0].card, "patron_card": ITEM, "branch": "MAIN"}
    )
    body = problem(response, 400, "invalid-input")
    assert body["field"] == "item_barcode"
    assert "looks like a patron card" in body["detail"]
    response = api.post(
        "/holds", {"item_barcode": ITEM, "patron_card": codabar("3901000099999"), "branch": "MAIN"}
    )
    assert problem(response, 400, "invalid-input")["field"] == "patron_card"
    assert written(service) == (0, 0, 0)
    assert_no_patron_data("".join(api.bodies), patrons)


@rules_on
def test_an_import_reports_the_swapped_row(service, patrons, tmp_path) -> None:
    report = tmp_path / "holds.csv"
    report.write_text(
        "item_barcode,patron_card\n"
        f"{ITEM},{patrons[0].card}\n"
        f"{patrons[1].card},{codabar('3901000099999')}\n"
        f"{wrong_check_digit(codabar('3901000012346'))},{patrons[2].card}\n",
        encoding="utf-8",
    )
    result = import_holds(service, report, "MAIN")
    assert len(result.imported) == 1
    assert [line for line, _ in result.bad] == [3, 4]
    assert "looks like a patron card" in result.bad[0][1]
    assert written(service)[0] == 1
    assert_no_patron_data(raw_database_bytes(service), patrons[1:])


@pytest.mark.parametrize(
    "odd",
    [
        "2101\u00a00009",  # NBSP
        "21010009\u0301",  # a combining acute accent
        "2101\u20280009",  # line separator
        "\u00a021010009",  # NBSP in front
        "21010009\U0001f4da",  # an emoji
        "2101\u200b0009",  # zero-width space
        "2101\x000009",  # NUL
    ],
)
def test_characters_no_barcode_has_are_refused(odd: str) -> None:
    for check in (CODABAR.item, CODABAR.card, BarcodeRules().item, BarcodeRules().card):
        with pytest.raises(InvalidInput, match="contains characters no barcode has"):
            check(odd)


def test_a_scanners_enter_and_a_fullwidth_space_are_fine() -> None:
    assert BarcodeRules().item("39010001\r\n") == "39010001"
    assert BarcodeRules().card("2101\u30000009") == "21010009"  # NFKC: a plain space, dropped
