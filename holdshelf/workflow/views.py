"""What the workflow hands out: checked requests, outcomes and views (no patron data)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from holdshelf.domain.holds import (
    PickupMode,
    ShelfEntry,
)
from holdshelf.settings import BranchSettings
from holdshelf.storage.models import (
    DailyCount,
)

# Past this share of its code space a branch should raise code_length while room is left: each
# new code takes more draws, and what is left runs out the faster the busier the branch.
CROWDED_SHARE = 0.7


@dataclass(frozen=True)
class HoldRequest:
    """A checked request to make a hold ready. The patron is already a pseudonym."""

    branch: BranchSettings
    item: str
    patron: str
    due: dt.date
    contacts: dict[str, str]
    title: str | None = None
    # (field, pseudonym the field's value would have as a card) for the item barcode and a
    # mobile number: a known patron's means a card was scanned into the wrong field. Used for
    # that check only, never stored.
    misplaced: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ActiveHold:
    """An active hold as the ILS sync asks about it. ``patron`` is the pseudonym, compared,
    never shown."""

    id: int
    item: str
    patron: str
    pickup_by: dt.date


@dataclass(frozen=True)
class AwaitingScan:
    """For staff: a hold an ILS registered whose item has not been scanned here yet."""

    entry: ShelfEntry
    item: str  # the barcode to look for: the item carries no slip yet
    late: bool  # not scanned within [ils] scan_within_minutes: waiting for its slip


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one request of a batch: a new hold, a skipped one, or an error."""

    entry: ShelfEntry | None = None
    skipped: bool = False
    error: str | None = None
    replaced: ShelfEntry | None = None  # a re-trap: the other patron's hold it ended


@dataclass(frozen=True)
class Reconciliation:
    """What a complete report from the ILS did to the branch's shelf (import --complete)."""

    flagged: list[ShelfEntry]  # not in this report: the next complete report ends them
    ended: list[ShelfEntry]  # not in two complete reports in a row: ended in the ILS
    cleared: int  # flagged before, listed again


@dataclass(frozen=True)
class PatronView:
    """What the library holds about one patron: the pickup choice and the active holds' codes."""

    preference: PickupMode
    chosen: bool  # True when the patron's own choice is stored (it differs from the default)
    holds: list[ShelfEntry]

    def as_dict(self) -> dict[str, Any]:
        return {
            "preference": self.preference.value,
            "chosen": self.chosen,
            "holds": [entry.as_dict() for entry in self.holds],
        }


class SlipState(StrEnum):
    NONE = "none"
    AWAITING_SCAN = "awaiting-scan"  # registered by the ILS: the item's scan prints it
    QUEUED = "queued"  # not tried yet
    RETRYING = "retrying"  # the printer failed; tried again with backoff
    PRINTED = "printed"
    DROPPED = "dropped"  # the hold ended before it printed


@dataclass(frozen=True)
class SlipStatus:
    """How the newest slip of a hold is doing; the desk and the API put it in their words."""

    state: SlipState
    attempts: int = 0
    error: str | None = None  # the printer's last error, for staff (never patron data)

    @property
    def settled(self) -> bool:
        """Nothing will change by itself any more (worth no further polling)."""
        return self.state in (
            SlipState.PRINTED,
            SlipState.DROPPED,
            SlipState.NONE,
            SlipState.AWAITING_SCAN,
        )


@dataclass(frozen=True)
class PurgeReport:
    unlinked_holds: int
    freed_codes: int


@dataclass(frozen=True)
class DayCounts:
    day: dt.date
    branch: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # event -> mode -> n

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "branch": self.branch, **self.counts}


@dataclass(frozen=True)
class BranchUsage:
    branch: str
    active_holds: int
    codes_in_use: int  # active plus resting (ended less than 30 days ago)
    code_capacity: int  # about how many codes the branch's code length offers

    @property
    def share(self) -> float:
        """How full the code space is, 0..1 (more only if code_length was lowered)."""
        return self.codes_in_use / self.code_capacity if self.code_capacity else 1.0

    @property
    def crowded(self) -> bool:
        return self.share > CROWDED_SHARE

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "active_holds": self.active_holds,
            "codes_in_use": self.codes_in_use,
            "code_capacity": self.code_capacity,
        }


def _group_days(rows: Iterable[DailyCount]) -> list[DayCounts]:
    days: dict[tuple[dt.date, str], DayCounts] = {}
    for row in rows:
        day = days.setdefault((row.day, row.branch), DayCounts(row.day, row.branch))
        day.counts.setdefault(row.event, {})[row.mode] = row.count
    return sorted(days.values(), key=lambda d: (-d.day.toordinal(), d.branch))


@dataclass(frozen=True)
class SectionCount:
    """A shelf section (a code's first character) of a branch: its active holds, and of
    them how many stand on the open shelf and behind the desk, are overdue, are missing
    from the ILS's last complete report."""

    section: str
    holds: int
    on_shelf: int
    at_desk: int
    overdue: int
    missing: int
