"""Use case: holds end when the ILS says so. Every active hold is asked about (the worker
every ``[ils] sync_minutes``, ``holdshelf sync`` on demand); one the ILS says was picked up,
cancelled or expired ends here with that reason, so its link to the patron is deleted without
staff action. A hold the ILS cannot answer about stays, and is counted.

Gentle on the ILS: one branch at a time on its own account, at most ``sync_per_second``
lookups per second, and a branch whose ILS stops answering is left after its first failure
(its remaining holds are counted as not checked) instead of waiting out a timeout per hold.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from holdshelf.clock import Clock
from holdshelf.domain.holds import HoldStatus
from holdshelf.ils.answers import Connector, HoldState, IlsUnavailable
from holdshelf.service import HoldService
from holdshelf.settings import Settings
from holdshelf.workflow.checkin import account_of
from holdshelf.workflow.views import ActiveHold

log = logging.getLogger(__name__)

# The periodic sync leaves holds this young alone: the ILS may not have recorded the trap yet
# (a report imported, a push registered a moment before the ILS committed).
SETTLING = dt.timedelta(minutes=1)
ENDED_HERE = {
    HoldState.PICKED_UP: HoldStatus.PICKED_UP,
    HoldState.EXPIRED: HoldStatus.EXPIRED,
}


class Stopping(Protocol):
    """What tells a sync to stop: the worker's stop event, or that and its lease lost."""

    def is_set(self) -> bool: ...


@dataclass
class SyncReport:
    checked: int = 0
    waiting: int = 0
    ended: Counter[HoldStatus] = field(default_factory=Counter)
    unchecked: int = 0  # the ILS could not say (down, unknown item): these holds stay
    problems: list[str] = field(default_factory=list)  # one line per branch that failed

    def line(self) -> str:
        ended = ", ".join(
            f"{self.ended[status]} {status.label}"
            for status in (HoldStatus.PICKED_UP, HoldStatus.CANCELLED, HoldStatus.EXPIRED)
        )
        text = f"{self.checked} holds checked with the ILS: {self.waiting} still waiting, {ended}"
        if self.unchecked:
            text += f"; {self.unchecked} could not be checked"
        return text


class IlsSync:
    def __init__(
        self,
        settings: Settings,
        service: HoldService,
        connector: Connector,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self._service = service
        self._connector = connector
        self._clock = clock
        self._interval = 1 / settings.ils.sync_per_second

    def run(
        self,
        branch_id: str | None = None,
        *,
        settle: bool = False,
        stop: Stopping | None = None,
    ) -> SyncReport:
        """Ask the ILS about every active hold (of ``branch_id``, else of every branch);
        ``settle`` leaves holds made in the last minute (the periodic sync). Once ``stop``
        is set, what was learned is applied and the rest counted as not checked."""
        report = SyncReport()
        branches = [branch_id] if branch_id else list(self.settings.branches)
        made_before = self._clock() - SETTLING if settle else None
        for branch in branches:
            holds = self._service.active_holds(branch, made_before)
            ended = self._ask(branch, holds, report, stop)
            report.ended.update(self._service.end_in_ils(ended))
        log.info("ILS sync: %s", report.line())
        return report

    def _ask(
        self,
        branch_id: str,
        holds: list[ActiveHold],
        report: SyncReport,
        stop: Stopping | None,
    ) -> list[tuple[ActiveHold, HoldStatus]]:
        account = account_of(self.settings.branch(branch_id))
        today = self._clock.today()
        ended: list[tuple[ActiveHold, HoldStatus]] = []
        next_at = time.monotonic()
        for position, hold in enumerate(holds):
            if stop is not None and stop.is_set():
                report.unchecked += len(holds) - position
                break
            next_at = _pace(next_at, self._interval)
            try:
                state = self._connector.hold_state(
                    account, hold.item, self._service.is_patron(hold)
                )
            except IlsUnavailable as exc:
                report.problems.append(f"{branch_id}: {exc}")
                report.unchecked += len(holds) - position
                log.warning("ILS sync of branch %s stopped: %s", branch_id, exc)
                break
            if state is HoldState.UNKNOWN:
                report.unchecked += 1
                continue
            report.checked += 1
            if state is HoldState.WAITING:
                report.waiting += 1
                continue
            ended.append((hold, _outcome(state, hold, today)))
        return ended


def _outcome(state: HoldState, hold: ActiveHold, today: dt.date) -> HoldStatus:
    """How a hold the ILS ended ends here: an ILS that says only "ended" (cancelled, or
    expired without saying so) counts as expired once the pickup-by date has passed."""
    if state in ENDED_HERE:
        return ENDED_HERE[state]
    return HoldStatus.EXPIRED if hold.pickup_by < today else HoldStatus.CANCELLED


def _pace(next_at: float, interval: float) -> float:
    """Wait until ``next_at``; the time the lookup after this one may start. The next slot
    follows this one, not the moment the sleep ended, so waking late does not lower the rate;
    a sync that fell behind (a slow ILS) goes on from now rather than bursting to catch up."""
    now = time.monotonic()
    if next_at > now:
        time.sleep(next_at - now)
    return max(next_at, now) + interval
