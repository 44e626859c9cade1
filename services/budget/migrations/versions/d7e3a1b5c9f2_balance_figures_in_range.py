"""balances: every running figure within +-10**16 minor units (a CHECK constraint)

Revision ID: d7e3a1b5c9f2
Revises: c4f1d2a9e8b7
Create Date: 2026-12-03 08:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'd7e3a1b5c9f2'
down_revision: str | None = 'c4f1d2a9e8b7'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported: a migration must keep meaning what it meant when written.
FIGURES_IN_RANGE = " AND ".join(
    f"{c} > -10000000000000000 AND {c} < 10000000000000000"
    for c in ("allocated", "committed", "pending", "spent", "own_allocated", "own_committed", "own_pending",
              "own_spent"))


def upgrade() -> None:
    with op.batch_alter_table("balances") as batch:  # SQLite adds a CHECK only by copying the table
        batch.create_check_constraint("figures_in_range", FIGURES_IN_RANGE)


def downgrade() -> None:
    with op.batch_alter_table("balances") as batch:
        batch.drop_constraint("figures_in_range", type_="check")
