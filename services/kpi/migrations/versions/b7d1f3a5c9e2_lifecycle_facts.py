"""lifecycle facts: the first time a CRM entity reached a stage (lead, mql, sql, opportunity, won, lost)

Revision ID: b7d1f3a5c9e2
Revises: e3a4b5c6d7f8
Create Date: 2026-12-04 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'b7d1f3a5c9e2'
down_revision: str | None = 'e3a4b5c6d7f8'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lifecycle_facts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("time", shared.db.UTCDateTime(), nullable=False),
        sa.Column("dimensions", shared.db.JSONType(), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("received_at", shared.db.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("entity_id", "stage", name=op.f("uq_lifecycle_facts_entity_id_stage")),
    )
    op.create_index("ix_lifecycle_facts_stage_time", "lifecycle_facts", ["stage", "time"])


def downgrade() -> None:
    op.drop_index("ix_lifecycle_facts_stage_time", table_name="lifecycle_facts")
    op.drop_table("lifecycle_facts")
