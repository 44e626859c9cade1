"""teams and their calendars

Revision ID: e12e2b74937a
Revises: b81bebf81778
Create Date: 2026-12-04 07:35:58.894846
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db


revision: str = 'e12e2b74937a'
down_revision: str | None = 'b81bebf81778'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('teams',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('calendar', sa.String(length=100), nullable=True),
    sa.Column('members', shared.db.JSONType(), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_teams'))
    )


def downgrade() -> None:
    op.drop_table('teams')
