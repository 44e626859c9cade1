"""Supplier and team reports (on-time rate, lateness in business hours on the assignee's calendar,
rework rounds, throughput per period) and the timeline of deliverables due."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from services.workflow.models import deliverables
from tests.workflow.conftest import APPROVER_US, MARKETER, who
from tests.workflow.test_deliverables import OWNER, a_request
from tests.workflow.test_suppliers import supplier, two_suppliers

pytestmark = pytest.mark.db

UTC = dt.UTC


async def finished(wf, d: dict, actor, *, rework: bool = False) -> None:
    path = f"/v1/deliverables/{d['id']}"
    await wf.ok("POST", f"{path}/start", actor, {})
    await wf.ok("POST", f"{path}/deliver", actor, {})
    if rework:
        await wf.ok("POST", f"{path}/send-back", MARKETER, {"reason": "again"})
        await wf.ok("POST", f"{path}/deliver", actor, {})
    await wf.ok("POST", f"{path}/approve", MARKETER, {})


async def set_times(wf, deliverable_id: str, due: dt.datetime, delivered: dt.datetime) -> None:
    """Move a finished deliverable's instants into the past (the report reads only these)."""
    async with wf.runtime.transaction() as s:
        await s.execute(
            update(deliverables)
            .where(deliverables.c.id == deliverable_id)
            .values(due_at=due, delivered_at=delivered, finished_at=delivered + dt.timedelta(hours=1))
        )


async def test_reports_per_supplier_and_team_and_the_timeline(wf):
    acme, other = await two_suppliers(wf)  # acme works on the Berlin calendar
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    acme_key = supplier(acme["id"])
    late = await wf.ok(
        "POST", path, MARKETER, {"name": "L", "supplier_id": acme["id"], "business_hours": "8"}, status=201
    )
    ok = await wf.ok(
        "POST", path, MARKETER, {"name": "O", "supplier_id": acme["id"], "business_hours": "8"}, status=201
    )
    team = await wf.ok(
        "POST", path, MARKETER, {"name": "T", "owner": "olga", "team": "design", "business_hours": "8"}, status=201
    )
    await finished(wf, late, acme_key, rework=True)
    await finished(wf, ok, acme_key)
    await finished(wf, team, OWNER)
    # Due Friday 17:00 CEST, delivered Monday 11:00 CET: the weekend and the DST night do not count, 2 h late.
    await set_times(wf, late["id"], dt.datetime(2027, 10, 29, 15, tzinfo=UTC), dt.datetime(2027, 11, 1, 10, tzinfo=UTC))
    await set_times(wf, ok["id"], dt.datetime(2027, 11, 2, 15, tzinfo=UTC), dt.datetime(2027, 11, 2, 9, tzinfo=UTC))
    await set_times(wf, team["id"], dt.datetime(2027, 10, 5, 12, tzinfo=UTC), dt.datetime(2027, 10, 5, 11, tzinfo=UTC))
    params = {"from": "2027-10-01", "to": "2027-11-30"}
    report = await wf.ok("GET", "/v1/reports/suppliers", MARKETER, params=params)
    assert report["rows"] == [
        {
            "assignee": acme["id"],
            "name": "Acme Studio",
            "period": "2027-11",
            "completed": 2,
            "on_time": 1,
            "on_time_rate_pct": "50.00",
            "avg_lateness_business_hours": "1.00",
            "rework_rounds": 1,
        }
    ]
    weekly = await wf.ok("GET", "/v1/reports/suppliers", MARKETER, params={**params, "period": "week"})
    assert [(r["period"], r["completed"]) for r in weekly["rows"]] == [("2027-W44", 2)]
    teams = await wf.ok("GET", "/v1/reports/teams", MARKETER, params=params)
    assert [(r["assignee"], r["period"], r["on_time_rate_pct"]) for r in teams["rows"]] == [
        ("design", "2027-10", "100.00")
    ]
    assert (await wf.ok("GET", "/v1/reports/teams", MARKETER, params={"from": "2027-12-01", "to": "2027-12-31"}))[
        "rows"
    ] == []
    for bad in ({"from": "2027-11-30", "to": "2027-10-01"}, {"from": "2020-01-01", "to": "2027-01-01"}):
        r = await wf.call("GET", "/v1/reports/suppliers", MARKETER, params=bad)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.to", r.text
    r = await wf.call("GET", "/v1/reports/suppliers", MARKETER, params={"to": "2027-11-30"})
    assert r.status_code == 422, r.text
    assert (await wf.call("GET", "/v1/reports/suppliers", acme_key, params=params)).status_code == 403
    # The timeline: what is due in the window, as each may see it.
    timeline = await wf.ok("GET", "/v1/calendar", MARKETER, params=params)
    assert [(e["title"], e["request_number"]) for e in timeline["items"]] == [
        ("T", req["number"]),
        ("L", req["number"]),
        ("O", req["number"]),
    ]
    assert [e["title"] for e in (await wf.ok("GET", "/v1/calendar", acme_key, params=params))["items"]] == ["L", "O"]
    assert (await wf.ok("GET", "/v1/calendar", supplier(other["id"]), params=params))["items"] == []
    assert (await wf.ok("GET", "/v1/calendar", APPROVER_US, params=params))["items"] == []
    assert [
        e["title"]
        for e in (await wf.ok("GET", "/v1/calendar", who("olga", "marketer", scopes=("region:NA",)), params=params))[
            "items"
        ]
    ] == ["T"]
