"""Refusals: a commitment refused when it arrived as an event (a registry contract term, through a real
NATS server) or an ERP purchase order is kept with its reason, published, listed at /v1/refusals within
the caller's scopes, and retried once its line is funded; nothing is dead-lettered for a refusal."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.budget import test_events
from tests.budget.conftest import FINANCE, Budget, who
from tests.budget.test_events import publish
from tests.conftest import eventually

live = test_events.live  # the service with a real NATS server

pytestmark = pytest.mark.db

ERP = who("partner", subject="webhook:erp")
EMEA = who("finance", scopes=("region:EMEA",), subject="emma")
MARKETER = who("marketer", subject="mark")


def contract(period: str = "2027-01", line: str = "MARTECH", cid: str = "c-1") -> dict:
    return {
        "contract_id": cid,
        "tool_id": "t-1",
        "tool_name": "Acme CRM",
        "term": 1,
        "start": f"{period}-01",
        "end": "2027-12-31",
        "billing_period": "annual",
        "cost": "12000.00",
        "currency": "EUR",
        "annual_cost": "12000.00",
        "commit_amount": "12000.00",
        "budget_line_code": line,
        "fiscal_year": 2027,
        "period": period,
        "seats": 50,
        "auto_renew": True,
        "notice_days": 60,
        "external_ref": f"contract:{cid}:1",
    }


async def _outbox(budget: Budget, subject: str) -> list[dict]:
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        rows = (await s.execute(select(outbox.c.payload).where(outbox.c.subject == subject))).scalars().all()
    return [json.loads(p)["data"] for p in rows]


async def _dead_letters(budget: Budget) -> list:
    async with budget.runtime.transaction(readonly=True) as s:
        return (await s.execute(select(budget.runtime.infra.dead_letters))).all()


async def test_a_january_contract_on_a_plan_phased_in_march_is_refused_then_retried_once(live):
    """The issue's example: block policy, money only in March, a contract starting in January."""
    budget, js = live
    plan = await budget.plan(policy="block")
    ln = await budget.line(plan["id"], "MARTECH", channel="martech")
    await budget.allocate(ln["id"], "20000.00", period="2027-03")
    await publish(js, "registry.contract.created", "registry", "c-1", contract())

    async def listed() -> list:
        return (await budget.ok("GET", "/v1/refusals"))["items"]

    await eventually(listed)
    [refusal] = await listed()
    assert (refusal["kind"], refusal["status"], refusal["code"]) == ("contract_commitment", "refused", "conflict")
    assert refusal["external_ref"] == "contract:c-1:1" and refusal["line_id"] == ln["id"]
    assert refusal["period"] == "2027-01" and refusal["amount"] == "12000.00" and "short by" in refusal["reason"]
    assert refusal["requested_by"] == "service:registry" and refusal["commitment_id"] is None
    [event] = await _outbox(budget, "budget.commitment.refused")
    assert event["refusal_id"] == refusal["id"] and event["line_code"] == "MARTECH"
    assert event["amount"] == "12000.00" and event["reason"] == refusal["reason"]
    assert await _dead_letters(budget) == []
    assert (await budget.balance(ln["id"], "2027-01", "2027-01"))["committed"] == "0.00"

    still = await budget.c.post(f"/v1/refusals/{refusal['id']}/retry", headers=FINANCE)
    assert still.status_code == 409 and "short by" in still.json()["detail"]
    assert (await budget.ok("GET", "/v1/refusals?status=refused"))["items"][0]["id"] == refusal["id"]

    await budget.allocate(ln["id"], "12000.00", period="2027-01")
    done = await budget.ok("POST", f"/v1/refusals/{refusal['id']}/retry", headers=FINANCE)
    assert done["status"] == "retried" and done["retried_by"] == "fiona" and done["commitment_id"]
    c = await budget.ok("GET", f"/v1/commitments/{done['commitment_id']}")
    assert (c["status"], c["amount"], c["external_ref"]) == ("committed", "12000.00", "contract:c-1:1")
    assert (await budget.balance(ln["id"], "2027-01", "2027-01"))["committed"] == "12000.00"
    again = await budget.c.post(f"/v1/refusals/{refusal['id']}/retry", headers=FINANCE)
    assert again.status_code == 409 and "retried already" in again.json()["detail"]
    assert (await budget.ok("GET", "/v1/refusals?status=refused"))["items"] == []
    assert len(await _outbox(budget, "budget.commitment.refused")) == 1


async def test_a_contract_on_an_unknown_line_is_refused_and_retried_once_the_line_exists(live):
    budget, js = live
    plan = await budget.plan(policy="block")
    await publish(js, "registry.contract.created", "registry", "c-2", contract("2027-03", "EVENTS", "c-2"))

    async def listed() -> list:
        return (await budget.ok("GET", "/v1/refusals"))["items"]

    await eventually(listed)
    [refusal] = await listed()
    assert refusal["code"] == "validation-error" and refusal["line_id"] is None and "EVENTS" in refusal["reason"]
    assert (await budget.ok("GET", "/v1/refusals", headers=EMEA))[
        "items"
    ] == []  # an unknown line: unscoped callers only
    ln = await budget.line(plan["id"], "EVENTS", region="EMEA")
    await budget.allocate(ln["id"], "15000.00")
    done = await budget.ok("POST", f"/v1/refusals/{refusal['id']}/retry")
    assert done["status"] == "retried"
    assert (await budget.balance(ln["id"]))["committed"] == "12000.00"
    assert await _dead_letters(budget) == []


async def test_a_refused_purchase_order_answers_202_and_is_listed_within_scopes_and_retried(budget):
    plan = await budget.plan(policy="block")
    emea = await budget.line(plan["id"], "EMEA-EV", region="EMEA")
    na = await budget.line(plan["id"], "NA-EV", region="NA")
    await budget.allocate(emea["id"], "100.00")
    po = {
        "fiscal_year": 2027,
        "period": "2027-03",
        "amount": "500.00",
        "currency": "EUR",
        "action": "created",
        "revision": 1,
    }
    r = await budget.c.post(
        "/v1/erp/purchase-orders", headers=ERP, json={**po, "po_number": "PO-1", "budget_line": "EMEA-EV"}
    )
    assert r.status_code == 202, r.text
    refusal = r.json()
    assert (refusal["kind"], refusal["external_ref"], refusal["status"]) == ("erp_purchase_order", "PO-1", "refused")
    again = await budget.c.post(
        "/v1/erp/purchase-orders", headers=ERP, json={**po, "po_number": "PO-1", "budget_line": "EMEA-EV"}
    )
    assert again.status_code == 202 and again.json()["id"] == refusal["id"]  # an ERP retry: still one refusal
    r = await budget.c.post(
        "/v1/erp/purchase-orders", headers=ERP, json={**po, "po_number": "PO-2", "budget_line": "NA-EV"}
    )
    assert r.status_code == 202
    assert {x["external_ref"] for x in (await budget.ok("GET", "/v1/refusals"))["items"]} == {"PO-1", "PO-2"}
    assert [x["external_ref"] for x in (await budget.ok("GET", "/v1/refusals", headers=EMEA))["items"]] == ["PO-1"]
    assert (await budget.c.post(f"/v1/refusals/{refusal['id']}/retry", headers=MARKETER)).status_code == 403
    na_refusal = next(x for x in (await budget.ok("GET", "/v1/refusals"))["items"] if x["external_ref"] == "PO-2")
    hidden = await budget.c.post(f"/v1/refusals/{na_refusal['id']}/retry", headers=EMEA)
    assert hidden.status_code == 404
    await budget.allocate(emea["id"], "400.00")
    done = await budget.ok("POST", f"/v1/refusals/{refusal['id']}/retry", headers=EMEA)
    assert done["status"] == "retried"
    c = await budget.ok("GET", f"/v1/commitments/{done['commitment_id']}")
    assert (c["external_ref"], c["amount"], c["status"]) == ("PO-1", "500.00", "committed")
    assert na["id"] == na_refusal["line_id"]
    assert len(await _outbox(budget, "budget.commitment.refused")) == 3


async def test_the_january_contract_fits_a_plan_controlled_by_fiscal_year_and_one_beyond_the_year_is_refused(live):
    """The issue's example again, with control by fiscal year: January uses March's money; a second
    contract the year cannot fund is refused, published and listed, and the invoice is still a fact."""
    budget, js = live
    body = {"name": "FY27", "fiscal_year": 2027, "currency": "EUR", "control_period": "fiscal_year"}
    plan = await budget.ok("POST", "/v1/plans", 201, json=body)
    await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    ln = await budget.line(plan["id"], "MARTECH", channel="martech")
    await budget.allocate(ln["id"], "20000.00", period="2027-03")
    await publish(js, "registry.contract.created", "registry", "c-1", contract())

    async def committed() -> str | None:
        bal = await budget.balance(ln["id"], "2027-01", "2027-01")
        return bal["committed"] if bal["committed"] != "0.00" else None

    assert await eventually(committed) == "12000.00"
    await publish(js, "registry.contract.created", "registry", "c-3", contract("2027-02", cid="c-3"))

    async def listed() -> list:
        return (await budget.ok("GET", "/v1/refusals"))["items"]

    [refusal] = await eventually(listed)
    assert refusal["external_ref"] == "contract:c-3:1" and "available in FY2027" in refusal["reason"]
    assert "short by 4000.00 EUR" in refusal["reason"]
    [event] = await _outbox(budget, "budget.commitment.refused")
    assert event["refusal_id"] == refusal["id"] and event["period"] == "2027-02"
    assert await _dead_letters(budget) == []
    invoice = {
        "invoice_number": "INV-7",
        "fiscal_year": 2027,
        "budget_line": "MARTECH",
        "period": "2027-02",
        "amount": "9000.00",
        "currency": "EUR",
    }
    fact = await budget.ok("POST", "/v1/erp/invoices", 201, json=invoice)
    assert fact["overspend"] is True  # 20000 - 12000 - 9000 over the year
    [over] = await _outbox(budget, "budget.line.overspent")
    assert (over["available"], over["overspent_by"]) == ("-1000.00", "1000.00")
    await budget.allocate(ln["id"], "13000.00", period="2027-12")
    done = await budget.ok("POST", f"/v1/refusals/{refusal['id']}/retry", headers=FINANCE)
    assert done["status"] == "retried"
    assert (await budget.balance(ln["id"]))["available"] == "0.00"
