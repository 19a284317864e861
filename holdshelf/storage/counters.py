"""Aggregate daily counts: the only trace a hold leaves once it has ended."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from holdshelf.storage.models import DailyCount

COUNTS = DailyCount.__table__


@functools.cache
def _upsert(dialect: str) -> Any:
    """The counter's upsert, built once per dialect: every hold made or ended runs it, and
    building the statement anew cost seven times what running it does."""
    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(COUNTS)
    statement = insert.values(
        day=bindparam("day"),
        branch=bindparam("branch"),
        event=bindparam("event"),
        mode=bindparam("mode"),
        count=bindparam("by"),
    )
    return statement.on_conflict_do_update(
        index_elements=["day", "branch", "event", "mode"],
        set_={"count": COUNTS.c.count + statement.excluded["count"]},
    )


def bump(session: Session, day: dt.date, branch: str, event: str, mode: str, by: int = 1) -> None:
    """Add to a day's counter, atomically (an upsert, safe under concurrent writers)."""
    connection = session.connection()
    parameters = {"day": day, "branch": branch, "event": event, "mode": mode, "by": by}
    connection.execute(_upsert(connection.dialect.name), parameters)
