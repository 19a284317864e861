"""The database's plan for a statement, as text: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's
EXPLAIN with table scans switched off (on a test's handful of rows a scan is the cheapest plan,
so only this shows whether an index can serve the statement)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine


def query_plan(engine: Engine, statement: str, parameters: Any) -> str:
    """``statement`` with its driver-level ``parameters`` (as a cursor receives them)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        else:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return " ".join(str(row) for row in plan)
