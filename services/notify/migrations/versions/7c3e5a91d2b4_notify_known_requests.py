"""notify: known_requests (work requests as their submission told them)

Revision ID: 7c3e5a91d2b4
Revises: 1d91a2f14662
Create Date: 2026-12-04 04:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db


revision: str = '7c3e5a91d2b4'
down_revision: str | None = '1d91a2f14662'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('known_requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=True),
    sa.Column('title', sa.String(length=300), nullable=True),
    sa.Column('requester', sa.String(length=200), nullable=True),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_known_requests'))
    )


def downgrade() -> None:
    op.drop_table('known_requests')
