"""suppliers and comments on requests

Revision ID: 23edbdaa110b
Revises: 2a8f29e6c513
Create Date: 2026-12-04 03:38:59.640022
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db


revision: str = '23edbdaa110b'
down_revision: str | None = '2a8f29e6c513'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('suppliers',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('calendar', sa.String(length=100), nullable=False),
    sa.Column('contacts', shared.db.JSONType(), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppliers')),
    sa.UniqueConstraint('name', name=op.f('uq_suppliers_name'))
    )
    op.create_table('request_comments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('deliverable_id', sa.String(length=36), nullable=True),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('mentions', shared.db.JSONType(), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deliverable_id'], ['deliverables.id'], name=op.f('fk_request_comments_deliverable_id_deliverables')),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], name=op.f('fk_request_comments_request_id_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_comments'))
    )
    with op.batch_alter_table('request_comments', schema=None) as batch_op:
        batch_op.create_index('ix_request_comments_request', ['request_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('request_comments', schema=None) as batch_op:
        batch_op.drop_index('ix_request_comments_request')

    op.drop_table('request_comments')
    op.drop_table('suppliers')
