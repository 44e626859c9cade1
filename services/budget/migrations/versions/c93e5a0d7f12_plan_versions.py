"""plan versions (forecasts and scenarios) and their amounts per line and month

Revision ID: c93e5a0d7f12
Revises: b41d7c9e2a55
Create Date: 2026-12-04 04:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'c93e5a0d7f12'
down_revision: str | None = 'b41d7c9e2a55'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan_versions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("as_of", sa.String(7), nullable=True),
        sa.Column("source", sa.String(60), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("promoted_to", sa.String(20), nullable=True),
        sa.Column("promoted_version_id", sa.String(36), nullable=True),
        sa.Column("promoted_by", sa.String(200), nullable=True),
        sa.Column("promoted_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_plan_versions_plan_id_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_versions")),
        sa.UniqueConstraint("plan_id", "seq", name=op.f("uq_plan_versions_plan_id_seq")),
    )
    op.create_table(
        "version_amounts",
        sa.Column("version_id", sa.String(36), nullable=False),
        sa.Column("line_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"], ["plan_versions.id"], name=op.f("fk_version_amounts_version_id_plan_versions")
        ),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_version_amounts_line_id_lines")),
        sa.PrimaryKeyConstraint("version_id", "line_id", "period", name=op.f("pk_version_amounts")),
    )


def downgrade() -> None:
    op.drop_table("version_amounts")
    op.drop_table("plan_versions")
