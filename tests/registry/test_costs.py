"""Overlaps, stack cost and utilization on a known catalogue."""

from __future__ import annotations

import pytest

from tests.harness import assert_problem
from tests.registry.conftest import ANALYST, FINANCE, PARTNER, days, make_contract, make_tool

pytestmark = pytest.mark.db


async def catalogue(api):
    """Active: CRM A (crm, email; 12000 EUR/yr), Mailer (email; 500 EUR/month), CRM B (crm; 10000 USD/yr),
    Analytics (analytics; 1000 GBP/quarter). Pilot CRM (crm, no contract). Retired Old Mail (email; its
    contract ignored). A cancelled contract on CRM A is ignored."""
    crm_a = await make_tool(api, "CRM A", category="social_relationships", capabilities=["crm", "email"])
    mailer = await make_tool(api, "Mailer", category="content_experience", capabilities=["email"])
    crm_b = await make_tool(
        api, "CRM B", category="social_relationships", capabilities=["crm"], owner={"team": "sales", "person": "sam"}
    )
    analytics = await make_tool(
        api, "Analytics", category="data", capabilities=["analytics"], owner={"team": "data", "person": "dee"}
    )
    await make_tool(
        api,
        "Pilot CRM",
        category="social_relationships",
        capabilities=["crm"],
        lifecycle="pilot",
        owner={"team": "sales", "person": "sam"},
    )
    old = await make_tool(api, "Old Mail", category="content_experience", capabilities=["email"])
    await make_contract(api, crm_a["id"], cost="12000.00")
    gone = await make_contract(api, crm_a["id"], cost="50000.00")
    assert (await api.post(f"/v1/contracts/{gone['id']}/cancel")).status_code == 200
    await make_contract(api, mailer["id"], billing_period="monthly", cost="500.00")
    await make_contract(api, crm_b["id"], cost="10000.00", currency="USD")
    await make_contract(api, analytics["id"], billing_period="quarterly", cost="1000.00", currency="GBP")
    await make_contract(api, old["id"], cost="99999.00")
    for step in ("sunsetting", "retired"):
        assert (await api.post(f"/v1/tools/{old['id']}/lifecycle", json={"lifecycle": step})).status_code == 200
    return crm_a, mailer, crm_b, analytics


async def test_overlaps_and_costs_in_the_base_currency(api):
    crm_a, mailer, crm_b, analytics = await catalogue(api)
    body = assert_problem(await api.get("/v1/overlaps"), 409)
    assert body["missing_rates"] == ["USD"]
    assert (await api.post("/v1/fx-rates", headers=ANALYST, json={"currency": "USD", "rate": "0.9"})).status_code == 403
    assert (await api.post("/v1/fx-rates", headers=FINANCE, json={"currency": "USD", "rate": "0.9"})).status_code == 200
    assert (await api.post("/v1/fx-rates", json={"currency": "GBP", "rate": "1.17"})).status_code == 200
    assert (await api.post("/v1/fx-rates", json={"currency": "EUR", "rate": "1"})).status_code == 422
    assert (await api.post("/v1/fx-rates", json={"currency": "GBP", "rate": "0"})).status_code == 422

    overlaps = (await api.get("/v1/overlaps", headers=ANALYST)).json()
    assert overlaps["currency"] == "EUR"
    assert [(i["capability"], set(i["tools"]), i["annual_cost"]) for i in overlaps["items"]] == [
        ("crm", {crm_a["id"], crm_b["id"]}, "21000.00"),  # 12000 + 10000 USD * 0.9
        ("email", {crm_a["id"], mailer["id"]}, "18000.00"),  # 12000 + 12 * 500
    ]
    by_category = (await api.get("/v1/costs", params={"group_by": "category"})).json()
    assert [(i["group"], i["annual_cost"], i["tools"]) for i in by_category["items"]] == [
        ("social_relationships", "21000.00", 3),
        ("content_experience", "6000.00", 1),
        ("data", "4680.00", 1),
    ]
    assert by_category["total"] == "31680.00" and by_category["currency"] == "EUR"
    by_team = (await api.get("/v1/costs", params={"group_by": "team"})).json()
    assert [(i["group"], i["annual_cost"]) for i in by_team["items"]] == [
        ("mops", "18000.00"),
        ("sales", "9000.00"),
        ("data", "4680.00"),
    ]
    assert by_team["total"] == "31680.00"
    assert (await api.get("/v1/costs", params={"group_by": "vendor"})).status_code == 422


async def test_utilization_flags_underused_and_shelfware(api):
    busy = await make_tool(api, "Busy")
    idle = await make_tool(api, "Idle")
    half = await make_tool(api, "Half")
    stale = await make_tool(api, "Stale")
    await make_contract(api, busy["id"], seats=10)
    await make_contract(api, half["id"], seats=30)
    await make_contract(api, half["id"], seats=10)
    snaps = [
        (busy, days(-1), 9, None, "sso"),
        (idle, days(-3), 0, 25, "scim"),
        (half, days(-10), 30, None, "sso"),  # superseded by the newer snapshot below
        (half, days(-2), 19, None, "sso"),  # 19 of the 40 seats of its active contracts
        (stale, days(-45), 1, 100, "manual"),  # outside the 30-day window
    ]
    for tool, day, active, seats, source in snaps:
        r = await api.post(
            "/v1/utilization",
            headers=PARTNER,
            json={
                "tool_id": tool["id"],
                "date": day,
                "active_users": active,
                "seats_purchased": seats,
                "source": source,
            },
        )
        assert r.status_code == 201, r.text
    rows = {r["tool_id"]: r for r in (await api.get("/v1/utilization")).json()["items"]}
    assert (rows[busy["id"]]["utilization"], rows[busy["id"]]["underused"], rows[busy["id"]]["shelfware"]) == (
        0.9,
        False,
        False,
    )
    assert (rows[idle["id"]]["utilization"], rows[idle["id"]]["seats"], rows[idle["id"]]["shelfware"]) == (
        0.0,
        25,
        True,
    )
    assert (rows[half["id"]]["utilization"], rows[half["id"]]["seats"], rows[half["id"]]["underused"]) == (
        0.475,
        40,
        True,
    )
    assert rows[stale["id"]]["utilization"] is None and not rows[stale["id"]]["underused"]
    flagged = (await api.get("/v1/utilization", params={"flag": "underused"})).json()["items"]
    assert [r["tool_id"] for r in flagged] == [idle["id"], half["id"]]
    shelf = (await api.get("/v1/utilization", params={"flag": "shelfware"})).json()["items"]
    assert [r["tool_id"] for r in shelf] == [idle["id"]]

    # A re-export of the same day and source replaces the snapshot; bad input names the field.
    r = await api.post(
        "/v1/utilization",
        json={"tool_id": idle["id"], "date": days(-3), "active_users": 20, "seats_purchased": 25, "source": "scim"},
    )
    assert r.json()["utilization"]["utilization"] == 0.8
    for bad, field in [
        ({"active_users": -1}, "active_users"),
        ({"source": "ldap"}, "source"),
        ({"tool_id": "ghost"}, "tool_id"),
        ({"date": days(3)}, "date"),
        ({"seats_purchased": -5}, "seats_purchased"),
    ]:
        body = {"tool_id": idle["id"], "date": days(0), "active_users": 1, "source": "sso", **bad}
        problem = assert_problem(await api.post("/v1/utilization", json=body), 422)
        assert {e["field"] for e in problem["errors"]} == {field}
    assert_problem(
        await api.post(
            "/v1/utilization",
            headers=ANALYST,
            json={"tool_id": idle["id"], "date": days(0), "active_users": 1, "source": "sso"},
        ),
        403,
    )
