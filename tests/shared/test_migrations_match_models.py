"""Each app's migrations build exactly the schema its models describe (so a table added to the models,
the shared infrastructure tables included, cannot ship without its migration)."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pitcrew.migrations import upgrade_async
from pitcrew.topology import APPS
from shared.db import create_engine

pytestmark = pytest.mark.db

MODELS = {name: f"{info.module.split(':')[0].rsplit('.', 1)[0]}.models" for name, info in APPS.items()}


def _diff(connection, metadata) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return [
        d
        for d in compare_metadata(context, metadata)
        # alembic's own bookkeeping, and what migrations add by hand (CHECKs, triggers, functions)
        if not (isinstance(d, tuple) and d and str(d[0]).endswith("_table") and d[1].name == "alembic_version")
    ]


@pytest.mark.parametrize("app", sorted(APPS))
async def test_migrations_build_the_models_schema(app, new_db):
    url = await new_db(f"mig{app}")
    await upgrade_async(app, url)
    metadata = importlib.import_module(MODELS[app]).metadata
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff, metadata)
    finally:
        await engine.dispose()
    assert diff == [], f"{app}: the models and the migrations differ: {diff}"


@pytest.mark.parametrize("app", sorted(APPS))
async def test_the_audit_log_refuses_changes_and_deletions(app, new_db):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    url = await new_db(f"aud{app}")
    await upgrade_async(app, url)
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit_log (id, at, actor, actor_kind, action, entity, entity_id) "
                    "VALUES ('a1', CURRENT_TIMESTAMP, 'dana', 'user', 'x.y.z', 'y', '1')"
                )
            )
        for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(text(sql))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT actor FROM audit_log"))).scalar_one() == "dana"
    finally:
        await engine.dispose()
