"""Aggregate daily counts: the only trace a hold leaves once it has ended."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from holdshelf.storage.database import dialect_insert
from holdshelf.storage.models import DailyCount


def bump(session: Session, day: dt.date, branch: str, event: str, mode: str, by: int = 1) -> None:
    """Add to a day's counter, atomically (an upsert, safe under concurrent writers)."""
    statement = dialect_insert(session, DailyCount).values(
        day=day, branch=branch, event=event, mode=mode, count=by
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["day", "branch", "event", "mode"],
            set_={"count": DailyCount.count + by},
        )
    )
