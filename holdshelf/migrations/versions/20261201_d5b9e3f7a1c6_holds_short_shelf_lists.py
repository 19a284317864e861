"""indexes of the shelf page: its counts by section, and its short lists

The shelf page lists the items an ILS registered that wait for their scan, and the open-shelf
holds whose patrons chose the desk. Both are a handful, but they were found by walking all of
a branch's active holds (32 and 16 ms at 20,000); partial indexes of just those rows find them
at once. The index of active holds in shelving order (branch, code) grows the columns the
counts by section read (mode, pickup_by, not_in_ils_since), so the counts read the index
alone, not every row of the branch.

Revision ID: d5b9e3f7a1c6
Revises: a4d8f6b2c9e1
Create Date: 2026-12-01 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d5b9e3f7a1c6"
down_revision: str | None = "a4d8f6b2c9e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AWAITING_SCAN = sa.text("status = 'ready' AND on_scan IS NOT NULL")


ACTIVE = sa.text("status = 'ready'")


def upgrade() -> None:
    op.drop_index("ix_holds_active_branch_code", table_name="holds")
    op.create_index(
        "ix_holds_active_shelf",
        "holds",
        ["branch", "code", "mode", "pickup_by", "not_in_ils_since", "status"],
        unique=False,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index(
        "ix_holds_awaiting_scan",
        "holds",
        ["branch", "ready_at"],
        unique=False,
        sqlite_where=AWAITING_SCAN,
        postgresql_where=AWAITING_SCAN,
    )
    op.create_index(
        "ix_holds_to_move",
        "holds",
        ["branch", "code"],
        unique=False,
        sqlite_where=sa.text("status = 'ready' AND move_to_desk IS 1"),
        postgresql_where=sa.text("status = 'ready' AND move_to_desk IS true"),
    )


def downgrade() -> None:
    op.drop_index("ix_holds_to_move", table_name="holds")
    op.drop_index("ix_holds_awaiting_scan", table_name="holds")
    op.drop_index("ix_holds_active_shelf", table_name="holds")
    op.create_index(
        "ix_holds_active_branch_code",
        "holds",
        ["branch", "code"],
        unique=False,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
