"""The in-memory rate limiter: the limit per key, and a flood of keys that cannot slow it."""

from __future__ import annotations

from holdshelf.web.limits import RateLimiter


def test_the_limit_per_key_and_its_window() -> None:
    limiter = RateLimiter(limit=3, window=60)
    assert [limiter.allow("a", now=t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert limiter.allow("b", now=3)  # another address is not held back
    assert limiter.allow("a", now=61)  # the first try left the window


def test_a_flood_of_addresses_is_forgotten_as_it_ages() -> None:
    limiter = RateLimiter(limit=20, window=60)
    for n in range(50_000):
        limiter.allow(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", now=n / 1000)
    assert len(limiter) == 50_000  # all within the last minute
    assert limiter.allow("192.0.2.1", now=200)
    assert len(limiter) == 1  # the flood aged out; only the oldest were looked at


def test_forgetting_stops_at_the_first_recent_key() -> None:
    limiter = RateLimiter(limit=5, window=10)
    limiter.allow("old", now=0)
    limiter.allow("new", now=9)
    limiter.allow("newest", now=15)
    assert len(limiter) == 2  # "old" went, "new" (seen at 9) is still inside the window
