"""Request limits shared by every app process on one database (PostgreSQL; a single process on
SQLite keeps them in memory, holdshelf.web.limits).

Requests are counted per key in time slots of SLOT_SECONDS: one row per key and slot, bumped
by an atomic upsert, so concurrent requests in any process never lose a count. A limit's
window is its last few slots (six of ten seconds for a minute): the slot now filling and the
ones before it. The key stored is an HMAC of the address or token id under the instance's
pseudonym key: the table does not tell which addresses asked. Slots older than the longest
window are deleted by each limiter at most once a window, one indexed DELETE.

- :class:`SharedRateLimiter` is exact: one statement per request (sign-in-like, low-rate
  limits such as patrons' lookups at /find).
- :class:`BatchedRateLimiter` adds no database round trip to a request: each process counts
  locally and a thread of its own adds the count to the shared slot about once a second,
  reading back the window's total; a request is refused when that total and this process's
  count not yet added reach the limit. Between two flushes the other processes' requests are
  not seen, so the limit can be overshot by what they accept in that second (the API tokens'
  limit, README "Several app processes").
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased, sessionmaker

from holdshelf.storage.database import dialect_insert
from holdshelf.storage.models import RateBucket

log = logging.getLogger(__name__)

SLOT_SECONDS = 10
LONGEST_WINDOW = 300.0  # slots older than this are swept, whichever limit made them
FLUSH_SECONDS = 1.0  # how often a batched limiter adds its counts to the shared slots


def limit_key(secret: bytes, key: str) -> str:
    """What is stored for ``key`` (an address, "token:7"): its HMAC, 64 hex characters."""
    return hmac.new(secret, b"rate-limit\0" + key.encode("utf-8"), hashlib.sha256).hexdigest()


class _Buckets:
    """The shared slots of one limit: bump, read, sweep."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        window: float,
        secret: bytes,
        wall: Callable[[], float],
    ) -> None:
        if not 0 < window <= LONGEST_WINDOW:
            raise ValueError(f"a shared limit's window is at most {LONGEST_WINDOW:g} s")
        self.window = window
        self._sessions, self._secret, self._wall = sessions, secret, wall
        self._slots = max(1, math.ceil(window / SLOT_SECONDS))
        self._swept_at = -math.inf

    def slot(self, now: float) -> int:
        return int(now // SLOT_SECONDS)

    def bump(self, session: Session, key: str, slot: int, by: int) -> int:
        """Add ``by`` to this slot's count of ``key``; the window's total, that included."""
        earlier = aliased(RateBucket)
        before = (
            select(func.coalesce(func.sum(earlier.count), 0))
            .where(
                earlier.key == key,
                earlier.slot > slot - self._slots,
                earlier.slot < slot,
            )
            .scalar_subquery()
        )
        statement = dialect_insert(session, RateBucket).values(key=key, slot=slot, count=by)
        statement = statement.on_conflict_do_update(
            index_elements=["key", "slot"], set_={"count": RateBucket.count + by}
        ).returning(RateBucket.count + before)
        return int(session.execute(statement).scalar_one())

    def totals(self, session: Session, keys: list[str], slot: int) -> dict[str, int]:
        """The window's total of each of ``keys`` (absent: none)."""
        rows = session.execute(
            select(RateBucket.key, func.sum(RateBucket.count))
            .where(RateBucket.key.in_(keys), RateBucket.slot > slot - self._slots)
            .group_by(RateBucket.key)
        )
        return {key: int(total) for key, total in rows}

    def sweep_if_due(self, now: float) -> None:
        """At most once a window: forget slots older than the longest window."""
        if now - self._swept_at < self.window:
            return
        self._swept_at = now
        oldest = self.slot(now - LONGEST_WINDOW)
        with self._sessions.begin() as session:
            session.execute(delete(RateBucket).where(RateBucket.slot < oldest))

    def key(self, key: str) -> str:
        return limit_key(self._secret, key)


class SharedRateLimiter:
    """Exact across processes: one upsert per request. Refused requests count too, so a
    client that keeps trying stays refused until it slows down."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        limit: int,
        window: float,
        secret: bytes,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._buckets = _Buckets(sessions, window, secret, wall)
        self._sessions, self._wall = sessions, wall
        self.limit, self.window = limit, window

    def allow(self, key: str, now: float | None = None) -> bool:
        now = self._wall() if now is None else now
        buckets = self._buckets
        with self._sessions.begin() as session:
            total = buckets.bump(session, buckets.key(key), buckets.slot(now), 1)
        buckets.sweep_if_due(now)
        return total <= self.limit


class BatchedRateLimiter:
    """Counted in this process, added to the shared slots about every FLUSH_SECONDS by a
    thread that runs while there is anything to count (see the module's docstring)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        limit: int,
        window: float,
        secret: bytes,
        wall: Callable[[], float] = time.time,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._buckets = _Buckets(sessions, window, secret, wall)
        self._sessions, self._wall, self._flush_seconds = sessions, wall, flush_seconds
        self.limit, self.window = limit, window
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()  # allowed here, not yet added
        self._in_flight: Counter[str] = Counter()  # being added right now
        self._shared: dict[str, int] = {}  # the window's total in every process, as last read
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()

    def close(self) -> None:
        """Add what is pending and stop flushing: before the database goes away."""
        self._closed.set()
        flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout=5)

    def allow(self, key: str, now: float | None = None) -> bool:
        hashed = self._buckets.key(key)
        with self._lock:
            seen = self._shared.get(hashed, 0) + self._in_flight[hashed] + self._pending[hashed]
            if seen >= self.limit:
                return False
            self._pending[hashed] += 1
            if self._flusher is None and not self._closed.is_set():
                self._flusher = threading.Thread(
                    target=self._flush_while_counting, name="rate-limits", daemon=True
                )
                self._flusher.start()
        return True

    def flush(self, now: float | None = None) -> None:
        """Add this process's counts to the shared slots; read the other keys' totals back."""
        now = self._wall() if now is None else now
        buckets = self._buckets
        slot = buckets.slot(now)
        with self._lock:
            self._in_flight, self._pending = self._pending, Counter()
            adding = dict(self._in_flight)
            watched = [key for key in self._shared if key not in adding]
        totals: dict[str, int] = {}
        try:
            with self._sessions.begin() as session:
                for key, count in adding.items():
                    totals[key] = buckets.bump(session, key, slot, count)
                if watched:
                    totals |= dict.fromkeys(watched, 0) | buckets.totals(session, watched, slot)
        except DBAPIError as exc:  # counted again at the next flush; meanwhile counted here
            log.warning("shared rate limits not updated (%s)", type(exc.orig).__name__)
            with self._lock:
                self._pending.update(self._in_flight)
                self._in_flight = Counter()
            return
        with self._lock:
            self._in_flight = Counter()
            self._shared.update(totals)
            for key in [key for key, total in self._shared.items() if total == 0]:
                del self._shared[key]
        buckets.sweep_if_due(now)

    def _flush_while_counting(self) -> None:
        """Flush every FLUSH_SECONDS until nothing is pending or counted in the window."""
        while True:
            closing = self._closed.wait(self._flush_seconds)
            try:
                self.flush()
            except Exception as exc:  # a daemon thread's error would go unnoticed
                log.error("shared rate limits: %s", type(exc).__name__)
            with self._lock:
                if closing or (not self._pending and not self._shared):
                    self._flusher = None
                    return
