"""Discovery from spend through a real NATS: invoices the budget books with vendors no tool matches
become candidates; merging learns an alias the next invoice uses; accept creates the tool with its
spend; ignore hides a vendor. (tests/e2e posts the invoices through the gateway's ERP webhook.)"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pitcrew.migrations import upgrade_async
from services.budget.main import create_app as create_budget
from services.budget.settings import Settings as BudgetSettings
from services.registry import discovery
from tests.conftest import eventually
from tests.harness import assert_problem, fields_of, identity
from tests.registry.conftest import ADMIN, ANALYST, make_settings, make_tool, running
from tests.registry.test_reviews import own_nats  # noqa: F401 - the fixture

pytestmark = pytest.mark.db

ERP = identity("erp-sync", "partner")


@contextlib.asynccontextmanager
async def spend_loop(new_db: Any, nats_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    reg_url, budget_url = await new_db("registry"), await new_db("budget")
    await upgrade_async("registry", reg_url)
    await upgrade_async("budget", budget_url)
    budget = create_budget(BudgetSettings(database_url=budget_url, nats_url=nats_url, outbox_poll_seconds=0.05))
    async with running(make_settings(reg_url, nats_url)) as registry, budget.router.lifespan_context(budget):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=base,
                              headers=ADMIN)
            for app, base in ((registry, "http://registry"), (budget, "http://budget"))
        ]  # fmt: skip
        b = clients[1]
        plan = (await b.post("/v1/plans", json={"name": "FY27", "fiscal_year": 2027, "currency": "EUR"})).json()
        await b.post(f"/v1/plans/{plan['id']}/activate")
        for code in ("MARTECH", "EVENTS"):
            line = (await b.post(f"/v1/plans/{plan['id']}/lines", json={"code": code, "name": code})).json()
            r = await b.post("/v1/allocations", json={"line_id": line["id"], "period": "2027-03", "amount": "90000.00",
                                                      "currency": "EUR"})  # fmt: skip
            assert r.status_code == 201, r.text
        try:
            yield clients[0], clients[1]
        finally:
            for c in clients:
                await c.aclose()


async def invoice(budget: httpx.AsyncClient, number: str, vendor: str, amount: str, line: str = "MARTECH") -> None:
    body = {"invoice_number": number, "fiscal_year": 2027, "budget_line": line, "period": "2027-03",
            "amount": amount, "currency": "EUR", "vendor": vendor}  # fmt: skip
    r = await budget.post("/v1/erp/invoices", json=body, headers=ERP)
    assert r.status_code == 201, r.text


def test_vendor_names_are_normalised():
    assert discovery.normalise("ACME, Inc.") == discovery.normalise("Acme Inc") == "acme"
    assert discovery.normalise("Émail Rocket GmbH") == "email rocket"
    assert discovery.normalise("The Co.") == ""


async def test_candidates_merge_learns_an_alias_accept_creates_the_tool_ignore_hides(new_db, own_nats):  # noqa: F811
    async with spend_loop(new_db, own_nats) as (reg, budget):
        crm = await make_tool(reg, "Acme CRM", vendor="Acme Software")
        await invoice(budget, "INV-1", "Acme Software Inc.", "1000.00")  # matches the tool's vendor
        await invoice(budget, "INV-2", "ACME Soft", "400.00")  # unknown: a candidate
        await invoice(budget, "INV-3", "Acme Soft, LLC", "600.00", line="EVENTS")  # the same candidate
        await invoice(budget, "INV-4", "Rocket Mail", "250.00")
        await invoice(budget, "INV-5", "Office Rent Ltd", "5000.00")

        async def three() -> list:
            items = (await reg.get("/v1/discovery", headers=ANALYST)).json()["items"]
            lines = sum(i["lines"] for i in items)
            return items if len(items) == 3 and lines == 4 else []

        items = {i["vendor_key"]: i for i in await eventually(three, timeout=20)}
        soft = items["acme soft"]
        assert soft["vendor"] == "ACME Soft" and soft["spend"] == [{"currency": "EUR", "amount": "1000.00"}]
        assert soft["lines"] == 2 and soft["line_codes"] == ["EVENTS", "MARTECH"] and soft["status"] == "open"
        assert soft["first_seen"] == soft["last_seen"] == "2027-03-01"
        assert [t["tool_id"] for t in soft["similar_tools"]] == [crm["id"]]  # "acme soft" is close to "acme software"

        r = await reg.post(f"/v1/discovery/{soft['id']}/merge", json={"tool_id": "ghost"})
        assert fields_of(assert_problem(r, 422)) == {"tool_id"}
        assert_problem(await reg.post(f"/v1/discovery/{soft['id']}/merge", json={"tool_id": crm["id"]},
                                      headers=ANALYST), 403)  # fmt: skip
        r = await reg.post(f"/v1/discovery/{soft['id']}/merge", json={"tool_id": crm["id"]})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "merged" and r.json()["tool_id"] == crm["id"]
        assert_problem(await reg.post(f"/v1/discovery/{soft['id']}/ignore"), 409)
        # The alias is learned: the next invoice of "Acme Soft" goes to the tool, not to a candidate.
        await invoice(budget, "INV-6", "acme soft", "300.00")

        rocket = items["rocket mail"]
        r = await reg.post(f"/v1/discovery/{rocket['id']}/accept", json={"category": "content_experience",
                                                                         "capabilities": ["email"]})  # fmt: skip
        assert r.status_code == 200, r.text
        tool = (await reg.get(f"/v1/tools/{r.json()['tool_id']}")).json()
        assert tool["name"] == tool["vendor"] == "Rocket Mail" and tool["lifecycle"] == "active"
        r = await reg.post(f"/v1/discovery/{items['office rent']['id']}/ignore", json={"reason": "rent"})
        assert r.json()["status"] == "ignored"
        await invoice(budget, "INV-7", "Office Rent", "5000.00")  # still the ignored candidate, still hidden

        async def settled() -> bool:
            spent = (await reg.get(f"/v1/tools/{crm['id']}/spend")).json()
            ignored = (await reg.get("/v1/discovery", params={"status": "ignored"})).json()["items"]
            return spent["lines"] == 4 and ignored[0]["lines"] == 2

        await eventually(settled, timeout=20)
        spent = (await reg.get(f"/v1/tools/{crm['id']}/spend", headers=ANALYST)).json()
        assert spent["spend"] == [{"currency": "EUR", "amount": "2300.00"}]  # 1000 + merged 1000 + learned 300
        accepted = (await reg.get(f"/v1/tools/{tool['id']}/spend")).json()
        assert accepted["spend"] == [{"currency": "EUR", "amount": "250.00"}] and accepted["lines"] == 1
        assert (await reg.get("/v1/discovery")).json()["items"] == []
        ignored = (await reg.get("/v1/discovery", params={"status": "ignored"})).json()["items"]
        assert ignored[0]["spend"] == [{"currency": "EUR", "amount": "10000.00"}] and ignored[0]["lines"] == 2
        assert_problem(await reg.post("/v1/discovery/ghost/accept", json={"category": "data"}), 404)
        r = await reg.post(f"/v1/discovery/{ignored[0]['id']}/accept", json={"category": "nope"})
        assert_problem(r, 409)
