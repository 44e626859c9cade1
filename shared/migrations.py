"""Alembic wiring: each app keeps `migrations/` for its own database only."""

from __future__ import annotations

import asyncio

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from shared.db import async_url, create_engine
from shared.topology import APPS


def alembic_config(app: str, url: str) -> Config:
    info = APPS[app]
    cfg = Config()
    cfg.set_main_option("script_location", str(info.migrations_dir))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    cfg.set_main_option("version_path_separator", "os")
    cfg.attributes["app"] = app
    return cfg


def upgrade(app: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(app, url), revision)


async def upgrade_async(app: str, url: str, revision: str = "head") -> None:
    """Run migrations from async code (Alembic's env runs its own event loop)."""
    await asyncio.to_thread(upgrade, app, url, revision)


def revision(app: str, url: str, message: str) -> None:
    """Autogenerate a new revision by comparing the models with an up-to-date database."""
    cfg = alembic_config(app, url)
    command.upgrade(cfg, "head")
    command.revision(cfg, message=message, autogenerate=True)


def run_env(target_metadata: MetaData) -> None:
    """Body of every app's `migrations/env.py`."""
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                          render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata))


def _do_run(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, target_metadata: MetaData) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_do_run, target_metadata)
            await connection.commit()
    finally:
        await engine.dispose()
