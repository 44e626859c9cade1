"""rollups: every sum within +-10**18 micro-units (a CHECK constraint)

Revision ID: a3c5e7f9b1d4
Revises: ef7ab7d156c2
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'a3c5e7f9b1d4'
down_revision: str | None = 'ef7ab7d156c2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported: a migration must keep meaning what it meant when written.
SUM_IN_RANGE = "sum > -1000000000000000000 AND sum < 1000000000000000000"
TABLES = ("rollups_daily", "rollups_monthly")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:  # SQLite adds a CHECK only by copying the table
            batch.create_check_constraint("sum_in_range", SUM_IN_RANGE)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint("sum_in_range", type_="check")
