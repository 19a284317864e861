"""leases and shared rate buckets

Several app processes on one database: a lease row per job that must run in one process at a
time (the hourly purge, the ILS sync), and per-key time slots counting requests for the
limits every process shares.

Revision ID: 3227f81b1acd
Revises: d5b9e3f7a1c6
Create Date: 2026-12-01 18:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3227f81b1acd"
down_revision: str | None = "d5b9e3f7a1c6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "slot", name=op.f("pk_rate_buckets")),
    )
    op.create_index(op.f("ix_rate_buckets_slot"), "rate_buckets", ["slot"])


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_buckets_slot"), table_name="rate_buckets")
    op.drop_table("rate_buckets")
    op.drop_table("leases")
