"""plans: fiscal_year_start (the month a fiscal year starts) and control_period (the overspend check's scope)

Revision ID: a8c5e2f17b30
Revises: f3b7c2d8a1e4
Create Date: 2026-12-04 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a8c5e2f17b30'
down_revision: str | None = 'f3b7c2d8a1e4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("fiscal_year_start", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("control_period", sa.String(20), nullable=False, server_default="month"))
        batch.create_check_constraint("fiscal_year_start_month", "fiscal_year_start BETWEEN 1 AND 12")


def downgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.drop_constraint("fiscal_year_start_month", type_="check")
        batch.drop_column("control_period")
        batch.drop_column("fiscal_year_start")
