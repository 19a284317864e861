"""A slip rendered for one printer: ESC/POS bytes and the PNG preview from the same layout."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from holdshelf.printers.config import PrinterSettings
from holdshelf.printers.layout import Block, Paper, Rotated, Text, slip_layout
from holdshelf.printers.render_escpos import paper_for, printable, render_escpos
from holdshelf.printers.render_png import png_bytes, render_png

from holdshelf.domain.slips import Slip


@dataclass(frozen=True)
class RenderedSlip:
    slip: Slip
    printer: PrinterSettings

    @cached_property
    def paper(self) -> Paper:
        return paper_for(self.printer)

    @cached_property
    def blocks(self) -> list[Block]:
        """The layout with every text as the printer's code page can print it, so the preview
        shows the same simplified characters as the paper."""
        blocks = slip_layout(self.slip, self.paper, wrap=self.printer.wrap)
        codepage = self.printer.codepage
        return [
            replace(block, text=printable(block.text, codepage))
            if isinstance(block, Text | Rotated)
            else block
            for block in blocks
        ]

    @cached_property
    def escpos(self) -> bytes:
        return render_escpos(self.blocks, self.printer)

    def png(self) -> bytes:
        return png_bytes(render_png(self.blocks, self.paper))
