"""holds missing from a complete report

``holdshelf import --complete`` reads a report as the ILS's complete list of the holds waiting
at a branch: an active hold it leaves out is flagged with the moment (``not_in_ils_since``),
and ends when the next complete report leaves it out too.

Revision ID: a4c8e2f6b9d1
Revises: e3f5a7c9b1d2
Create Date: 2026-12-01 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4c8e2f6b9d1"
down_revision: str | None = "e3f5a7c9b1d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("not_in_ils_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    # Only a flag goes: the holds stay, and the next two complete imports flag them again.
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_column("not_in_ils_since")
