"""initial schema

Revision ID: d11314671de3
Revises:
Create Date: 2026-11-22 01:08:23.903778
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d11314671de3"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daily_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("branch", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "branch", "event", "mode", name=op.f("pk_daily_counts")),
    )
    op.create_table(
        "patron_preferences",
        sa.Column("patron", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.CheckConstraint("mode IN ('shelf', 'desk')", name=op.f("ck_patron_preferences_mode")),
        sa.PrimaryKeyConstraint("patron", name=op.f("pk_patron_preferences")),
    )
    op.create_table(
        "shelf_codes",
        sa.Column("branch", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("branch", "code", name=op.f("pk_shelf_codes")),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("item_barcode", sa.String(length=64), nullable=False),
        sa.Column("patron", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pickup_by", sa.Date(), nullable=False),
        sa.Column("ready_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("move_to_desk", sa.Boolean(), nullable=False),
        sa.CheckConstraint("mode IN ('shelf', 'desk')", name=op.f("ck_holds_mode")),
        sa.CheckConstraint("status = 'ready' OR ended_at IS NOT NULL", name=op.f("ck_holds_ended")),
        sa.CheckConstraint(
            "status IN ('ready', 'picked_up', 'expired', 'cancelled')", name=op.f("ck_holds_status")
        ),
        sa.ForeignKeyConstraint(
            ["branch", "code"],
            ["shelf_codes.branch", "shelf_codes.code"],
            name=op.f("fk_holds_branch_shelf_codes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("branch", "code", name=op.f("uq_holds_branch_code")),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index("ix_holds_patron", ["patron"], unique=False)
        batch_op.create_index("ix_holds_status_pickup_by", ["status", "pickup_by"], unique=False)
        batch_op.create_index(
            "uq_holds_active_item",
            ["item_barcode"],
            unique=True,
            sqlite_where=sa.text("status = 'ready'"),
            postgresql_where=sa.text("status = 'ready'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_holds_active_item",
            sqlite_where=sa.text("status = 'ready'"),
            postgresql_where=sa.text("status = 'ready'"),
        )
        batch_op.drop_index("ix_holds_status_pickup_by")
        batch_op.drop_index("ix_holds_patron")

    op.drop_table("holds")
    op.drop_table("shelf_codes")
    op.drop_table("patron_preferences")
    op.drop_table("daily_counts")
