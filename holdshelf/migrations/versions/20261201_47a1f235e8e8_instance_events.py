"""instance events: when the instance last purged and was last backed up

The privacy audit reports when retention last ran; `holdshelf backup` stamps the time of the
copy, which `holdshelf restore` compares with the retention window for hold links.

Revision ID: 47a1f235e8e8
Revises: e81c5d0a7f36
Create Date: 2026-12-01 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "47a1f235e8e8"
down_revision: str | None = "e81c5d0a7f36"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_events",
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event", name=op.f("pk_instance_events")),
    )


def downgrade() -> None:
    op.drop_table("instance_events")
