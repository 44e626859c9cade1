"""renewal decisions: what each review decided and what the registry did; a contract's notice

Revision ID: d4e5f6a7b8c9
Revises: c3d4e5f6a7b8
Create Date: 2026-12-03 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "d4e5f6a7b8c9"
down_revision: str | None = "c3d4e5f6a7b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.add_column(sa.Column("notice_given_at", shared.db.UTCDateTime(), nullable=True))
    op.create_table(
        "renewal_decisions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "contract_id",
            sa.String(36),
            sa.ForeignKey("contracts.id", name=op.f("fk_renewal_decisions_contract_id_contracts")),
            nullable=False,
        ),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("notice_deadline", sa.Date(), nullable=False),
        sa.Column("decided_at", shared.db.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("effect", sa.Text(), nullable=False),
        sa.Column("new_terms", shared.db.JSONType(), nullable=True),
        sa.Column("next_term", sa.Integer(), nullable=True),
        sa.Column("auto_renewed_term", sa.Integer(), nullable=True),
        sa.Column("updated_at", shared.db.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("instance_id", name=op.f("uq_renewal_decisions_instance_id")),
    )
    op.create_index("ix_renewal_decisions_contract", "renewal_decisions", ["contract_id", "term"])


def downgrade() -> None:
    op.drop_index("ix_renewal_decisions_contract", table_name="renewal_decisions")
    op.drop_table("renewal_decisions")
    with op.batch_alter_table("contracts") as batch:
        batch.drop_column("notice_given_at")
