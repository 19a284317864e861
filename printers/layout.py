"""The slip's layout, once, as a list of blocks that both renderers draw.

ESC/POS bytes (:mod:`holdshelf.printers.escpos`) and the PNG preview
(:mod:`holdshelf.printers.preview`) are drawn from the same blocks, so what staff see on screen
is what the printer prints.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from holdshelf.printers.config import FONT_A

from holdshelf.domain.slips import Slip
from holdshelf.i18n import slip_day, translator

MAX_SCALE = 8  # ESC/POS character magnification (GS !)
ROTATED_SCALE = 3


@dataclass(frozen=True)
class Paper:
    dots: int  # printable dots across

    @property
    def columns(self) -> int:
        return self.dots // FONT_A[0]


@dataclass(frozen=True)
class Text:
    """One line of text (already fitted to the paper)."""

    text: str
    scale: int = 1
    center: bool = True
    bold: bool = False
    inverted: bool = False


@dataclass(frozen=True)
class QR:
    payload: str
    module: int  # dots per QR module


@dataclass(frozen=True)
class Rotated:
    """Text along the strip: characters turned 90° clockwise, one per line."""

    text: str
    scale: int


@dataclass(frozen=True)
class Feed:
    lines: int = 1


Block = Text | QR | Rotated | Feed


def fit_scale(text: str, paper: Paper, largest: int = MAX_SCALE) -> int:
    """The largest magnification at which ``text`` fits on one line."""
    return max(1, min(largest, paper.columns // max(1, len(text))))


def wrapped(text: str, paper: Paper, scale: int = 1, **style: bool) -> list[Text]:
    width = max(1, paper.columns // scale)
    return [Text(line, scale, **style) for line in textwrap.wrap(text, width) or [""]]


def band(lines: tuple[str, ...], paper: Paper) -> list[Text]:
    """White on black, padded to the full width so it reads as a band from across the room."""
    scale = min(fit_scale(line, paper, 2) for line in lines)
    width = paper.columns // scale
    return [Text(line.center(width), scale, bold=True, inverted=True) for line in lines]


def slip_layout(slip: Slip, paper: Paper, *, wrap: bool = False) -> list[Block]:
    _ = translator(slip.language)
    code = slip.code.display
    desk_band = (_("HOLD AT DESK"), _("STAFF PICKUP"))
    blocks: list[Block] = []
    if slip.possible_duplicate:
        blocks += band((_("POSSIBLE DUPLICATE"),), paper)
    if slip.test:
        blocks += band((_("TEST SLIP"), _("NOT A HOLD")), paper)
    elif slip.desk:
        blocks += band(desk_band, paper)
    blocks += [Feed(), *wrapped(slip.branch_name, paper, bold=True), Feed()]
    blocks += [Text(code, fit_scale(code, paper), bold=True)]
    blocks += [Text(_("Section %(section)s", section=slip.code.section), 2, bold=True), Feed()]
    date = slip_day(slip.pickup_by, slip.language)
    blocks += [Text(_("PICK UP BY")), Text(date, fit_scale(date, paper, 2), bold=True), Feed()]
    blocks += [QR(code, module=6 if paper.dots >= 512 else 5)]
    if slip.test:
        advice = _("This printer is ready for hold slips.")
    elif slip.desk:
        advice = _("Ask at the desk: staff will hand it over.")
    else:
        advice = _("Check this item out before you leave.")
    blocks += wrapped(advice, paper)
    if slip.item_tail:
        blocks += [Text(_("Item ...%(tail)s", tail=slip.item_tail))]
    if slip.title:
        blocks += wrapped(slip.title, paper)
    if slip.possible_duplicate:
        blocks += wrapped(
            _("If the item already has a slip with this code, throw this one away."), paper
        )
    if slip.desk and not slip.test:
        blocks += [Feed(), *band(desk_band, paper)]
    if wrap:
        blocks += [Feed(), Rotated(code, ROTATED_SCALE)]
    return blocks
