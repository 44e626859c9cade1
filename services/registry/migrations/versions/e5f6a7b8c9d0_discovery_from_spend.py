"""discovery from spend: vendor aliases, discovery candidates, the spend each actual brought

Revision ID: e5f6a7b8c9d0
Revises: d4e5f6a7b8c9
Create Date: 2026-12-03 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "e5f6a7b8c9d0"
down_revision: str | None = "d4e5f6a7b8c9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vendor_aliases",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(200), nullable=False),
        sa.Column(
            "tool_id", sa.String(36), sa.ForeignKey("tools.id", name=op.f("fk_vendor_aliases_tool_id_tools")),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(), nullable=False),
    )
    op.create_table(
        "discovery_candidates",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vendor_key", sa.String(200), nullable=False),
        sa.Column("vendor", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column(
            "tool_id", sa.String(36),
            sa.ForeignKey("tools.id", name=op.f("fk_discovery_candidates_tool_id_tools")), nullable=True,
        ),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", shared.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("vendor_key", name=op.f("uq_discovery_candidates_vendor_key")),
    )
    op.create_table(
        "tool_spend",
        sa.Column("entry_id", sa.String(100), primary_key=True),
        sa.Column("vendor_key", sa.String(200), nullable=False),
        sa.Column(
            "tool_id", sa.String(36), sa.ForeignKey("tools.id", name=op.f("fk_tool_spend_tool_id_tools")),
            nullable=True,
        ),
        sa.Column(
            "candidate_id", sa.String(36),
            sa.ForeignKey("discovery_candidates.id", name=op.f("fk_tool_spend_candidate_id_discovery_candidates")),
            nullable=True,
        ),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("line_code", sa.String(100), nullable=True),
        sa.Column("external_ref", sa.String(200), nullable=True),
    )
    op.create_index("ix_tool_spend_candidate", "tool_spend", ["candidate_id"])
    op.create_index("ix_tool_spend_tool", "tool_spend", ["tool_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_tool_spend_tool", table_name="tool_spend")
    op.drop_index("ix_tool_spend_candidate", table_name="tool_spend")
    op.drop_table("tool_spend")
    op.drop_table("discovery_candidates")
    op.drop_table("vendor_aliases")
