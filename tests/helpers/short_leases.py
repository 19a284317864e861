"""`holdshelf` with its leases and its hourly purge shortened to seconds, so a test can watch a
killed lease holder taken over and the purge stay once a "window": usage as `holdshelf`'s."""

from __future__ import annotations

import datetime as dt

from holdshelf import worker
from holdshelf.cli import main
from holdshelf.storage import leases

LEASE_FOR = dt.timedelta(seconds=3)
RENEW_EVERY = dt.timedelta(seconds=0.5)
PURGE_EVERY = dt.timedelta(seconds=4)  # the "hour"

if __name__ == "__main__":
    leases.LEASE_FOR, leases.RENEW_EVERY = LEASE_FOR, RENEW_EVERY
    worker.HOUSEKEEPING_EVERY = PURGE_EVERY
    worker.HOUSEKEEPING_RETRY = dt.timedelta(seconds=0.5)
    main()
