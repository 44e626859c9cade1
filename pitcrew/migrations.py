"""Alembic per app: upgrade or revise the database of a named app (its `migrations/` folder)."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config

from pitcrew.topology import APPS
from shared.db import async_url


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
