"""The per-address rate limiter (holdshelf.web.limits.RateLimiter, as the web app keeps one per
limit) under a flood of addresses: microseconds per call while ADDRESSES distinct addresses are
inside its window, each call from a new one as the oldest ages out (a steady flood), beside
the same limiter tracking one address (the floor: what a call costs when there is nothing to
sweep). Their ratio stays near 1 when the cost per call is O(1); an O(addresses) sweep shows
as a ratio that grows with ADDRESSES. Three interleaved runs; no clock is read (each call is
given its time), so only the limiter is measured.

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


def single_us(calls: int) -> float:
    """Microseconds per call from one address, one call a window (nothing to sweep)."""
    limiter = RateLimiter(LIMIT, WINDOW)
    key = "10.0.0.1"
    start = time.perf_counter()
    for n in range(calls):
        limiter.allow(key, now=n * (WINDOW + 1))
    return (time.perf_counter() - start) / calls * 1e6


def figures(addresses: int, calls: int, runs: int = INTERLEAVED_RUNS) -> list[Figure]:
    flood, single = interleaved(runs, lambda: flood_us(addresses, calls), lambda: single_us(calls))
    return [
        Figure.of(
            f"rate limiter per call, {addresses:,} addresses in the window",
            "us",
            flood,
            ceiling=single,
            ceiling_name="the same limiter, one address",
            note=f"{calls:,} calls a run",
        )
    ]


def main() -> None:
    addresses = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    show(figures(addresses, calls))


if __name__ == "__main__":
    main()
