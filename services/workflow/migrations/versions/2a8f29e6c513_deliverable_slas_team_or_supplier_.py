"""deliverable SLAs: team or supplier, warning and breach, the paused clock, rework rounds

Revision ID: 2a8f29e6c513
Revises: c9058695f085
Create Date: 2026-12-04 03:36:59.508102
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db


revision: str = '2a8f29e6c513'
down_revision: str | None = 'c9058695f085'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deliverables', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('supplier_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('sla_kind', sa.String(length=30), server_default='ola', nullable=False))
        batch_op.add_column(sa.Column('warn_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sla_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('warned', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('breached', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('escalated', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('escalation', shared.db.JSONType(), nullable=True))
        batch_op.add_column(sa.Column('paused_remaining_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('paused_warn_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rework_rounds', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('link', sa.String(length=2000), nullable=True))
        batch_op.alter_column('owner',
               existing_type=sa.VARCHAR(length=200),
               nullable=True)
        batch_op.create_index('ix_deliverables_due', ['due_at'], unique=False)
        batch_op.create_index('ix_deliverables_supplier', ['supplier_id', 'due_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('deliverables', schema=None) as batch_op:
        batch_op.drop_index('ix_deliverables_supplier')
        batch_op.drop_index('ix_deliverables_due')
        batch_op.alter_column('owner',
               existing_type=sa.VARCHAR(length=200),
               nullable=False)
        batch_op.drop_column('link')
        batch_op.drop_column('rework_rounds')
        batch_op.drop_column('paused_warn_seconds')
        batch_op.drop_column('paused_remaining_seconds')
        batch_op.drop_column('escalation')
        batch_op.drop_column('escalated')
        batch_op.drop_column('breached')
        batch_op.drop_column('warned')
        batch_op.drop_column('sla_seconds')
        batch_op.drop_column('warn_at')
        batch_op.drop_column('sla_kind')
        batch_op.drop_column('supplier_id')
        batch_op.drop_column('team')

