"""targets: set as a change against last year (basis, basis_value, change)

Revision ID: e5a7c9d1f3b4
Revises: d1f3b5c7e9a2
Create Date: 2026-12-04 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e5a7c9d1f3b4'
down_revision: str | None = 'd1f3b5c7e9a2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.add_column(sa.Column("basis", sa.String(20), nullable=True))
        batch.add_column(sa.Column("basis_value", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("change", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("change")
        batch.drop_column("basis_value")
        batch.drop_column("basis")
