"""ERP mapping rules: campaign_code as a coordinate, and a version (If-Match) so rules can be edited

Revision ID: a3d9f1c6e820
Revises: f6b2d8e0c315
Create Date: 2026-12-04 07:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "a3d9f1c6e820"
down_revision: str | None = "f6b2d8e0c315"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erp_mapping_rules") as batch:
        batch.add_column(sa.Column("campaign_code", sa.String(200), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("updated_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("updated_at", shared.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("erp_mapping_rules") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("updated_by")
        batch.drop_column("version")
        batch.drop_column("campaign_code")
