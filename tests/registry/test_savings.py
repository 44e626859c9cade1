"""The savings report: cancellations and cheaper renewals, per year, summed per period."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.harness import assert_problem, principal
from tests.registry.conftest import ANALYST, make_contract, make_tool

pytestmark = pytest.mark.db


async def test_savings_per_period_with_their_kpi_measurements(api, app):
    a, b, c, d, e = [await make_tool(api, n) for n in ("Dropped", "Smaller", "Cheaper", "Dearer", "Noticed")]
    dropped = await make_contract(api, a["id"], cost="5000.00")
    await api.post(f"/v1/contracts/{dropped['id']}/cancel", json={"reason": "unused"})
    smaller = await make_contract(api, b["id"], cost="12000.00", seats=50)
    await api.post(f"/v1/contracts/{smaller['id']}/renew", json={"cost": "9000.00", "seats": 30})
    cheaper = await make_contract(api, c["id"], cost="2000.00", seats=10)
    await api.post(f"/v1/contracts/{cheaper['id']}/renew", json={"cost": "1500.00"})
    dearer = await make_contract(api, d["id"], cost="1000.00")
    await api.post(f"/v1/contracts/{dearer['id']}/renew", json={"cost": "1100.00"})
    noticed = await make_contract(api, e["id"], cost="3000.00", end="2027-06-30")
    async with app.state.runtime.unit_of_work() as uow:  # a review decided to cancel, before the deadline
        await app.state.runtime.domain.reviews.on_outcome(
            uow,
            principal("service:workflow", "admin"),
            instance_id="i-1",
            contract_id=noticed["id"],
            kind="rejected",
            context={"term": 1},
            decided_at=dt.datetime(2027, 3, 1, tzinfo=dt.UTC),
        )
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    body = (await api.get("/v1/reports/savings", headers=ANALYST)).json()
    got = {(i["tool_name"], i["kind"], i["period"], i["annual_saving"]) for i in body["items"]}
    assert got == {
        ("Dropped", "cancellation", this_month, "5000.00"),
        ("Smaller", "seat_reduction", "2028-01", "3000.00"),
        ("Cheaper", "renegotiation", "2028-01", "500.00"),
        ("Noticed", "cancellation", "2027-07", "3000.00"),
    }
    periods = {p["period"]: (p["annual_saving"], p["cancellations"], p["reductions"]) for p in body["periods"]}
    assert periods["2028-01"] == ("3500.00", 0, 2) and periods["2027-07"] == ("3000.00", 1, 0)
    assert body["total_annual_saving"] == "11500.00"
    m = {x["time"][:7]: x for x in body["measurements"]}
    assert m["2028-01"]["value"] == "3500.00" and m["2028-01"]["type"] == "tool_savings"
    assert m["2028-01"]["external_id"] == "registry:savings:2028-01"
    only = (await api.get("/v1/reports/savings", params={"from": "2028-01", "to": "2028-12"})).json()
    assert only["total_annual_saving"] == "3500.00"
    assert_problem(await api.get("/v1/reports/savings", params={"from": "2028-13"}), 422)


async def test_a_saving_in_another_currency_needs_its_rate(api):
    tool = await make_tool(api, "Abroad")
    contract = await make_contract(api, tool["id"], cost="1000.00", currency="USD")
    await api.post(f"/v1/contracts/{contract['id']}/cancel")
    assert assert_problem(await api.get("/v1/reports/savings"), 409)["missing_rates"] == ["USD"]
    await api.post("/v1/fx-rates", json={"currency": "USD", "rate": "0.9"})
    assert (await api.get("/v1/reports/savings")).json()["total_annual_saving"] == "900.00"
