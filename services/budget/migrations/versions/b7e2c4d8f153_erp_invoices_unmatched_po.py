"""ERP invoices: the po_number of an invoice posted before its order, to match the order when it comes

Revision ID: b7e2c4d8f153
Revises: a3d9f1c6e820
Create Date: 2026-12-04 08:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e2c4d8f153"
down_revision: str | None = "a3d9f1c6e820"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erp_invoices") as batch:
        batch.add_column(sa.Column("unmatched_po", sa.String(200), nullable=True))
    op.create_index("ix_erp_invoices_unmatched_po", "erp_invoices", ["unmatched_po"])


def downgrade() -> None:
    op.drop_index("ix_erp_invoices_unmatched_po", table_name="erp_invoices")
    with op.batch_alter_table("erp_invoices") as batch:
        batch.drop_column("unmatched_po")
