"""The slip: allow-listed content, one layout, ESC/POS bytes per printer profile, PNG previews."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from holdshelf.printers.config import PrinterSettings, printer_from_table
from holdshelf.printers.layout import Paper, Rotated, Text, fit_scale, slip_layout
from holdshelf.printers.render_escpos import printable, profile_for
from holdshelf.printers.slips import RenderedSlip
from PIL import Image, ImageChops

from holdshelf.config_sources import read_toml
from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.holds import PickupMode, ShelfEntry
from holdshelf.domain.slips import Slip, SlipOptions, item_tail, truncate
from holdshelf.errors import ConfigError
from holdshelf.resources import resource_dir
from tests.helpers.escpos_parser import parse

REFERENCE = Path(__file__).parent / "reference"
UPDATE = os.environ.get("HOLDSHELF_TEST_UPDATE_REFERENCES") == "1"
CODE = ShelfCode("K7Q4MX")
MONDAY = dt.date(2026, 11, 30)
ENTRY = ShelfEntry(CODE, "MAIN", "Central Library", MONDAY, PickupMode.SHELF)


def printer(**keys: object) -> PrinterSettings:
    defaults = read_toml(resource_dir("config") / "default.toml")["printer_defaults"]
    return printer_from_table("test", defaults | keys)


def slip(**changes: object) -> Slip:
    fields = {"branch_name": "Central Library", "code": CODE, "pickup_by": MONDAY, "desk": False}
    return Slip(**(fields | changes))


# -- the slip model ---------------------------------------------------------------------------


def test_optional_fields_are_off_by_default() -> None:
    made = Slip.for_hold(ENTRY, SlipOptions(), item_barcode="39010001234567", title="Middlemarch")
    assert made == slip()
    assert made.item_tail is None and made.title is None


def test_optional_fields_when_switched_on() -> None:
    options = SlipOptions(show_item_tail=True, show_title=True, title_length=12)
    made = Slip.for_hold(
        ENTRY, options, item_barcode="39010001234567", title="The Remains of the Day"
    )
    assert made.item_tail == "4567"
    assert made.title == "The Remains…"
    assert Slip.from_payload(made.payload()) == made
    assert item_tail(None) is None and truncate("  ", 10) is None


def test_the_slip_has_no_field_for_a_patron() -> None:
    assert set(Slip.__dataclass_fields__) == {
        "branch_name",
        "code",
        "pickup_by",
        "desk",
        "item_tail",
        "title",
        "test",
        "language",
        "possible_duplicate",  # a flag of the attempt, never stored
    }


# -- layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dots", "scale"), [(512, 6), (576, 6), (384, 4)])
def test_code_is_as_large_as_the_paper_allows(dots: int, scale: int) -> None:
    paper = Paper(dots)
    assert fit_scale(CODE.display, paper) == scale
    blocks = slip_layout(slip(), paper)
    code_block = next(b for b in blocks if isinstance(b, Text) and b.text == CODE.display)
    assert code_block.scale == scale
    assert all(len(b.text) * b.scale <= paper.columns for b in blocks if isinstance(b, Text))


def test_long_branch_names_wrap_within_the_paper() -> None:
    paper = Paper(384)
    blocks = slip_layout(slip(branch_name="The Very Long Name Memorial Public Library"), paper)
    lines = [b.text for b in blocks if isinstance(b, Text) and b.bold and b.scale == 1]
    assert lines[:2] == ["The Very Long Name Memorial", "Public Library"]


def test_wrap_mode_adds_the_code_along_the_strip() -> None:
    blocks = slip_layout(slip(), Paper(512), wrap=True)
    assert blocks[-1] == Rotated(CODE.display, 3)
    assert not any(isinstance(b, Rotated) for b in slip_layout(slip(), Paper(512)))


# -- ESC/POS ------------------------------------------------------------------------------------


def test_native_qr_slip_is_small() -> None:
    data = RenderedSlip(slip(), printer(profile="TM-T88V")).escpos
    assert len(data) < 1024
    parsed = parse(data)
    assert parsed.qr_payloads == [CODE.display]
    assert parsed.qr_module_sizes == [6]
    assert parsed.rasters == []


@pytest.mark.parametrize(
    ("keys", "native"),
    [
        ({"profile": "TM-T88V"}, True),
        ({"profile": "TM-T88V", "qr": "raster"}, False),
        ({"profile": "POS-5890"}, False),
        ({"profile": "POS-5890", "qr": "native"}, True),
        ({}, True),  # generic ESC/POS
    ],
)
def test_qr_command_or_raster_by_profile(keys: dict, native: bool) -> None:
    parsed = parse(RenderedSlip(slip(), printer(**keys)).escpos)
    assert bool(parsed.qr_payloads) is native
    assert len(parsed.rasters) == (0 if native else 1)


def test_desk_slip_band_in_bytes() -> None:
    parsed = parse(RenderedSlip(slip(desk=True), printer(profile="TM-T88V")).escpos)
    inverted = [run for run in parsed.texts if run.inverted]
    assert [run.text.strip() for run in inverted] == ["HOLD AT DESK", "STAFF PICKUP"] * 2
    assert {run.width for run in inverted} == {2}


def test_rotated_code_in_bytes() -> None:
    parsed = parse(RenderedSlip(slip(), printer(profile="TM-T88V", wrap=True)).escpos)
    rotated = [run.text for run in parsed.texts if run.rotated]
    assert "".join(rotated) == CODE.display


def test_non_ascii_branch_names_fall_back_safely() -> None:
    assert printable("Łódź Główna", "CP437") == "Lódz Glówna"
    assert printable("Bibliothèque Ñuñoa", "CP437") == "Bibliothèque Ñuñoa"
    assert printable("Biblioteka Łódź", "CP1252") == "Biblioteka Lódz"
    assert printable("市立図書館", "CP437") == "?????"
    rendered = RenderedSlip(slip(branch_name="Łódź 図書館"), printer(profile="TM-T88V"))
    assert "Lódz ???" in parse(rendered.escpos).lines
    assert any(isinstance(b, Text) and b.text == "Lódz ???" for b in rendered.blocks)


def test_profile_and_codepage_errors_are_named() -> None:
    with pytest.raises(ConfigError, match="'TM-NOPE' is not a python-escpos printer profile"):
        profile_for(printer(profile="TM-NOPE"))
    with pytest.raises(ConfigError, match="codepage CP874 is not supported"):
        profile_for(printer(profile="POS-5890", codepage="CP874"))


def test_escpos_keeps_its_logging_to_itself(tmp_path: Path) -> None:
    """python-escpos calls logging.basicConfig() on import and prints a warning for profiles
    without a paper width; neither may reach the app's output."""
    script = (
        "import datetime, logging\n"
        "from holdshelf.domain.codes import ShelfCode\n"
        "from holdshelf.domain.slips import Slip\n"
        "from holdshelf.printers.config import printer_from_table\n"
        "from holdshelf.printers.slips import RenderedSlip\n"
        "from holdshelf.resources import resource_dir\n"
        "from holdshelf.config_sources import read_toml\n"
        "defaults = read_toml(resource_dir('config') / 'default.toml')['printer_defaults']\n"
        "printer = printer_from_table('p', defaults | {'qr': 'raster'})\n"
        "slip = Slip('Branch', ShelfCode('K7Q4MX'), datetime.date(2026, 11, 30), False)\n"
        "RenderedSlip(slip, printer).escpos\n"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
    )
    # From an empty folder, so the installed package is imported, not the source tree.
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


# -- PNG previews against reference images --------------------------------------------------------

PREVIEWS = {
    "shelf-80mm": (slip(item_tail="4567"), {"profile": "TM-T88V"}),
    "desk-58mm-wrap": (slip(desk=True), {"paper": "58mm", "wrap": True}),
    "test-slip": (
        Slip("Printer test: front-desk", ShelfCode("TESTTEST"), MONDAY, False, test=True),
        {"profile": "TM-T20II", "qr": "raster"},
    ),
}


def test_a_preview_makes_its_qr_code_once(monkeypatch) -> None:
    """Choosing a QR code's mask is most of a preview's cost, and the preview printer draws one
    for every slip on the worker's thread: the code is made once per slip, not per use."""
    from holdshelf.printers import render_png

    made: list[str] = []
    real = render_png.qr_matrix
    monkeypatch.setattr(
        render_png, "qr_matrix", lambda payload: made.append(payload) or real(payload)
    )
    RenderedSlip(slip(), printer()).png()
    assert len(made) == 1


@pytest.mark.parametrize("name", sorted(PREVIEWS))
def test_preview_matches_reference(name: str) -> None:
    made, keys = PREVIEWS[name]
    rendered = RenderedSlip(made, printer(**keys))
    image = Image.open(io.BytesIO(rendered.png())).convert("1")
    assert image.width == rendered.paper.dots + 16  # one pixel per printer dot, 8-dot margins
    reference = REFERENCE / f"{name}.png"
    if UPDATE or not reference.exists():
        if not UPDATE:
            pytest.fail(
                f"no reference image {reference.name}: run with "
                "HOLDSHELF_TEST_UPDATE_REFERENCES=1 and review the images"
            )
        image.save(reference)
    expected = Image.open(reference).convert("1")
    assert image.size == expected.size, "the slip's layout changed size"
    difference = ImageChops.difference(image.convert("L"), expected.convert("L"))
    changed = difference.width * difference.height - difference.histogram()[0]
    assert changed <= 0.005 * image.width * image.height, f"{changed} pixels differ"
