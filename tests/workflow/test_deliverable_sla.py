"""Deliverable SLAs on the approval SLAs' exactly-once timers: warning, breach and escalation fire
once; the clock pauses while a delivery waits on the requester and runs on from what was left."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.conftest import eventually
from tests.workflow.conftest import MARKETER, who
from tests.workflow.test_deliverables import a_request, timers_of

pytestmark = pytest.mark.db

OWNER = who("olga", "marketer", scopes=("region:EMEA",))


async def short_deliverable(wf, seconds: float, **extra) -> dict:
    await wf.ensure_always_open()
    req = await a_request(wf)
    body = {"name": "Hero", "owner": "olga", "calendar": "always", "business_hours": str(round(seconds / 3600, 8))}
    return await wf.ok("POST", f"/v1/requests/{req['id']}/deliverables", MARKETER, {**body, **extra}, status=201)


async def count(wf, subject: str) -> int:
    return len(await wf.events(subject))


async def test_warning_breach_and_escalation_fire_once(wf):
    d = await short_deliverable(wf, 2.0, warn_at="0.5", escalate_to=["boss"])
    await eventually(lambda: count(wf, "workflow.deliverable.sla_breached"), timeout=10)
    await wf.runtime.scheduler.fire_due(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))  # nothing left to fire
    warnings = await wf.events("workflow.deliverable.sla_warning")
    breaches = await wf.events("workflow.deliverable.sla_breached")
    assert len(warnings) == 1 and len(breaches) == 1
    assert breaches[0]["data"]["escalation"] == {"notify": ["boss"]}
    assert breaches[0]["data"]["deliverable_id"] == d["id"] and breaches[0]["data"]["sla_kind"] == "ola"
    assert await timers_of(wf, d["id"]) == {"fired": 2}
    view = await wf.ok("GET", f"/v1/deliverables/{d['id']}", MARKETER)
    assert view["sla_state"] == "breached" and view["escalated"] is True
    req = await wf.ok("GET", f"/v1/requests/{d['request_id']}", MARKETER)
    actions = [h["action"] for h in req["instance"]["history"]]
    assert actions.count("deliverable_sla_warning") == 1 and actions.count("deliverable_sla_breached") == 1
    # Delivered late after a breach: still breached once done.
    await wf.ok("POST", f"/v1/deliverables/{d['id']}/start", OWNER, {})
    await wf.ok("POST", f"/v1/deliverables/{d['id']}/deliver", OWNER, {})
    done = await wf.ok("POST", f"/v1/deliverables/{d['id']}/approve", MARKETER, {})
    assert done["sla_state"] == "breached"
    approved = (await wf.events("workflow.deliverable.approved"))[0]["data"]
    assert approved["on_time"] is False and approved["lateness_business_hours"] > 0


async def test_escalation_notifies_the_requester_by_default(wf):
    d = await short_deliverable(wf, 0.5)
    await eventually(lambda: count(wf, "workflow.deliverable.sla_breached"), timeout=10)
    data = (await wf.events("workflow.deliverable.sla_breached"))[0]["data"]
    assert data["escalation"] == {"notify": [MARKETER.subject]} and data["deliverable_id"] == d["id"]


async def test_the_clock_pauses_while_the_delivery_waits_on_the_requester(wf):
    d = await short_deliverable(wf, 3.0, warn_at="0.9")
    await wf.ok("POST", f"/v1/deliverables/{d['id']}/start", OWNER, {})
    delivered = await wf.ok("POST", f"/v1/deliverables/{d['id']}/deliver", OWNER, {})
    assert delivered["sla_state"] == "paused" and await timers_of(wf, d["id"]) == {"cancelled": 2}
    await asyncio.sleep(3.5)  # longer than the whole SLA: paused, nothing fires
    await wf.runtime.scheduler.fire_due()
    assert await count(wf, "workflow.deliverable.sla_breached") == 0
    back = await wf.ok("POST", f"/v1/deliverables/{d['id']}/send-back", MARKETER, {"reason": "wrong size"})
    assert back["sla_state"] == "on_track" and back["rework_rounds"] == 1
    left = dt.datetime.fromisoformat(back["due_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=1) < left <= dt.timedelta(seconds=3)  # what was left, from now
    assert (await timers_of(wf, d["id"])).get("pending") == 2
    await eventually(lambda: count(wf, "workflow.deliverable.sla_breached"), timeout=10)
    assert (await wf.ok("GET", f"/v1/deliverables/{d['id']}", MARKETER))["sla_state"] == "breached"


async def test_a_cancelled_deliverable_fires_nothing(wf):
    d = await short_deliverable(wf, 1.0)
    await wf.ok("POST", f"/v1/deliverables/{d['id']}/cancel", MARKETER, {})
    await asyncio.sleep(1.5)
    await wf.runtime.scheduler.fire_due()
    assert await count(wf, "workflow.deliverable.sla_breached") == 0
    assert await timers_of(wf, d["id"]) == {"cancelled": 2}


async def test_a_racing_review_counts_one_outcome_once(wf):
    """Approve and send-back at the same time (and two send-backs): the row lock lets one through,
    the other sees the new status (409); no rework round is counted twice."""
    for _ in range(3):
        d = await short_deliverable(wf, 3600.0)
        await wf.ok("POST", f"/v1/deliverables/{d['id']}/start", OWNER, {})
        await wf.ok("POST", f"/v1/deliverables/{d['id']}/deliver", OWNER, {})
        calls = [
            wf.call("POST", f"/v1/deliverables/{d['id']}/approve", MARKETER, {}),
            wf.call("POST", f"/v1/deliverables/{d['id']}/send-back", MARKETER, {"reason": "a"}),
            wf.call("POST", f"/v1/deliverables/{d['id']}/send-back", MARKETER, {"reason": "b"}),
        ]
        results = await asyncio.gather(*calls)
        assert sorted(r.status_code for r in results) == [200, 409, 409], [r.text for r in results]
        final = await wf.ok("GET", f"/v1/deliverables/{d['id']}", MARKETER)
        sent_back = [r for r in results[1:] if r.status_code == 200]
        assert final["rework_rounds"] == len(sent_back) <= 1
        events = [
            e for e in await wf.events("workflow.deliverable.sent_back") if e["data"]["deliverable_id"] == d["id"]
        ]
        assert len(events) == final["rework_rounds"]
