"""integrations: health (last seen working, detail), a version, and their history

Revision ID: a1b2c3d4e5f6
Revises: e4a5b6c7d8f9
Create Date: 2026-12-03 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "a1b2c3d4e5f6"
down_revision: str | None = "e4a5b6c7d8f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("last_seen_working_at", shared.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("health_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("updated_at", shared.db.UTCDateTime(), nullable=True))
    op.create_table(
        "integration_history",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("integration_id", sa.String(36), sa.ForeignKey("integrations.id", name=op.f("fk_integration_history_integration_id_integrations")), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", shared.db.UTCDateTime(), nullable=False),
        sa.Column("changes", shared.db.JSONType(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_integration_history_integration", "integration_history", ["integration_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_integration_history_integration", table_name="integration_history")
    op.drop_table("integration_history")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("version")
        batch.drop_column("health_detail")
        batch.drop_column("last_seen_working_at")
