"""Per-address and per-token request limits: in memory for one process (SQLite), shared
through the database by every app process on PostgreSQL (holdshelf.storage.rate_limits)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from holdshelf.settings import Settings
from holdshelf.storage.rate_limits import BatchedRateLimiter, SharedRateLimiter

FIND_LIMIT = 20  # patrons' lookups at /find per address ...
FIND_WINDOW = 60.0  # ... per this many seconds


class RateLimiter:
    """A sliding window per key (a client address, a token). Keys are kept in the order they
    were last seen, so forgetting the stale ones looks only at the oldest: O(1) amortised per
    call, however many addresses a flood brings."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget_stale(now)
            times = self._seen.setdefault(key, deque())
            self._seen.move_to_end(key)
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True

    def _forget_stale(self, now: float) -> None:
        while self._seen:
            oldest_key, times = next(iter(self._seen.items()))
            if times and now - times[-1] <= self.window:
                return
            del self._seen[oldest_key]

    def __len__(self) -> int:
        return len(self._seen)


class Limiter(Protocol):
    limit: int

    def allow(self, key: str) -> bool: ...


def close_limiter(limiter: Limiter) -> None:
    """Stop what a limiter runs beside the requests (the batched one's flushing thread)."""
    close = getattr(limiter, "close", None)
    if close is not None:
        close()


def shared_limits(sessions: sessionmaker[Session]) -> bool:
    """Whether limits are kept in the database: on PostgreSQL, where several app processes
    may serve one library. SQLite serves from one process: memory is enough and costs no
    write."""
    return sessions.kw["bind"].dialect.name == "postgresql"


def find_limiter(settings: Settings, sessions: sessionmaker[Session]) -> Limiter:
    """Patrons' lookups at /find per address: exact, one statement a lookup when shared."""
    if not shared_limits(sessions):
        return RateLimiter(FIND_LIMIT, FIND_WINDOW)
    secret = settings.pseudonym_key.encode("utf-8")
    return SharedRateLimiter(sessions, FIND_LIMIT, FIND_WINDOW, secret)


def api_limiter(settings: Settings, sessions: sessionmaker[Session], window: float) -> Limiter:
    """API requests per token: when shared, counted here and added to the database about once
    a second, so a request makes no extra round trip (and the limit may be overshot by what
    the other processes accept in that second)."""
    limit = settings.api_requests_per_minute
    if not shared_limits(sessions):
        return RateLimiter(limit, window)
    return BatchedRateLimiter(sessions, limit, window, settings.pseudonym_key.encode("utf-8"))
