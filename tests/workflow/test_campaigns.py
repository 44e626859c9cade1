"""Campaign dates in the workflow's calendar: the budget publishes `budget.campaign.created`, the
workflow keeps a local projection of it (over a real NATS JetStream server) and `GET /v1/calendar`
shows campaigns next to deliverables; a late older event changes nothing, an impossible one is
dead-lettered, a supplier sees no campaign."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import httpx
import pytest
from sqlalchemy import select

from pitcrew.migrations import upgrade_async
from services.workflow import campaigns
from services.workflow.main import create_app
from services.workflow.models import campaigns as campaigns_table
from shared.errors import Invalid
from shared.events import Envelope, new_event
from tests.budget.conftest import FINANCE, start_budget
from tests.conftest import eventually
from tests.workflow.conftest import MARKETER, Harness, settings_for
from tests.workflow.test_deliverables import a_request
from tests.workflow.test_suppliers import supplier, two_suppliers

pytestmark = pytest.mark.db


def campaign_event(cid: str, *, at: dt.datetime | None = None, **data: object) -> Envelope:
    env = new_event(
        "budget.campaign.created",
        "budget",
        cid,
        {
            "campaign_id": cid,
            "plan_id": "plan-1",
            "plan_name": "FY27 Global",
            "code": "SPRING",
            "name": "Spring launch",
            "starts_on": "2027-03-01",
            "ends_on": "2027-05-31",
            "status": "planned",
            "owner": "mark",
            "planned_cost": "5000.00",
            "currency": "EUR",
            **data,
        },
    )
    return dataclasses.replace(env, time=at.isoformat()) if at is not None else env


async def apply(wf: Harness, env: Envelope) -> None:
    async with wf.runtime.unit_of_work() as uow:
        await campaigns.remember(uow, env)


async def calendar(wf: Harness, who_, start: str, end: str) -> list[dict]:
    return (await wf.ok("GET", "/v1/calendar", who_, params={"from": start, "to": end}))["items"]


async def test_campaigns_created_in_the_budget_reach_the_calendar_over_nats(new_db, nats_url):
    budget_app = await start_budget(await new_db("budget"), nats_url, nats=True)
    wf_url = await new_db("wf")
    await upgrade_async("workflow", wf_url)
    wf_app = create_app(settings_for(wf_url, nats_url))
    async with budget_app.router.lifespan_context(budget_app), wf_app.router.lifespan_context(wf_app):
        wf = Harness(wf_app, wf_url)
        assert await wf.runtime.bus.wait_connected(10)
        transport = httpx.ASGITransport(app=budget_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://budget") as b:
            plan = (
                await b.post(
                    "/v1/plans",
                    headers=FINANCE,
                    json={"name": "FY27 Events", "fiscal_year": 2027, "currency": "EUR", "overspend_policy": "block"},
                )
            ).json()
            await b.post(f"/v1/plans/{plan['id']}/activate", headers=FINANCE)
            body = {
                "plan_id": plan["id"],
                "code": "SUMMIT",
                "name": "Partner summit",
                "starts_on": "2027-04-12",
                "ends_on": "2027-04-14",
                "owner": "mark",
                "status": "active",
                "planned_cost": "12000.00",
                "currency": "EUR",
            }
            r = await b.post("/v1/campaigns", headers=FINANCE, json=body)
            assert r.status_code == 201, r.text
            camp = r.json()

        async def shown() -> list[dict]:
            return [e for e in await calendar(wf, MARKETER, "2027-04-01", "2027-04-30") if e["kind"] == "campaign"]

        items = await eventually(shown, timeout=20)
        assert items == [
            {
                "kind": "campaign",
                "id": camp["id"],
                "title": "Partner summit",
                "at": "2027-04-12T00:00:00+00:00",
                "ends_at": "2027-04-15T00:00:00+00:00",
                "status": "active",
                "request_number": None,
                "assignee": "mark",
                "campaign": {
                    "code": "SUMMIT",
                    "plan_id": plan["id"],
                    "plan_name": "FY27 Events",
                    "starts_on": "2027-04-12",
                    "ends_on": "2027-04-14",
                },
            }
        ]
        assert await calendar(wf, MARKETER, "2027-04-15", "2027-04-30") == []  # after its last day


async def test_the_timeline_merges_campaigns_and_deliverables_by_time_for_whom_may_see_them(wf):
    acme, _ = await two_suppliers(wf)
    req = await a_request(wf)
    d = await wf.ok(
        "POST",
        f"/v1/requests/{req['id']}/deliverables",
        MARKETER,
        {"name": "Banner", "supplier_id": acme["id"], "business_hours": "8"},
        status=201,
    )
    due = dt.datetime.fromisoformat(d["due_at"])
    today = due.date()
    before = str(uuid.uuid4())
    after = str(uuid.uuid4())
    await apply(
        wf, campaign_event(before, name="Running", starts_on=str(today - dt.timedelta(days=30)), ends_on=str(today))
    )
    await apply(
        wf,
        campaign_event(
            after,
            name="Later",
            code="LATER",
            starts_on=str(today + dt.timedelta(days=2)),
            ends_on=str(today + dt.timedelta(days=3)),
        ),
    )
    window = (str(today - dt.timedelta(days=1)), str(today + dt.timedelta(days=5)))
    r = await wf.ok("GET", "/v1/calendar", MARKETER, params={"from": window[0], "to": window[1]})
    assert [(e["kind"], e["title"]) for e in r["items"]] == [
        ("campaign", "Running"),  # started before the window, still running in it
        ("deliverable", "Banner"),
        ("campaign", "Later"),
    ]
    assert r["campaigns_as_of"] is not None
    # A supplier sees its own work and no campaign (budget data).
    mine = await calendar(wf, supplier(acme["id"]), *window)
    assert [(e["kind"], e["title"]) for e in mine] == [("deliverable", "Banner")]
    # A window before either campaign ends shows none of them.
    far = (str(today + dt.timedelta(days=10)), str(today + dt.timedelta(days=20)))
    assert await calendar(wf, MARKETER, *far) == []


async def test_a_late_older_event_changes_nothing_and_an_impossible_one_is_refused(wf):
    cid = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    await apply(wf, campaign_event(cid, at=now, status="active", name="Spring launch v2"))
    await apply(wf, campaign_event(cid, at=now - dt.timedelta(minutes=5), status="planned"))  # older, late
    async with wf.runtime.transaction(readonly=True) as s:
        row = (await s.execute(select(campaigns_table).where(campaigns_table.c.id == cid))).mappings().one()
    assert (row["status"], row["name"]) == ("active", "Spring launch v2")
    await apply(wf, campaign_event(cid, at=now + dt.timedelta(minutes=1), status="cancelled"))
    async with wf.runtime.transaction(readonly=True) as s:
        status = (await s.execute(select(campaigns_table.c.status).where(campaigns_table.c.id == cid))).scalar_one()
    assert status == "cancelled"
    for bad, field in (
        ({"ends_on": "2027-02-01"}, "data.ends_on"),
        ({"starts_on": "not a day"}, "data.starts_on"),
        ({"code": "x" * 101}, "data.code"),
    ):
        with pytest.raises(Invalid) as err:
            await apply(wf, campaign_event(str(uuid.uuid4()), **bad))
        assert field in str(err.value) or field in {e.field for e in err.value.errors}
    async with wf.runtime.transaction(readonly=True) as s:
        assert len((await s.execute(select(campaigns_table.c.id))).all()) == 1
