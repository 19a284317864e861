"""The hold lifecycle, pickup modes and retention rules.

A hold is ``ready`` (on the open shelf or at the desk) and then ends exactly once: ``picked_up``,
``expired`` or ``cancelled``. When it ends, its link to the patron pseudonym is deleted (at once
by default); what remains are daily counts per branch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from holdshelf.domain.codes import ShelfCode
from holdshelf.errors import Conflict, InvalidInput

MAX_RETENTION_DAYS = 30
# A code is not reissued at its branch for this long after its hold ends, so a stale slip or
# message never points at another patron's item.
CODE_QUARANTINE = dt.timedelta(days=30)
# How far ahead an explicit pickup-by date may be: catches a mistyped year.
MAX_PICKUP_DAYS = 366
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HoldStatus(StrEnum):
    READY = "ready"
    PICKED_UP = "picked_up"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


ENDINGS = (HoldStatus.PICKED_UP, HoldStatus.EXPIRED, HoldStatus.CANCELLED)


class PickupMode(StrEnum):
    SHELF = "shelf"  # open hold shelf, self-service
    DESK = "desk"  # behind the desk, staff-mediated pickup


def end_transition(current: HoldStatus, outcome: HoldStatus) -> HoldStatus:
    """The status a hold takes when it ends with ``outcome``; ending an ended hold is a conflict."""
    if outcome not in ENDINGS:
        raise ValueError(f"{outcome} does not end a hold")
    if current is not HoldStatus.READY:
        raise Conflict(f"this hold has already ended ({current.label})")
    return outcome


def mode_for(preference: PickupMode | None, default: PickupMode) -> PickupMode:
    """A patron's standing choice wins over the library's default."""
    return preference or default


def stored_preference(choice: PickupMode, default: PickupMode) -> PickupMode | None:
    """What to keep for a patron's choice: nothing when it equals the default (the row goes)."""
    return None if choice is default else choice


@dataclass(frozen=True)
class PickupPolicy:
    """A branch's rule for how long a hold waits."""

    pickup_days: int = 7
    closed_weekdays: frozenset[int] = frozenset()  # 0 = Monday, as date.weekday()

    def __post_init__(self) -> None:
        if not 1 <= self.pickup_days <= MAX_PICKUP_DAYS:
            raise ValueError(f"pickup days must be 1..{MAX_PICKUP_DAYS}")
        if len(self.closed_weekdays) >= 7:
            raise ValueError("a branch cannot be closed every day of the week")

    def pickup_by(self, ready_on: dt.date) -> dt.date:
        """The last day to collect: ``pickup_days`` after ready, moved past closed days so the
        patron's last day is one the branch is open."""
        day = ready_on + dt.timedelta(days=self.pickup_days)
        while day.weekday() in self.closed_weekdays:
            day += dt.timedelta(days=1)
        return day

    def check_requested(self, requested: dt.date, today: dt.date) -> dt.date:
        """A pickup-by date given by the ILS or the clerk, refused when it cannot be meant."""
        if requested < today:
            raise InvalidInput(
                f"the pickup-by date {requested.isoformat()} is in the past", field="pickup_by"
            )
        if requested > today + dt.timedelta(days=MAX_PICKUP_DAYS):
            raise InvalidInput(
                f"the pickup-by date {requested.isoformat()} is more than a year away",
                field="pickup_by",
            )
        return requested


def desk_day(day: dt.date, today: dt.date) -> str:
    """A date as the desk reads it: "Mon 30 Nov", with the year when it is not this year."""
    return day.strftime("%a %d %b" if day.year == today.year else "%a %d %b %Y")


def unlink_cutoff(now: dt.datetime, retention_days: int) -> dt.datetime:
    """Holds that ended at or before this moment must have lost their link to the patron."""
    if not 0 <= retention_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention must be 0..{MAX_RETENTION_DAYS} days")
    return now - dt.timedelta(days=retention_days)


def reuse_cutoff(now: dt.datetime) -> dt.datetime:
    """Codes released at or before this moment have rested long enough to be issued again."""
    return now - CODE_QUARANTINE


@dataclass(frozen=True)
class ShelfEntry:
    """A hold as staff and patrons may see it: no patron, no item, no title.

    This is the allow-list for everything that shows a hold (CLI, shelf lists, JSON)."""

    code: ShelfCode
    branch: str
    branch_name: str
    pickup_by: dt.date
    mode: PickupMode
    move_to_desk: bool = False
    # When the ILS registered it ahead of the item's scan (API "print": "on-scan"); None once
    # the scan printed its slip, and for every other hold.
    awaiting_scan_since: dt.datetime | None = None
    # When a complete report from the ILS first left it out (import --complete): the desk
    # shows it as not in the ILS's last report; None while the ILS lists it.
    not_in_ils_since: dt.datetime | None = None

    @property
    def section(self) -> str:
        return self.code.section

    @property
    def awaits_scan(self) -> bool:
        return self.awaiting_scan_since is not None

    @property
    def missing_from_ils(self) -> bool:
        return self.not_in_ils_since is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.display,
            "section": self.section,
            "branch": self.branch,
            "branch_name": self.branch_name,
            "pickup_by": self.pickup_by.isoformat(),
            "mode": self.mode.value,
            "move_to_desk": self.move_to_desk,
            "awaiting_scan": self.awaits_scan,
        }
