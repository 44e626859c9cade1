"""budget_refuse(): lets the one-statement posting refuse a shortfall (PostgreSQL only)

Revision ID: c4f1d2a9e8b7
Revises: 2b6db6e1d294
Create Date: 2026-11-23 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'c4f1d2a9e8b7'
down_revision: str | None = '2b6db6e1d294'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Raised from inside the posting statement (services/budget/posting.py) so that statement, and
# everything it inserted, is undone; the shortfalls travel as JSON in the error's DETAIL.
REFUSE = """
CREATE OR REPLACE FUNCTION budget_refuse(shortfalls json) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the posting would leave available money negative'
        USING ERRCODE = 'PB001', DETAIL = shortfalls::text;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(REFUSE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS budget_refuse(json)")
