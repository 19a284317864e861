"""holds registered ahead of the item's scan

An ILS that pushes a trapped hold with "print": "on-scan" registers it before the item is
scanned at the desk: the hold keeps its title and contacts, sealed, in ``on_scan`` until the
scan queues its slip and notices.

Revision ID: e3f5a7c9b1d2
Revises: c7e1a9d2b4f0
Create Date: 2026-12-01 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e3f5a7c9b1d2"
down_revision: str | None = "c7e1a9d2b4f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("holds", sa.Column("on_scan", sa.Text(), nullable=True))


def downgrade() -> None:
    # A hold still waiting for its scan would otherwise lose its notices without a word: the
    # downgrade refuses while there are any.
    waiting = op.get_bind().execute(sa.text("SELECT count(*) FROM holds WHERE on_scan IS NOT NULL"))
    if waiting.scalar():
        raise RuntimeError("holds registered by the ILS still wait for their scan: scan them first")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_column("on_scan")
