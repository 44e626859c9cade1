"""Roles and scopes: who may write what, and what a scoped principal sees in rollups."""

from __future__ import annotations

import pytest

from tests.budget.conftest import problem, who

pytestmark = pytest.mark.db

EMEA_MARKETER = who("marketer", scopes=("region:EMEA",), subject="emma")
EMEA_ANALYST = who("analyst", scopes=("region:EMEA",), subject="ana")


async def regions(budget) -> tuple[dict, dict, dict, dict]:
    plan = await budget.plan()
    glob = await budget.line(plan["id"], "GLOBAL")
    emea = await budget.line(plan["id"], "EMEA", parent="GLOBAL", region="EMEA")
    apac = await budget.line(plan["id"], "APAC", parent="GLOBAL", region="APAC")
    await budget.allocate(emea["id"], "1000.00")
    await budget.allocate(apac["id"], "5000.00")
    return plan, glob, emea, apac


async def test_region_scope_narrows_posting_and_reading(budget):
    plan, glob, emea, apac = await regions(budget)
    r = await budget.commit(emea["id"], "100.00", headers=EMEA_MARKETER)
    assert r.status_code == 201 and r.json()["requested_by"] == "emma"
    problem(await budget.commit(apac["id"], "100.00", headers=EMEA_MARKETER), 403)
    problem(await budget.c.get(f"/v1/lines/{apac['id']}/balance", headers=EMEA_MARKETER), 403)
    problem(await budget.c.get(f"/v1/lines/{glob['id']}", headers=EMEA_MARKETER), 403)
    assert (await budget.balance(emea["id"], headers=EMEA_MARKETER))["committed"] == "100.00"
    tree = await budget.ok("GET", f"/v1/plans/{plan['id']}/lines", headers=EMEA_ANALYST)
    assert [n["code"] for n in tree["items"]] == ["EMEA"]
    summary = await budget.ok("GET", f"/v1/plans/{plan['id']}/summary?group_by=region", headers=EMEA_ANALYST)
    assert [g["group"] for g in summary["groups"]] == [{"region": "EMEA"}]
    assert summary["total"]["allocated"] == "1000.00"  # APAC's 5000 is not in a rollup EMEA may see
    full = await budget.ok("GET", f"/v1/plans/{plan['id']}/summary?group_by=region")
    assert full["total"]["allocated"] == "6000.00" and len(full["groups"]) == 2
    export = (await budget.c.get(f"/v1/plans/{plan['id']}/export", headers=EMEA_ANALYST)).text
    assert "EMEA" in export and "APAC" not in export
    # A scoped planner cannot create a line outside its scope.
    problem(
        await budget.c.post(
            f"/v1/plans/{plan['id']}/lines",
            headers=who("mops", scopes=("region:EMEA",)),
            json={"code": "APAC-X", "name": "x", "parent_code": "APAC"},
        ),
        403,
    )


async def test_roles(budget):
    plan, glob, emea, apac = await regions(budget)
    analyst = who("analyst")
    for method, url, body in (
        ("POST", "/v1/plans", {"name": "x", "fiscal_year": 2027, "currency": "EUR"}),
        ("POST", "/v1/allocations", {"line_id": emea["id"], "period": "2027-03", "amount": "1", "currency": "EUR"}),
        ("POST", "/v1/commitments", {"line_id": emea["id"], "period": "2027-03", "amount": "1", "currency": "EUR"}),
        ("POST", "/v1/actuals", {"line_id": emea["id"], "period": "2027-03", "amount": "1", "currency": "EUR"}),
        ("POST", "/v1/fx-rates", {"base": "USD", "quote": "EUR", "date": "2027-01-01", "rate": "0.9"}),
        ("POST", f"/v1/plans/{plan['id']}/periods/2027-01/close", None),
    ):
        problem(await budget.c.request(method, url, json=body, headers=analyst), 403)
    problem(
        await budget.c.post(
            "/v1/allocations",
            headers=who("marketer"),
            json={"line_id": emea["id"], "period": "2027-03", "amount": "1", "currency": "EUR"},
        ),
        403,
    )
    r = await budget.c.post(
        "/v1/actuals",
        headers=who("partner", subject="erp-sync"),
        json={"line_id": emea["id"], "period": "2027-03", "amount": "1.00", "currency": "EUR"},
    )
    assert r.status_code == 201 and r.json()["author"] == "erp-sync"
    assert (await budget.ok("GET", f"/v1/plans/{plan['id']}", headers=analyst))["id"] == plan["id"]
    problem(await budget.c.get(f"/v1/plans/{plan['id']}"), 401)


async def test_scoped_rollup_of_a_visible_line_leaves_out_children_it_may_not_see(budget):
    plan = await budget.plan()
    emea = await budget.line(plan["id"], "EMEA", region="EMEA")
    odd = await budget.line(plan["id"], "EMEA-APAC-JV", parent="EMEA", region="APAC")  # overrides the region
    await budget.allocate(emea["id"], "100.00")
    await budget.allocate(odd["id"], "900.00")
    assert (await budget.balance(emea["id"]))["allocated"] == "1000.00"
    assert (await budget.balance(emea["id"], headers=EMEA_ANALYST))["allocated"] == "100.00"


async def test_idempotency_key_replays_a_commitment_instead_of_committing_twice(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "L")
    await budget.allocate(ln["id"], "100.00")
    body = {"line_id": ln["id"], "period": "2027-03", "amount": "60.00", "currency": "EUR"}
    first = await budget.c.post("/v1/commitments", json=body, headers={**who("admin"), "Idempotency-Key": "k1"})
    again = await budget.c.post("/v1/commitments", json=body, headers={**who("admin"), "Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert (await budget.balance(ln["id"]))["committed"] == "60.00"
