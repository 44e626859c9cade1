"""Values at the edges (fuzzer findings): each is a 4xx naming the field with nothing written, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from services.registry.models import Contract, ContractTerm, FxRate, Tool, ToolHistory, UtilizationSnapshot
from shared.pagination import encode_cursor
from tests.harness import assert_problem, fields_of
from tests.registry.conftest import days, make_contract, make_tool

pytestmark = pytest.mark.db

YAML = {"content-type": "application/yaml"}
INT32_MAX = 2**31 - 1


async def written(app: FastAPI) -> dict[str, int]:
    """Row counts of everything a write could leave behind."""
    rt = app.state.runtime
    tables: dict[str, Any] = {
        m.__tablename__: m.__table__ for m in (Contract, ContractTerm, FxRate, Tool, ToolHistory, UtilizationSnapshot)
    }
    tables |= {"timers": rt.infra.timers, "outbox": rt.infra.outbox}
    async with rt.transaction(readonly=True) as s:
        return {name: await s.scalar(select(func.count()).select_from(t)) for name, t in tables.items()}


def catalogue(**contract: str) -> str:
    """One tool with one contract; `contract` overrides the usual term (values as YAML text)."""
    fields = {"start": "2027-01-01", "end": "2027-12-31", "cost": '"100.00"', "currency": "EUR", **contract}
    term = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return (
        "apiVersion: pitcrew.dev/v1\nkind: Tool\nmetadata: {name: Edge CRM}\n"
        f"spec:\n  category: data\n  contracts:\n    - {{{term}}}\n"
    )


async def test_contract_dates_outside_the_bounds_are_422_naming_the_field(api, app):
    tool = await make_tool(api, "Tool")
    base = {"tool_id": tool["id"], "start": "2027-01-01", "end": "2027-12-31", "cost": "100.00", "currency": "EUR"}
    before = await written(app)
    cases = [
        ({"end": "9999-12-31"}, {"end"}),  # end + 1 day overflowed in term_span
        ({"start": "2030-01-01", "end": "9999-12-31"}, {"end"}),
        ({"start": "0001-01-01", "end": "0001-01-02", "notice_days": 3650}, {"start", "end"}),  # notice deadline
        ({"start": "1900-01-01", "end": "1900-01-02", "notice_days": 3650}, {"notice_days"}),  # before 1900
        ({"notice_days": 3651}, {"notice_days"}),
    ]
    for change, expected in cases:
        body = assert_problem(await api.post("/v1/contracts", json={**base, **change}), 422)
        assert fields_of(body) == expected, (change, body)
    for contract in ({"end": "9999-12-31"}, {"start": "0001-01-01", "end": "0001-01-02", "notice_days": "3650"}):
        body = assert_problem(await api.post("/v1/import", content=catalogue(**contract), headers=YAML), 422)
        assert "documents[0].spec.contracts[0].end" in fields_of(body), body
    assert await written(app) == before
    ok = await make_contract(
        api, tool["id"], start="1900-01-01", end="2999-12-31", notice_days=3650, billing_period="monthly", cost="1.00"
    )
    assert ok["notice_deadline"] == "2990-01-02" and ok["commit_amount"] == "13200.00"


async def test_renew_refuses_a_next_term_outside_the_date_range(api, app):
    tool = await make_tool(api, "Tool")
    late = await make_contract(api, tool["id"], start="2999-01-01", end="2999-12-31")
    almost = await make_contract(api, tool["id"], start="2999-01-01", end="2999-12-30")
    usual = await make_contract(api, tool["id"])
    before = await written(app)
    cases = [
        (late, {}, {"start", "end"}),  # carried over: would start 3000-01-01 (add_months raised "year 10000")
        (late, None, {"start", "end"}),  # no body at all
        (almost, {}, {"end"}),  # would start 2999-12-31 and end 3000-12-30
        (usual, {"start": "9999-12-31"}, {"start"}),
        (usual, {"start": "2030-01-01", "end": "9999-12-31"}, {"end"}),
    ]
    for contract, change, expected in cases:
        r = await api.post(f"/v1/contracts/{contract['id']}/renew", json=change)
        body = assert_problem(r, 422)
        assert fields_of(body) == expected, (contract["end"], change, body)
    assert await written(app) == before
    for contract in (late, almost, usual):
        again = (await api.get(f"/v1/contracts/{contract['id']}")).json()
        assert again["term"] == 1 and again["version"] == 1 and len(again["terms"]) == 1


async def test_seats_and_user_counts_must_fit_an_integer_column(api, app):
    tool = await make_tool(api, "Tool")
    contract = await make_contract(api, tool["id"])
    base = {"tool_id": tool["id"], "start": "2027-01-01", "end": "2027-12-31", "cost": "100.00", "currency": "EUR"}
    before = await written(app)
    for seats in (2**63, INT32_MAX + 1, -1):
        body = assert_problem(await api.post("/v1/contracts", json={**base, "seats": seats}), 422)
        assert fields_of(body) == {"seats"}, body
        body = assert_problem(await api.post(f"/v1/contracts/{contract['id']}/renew", json={"seats": seats}), 422)
        assert fields_of(body) == {"seats"}, body
    for seats in ("99999999999999999999999", "0x7fffffffffffffff1", str(INT32_MAX + 1)):
        r = await api.post("/v1/import", content=catalogue(seats=seats), headers=YAML)
        assert fields_of(assert_problem(r, 422)) == {"documents[0].spec.contracts[0].seats"}
    usage = {"tool_id": tool["id"], "date": days(-1), "source": "sso", "active_users": 3}
    for change, field in (
        ({"active_users": 2**63}, "active_users"),
        ({"active_users": INT32_MAX + 1}, "active_users"),
        ({"seats_purchased": INT32_MAX + 1}, "seats_purchased"),
        ({"date": "0001-01-01"}, "date"),
    ):
        body = assert_problem(await api.post("/v1/utilization", json={**usage, **change}), 422)
        assert fields_of(body) == {field}, body
    assert await written(app) == before
    big = await make_contract(api, tool["id"], seats=INT32_MAX)  # the largest INTEGER still fits
    assert big["seats"] == INT32_MAX
    r = await api.post("/v1/utilization", json={**usage, "active_users": INT32_MAX, "seats_purchased": INT32_MAX})
    assert r.status_code == 201, r.text
    assert r.json()["utilization"]["utilization"] == 1.0


async def test_a_term_whose_cost_exceeds_max_minor_is_422_on_cost(api, app):
    tool = await make_tool(api, "Tool")
    base = {"tool_id": tool["id"], "cost": "99999999999999.99", "currency": "EUR", "billing_period": "monthly"}
    contract = await make_contract(api, tool["id"], cost="1.00", billing_period="annual")
    before = await written(app)
    for change in (
        {"start": "1900-01-01", "end": "2999-12-30"},  # the whole term: 1.3e20 minor units
        {"start": "2027-01-01", "end": "2027-01-31"},
    ):  # one month, but 1.2e17 a year
        body = assert_problem(await api.post("/v1/contracts", json={**base, **change}), 422)
        assert fields_of(body) == {"cost"}, body
    body = assert_problem(
        await api.post(
            f"/v1/contracts/{contract['id']}/renew", json={"cost": "99999999999999.99", "billing_period": "monthly"}
        ),
        422,
    )
    assert fields_of(body) == {"cost"}, body
    r = await api.post(
        "/v1/import", content=catalogue(billing_period="monthly", cost='"99999999999999.99"'), headers=YAML
    )
    assert fields_of(assert_problem(r, 422)) == {"documents[0].spec.contracts[0].cost"}
    assert await written(app) == before


async def test_fx_rates_are_bounded_and_converted_totals_never_overflow(api, app):
    before = await written(app)
    for rate in ("999999999999999999", "1000000000000.1", "0.0000000000009", "1.00000000000000000001", "0"):
        body = assert_problem(await api.post("/v1/fx-rates", json={"currency": "USD", "rate": rate}), 422)
        assert fields_of(body) == {"rate"}, (rate, body)
    assert await written(app) == before
    a = await make_tool(api, "CRM A", capabilities=["crm"])
    b = await make_tool(api, "CRM B", capabilities=["crm"])
    for tool in (a, b):  # the largest annual cost each
        await make_contract(api, tool["id"], cost="99999999999999.99", currency="USD")
    await make_contract(api, b["id"], cost="1000.00")
    # At the largest rate allowed the total, 2e28 cents, did not even format (quantize overflowed: a 500).
    assert (await api.post("/v1/fx-rates", json={"currency": "USD", "rate": "1000000000000"})).status_code == 200
    for path in ("/v1/costs", "/v1/overlaps"):
        body = assert_problem(await api.get(path), 409)
        assert body["currencies"] == ["USD"] and "exchange rates" in body["detail"]
    assert (await api.post("/v1/fx-rates", json={"currency": "USD", "rate": "0.9"})).status_code == 200
    assert_problem(await api.get("/v1/costs"), 409)  # 1.8e16 cents: still more than a total may be
    assert (await api.post("/v1/fx-rates", json={"currency": "USD", "rate": "0.0001"})).status_code == 200
    assert (await api.get("/v1/costs")).json()["total"] == "20000001000.00"
    assert (await api.get("/v1/overlaps")).json()["items"][0]["annual_cost"] == "20000001000.00"


async def test_patch_refuses_null_for_fields_that_cannot_be_empty(api, app):
    tool = await make_tool(api, "Tool", capabilities=["crm"])
    before = await written(app)
    for field in ("capabilities", "vendor", "name", "category"):
        r = await api.patch(f"/v1/tools/{tool['id']}", json={field: None}, headers={"If-Match": '"1"'})
        assert fields_of(assert_problem(r, 422)) == {field}
    assert await written(app) == before
    again = (await api.get(f"/v1/tools/{tool['id']}")).json()
    assert again["version"] == 1 and again["capabilities"] == ["crm"]
    r = await api.patch(f"/v1/tools/{tool['id']}", json={"capabilities": []}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["capabilities"] == []


async def test_edited_cursors_are_422_naming_the_cursor(api, app):
    tool = await make_tool(api, "Tool")
    for _ in range(2):
        assert (
            await api.patch(f"/v1/tools/{tool['id']}", json={"notes": str(_)}, headers={"If-Match": f'"{_ + 1}"'})
        ).status_code == 200
    page = (await api.get(f"/v1/tools/{tool['id']}/history", params={"limit": 1})).json()
    nxt = (await api.get(f"/v1/tools/{tool['id']}/history", params={"cursor": page["next_cursor"]})).json()
    assert [h["version"] for h in page["items"] + nxt["items"]] == [1, 2, 3]
    bad = {
        f"/v1/tools/{tool['id']}/history": [[2**70], [2**63], [True], [1.5], ["7"], [None], [], [1, 2]],
        "/v1/tools": [[1, 2], ["a"], ["a", None], [True, "b"]],
        "/v1/contracts": [["9999-99-99", "x"], ["0001-01-01", "x"], [20270101, "x"], ["2027-01-01", 5], ["x"]],
        "/v1/integrations": [[5], [2**70], ["a", "b"]],
    }
    for path, keys in bad.items():
        for key in keys:
            body = assert_problem(await api.get(path, params={"cursor": encode_cursor(*key)}), 422)
            assert fields_of(body) == {"query.cursor"}, (path, key, body)
