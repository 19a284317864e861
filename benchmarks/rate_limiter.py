"""The per-address rate limiter (holdshelf.web.limits.RateLimiter, as the web app keeps one per
limit) under a flood of addresses: microseconds per call while ADDRESSES distinct addresses are
inside its window, each call from a new one as the oldest ages out (a steady flood), beside the
same flood with 100 addresses in the window (the same work per call: one address added, one
forgotten). With a cost per call of O(1) the ratio stays small and does not grow with
ADDRESSES (about 2 here at 50,000 and at 200,000: tables that outgrow the CPU's caches); the
O(addresses) sweep the issue found cost 3.6 ms a call at 50,000, a ratio in the hundreds.
Three interleaved runs; no clock is read (each call is given its time), so only the limiter
is measured.

Usage: python benchmarks/rate_limiter.py [ADDRESSES] [CALLS]   (default 50000 and 20000)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import INTERLEAVED_RUNS, Figure, interleaved, show

from holdshelf.web.limits import RateLimiter

WINDOW = 60.0  # seconds, as the web app's per-minute limits
LIMIT = 10**9  # every call allowed: the bookkeeping is measured, not the refusals
FEW_ADDRESSES = 100


def flood_us(addresses: int, calls: int) -> float:
    """Microseconds per call with ``addresses`` addresses in the window, steady."""
    limiter = RateLimiter(LIMIT, WINDOW)
    step = WINDOW / addresses  # one new address per step: the window holds ``addresses``
    keys = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(addresses + calls)]
    for n in range(addresses):
        limiter.allow(keys[n], now=n * step)
    start = time.perf_counter()
    for n in range(addresses, addresses + calls):
        limiter.allow(keys[n], now=n * step)
    elapsed = time.perf_counter() - start
    assert abs(len(limiter) - addresses) <= 1, (len(limiter), addresses)
    return elapsed / calls * 1e6


def figures(addresses: int, calls: int, runs: int = INTERLEAVED_RUNS) -> list[Figure]:
    flood, few = interleaved(
        runs, lambda: flood_us(addresses, calls), lambda: flood_us(FEW_ADDRESSES, calls)
    )
    return [
        Figure.of(
            f"rate limiter per call, {addresses:,} addresses in the window",
            "us",
            flood,
            ceiling=few,
            ceiling_name=f"the same flood, {FEW_ADDRESSES} addresses in the window",
            note=f"{calls:,} calls a run",
        )
    ]


def main() -> None:
    addresses = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    show(figures(addresses, calls))


if __name__ == "__main__":
    main()
