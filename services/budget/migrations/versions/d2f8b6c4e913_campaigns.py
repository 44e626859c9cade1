"""campaigns, and the campaign a commitment or a ledger entry funds

Revision ID: d2f8b6c4e913
Revises: c93e5a0d7f12
Create Date: 2026-12-04 04:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'd2f8b6c4e913'
down_revision: str | None = 'c93e5a0d7f12'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("planned_cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("line_ids", shared.db.JSONType(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_campaigns_plan_id_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("plan_id", "code", name=op.f("uq_campaigns_plan_id_code")),
    )
    op.add_column("commitments", sa.Column("campaign_id", sa.String(36), nullable=True))
    op.add_column("entries", sa.Column("campaign_id", sa.String(36), nullable=True))
    op.create_index(
        "ix_entries_campaign",
        "entries",
        ["campaign_id"],
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
        sqlite_where=sa.text("campaign_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_entries_campaign", table_name="entries")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("campaign_id")
    with op.batch_alter_table("commitments") as batch:
        batch.drop_column("campaign_id")
    op.drop_table("campaigns")
