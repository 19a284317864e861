"""Per-address and per-token request limits, kept in memory and nowhere else."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

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
