"""anomalies: one per metric, group and day, found by the daily check; dismissals remembered

Revision ID: c9e2a4b6d8f1
Revises: b7d1f3a5c9e2
Create Date: 2026-12-04 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'c9e2a4b6d8f1'
down_revision: str | None = 'b7d1f3a5c9e2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "anomalies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("group_hash", sa.String(32), nullable=False),
        sa.Column("dims", shared.db.JSONType(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("observed", sa.String(40), nullable=False),
        sa.Column("expected", sa.String(40), nullable=False),
        sa.Column("low", sa.String(40), nullable=False),
        sa.Column("high", sa.String(40), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("detected_at", shared.db.UTCDateTime(), nullable=False),
        sa.Column("dismissed_at", shared.db.UTCDateTime(), nullable=True),
        sa.Column("dismissed_by", sa.String(200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.UniqueConstraint("metric", "group_hash", "day", name=op.f("uq_anomalies_metric_group_hash_day")),
    )
    op.create_index("ix_anomalies_day", "anomalies", ["day"])


def downgrade() -> None:
    op.drop_index("ix_anomalies_day", table_name="anomalies")
    op.drop_table("anomalies")
