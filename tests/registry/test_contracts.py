"""Contracts: validation, exact term money, renew/cancel, and the events budget commits from."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import eventually
from tests.harness import assert_problem, fields_of
from tests.registry.conftest import ANALYST, FINANCE, make_contract, make_tool, published

DOCUMENTED = {
    "contract_id",
    "tool_id",
    "tool_name",
    "term",
    "start",
    "end",
    "billing_period",
    "cost",
    "currency",
    "annual_cost",
    "commit_amount",
    "budget_line_code",
    "fiscal_year",
    "period",
    "seats",
    "auto_renew",
    "notice_days",
}


@pytest.mark.db
async def test_contract_created_reaches_nats_with_the_documented_fields(api, app, nats_url):
    tool = await make_tool(api, "Acme CRM")
    contract = await make_contract(
        api,
        tool["id"],
        start="2027-03-01",
        end="2028-02-29",
        billing_period="monthly",
        cost="1000.00",
        seats=40,
        notice_days=45,
    )
    assert contract["annual_cost"] == "12000.00" and contract["commit_amount"] == "12000.00"
    assert contract["notice_deadline"] == "2028-01-15" and contract["term"] == 1 and contract["status"] == "active"
    events = await eventually(lambda: published(nats_url, "registry.contract.created", contract["id"]))
    assert len(events) == 1
    env = events[0]
    assert env.type == "registry.contract.created" and env.source == "registry" and env.subject_id == contract["id"]
    assert DOCUMENTED <= set(env.data)
    assert {k: env.data[k] for k in DOCUMENTED} == {
        "contract_id": contract["id"],
        "tool_id": tool["id"],
        "tool_name": "Acme CRM",
        "term": 1,
        "start": "2027-03-01",
        "end": "2028-02-29",
        "billing_period": "monthly",
        "cost": "1000.00",
        "currency": "EUR",
        "annual_cost": "12000.00",
        "commit_amount": "12000.00",
        "budget_line_code": "MARTECH",
        "fiscal_year": 2027,
        "period": "2027-03",
        "seats": 40,
        "auto_renew": True,
        "notice_days": 45,
    }
    assert env.data["external_ref"] == f"contract:{contract['id']}:1"


@pytest.mark.db
async def test_renew_starts_the_next_term_and_cancel_ends_it_each_with_its_event(api, app, nats_url):
    tool = await make_tool(api, "Ads Suite")
    c = await make_contract(api, tool["id"], billing_period="quarterly", cost="2500.00")
    assert c["annual_cost"] == "10000.00" and c["commit_amount"] == "10000.00"
    r = await api.post(f"/v1/contracts/{c['id']}/renew", headers=FINANCE, json={"cost": "2750.00"})
    assert r.status_code == 200, r.text
    renewed = r.json()
    assert (renewed["term"], renewed["start"], renewed["end"]) == (2, "2028-01-01", "2028-12-31")
    assert renewed["commit_amount"] == "11000.00" and renewed["version"] == 2
    # A stale If-Match and a renewal that would overlap the current term are refused.
    assert_problem(await api.post(f"/v1/contracts/{c['id']}/renew", headers={"If-Match": '"1"'}), 412)
    body = assert_problem(await api.post(f"/v1/contracts/{c['id']}/renew", json={"start": "2028-06-01"}), 422)
    assert "start" in fields_of(body)
    r = await api.post(f"/v1/contracts/{c['id']}/cancel", json={"reason": "moving to a competitor"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert_problem(await api.post(f"/v1/contracts/{c['id']}/cancel"), 409)
    assert_problem(await api.post(f"/v1/contracts/{c['id']}/renew"), 409)
    detail = (await api.get(f"/v1/contracts/{c['id']}")).json()
    assert [(t["term"], t["outcome"], t["commit_amount"]) for t in detail["terms"]] == [
        (1, "renewed", "10000.00"),
        (2, "cancelled", "11000.00"),
    ]

    renewed_events = await eventually(lambda: published(nats_url, "registry.contract.renewed", c["id"]))
    assert [
        (e.data["term"], e.data["commit_amount"], e.data["fiscal_year"], e.data["period"]) for e in renewed_events
    ] == [(2, "11000.00", 2028, "2028-01")]
    cancelled = await eventually(lambda: published(nats_url, "registry.contract.cancelled", c["id"]))
    assert len(cancelled) == 1 and cancelled[0].data["term"] == 2
    assert DOCUMENTED <= set(cancelled[0].data)


@pytest.mark.db
async def test_bad_contracts_are_422_naming_the_field_and_write_nothing(api, app):
    tool = await make_tool(api, "Tool")
    base = {"tool_id": tool["id"], "start": "2027-01-01", "end": "2027-12-31", "cost": "100.00", "currency": "EUR"}
    cases = [
        ({"end": "2026-12-31"}, {"end"}),
        ({"end": "2027-01-01"}, {"end"}),
        ({"cost": "-1.00"}, {"cost"}),
        ({"seats": -3}, {"seats"}),
        ({"tool_id": "no-such-tool"}, {"tool_id"}),
        ({"currency": "EUX"}, {"currency"}),
        ({"cost": "10.5", "currency": "JPY"}, {"cost"}),
        ({"cost": 100.5}, {"cost"}),
        ({"billing_period": "weekly"}, {"billing_period"}),
        ({"notice_days": -1}, {"notice_days"}),
        ({"end": "2026-01-01", "tool_id": "nope"}, {"end", "tool_id"}),
    ]
    for change, expected in cases:
        body = assert_problem(await api.post("/v1/contracts", json={**base, **change}), 422)
        assert fields_of(body) == expected, (change, body)
    assert_problem(await api.post("/v1/contracts", headers=ANALYST, json=base), 403)
    gone = await make_tool(api, "Gone", lifecycle="retired")
    body = assert_problem(await api.post("/v1/contracts", json={**base, "tool_id": gone["id"]}), 422)
    assert fields_of(body) == {"tool_id"} and "retired" in body["detail"]
    assert (await api.get("/v1/contracts")).json()["items"] == []
    rt = app.state.runtime
    async with rt.transaction(readonly=True) as s:
        assert await s.scalar(select(func.count()).select_from(rt.infra.timers)) == 0
        assert (
            await s.scalar(
                select(func.count())
                .select_from(rt.infra.outbox)
                .where(rt.infra.outbox.c.subject.like("registry.contract%"))
            )
            == 0
        )


@pytest.mark.db
async def test_contract_creation_honours_idempotency_key(api, app):
    tool = await make_tool(api, "Tool")
    body = {"tool_id": tool["id"], "start": "2027-01-01", "end": "2027-12-31", "cost": "100.00", "currency": "EUR"}
    first = await api.post("/v1/contracts", json=body, headers={"Idempotency-Key": "k1"})
    again = await api.post("/v1/contracts", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len((await api.get("/v1/contracts")).json()["items"]) == 1
