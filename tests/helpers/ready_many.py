"""A clerk in its own process: marks COUNT holds ready, one transaction each, and prints JSON.

Usage: python ready_many.py INSTANCE PREFIX COUNT GO_FILE
It waits until GO_FILE exists so that all clerks start writing at the same moment.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from holdshelf.bootstrap import Holdshelf
from holdshelf.settings import load_settings


def main() -> None:
    instance, prefix, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    service = Holdshelf(load_settings(Path(instance))).service
    while not go.exists():
        time.sleep(0.01)
    made, errors = [], []
    for n in range(count):
        branch = "MAIN" if n % 4 else "EAST"
        try:
            entry = service.ready(branch, f"{prefix}-{n}", f"2{prefix}{n:08d}")
            made.append([entry.branch, entry.code.compact])
        except Exception as exc:  # reported to the test, which fails on any
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"made": made, "errors": errors}))


if __name__ == "__main__":
    main()
