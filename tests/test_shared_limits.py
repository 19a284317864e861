"""Limits shared through the database by every app process: exact for /find (one upsert a
request), batched for API tokens (no round trip a request, an overshoot bounded by a flush).
Each limiter here stands for one process; they share only the database."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from holdshelf.service import HoldService
from holdshelf.storage.models import RateBucket
from holdshelf.storage.rate_limits import (
    LONGEST_WINDOW,
    BatchedRateLimiter,
    SharedRateLimiter,
    limit_key,
)
from holdshelf.web.limits import RateLimiter, api_limiter, find_limiter

SECRET = b"k" * 32
ADDRESS = "198.51.100.7"
T0 = 1_800_000_000.0  # a wall-clock second, at the start of a slot


def shared(service: HoldService, limit: int = 5, window: float = 60) -> SharedRateLimiter:
    return SharedRateLimiter(service.sessions, limit, window, SECRET)


def test_the_limit_is_one_across_processes_and_per_key(service: HoldService) -> None:
    first, second = shared(service), shared(service)
    answers = [limiter.allow(ADDRESS, now=T0 + n) for n, limiter in enumerate([first, second] * 3)]
    assert answers == [True] * 5 + [False]
    assert first.allow("198.51.100.8", now=T0 + 6)  # another address is not held back
    assert not second.allow(ADDRESS, now=T0 + 50)  # still inside the minute
    assert first.allow(ADDRESS, now=T0 + 70)  # the first slot has left the window


def test_concurrent_requests_in_many_processes_lose_no_count(service: HoldService) -> None:
    limiters = [shared(service, limit=40) for _ in range(4)]
    start = threading.Barrier(len(limiters))
    allowed: list[bool] = []

    def ask(limiter: SharedRateLimiter) -> None:
        start.wait()
        allowed.extend(limiter.allow(ADDRESS, now=T0 + 1) for _ in range(20))

    threads = [threading.Thread(target=ask, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert allowed.count(True) == 40 and len(allowed) == 80


def test_the_table_holds_no_address_and_forgets_old_slots(service: HoldService) -> None:
    limiter = shared(service)
    limiter.allow(ADDRESS, now=T0)
    with service.sessions() as session:
        (row,) = session.scalars(select(RateBucket))
        assert row.key == limit_key(SECRET, ADDRESS) != limit_key(b"x" * 32, ADDRESS)
        assert ADDRESS not in row.key
    later = shared(service)  # a process started later sweeps once a window
    later.allow("198.51.100.8", now=T0 + LONGEST_WINDOW + 20)
    with service.sessions() as session:
        keys = session.scalars(select(RateBucket.key)).all()
    assert keys == [limit_key(SECRET, "198.51.100.8")]


def batched(service: HoldService, limit: int = 10) -> BatchedRateLimiter:
    return BatchedRateLimiter(service.sessions, limit, 60, SECRET, flush_seconds=3600)


def test_batched_counts_are_shared_at_each_flush(service: HoldService) -> None:
    first, second = batched(service), batched(service)
    token = "token:7"
    assert all(first.allow(token) for _ in range(6))
    first.flush()
    assert second.allow(token)
    second.flush()  # adds its one, reads back the seven
    assert [second.allow(token) for _ in range(4)] == [True, True, True, False]
    second.flush()
    assert first.allow(token), "first has not seen second's requests yet: the overshoot"
    first.flush()
    assert not first.allow(token)
    with service.sessions() as session:
        counted = session.scalar(select(func.sum(RateBucket.count)))
    assert counted == 11  # the limit and the one request of overshoot


def test_batched_limiters_make_no_statement_per_request(service: HoldService) -> None:
    from sqlalchemy import event

    limiter = batched(service, limit=1000)
    statements: list[str] = []
    engine = service.sessions.kw["bind"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert all(limiter.allow("token:1") for _ in range(200))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []


def test_postgresql_shares_the_limits_and_sqlite_keeps_them_in_memory(
    service: HoldService,
) -> None:
    on_postgres = service.sessions.kw["bind"].dialect.name == "postgresql"
    find = find_limiter(service.settings, service.sessions)
    api = api_limiter(service.settings, service.sessions, 60)
    if on_postgres:
        assert isinstance(find, SharedRateLimiter) and isinstance(api, BatchedRateLimiter)
    else:
        assert isinstance(find, RateLimiter) and isinstance(api, RateLimiter)
    assert api.limit == service.settings.api_requests_per_minute


def test_a_closed_batched_limiter_adds_what_it_counted_and_stops(service: HoldService) -> None:
    limiter = BatchedRateLimiter(service.sessions, 100, 60, SECRET, flush_seconds=3600)
    before = set(threading.enumerate())
    assert all(limiter.allow(ADDRESS) for _ in range(3))
    (flusher,) = [t for t in threading.enumerate() if t not in before and t.name == "rate-limits"]
    limiter.close()  # as Holdshelf.close() does, before the database goes away
    assert not flusher.is_alive()
    with service.sessions() as session:
        assert session.scalar(select(func.sum(RateBucket.count))) == 3
