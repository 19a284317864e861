"""The slip as a PNG, laid out like the printer lays it out: one pixel per printer dot.

Characters are drawn in 12×24-dot cells (ESC/POS font A) and magnified by whole dots as the
printer's GS ! magnification does; QR modules, line spacing and the cut feed follow the ESC/POS
renderer, so the preview shows what will come out of the printer.

The preview printer (the default) draws one per slip on the worker's thread, so it is kept
cheap: each QR code is made once per slip (choosing its mask pattern is most of the cost), the
picture is drawn in black and white only, so it needs no dithering, and the PNG is compressed
at zlib's default level (level 9 took four times as long for a file ~8% smaller).
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


def _height(block: Block, qr: list[list[bool]] | None) -> int:
    if isinstance(block, Text):
        return max(LINE_DOTS, FONT_A[1] * block.scale)
    if isinstance(block, QR):
        assert qr is not None
        return len(qr) * block.module + LINE_DOTS
    if isinstance(block, Rotated):
        return len(block.text) * max(LINE_DOTS, FONT_A[0] * block.scale)
    return LINE_DOTS * block.lines


def render_png(blocks: list[Block], paper: Paper) -> Image.Image:
    # Each QR block's modules, made once: its height and its drawing both need them.
    qrs = [qr_matrix(block.payload) if isinstance(block, QR) else None for block in blocks]
    heights = [_height(block, qr) for block, qr in zip(blocks, qrs, strict=True)]
    body = sum(heights) + LINE_DOTS * CUT_FEED_LINES
    image = Image.new("L", (paper.dots + 2 * MARGIN, body + 2 * MARGIN), WHITE)
    y = MARGIN
    for block, qr, height in zip(blocks, qrs, heights, strict=True):
        _draw(image, block, qr, height, paper, y)
        y += height
    draw = ImageDraw.Draw(image)
    for x in range(0, image.width, 12):  # where the cutter cuts
        draw.line([(x, image.height - MARGIN), (x + 6, image.height - MARGIN)], fill=BLACK)
    # Every pixel is already black or white: dithering (the default) would change none of them.
    return image.convert("1", dither=Image.Dither.NONE)


def _centred_x(width: int, paper: Paper) -> int:
    return MARGIN + max(0, (paper.dots - width) // 2)


def _draw(
    image: Image.Image,
    block: Block,
    qr: list[list[bool]] | None,
    height: int,
    paper: Paper,
    y: int,
) -> None:
    if isinstance(block, Text):
        cells = [glyph(ch, block.scale, block.inverted) for ch in block.text]
        width = sum(cell.width for cell in cells)
        x = _centred_x(width, paper) if block.center else MARGIN
        top = y + height - FONT_A[1] * block.scale  # bottom-aligned, as printed
        for cell in cells:
            image.paste(cell, (x, top))
            x += cell.width
    elif isinstance(block, QR):
        assert qr is not None
        # One pixel per module, then magnified by whole dots (as the printer does): the same
        # picture as a rectangle per dark module, without a Python call for each.
        modules = Image.new("L", (len(qr), len(qr)))
        modules.putdata([BLACK if dark else WHITE for row in qr for dark in row])
        size = len(qr) * block.module
        image.paste(
            modules.resize((size, size), Image.Resampling.NEAREST), (_centred_x(size, paper), y)
        )
    elif isinstance(block, Rotated):
        step = max(LINE_DOTS, FONT_A[0] * block.scale)
        for index, char in enumerate(block.text):
            cell = glyph(char, block.scale, False, rotated=True)
            image.paste(cell, (_centred_x(cell.width, paper), y + index * step))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
