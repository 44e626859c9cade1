"""KPI test fixtures: a migrated database, the app in-process, clients with an identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from pitcrew.migrations import upgrade_async
from services.kpi.main import create_app
from services.kpi.settings import Settings
from shared.identity import Principal
from tests.harness import header_of


def identity(subject: str = "dana", *roles: str, scopes: tuple[str, ...] = ()) -> dict[str, str]:
    principal = Principal(subject=subject, roles=frozenset(roles or ("admin",)), scopes=frozenset(scopes))
    return header_of(principal)  # valid for the whole run (tests/harness.py)


@dataclass
class Kpi:
    app: Any
    client: httpx.AsyncClient
    url: str

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def as_(self, subject: str, *roles: str, scopes: tuple[str, ...] = ()) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://kpi",
            headers=identity(subject, *roles, scopes=scopes),
        )


@pytest.fixture()
async def kpi_db(new_db) -> str:
    url = await new_db("kpi")
    await upgrade_async("kpi", url)
    return url


async def start_kpi(url: str, nats_url: str, **overrides: Any) -> AsyncIterator[Kpi]:
    settings = Settings(
        database_url=url, nats_url=nats_url, outbox_poll_seconds=0.1, target_check_seconds=0, **overrides
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://kpi",
            headers=identity("dana", "admin"),
        ) as client:
            yield Kpi(app, client, url)


@pytest.fixture()
async def kpi(kpi_db: str) -> AsyncIterator[Kpi]:
    """The service without NATS (for API tests that need no events)."""
    async for k in start_kpi(kpi_db, "nats://127.0.0.1:1", nats_enabled=False):
        yield k


@pytest.fixture()
async def kpi_nats(kpi_db: str, nats_url: str) -> AsyncIterator[Kpi]:
    async for k in start_kpi(kpi_db, nats_url):
        yield k
