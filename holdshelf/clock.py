"""The one clock: instants in UTC, dates in the library's time zone.

Every service and worker is given the clock the composition root makes. Instants are aware UTC
datetimes, so arithmetic on them is real elapsed time (30 days of rest are 30 x 24 hours across
a DST change); the library's date (pickup-by days, the daily counts, "today" on a page) comes
from ``today()``, in the zone the library configured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def __call__(self) -> dt.datetime:
        """Now, as an aware UTC datetime."""
        ...

    def today(self) -> dt.date:
        """The library's date now."""
        ...


def _system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LibraryClock:
    """The system's clock read in the library's zone (the machine's zone when none is set)."""

    def __init__(
        self, zone: ZoneInfo | None, source: Callable[[], dt.datetime] = _system_now
    ) -> None:
        self.zone = zone
        self._source = source

    def __call__(self) -> dt.datetime:
        return self._source().astimezone(dt.UTC)

    def today(self) -> dt.date:
        return self._source().astimezone(self.zone).date()
