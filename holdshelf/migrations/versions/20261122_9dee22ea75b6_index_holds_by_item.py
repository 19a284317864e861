"""index holds by item

Revision ID: 9dee22ea75b6
Revises: 0007879700f7
Create Date: 2026-11-22 03:09:26.931985
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "9dee22ea75b6"
down_revision: str | None = "0007879700f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index("ix_holds_item_barcode", ["item_barcode"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_item_barcode")
