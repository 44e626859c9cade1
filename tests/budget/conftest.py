"""Budget fixtures: the service in-process on a migrated throwaway database, called with minted identities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pitcrew.migrations import upgrade_async
from services.budget.main import create_app
from services.budget.settings import Settings
from shared.identity import Principal
from tests.harness import header_of


def who(*roles: str, scopes: tuple[str, ...] = (), subject: str = "dana") -> dict[str, str]:
    return header_of(Principal(subject, frozenset(roles), frozenset(scopes)))  # valid for the whole run


ADMIN = who("admin")
FINANCE = who("finance", subject="fiona")


class Budget:
    """A client of one in-process budget service with helpers for the common set-up."""

    def __init__(self, app: Any, client: httpx.AsyncClient):
        self.app = app
        self.c = client

    @property
    def domain(self):
        """The service's domain objects (services.budget.container.Budget)."""
        return self.app.state.runtime.domain

    @property
    def runtime(self):
        return self.app.state.runtime

    async def ok(self, method: str, url: str, status: int = 200, headers: dict | None = None, **kw: Any) -> Any:
        r = await self.c.request(method, url, headers=headers or ADMIN, **kw)
        assert r.status_code == status, r.text
        return r.json()

    async def plan(
        self,
        *,
        policy: str = "block",
        threshold: str | None = None,
        currency: str = "EUR",
        activate: bool = True,
        year: int = 2027,
    ) -> dict:
        body = {"name": "FY27 Global", "fiscal_year": year, "currency": currency, "overspend_policy": policy}
        if threshold is not None:
            body["approval_threshold"] = threshold
        plan = await self.ok("POST", "/v1/plans", 201, json=body)
        if activate:
            plan = await self.ok("POST", f"/v1/plans/{plan['id']}/activate")
        return plan

    async def line(self, plan_id: str, code: str, parent: str | None = None, **dims: str) -> dict:
        body: dict[str, Any] = {"code": code, "name": code.title(), "dimensions": dims}
        if parent:
            body["parent_code"] = parent
        return await self.ok("POST", f"/v1/plans/{plan_id}/lines", 201, json=body)

    async def allocate(self, line_id: str, amount: str, period: str = "2027-03", currency: str = "EUR") -> dict:
        return await self.ok(
            "POST",
            "/v1/allocations",
            201,
            json={"line_id": line_id, "period": period, "amount": amount, "currency": currency},
        )

    async def commit(
        self, line_id: str, amount: str, period: str = "2027-03", headers: dict | None = None, **extra: Any
    ) -> httpx.Response:
        return await self.c.post(
            "/v1/commitments",
            headers=headers or ADMIN,
            json={"line_id": line_id, "period": period, "amount": amount, "currency": "EUR", **extra},
        )

    async def balance(
        self, line_id: str, frm: str = "2027-01", to: str = "2027-12", headers: dict | None = None
    ) -> dict:
        return await self.ok("GET", f"/v1/lines/{line_id}/balance?from={frm}&to={to}", headers=headers)


async def start_budget(url: str, nats_url: str = "nats://127.0.0.1:1", *, nats: bool = False):
    await upgrade_async("budget", url)
    return create_app(Settings(database_url=url, nats_url=nats_url, nats_enabled=nats, outbox_poll_seconds=0.1))


@pytest.fixture()
async def budget(new_db) -> AsyncIterator[Budget]:
    app = await start_budget(await new_db("budget"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://budget") as client:
            yield Budget(app, client)


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()
