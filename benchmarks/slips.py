"""Slip rendering and delivery.

1. Bytes per slip and render time per slip (median) for the printer's own QR command and for a
   raster QR image, on 80 mm (TM-T88V) and 58 mm (POS-5890) paper, plus the PNG preview.
2. Time from `ready` to the last byte at a network printer (a TCP listener on loopback that
   answers status requests like an Epson TM), through the print queue and one worker pass.

Usage: python benchmarks/slips.py [COUNT]
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers
sys.path.insert(0, str(Path(__file__).parent))  # for common

from common import barcode, demo_instance, network_printer
from holdshelf.printers.config import printer_from_table
from holdshelf.printers.slips import RenderedSlip

from holdshelf.bootstrap import Holdshelf
from holdshelf.config_sources import read_toml
from holdshelf.domain.codes import ShelfCode
from holdshelf.domain.slips import Slip
from holdshelf.resources import resource_dir
from holdshelf.settings import load_settings
from holdshelf.storage import database
from tests.helpers.fake_printer import FakePrinter

SLIP = Slip("Central Library", ShelfCode("K7Q4MX"), dt.date(2026, 11, 30), desk=False)
VARIANTS = {
    "80 mm, native QR (TM-T88V)": {"profile": "TM-T88V"},
    "80 mm, raster QR (TM-T88V)": {"profile": "TM-T88V", "qr": "raster"},
    "58 mm, raster QR (POS-5890)": {"profile": "POS-5890"},
    "80 mm, native QR, wrap-around": {"profile": "TM-T88V", "wrap": True},
}


def median_ms(action, count: int) -> float:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def rendering(count: int) -> None:
    defaults = read_toml(resource_dir("config") / "default.toml")["printer_defaults"]
    for label, keys in VARIANTS.items():
        printer = printer_from_table("bench", defaults | keys)
        _ = RenderedSlip(SLIP, printer).escpos  # warm the caches (profile, fonts)
        size = len(RenderedSlip(SLIP, printer).escpos)
        escpos_ms = median_ms(lambda p=printer: RenderedSlip(SLIP, p).escpos, count)
        png_ms = median_ms(lambda p=printer: RenderedSlip(SLIP, p).png(), max(10, count // 10))
        seconds_at_9600 = size * 10 / 9600
        print(
            f"{label}: {size:,} bytes ({seconds_at_9600:.1f} s at 9600 baud), "
            f"ESC/POS render {escpos_ms:.2f} ms median, PNG preview {png_ms:.1f} ms"
        )


def ready_to_printer(count: int) -> None:
    printer = FakePrinter().start()
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder)
        demo_instance(instance, printer=network_printer(printer.port))
        settings = load_settings(instance)
        database.upgrade(database.make_engine(settings.database_url))
        root = Holdshelf(settings)
        service = root.service
        worker = root.worker.prints  # the print queue only, as before
        latencies = []
        for n in range(count):
            item, card = barcode("3", n), barcode("2", n)  # the demo checks both
            start = time.perf_counter()
            service.ready("MAIN", item, card)
            worker.run_once()
            printer.wait_for_connections(n + 1)
            latencies.append(printer.last_byte_at[n] - start)
        root.close()
    printer.stop()
    latencies.sort()
    print(
        f"ready -> last byte at the printer (SQLite, one worker pass, status checked before "
        f"and after): median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms over {count} slips"
    )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    rendering(count)
    ready_to_printer(min(count, 200))
