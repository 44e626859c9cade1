"""cumulative metrics: base metric and window on metric definitions

A metric of kind "cumulative" is base_metric's value over a running window ending with each bucket's
last day: cumulative is month_to_date, quarter_to_date, year_to_date, fiscal_year_to_date or trailing
(window_days days). The columns are null for the other kinds. On PostgreSQL the BI view
bi.metric_definitions shows them too (CREATE OR REPLACE VIEW keeps its grants).

Revision ID: f2b4d6e8a0c1
Revises: 33b8bb0d0058
Create Date: 2026-12-04 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2b4d6e8a0c1"
down_revision: str | None = "33b8bb0d0058"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = """
    SELECT key, version, name, description, owner, unit, direction, kind, measurement_type, aggregation,
           distinct_on, filter, formula, depends_on, created_at, from_stage, to_stage, window_days{extra}
    FROM public.metric_definitions"""


def upgrade() -> None:
    with op.batch_alter_table("metric_definitions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_metric", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cumulative", sa.String(length=20), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE VIEW bi.metric_definitions AS " + VIEW.format(extra=", base_metric, cumulative"))


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
        batch_op.drop_column("cumulative")
        batch_op.drop_column("base_metric")
