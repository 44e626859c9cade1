"""request types (versioned intake forms), requests and the per-year counter of their numbers

Revision ID: 3454eb49eef2
Revises: e2a3b4c5d6f7
Create Date: 2026-12-03 19:54:18.054146
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '3454eb49eef2'
down_revision: str | None = 'e2a3b4c5d6f7'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('request_counters',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_request_counters'))
    )
    op.create_table('request_types',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('form', shared.db.JSONType(), nullable=False),
    sa.Column('definition_key', sa.String(length=100), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_types')),
    sa.UniqueConstraint('key', 'version', name=op.f('uq_request_types_key_version'))
    )
    op.create_table('requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('number', sa.String(length=30), nullable=False),
    sa.Column('request_type_id', sa.String(length=36), nullable=False),
    sa.Column('type_key', sa.String(length=100), nullable=False),
    sa.Column('type_version', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('data', shared.db.JSONType(), nullable=False),
    sa.Column('requester', sa.String(length=200), nullable=False),
    sa.Column('instance_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_requests_instance_id_instances')),
    sa.ForeignKeyConstraint(['request_type_id'], ['request_types.id'], name=op.f('fk_requests_request_type_id_request_types')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requests')),
    sa.UniqueConstraint('number', name=op.f('uq_requests_number'))
    )
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.create_index('ix_requests_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_requests_type', ['type_key', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index('ix_requests_type')
        batch_op.drop_index('ix_requests_created')

    op.drop_table('requests')
    op.drop_table('request_types')
    op.drop_table('request_counters')
