"""tool logins: each person's last login to a tool, from SSO or app-login exports

Revision ID: f6a7b8c9d0e1
Revises: e5f6a7b8c9d0
Create Date: 2026-12-03 19:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f6a7b8c9d0e1"
down_revision: str | None = "e5f6a7b8c9d0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tool_logins",
        sa.Column(
            "tool_id", sa.String(36), sa.ForeignKey("tools.id", name=op.f("fk_tool_logins_tool_id_tools")),
            primary_key=True,
        ),
        sa.Column("person", sa.String(200), primary_key=True),
        sa.Column("last_login", sa.Date(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tool_logins")
