"""print agents

A token's scope ("api" or "print-agent"), and what each branch print agent last said.

Revision ID: ad46d57a8951
Revises: 47a1f235e8e8
Create Date: 2026-12-01 18:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ad46d57a8951"
down_revision: str | None = "47a1f235e8e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.String(length=16), server_default="api", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_api_tokens_scope"), "scope IN ('api', 'print-agent')"
        )
    op.create_table(
        "print_agents",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=32), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("printer_status", sa.String(length=200), nullable=False),
        sa.Column("printer_ok", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["api_tokens.id"],
            name=op.f("fk_print_agents_token_id_api_tokens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_print_agents")),
    )


def downgrade() -> None:
    op.drop_table("print_agents")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_tokens_scope"), type_="check")
        batch_op.drop_column("scope")
