"""layers of the stack: a tool's layer, and the layer configuration (layers and rules)

Revision ID: b2c3d4e5f6a7
Revises: a1b2c3d4e5f6
Create Date: 2026-12-03 18:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "b2c3d4e5f6a7"
down_revision: str | None = "a1b2c3d4e5f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tools") as batch:
        batch.add_column(sa.Column("layer", sa.String(50), nullable=True))
    op.create_table(
        "layer_config",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("document", shared.db.JSONType(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", shared.db.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("layer_config")
    with op.batch_alter_table("tools") as batch:
        batch.drop_column("layer")
