"""bi: read-only views for BI tools on PostgreSQL (schema bi, role pitcrew_bi that can read nothing else)

Revision ID: d1f3b5c7e9a2
Revises: c9e2a4b6d8f1
Create Date: 2026-12-04 04:20:00

PostgreSQL only (SQLite has no schemas nor roles: nothing happens there). The views show values as
decimals (micro-units / 10^6), days and months as dates and dimensions as JSON, the way the API does.
The role is created when the migrating user may create roles (otherwise a NOTICE; see docs/kpi.md#bi
for the two statements an administrator runs instead). It is NOLOGIN: grant it to a login role.
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'd1f3b5c7e9a2'
down_revision: str | None = 'c9e2a4b6d8f1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "pitcrew_bi"
# Spelled out rather than generated: a migration must keep meaning what it meant when written.
VIEWS = {
    "measurements": """
        SELECT m.id, m.type, m.value / 1000000.0 AS value, m.time, d.dims AS dimensions, m.source,
               m.external_id, m.received_at
        FROM public.measurements m JOIN public.dimension_sets d ON d.id = m.dimset_id""",
    "daily": """
        SELECT r.type, DATE '1970-01-01' + r.day AS day, d.dims AS dimensions, r.count,
               r.sum / 1000000.0 AS sum, r.min / 1000000.0 AS min, r.max / 1000000.0 AS max
        FROM public.rollups_daily r JOIN public.dimension_sets d ON d.id = r.dimset_id""",
    "monthly": """
        SELECT r.type, make_date(r.month / 12, r.month % 12 + 1, 1) AS month, d.dims AS dimensions, r.count,
               r.sum / 1000000.0 AS sum, r.min / 1000000.0 AS min, r.max / 1000000.0 AS max
        FROM public.rollups_monthly r JOIN public.dimension_sets d ON d.id = r.dimset_id""",
    "metric_definitions": """
        SELECT key, version, name, description, owner, unit, direction, kind, measurement_type, aggregation,
               distinct_on, filter, formula, depends_on, created_at
        FROM public.metric_definitions""",
    "lifecycle_facts": """
        SELECT entity_id, stage, time, dimensions, source FROM public.lifecycle_facts""",
    "touchpoints": """
        SELECT journey_id, time, channel, campaign FROM public.touchpoints""",
    "conversions": """
        SELECT id, journey_id, time, value / 1000000.0 AS value, dimensions FROM public.conversions""",
    "anomalies": """
        SELECT id, metric, dims AS dimensions, day, observed, expected, low, high, direction, status
        FROM public.anomalies""",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SCHEMA IF NOT EXISTS bi")
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW bi.{name} AS {body}")
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                BEGIN
                    CREATE ROLE {ROLE} NOLOGIN;
                EXCEPTION
                    WHEN duplicate_object OR unique_violation THEN NULL;  -- created meanwhile elsewhere
                    WHEN insufficient_privilege THEN
                        RAISE NOTICE 'role {ROLE} not created: the migrating user may not create roles';
                END;
            END IF;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                GRANT USAGE ON SCHEMA bi TO {ROLE};
                GRANT SELECT ON ALL TABLES IN SCHEMA bi TO {ROLE};
            END IF;
        END $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
                REVOKE ALL ON ALL TABLES IN SCHEMA bi FROM {ROLE};
                REVOKE ALL ON SCHEMA bi FROM {ROLE};
            END IF;
        END $$
        """
    )
    op.execute("DROP SCHEMA bi CASCADE")
