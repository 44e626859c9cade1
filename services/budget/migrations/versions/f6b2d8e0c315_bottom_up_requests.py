"""bottom-up requests: a line owner's requested amounts per line and month, decided by the workflow

Revision ID: f6b2d8e0c315
Revises: e5a1c7d9b204
Create Date: 2026-12-04 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "f6b2d8e0c315"
down_revision: str | None = "e5a1c7d9b204"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budget_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requester_scopes", shared.db.JSONType(), nullable=False),
        sa.Column("instance_id", sa.String(100), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("history", shared.db.JSONType(), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_budget_requests_plan_id_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_requests")),
    )
    op.create_index("ix_budget_requests_created", "budget_requests", ["created_at", "id"])
    op.create_table(
        "budget_request_items",
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("line_id", sa.String(36), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["budget_requests.id"], name=op.f("fk_budget_request_items_request_id_budget_requests")
        ),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_budget_request_items_line_id_lines")),
        sa.PrimaryKeyConstraint("request_id", "line_id", "period", name=op.f("pk_budget_request_items")),
    )


def downgrade() -> None:
    op.drop_table("budget_request_items")
    op.drop_index("ix_budget_requests_created", table_name="budget_requests")
    op.drop_table("budget_requests")
