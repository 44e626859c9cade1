"""deliverables of requests: name, owner, status and a due time in business time

Revision ID: c9058695f085
Revises: 3454eb49eef2
Create Date: 2026-12-03 20:12:22.644147
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'c9058695f085'
down_revision: str | None = '3454eb49eef2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('deliverables',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('calendar', sa.String(length=100), nullable=False),
    sa.Column('business_hours', sa.String(length=20), nullable=True),
    sa.Column('due_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', shared.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', shared.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], name=op.f('fk_deliverables_request_id_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliverables'))
    )
    with op.batch_alter_table('deliverables', schema=None) as batch_op:
        batch_op.create_index('ix_deliverables_request', ['request_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('deliverables', schema=None) as batch_op:
        batch_op.drop_index('ix_deliverables_request')

    op.drop_table('deliverables')
