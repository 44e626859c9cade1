"""ERP mapping rules (coordinates -> line code) and the suspense queue of unmatched documents

Revision ID: b41d7c9e2a55
Revises: a8c5e2f17b30
Create Date: 2026-12-04 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'b41d7c9e2a55'
down_revision: str | None = 'a8c5e2f17b30'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erp_mapping_rules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("company_code", sa.String(200), nullable=True),
        sa.Column("cost_center", sa.String(200), nullable=True),
        sa.Column("gl_account", sa.String(200), nullable=True),
        sa.Column("vendor", sa.String(200), nullable=True),
        sa.Column("internal_order", sa.String(200), nullable=True),
        sa.Column("line_code", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erp_mapping_rules")),
    )
    op.create_index("ix_erp_mapping_rules_priority", "erp_mapping_rules", ["priority", "id"])
    op.create_table(
        "erp_suspense",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("document_ref", sa.String(200), nullable=False),
        sa.Column("request", shared.db.JSONType(), nullable=False),
        sa.Column("coordinates", shared.db.JSONType(), nullable=False),
        sa.Column("amount", sa.String(40), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_by", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("line_code", sa.String(100), nullable=True),
        sa.Column("result_id", sa.String(36), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("posted_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erp_suspense")),
        sa.UniqueConstraint("kind", "document_ref", name=op.f("uq_erp_suspense_kind_document_ref")),
    )
    op.create_index("ix_erp_suspense_status_created", "erp_suspense", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_erp_suspense_status_created", table_name="erp_suspense")
    op.drop_table("erp_suspense")
    op.drop_index("ix_erp_mapping_rules_priority", table_name="erp_mapping_rules")
    op.drop_table("erp_mapping_rules")
