"""outbox claim index and priority

A worker claims the first due queued row in (priority, id) order. A partial index on queued
rows serves that order and holds next_attempt_at, so a claim no longer walks the day's finished
rows; desk slips (priority 0) go ahead of an import's (1). It replaces the (status, next_attempt_at) index,
which served only the claim, and which SQLite's planner preferred to it (then sorting).

Revision ID: a4d8f6b2c9e1
Revises: b6d2f4a8c0e3
Create Date: 2026-12-01 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4d8f6b2c9e1"
down_revision: str | None = "b6d2f4a8c0e3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("print_jobs", "notices")
QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    for table in TABLES:
        # A server default: rows queued before the upgrade are desk rows, as they were.
        op.add_column(
            table, sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
        )
        op.create_index(
            f"ix_{table}_claim",
            table,
            ["priority", "id", "next_attempt_at"],
            sqlite_where=QUEUED,
            postgresql_where=QUEUED,
        )
        op.drop_index(f"ix_{table}_status_next_attempt_at", table_name=table)


def downgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_status_next_attempt_at", table, ["status", "next_attempt_at"])
        op.drop_index(f"ix_{table}_claim", table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("priority")
