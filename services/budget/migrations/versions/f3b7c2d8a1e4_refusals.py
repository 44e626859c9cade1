"""refusals: what the budget refused when it arrived as an event or ERP document, to list and retry

Revision ID: f3b7c2d8a1e4
Revises: e1a2b3c4d5f6
Create Date: 2026-12-03 19:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'f3b7c2d8a1e4'
down_revision: str | None = 'e1a2b3c4d5f6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refusals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("external_ref", sa.String(200), nullable=False),
        sa.Column("request", shared.db.JSONType(), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=True),
        sa.Column("line_code", sa.String(100), nullable=True),
        sa.Column("plan_id", sa.String(36), nullable=True),
        sa.Column("line_id", sa.String(36), nullable=True),
        sa.Column("dimensions", shared.db.JSONType(), nullable=False),
        sa.Column("period", sa.String(7), nullable=True),
        sa.Column("amount", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("commitment_id", sa.String(36), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("retried_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retried_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refusals")),
        sa.UniqueConstraint("kind", "external_ref", name=op.f("uq_refusals_kind_external_ref")),
    )
    op.create_index("ix_refusals_status_created", "refusals", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_refusals_status_created", table_name="refusals")
    op.drop_table("refusals")
