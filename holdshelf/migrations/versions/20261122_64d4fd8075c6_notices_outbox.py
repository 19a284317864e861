"""notices outbox

Revision ID: 64d4fd8075c6
Revises: 4bc1e2f37de9
Create Date: 2026-11-22 01:59:03.446633
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "64d4fd8075c6"
down_revision: str | None = "4bc1e2f37de9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("leased_until", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("channel IN ('email', 'sms')", name=op.f("ck_notices_channel")),
        sa.CheckConstraint("status = 'queued' OR sealed IS NULL", name=op.f("ck_notices_erased")),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'failed', 'dropped')", name=op.f("ck_notices_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index("ix_notices_branch_code", ["branch", "code"], unique=False)
        batch_op.create_index(
            "ix_notices_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_status_next_attempt_at")
        batch_op.drop_index("ix_notices_branch_code")

    op.drop_table("notices")
