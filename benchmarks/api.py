"""Holds per second through POST /api/v1/holds, served by `holdshelf serve` (waitress) on
loopback, on SQLite, with its print worker running: once with the embedded preview printer
(which draws a PNG of every slip) and once with a device-file printer (ESC/POS bytes only, as
a real printer gets them; /dev/null here).

Usage: python benchmarks/api.py [HOLDS] [CLIENTS]
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from holdshelf.bootstrap import Holdshelf
from holdshelf.instance import write_config
from holdshelf.settings import load_settings
from holdshelf.storage import database

sys.path.insert(0, str(Path(__file__).parent))
from csv_import import barcode  # the demo checks barcodes: 14 digits, Luhn


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    holds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    for printer in ("preview", "file"):
        serve_and_measure(holds, clients, printer)


def serve_and_measure(holds: int, clients: int, printer: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder)
        write_config(instance, demo=True)
        if printer == "file":
            config = instance / "holdshelf.toml"
            config.write_text(
                config.read_text().replace("[branches.MAIN]\n", '[branches.MAIN]\nprinter = "lp"\n')
                + '\n[printers.lp]\ntype = "file"\ndevice = "/dev/null"\nprofile = "TM-T88V"\n'
            )
        settings = load_settings(instance)
        database.upgrade(database.make_engine(settings.database_url))
        root = Holdshelf(settings)
        token = root.integrations.create_token("bench", ["MAIN"])
        root.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDSHELF_")}
        env["HOLDSHELF_API__REQUESTS_PER_MINUTE"] = "1000000"  # measure the server, not the limit
        server = subprocess.Popen(
            [sys.executable, "-m", "holdshelf", "--instance", folder, "serve", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            assert re.search("serving at", server.stdout.readline())
            run(port, token, holds, clients, printer)
        finally:
            server.terminate()
            server.wait(timeout=10)


def run(port: int, token: str, holds: int, clients: int, printer: str) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors: list[int] = []
    per_client = holds // clients

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for n in range(per_client):
            k = number * 10**8 + n
            body = json.dumps({"item_barcode": barcode("3", k), "patron_card": barcode("2", k)})
            start = time.perf_counter()
            connection.request("POST", "/api/v1/holds", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - start)
            if response.status != 201:
                errors.append(response.status)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    median = statistics.median(latencies) * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(
        f"POST /api/v1/holds, waitress, SQLite, {printer} printer, {clients} clients: "
        f"{len(latencies) / elapsed:,.0f} holds/s; median {median:.1f} ms, p95 {p95:.1f} ms; "
        f"errors {len(errors)}"
    )


if __name__ == "__main__":
    main()
