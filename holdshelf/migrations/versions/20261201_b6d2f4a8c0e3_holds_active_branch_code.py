"""indexes of the active holds: in shelving order, and by pickup-by date

The shelf's reads (GET /api/v1/holds a page at a time, the desk's shelf page a section at a
time, the counts by section) walk a branch's active holds by code. With every hold active,
SQLite chose ``ix_holds_status_pickup_by`` for ``status = 'ready'`` and sorted all of them
for each page; a partial index of the active holds by (branch, code) serves them in order.
The (status, pickup_by) index becomes a partial index of the active holds by pickup_by (every
query of it asks for active holds), so no index leads with the status to be chosen wrongly.

Revision ID: b6d2f4a8c0e3
Revises: a4c8e2f6b9d1
Create Date: 2026-12-01 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b6d2f4a8c0e3"
down_revision: str | None = "a4c8e2f6b9d1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status = 'ready'")


def upgrade() -> None:
    op.drop_index("ix_holds_status_pickup_by", table_name="holds")
    op.create_index(
        "ix_holds_active_pickup_by",
        "holds",
        ["pickup_by"],
        unique=False,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index(
        "ix_holds_active_branch_code",
        "holds",
        ["branch", "code"],
        unique=False,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_holds_active_branch_code", table_name="holds")
    op.drop_index("ix_holds_active_pickup_by", table_name="holds")
    op.create_index("ix_holds_status_pickup_by", "holds", ["status", "pickup_by"], unique=False)
