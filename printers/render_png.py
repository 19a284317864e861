"""The slip as a PNG, laid out like the printer lays it out: one pixel per printer dot.

Characters are drawn in 12×24-dot cells (ESC/POS font A) and magnified by whole dots as the
printer's GS ! magnification does; QR modules, line spacing and the cut feed follow the ESC/POS
renderer, so the preview shows what will come out of the printer.
"""

from __future__ import annotations

import io
from functools import cache

import qrcode
from holdshelf.printers.config import FONT_A
from holdshelf.printers.layout import QR, Block, Paper, Rotated, Text
from PIL import Image, ImageDraw, ImageFont

from holdshelf.resources import resource_dir

LINE_DOTS = 30  # ESC/POS default line spacing (1/6 inch at 180 dpi)
CUT_FEED_LINES = 6  # python-escpos feeds six lines before cutting
MARGIN = 8  # white border around the preview, in dots
FONT_FILE = "DejaVuSansMono-Bold.ttf"
WHITE, BLACK = 255, 0


@cache
def _font() -> ImageFont.FreeTypeFont:
    path = resource_dir("printers") / "fonts" / FONT_FILE
    return ImageFont.truetype(str(path), size=20)  # advances 12 dots, as font A does


@cache
def glyph(char: str, scale: int, inverted: bool, rotated: bool = False) -> Image.Image:
    """One character cell, magnified by whole dots like the printer does."""
    width, height = FONT_A
    cell = Image.new("L", (width, height), BLACK if inverted else WHITE)
    ImageDraw.Draw(cell).text(
        (width / 2, height - 5), char, font=_font(), fill=WHITE if inverted else BLACK, anchor="ms"
    )
    cell = cell.point(lambda v: 255 if v > 127 else 0)
    cell = cell.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    return cell.rotate(-90, expand=True) if rotated else cell


def qr_matrix(payload: str) -> list[list[bool]]:
    """The modules of the QR code as python-escpos and the printer draw it (level L, border 1)."""
    code = qrcode.QRCode(border=1, error_correction=qrcode.constants.ERROR_CORRECT_L)
    code.add_data(payload)
    code.make(fit=True)
    return code.get_matrix()


def _height(block: Block, paper: Paper) -> int:
    if isinstance(block, Text):
        return max(LINE_DOTS, FONT_A[1] * block.scale)
    if isinstance(block, QR):
        return len(qr_matrix(block.payload)) * block.module + LINE_DOTS
    if isinstance(block, Rotated):
        return len(block.text) * max(LINE_DOTS, FONT_A[0] * block.scale)
    return LINE_DOTS * block.lines


def render_png(blocks: list[Block], paper: Paper) -> Image.Image:
    body = sum(_height(block, paper) for block in blocks) + LINE_DOTS * CUT_FEED_LINES
    image = Image.new("L", (paper.dots + 2 * MARGIN, body + 2 * MARGIN), WHITE)
    y = MARGIN
    for block in blocks:
        _draw(image, block, paper, y)
        y += _height(block, paper)
    draw = ImageDraw.Draw(image)
    for x in range(0, image.width, 12):  # where the cutter cuts
        draw.line([(x, image.height - MARGIN), (x + 6, image.height - MARGIN)], fill=BLACK)
    return image.convert("1")


def _centred_x(width: int, paper: Paper) -> int:
    return MARGIN + max(0, (paper.dots - width) // 2)


def _draw(image: Image.Image, block: Block, paper: Paper, y: int) -> None:
    if isinstance(block, Text):
        cells = [glyph(ch, block.scale, block.inverted) for ch in block.text]
        width = sum(cell.width for cell in cells)
        x = _centred_x(width, paper) if block.center else MARGIN
        top = y + _height(block, paper) - FONT_A[1] * block.scale  # bottom-aligned, as printed
        for cell in cells:
            image.paste(cell, (x, top))
            x += cell.width
    elif isinstance(block, QR):
        matrix = qr_matrix(block.payload)
        size = len(matrix) * block.module
        x0 = _centred_x(size, paper)
        draw = ImageDraw.Draw(image)
        for row, modules in enumerate(matrix):
            for col, dark in enumerate(modules):
                if dark:
                    left, top = x0 + col * block.module, y + row * block.module
                    draw.rectangle(
                        [left, top, left + block.module - 1, top + block.module - 1], fill=BLACK
                    )
    elif isinstance(block, Rotated):
        step = max(LINE_DOTS, FONT_A[0] * block.scale)
        for index, char in enumerate(block.text):
            cell = glyph(char, block.scale, False, rotated=True)
            image.paste(cell, (_centred_x(cell.width, paper), y + index * step))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
