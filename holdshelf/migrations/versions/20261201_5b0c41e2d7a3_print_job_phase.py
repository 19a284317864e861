"""print job phase

Revision ID: 5b0c41e2d7a3
Revises: 9dee22ea75b6
Create Date: 2026-12-01 10:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b0c41e2d7a3"
down_revision: str | None = "9dee22ea75b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows get NULL: no attempt of theirs is known to be in flight.
    with op.batch_alter_table("print_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phase", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("process_id", sa.String(length=4), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_print_jobs_phase"), "phase IN ('sending', 'accepted')"
        )


def downgrade() -> None:
    with op.batch_alter_table("print_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_print_jobs_phase"), type_="check")
        batch_op.drop_column("process_id")
        batch_op.drop_column("phase")
