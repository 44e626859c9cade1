"""campaign activities

Revision ID: e5a1c7d9b204
Revises: d2f8b6c4e913
Create Date: 2026-12-04 04:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'e5a1c7d9b204'
down_revision: str | None = 'd2f8b6c4e913'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_activities",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("campaign_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("planned_cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_activities_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_activities")),
    )
    op.create_index(
        "ix_campaign_activities_campaign", "campaign_activities", ["campaign_id", "starts_on"]
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_activities_campaign", table_name="campaign_activities")
    op.drop_table("campaign_activities")
