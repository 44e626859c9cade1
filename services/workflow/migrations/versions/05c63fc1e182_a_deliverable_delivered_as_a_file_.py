"""a deliverable delivered as a file: attachments of deliverables

Revision ID: 05c63fc1e182
Revises: 6643349543d9
Create Date: 2026-12-04 04:12:01.046348
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db


revision: str = '05c63fc1e182'
down_revision: str | None = '6643349543d9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deliverable_id', sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_attachments_deliverable_id_deliverables'), 'deliverables', ['deliverable_id'], ['id'])

    with op.batch_alter_table('deliverables', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attachment_id', sa.String(length=36), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('deliverables', schema=None) as batch_op:
        batch_op.drop_column('attachment_id')

    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_attachments_deliverable_id_deliverables'), type_='foreignkey')
        batch_op.drop_column('deliverable_id')

