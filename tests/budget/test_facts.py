"""Facts and intentions: an actual or an ERP invoice is always recorded; beyond available money it is
marked as overspend and publishes budget.line.overspent, whatever the overspend policy."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.budget.conftest import Budget

pytestmark = pytest.mark.db


async def _outbox(budget: Budget, subject: str) -> list[dict]:
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        rows = (await s.execute(select(outbox.c.payload).where(outbox.c.subject == subject))).scalars().all()
    return [json.loads(p)["data"] for p in rows]


async def test_an_actual_beyond_available_is_posted_marked_and_published_under_block(budget):
    plan = await budget.plan(policy="block")
    ln = await budget.line(plan["id"], "EVENTS", channel="events")
    await budget.allocate(ln["id"], "100.00")
    body = {"line_id": ln["id"], "period": "2027-03", "amount": "60.00", "currency": "EUR"}
    first = await budget.ok("POST", "/v1/actuals", 201, json=body)
    assert first["overspend"] is False
    second = await budget.ok("POST", "/v1/actuals", 201, json={**body, "external_ref": "INV-9", "vendor": "Hall"})
    assert second["overspend"] is True
    bal = await budget.balance(ln["id"])
    assert (bal["spent"], bal["available"]) == ("120.00", "-20.00")
    [over] = await _outbox(budget, "budget.line.overspent")
    assert over["entry_id"] == second["id"] and over["line_code"] == "EVENTS" and over["period"] == "2027-03"
    assert (over["amount"], over["available"], over["overspent_by"]) == ("60.00", "-20.00", "20.00")
    assert over["external_ref"] == "INV-9" and over["dimensions"] == {"channel": "events"}
    third = await budget.ok("POST", "/v1/actuals", 201, json=body)  # further below zero: reported again
    assert third["overspend"] is True and len(await _outbox(budget, "budget.line.overspent")) == 2


async def test_an_erp_invoice_on_an_unfunded_month_is_recorded_as_overspend(budget):
    plan = await budget.plan(policy="block")
    await budget.line(plan["id"], "MARTECH", channel="martech")
    invoice = {
        "invoice_number": "INV-100",
        "fiscal_year": 2027,
        "budget_line": "MARTECH",
        "period": "2027-01",
        "amount": "500.00",
        "currency": "EUR",
        "vendor": "Acme",
    }
    r = await budget.ok("POST", "/v1/erp/invoices", 201, json=invoice)
    assert r["overspend"] is True and r["kind"] == "actual"
    again = await budget.ok("POST", "/v1/erp/invoices", 200, json=invoice)
    assert again["replayed"] is True and again["id"] == r["id"]
    assert [d["overspent_by"] for d in await _outbox(budget, "budget.line.overspent")] == ["500.00"]
