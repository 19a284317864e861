"""print jobs may fail

The shared outbox records a delivery that failed for good as 'failed'; the print jobs' CHECK
constraint (unlike the notices') forbade it.

Revision ID: c7e1a9d2b4f0
Revises: 5b0c41e2d7a3
Create Date: 2026-12-01 11:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "c7e1a9d2b4f0"
down_revision: str | None = "5b0c41e2d7a3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _status_check(allowed: str) -> None:
    with op.batch_alter_table("print_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_print_jobs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_print_jobs_status"), f"status IN ({allowed})")


def upgrade() -> None:
    _status_check("'queued', 'sent', 'failed', 'dropped'")


def downgrade() -> None:
    op.execute("UPDATE print_jobs SET status = 'dropped' WHERE status = 'failed'")
    _status_check("'queued', 'sent', 'dropped'")
