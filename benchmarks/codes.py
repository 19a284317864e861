"""Shelf codes issued and parsed per second, in memory (no database).

Usage: python benchmarks/codes.py [COUNT]
"""

from __future__ import annotations

import statistics
import sys
import time

from holdshelf.domain.codes import ShelfCodec


def rate(action, count: int, repeats: int = 5) -> float:
    """The median rate over ``repeats`` runs of ``count`` calls."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            action()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    for length in (6, 7):
        codec = ShelfCodec("benchmark salt", length)
        sample = codec.draw().display
        issued = rate(codec.draw, count)
        parsed = rate(lambda codec=codec, sample=sample: codec.parse(sample), count)
        print(
            f"code length {length}: {issued:,.0f} codes issued/s, {parsed:,.0f} codes parsed/s "
            f"(space {codec.space:,} numbers)"
        )


if __name__ == "__main__":
    main()
