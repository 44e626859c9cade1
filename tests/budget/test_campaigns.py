"""Campaigns: funded by budget lines, named by commitments and actuals (an invoice inherits its order's),
with committed, spent and remaining money summed from the ledger, and carried in budget.actual.posted."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.budget.conftest import ADMIN, FINANCE, Budget, problem

pytestmark = pytest.mark.db


async def _outbox(budget: Budget, subject: str) -> list[dict]:
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        rows = (await s.execute(select(outbox.c.payload).where(outbox.c.subject == subject))).scalars().all()
    return [json.loads(p)["data"] for p in rows]


def _campaign(plan: dict, *line_ids: str, **extra) -> dict:
    return {
        "plan_id": plan["id"],
        "code": "SPRING",
        "name": "Spring launch",
        "starts_on": "2027-03-01",
        "ends_on": "2027-05-31",
        "owner": "mark",
        "planned_cost": "5000.00",
        "currency": "EUR",
        "line_ids": list(line_ids),
        **extra,
    }


async def test_a_campaigns_money_is_what_its_commitments_and_actuals_hold(budget):
    plan = await budget.plan()
    emea = await budget.line(plan["id"], "EMEA", region="EMEA")
    events = await budget.line(plan["id"], "EMEA-EVENTS", parent="EMEA", channel="events")
    other = await budget.line(plan["id"], "APAC", region="APAC")
    for ln in (events, other):
        await budget.allocate(ln["id"], "10000.00")
    camp = await budget.ok("POST", "/v1/campaigns", 201, headers=FINANCE, json=_campaign(plan, emea["id"]))
    assert (camp["status"], camp["planned_cost"], camp["remaining"]) == ("planned", "5000.00", "5000.00")

    c = await budget.commit(events["id"], "1000.00", campaign_id=camp["id"])  # funded through its parent
    assert c.status_code == 201 and c.json()["campaign_id"] == camp["id"]
    on_order = {"line_id": events["id"], "period": "2027-03", "amount": "400.00", "currency": "EUR"}
    inv = await budget.ok("POST", "/v1/actuals", 201, json={**on_order, "commitment_id": c.json()["id"]})
    assert inv["campaign_id"] == camp["id"]  # inherited from the order
    direct = await budget.ok(
        "POST", "/v1/actuals", 201, json={**on_order, "amount": "200.00", "campaign_id": camp["id"]}
    )
    got = await budget.ok("GET", f"/v1/campaigns/{camp['id']}")
    assert (got["committed"], got["spent"], got["remaining"]) == ("600.00", "600.00", "3800.00")

    posted = {d["entry_id"]: d for d in await _outbox(budget, "budget.actual.posted")}
    assert posted[direct["id"]]["campaign_id"] == camp["id"] and posted[direct["id"]]["campaign_code"] == "SPRING"
    assert posted[inv["id"]]["campaign_code"] == "SPRING"

    await budget.ok("POST", f"/v1/entries/{direct['id']}/reverse", 201, json={})
    got = await budget.ok("GET", f"/v1/campaigns/{camp['id']}")
    assert (got["spent"], got["remaining"]) == ("400.00", "4000.00")
    reversal = [d for d in await _outbox(budget, "budget.actual.posted") if d.get("reverses_entry_id") == direct["id"]]
    assert reversal[0]["campaign_code"] == "SPRING" and reversal[0]["amount"] == "-200.00"

    await budget.ok("POST", f"/v1/commitments/{c.json()['id']}/release", headers=FINANCE)
    assert (await budget.ok("GET", f"/v1/campaigns/{camp['id']}"))["committed"] == "0.00"

    wrong = await budget.commit(other["id"], "10.00", campaign_id=camp["id"])
    assert problem(wrong, 422)["errors"][0]["field"] == "campaign_id"
    unknown = await budget.commit(other["id"], "10.00", campaign_id="nope")
    assert problem(unknown, 422)["errors"][0]["field"] == "campaign_id"
    listed = (await budget.ok("GET", f"/v1/campaigns?plan_id={plan['id']}"))["items"]
    assert [x["code"] for x in listed] == ["SPRING"]
    assert (await budget.ok("GET", "/v1/campaigns?status=active"))["items"] == []


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"ends_on": "2027-02-01"}, 422, "ends_on"),
        ({"currency": "USD"}, 422, "currency"),
        ({"planned_cost": "1.001"}, 422, "planned_cost"),
        ({"line_ids": ["nope"]}, 422, "line_ids[0]"),
        ({"code": "has space"}, 422, "code"),
        ({"status": "dreaming"}, 422, "status"),
    ],
)
async def test_a_bad_campaign_is_refused_naming_the_field(budget, change, status, field):
    plan = await budget.plan()
    r = await budget.c.post("/v1/campaigns", headers=ADMIN, json=_campaign(plan, **change))
    assert field in {e["field"] for e in problem(r, status)["errors"]}
    assert (await budget.ok("GET", "/v1/campaigns"))["items"] == []


async def test_a_campaign_code_is_unique_in_its_plan_and_a_cancelled_one_takes_nothing(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "SOCIAL")
    await budget.allocate(ln["id"], "100.00")
    await budget.ok("POST", "/v1/campaigns", 201, json=_campaign(plan))
    dup = await budget.c.post("/v1/campaigns", headers=ADMIN, json=_campaign(plan))
    assert problem(dup, 409)["errors"][0]["field"] == "code"
    gone = await budget.ok("POST", "/v1/campaigns", 201, json=_campaign(plan, code="OLD", status="cancelled"))
    assert "cancelled" in problem(await budget.commit(ln["id"], "1.00", campaign_id=gone["id"]), 409)["detail"]


async def test_activities_lie_within_their_campaign_and_share_its_planned_cost(budget):
    plan = await budget.plan()
    camp = await budget.ok("POST", "/v1/campaigns", 201, json=_campaign(plan))
    url = f"/v1/campaigns/{camp['id']}/activities"
    body = {
        "name": "Webinar",
        "starts_on": "2027-03-10",
        "ends_on": "2027-03-10",
        "planned_cost": "1200.00",
        "currency": "EUR",
    }
    web = await budget.ok("POST", url, 201, headers=FINANCE, json=body)
    assert (web["campaign_id"], web["planned_cost"]) == (camp["id"], "1200.00")
    await budget.ok(
        "POST",
        url,
        201,
        json={**body, "name": "Booth", "starts_on": "2027-04-01", "ends_on": "2027-04-03", "planned_cost": "2500.00"},
    )
    for change, field in (
        ({"ends_on": "2027-06-01"}, "ends_on"),
        ({"starts_on": "2027-02-28"}, "starts_on"),
        ({"currency": "USD"}, "currency"),
        ({"planned_cost": "12.345"}, "planned_cost"),
    ):
        r = await budget.c.post(url, headers=ADMIN, json={**body, **change})
        assert problem(r, 422)["errors"][0]["field"] == field, change
    page = await budget.ok("GET", url)
    assert [a["name"] for a in page["items"]] == ["Webinar", "Booth"]
    assert (page["planned_cost"], page["unplanned"]) == ("3700.00", "1300.00")
    assert problem(await budget.c.get("/v1/campaigns/nope/activities", headers=ADMIN), 404)
