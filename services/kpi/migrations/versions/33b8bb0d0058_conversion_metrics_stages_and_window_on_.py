"""conversion metrics: stages and window on metric definitions

A metric of kind "conversion" is a cohort rate over lifecycle facts: of the entities that reached
from_stage in a bucket, those that reached to_stage within window_days. The columns are null for the
base and derived metrics. On PostgreSQL the BI view bi.metric_definitions shows them too (its grants
stay: CREATE OR REPLACE VIEW keeps them).

Revision ID: 33b8bb0d0058
Revises: e5a7c9d1f3b4
Create Date: 2026-12-04 06:52:58.787523
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "33b8bb0d0058"
down_revision: str | None = "e5a7c9d1f3b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = """
    SELECT key, version, name, description, owner, unit, direction, kind, measurement_type, aggregation,
           distinct_on, filter, formula, depends_on, created_at{extra}
    FROM public.metric_definitions"""


def upgrade() -> None:
    with op.batch_alter_table("metric_definitions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("from_stage", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("to_stage", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("window_days", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        extra = ", from_stage, to_stage, window_days"
        op.execute("CREATE OR REPLACE VIEW bi.metric_definitions AS " + VIEW.format(extra=extra))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # A view cannot lose columns in place: drop it, create it as it was, and grant it again.
        op.execute("DROP VIEW bi.metric_definitions")
        op.execute("CREATE VIEW bi.metric_definitions AS " + VIEW.format(extra=""))
        op.execute(
            """
            DO $$
            BEGIN
                IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pitcrew_bi') THEN
                    GRANT SELECT ON bi.metric_definitions TO pitcrew_bi;
                END IF;
            END $$
            """
        )
    with op.batch_alter_table("metric_definitions", schema=None) as batch_op:
        batch_op.drop_column("window_days")
        batch_op.drop_column("to_stage")
        batch_op.drop_column("from_stage")
