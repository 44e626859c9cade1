"""contracts: what the budget last said about the current term's commitment (budget.commitment.* events)

Revision ID: a7b8c9d0e1f2
Revises: f6a7b8c9d0e1
Create Date: 2026-12-04 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "a7b8c9d0e1f2"
down_revision: str | None = "f6a7b8c9d0e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.add_column(sa.Column("budget_term", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("budget_status", sa.String(20), nullable=True))
        batch.add_column(sa.Column("budget_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("budget_refusal_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("budget_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("budget_code", sa.String(50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        for name in ("budget_code", "budget_reason", "budget_refusal_id", "budget_at", "budget_status", "budget_term"):
            batch.drop_column(name)
