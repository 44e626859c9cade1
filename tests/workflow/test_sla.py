"""SLA timers: warning and breach fire once, escalate, pause for requested changes, survive restarts."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from services.workflow.main import create_app
from services.workflow.models import infra
from shared.db import utcnow
from tests.conftest import eventually
from tests.workflow.conftest import ADMIN, APPROVER_ALL, APPROVER_EMEA, MARKETER, MOPS, Harness, settings_for, who

pytestmark = pytest.mark.db


async def fired_timers(h: Harness) -> list:
    t = infra.timers
    async with h.runtime.transaction(readonly=True) as s:
        return (await s.execute(select(t).where(t.c.status == "fired"))).all()


async def n_events(h: Harness, subject: str) -> int:
    return len(await h.events(subject))


async def test_warning_then_breach_reassigns_to_mops_within_two_seconds(wf):
    await wf.short_sla_definition("fast", 4.0, warn_at="0.25")
    inst = await wf.start("fast")
    task = inst["tasks"][0]
    await eventually(lambda: n_events(wf, "workflow.sla.warning"), timeout=10)
    view = await wf.ok("GET", f"/v1/tasks/{task['id']}", MARKETER)
    assert view["sla_state"] == "at_risk"
    await eventually(lambda: n_events(wf, "workflow.sla.breached"), timeout=10)
    breached = (await wf.events("workflow.sla.breached"))[0]["data"]
    assert breached["task_id"] == task["id"] and breached["escalation"] == {"reassign_to_role": "mops"}
    assert breached["definition_key"] == "fast" and breached["context"]["region"] == "EMEA"
    assert breached["stage"] == "Review" and breached["due_at"] == task["due_at"]
    for row in await fired_timers(wf):
        assert (row.fired_at - row.due_at).total_seconds() < 2.0
    # Reassigned: the approver lost the task, marketing ops has it, marked breached.
    assert (await wf.ok("GET", "/v1/tasks", APPROVER_EMEA))["items"] == []
    inbox = (await wf.ok("GET", "/v1/tasks", MOPS))["items"]
    assert [t["id"] for t in inbox] == [task["id"]]
    assert inbox[0]["sla_state"] == "breached" and inbox[0]["assignees"] == {"roles": ["mops"], "users": []}
    assert inbox[0]["remaining_business_minutes"] < 0
    assert (await wf.call("POST", f"/v1/tasks/{task['id']}/approve", APPROVER_EMEA, {})).status_code == 403
    done = await wf.ok("POST", f"/v1/tasks/{task['id']}/approve", MOPS, {})
    assert done["status"] == "approved" and done["sla_met"] is False
    assert (await wf.events("workflow.instance.approved"))[0]["data"]["sla_met"] is False
    assigned = await wf.events("workflow.task.assigned")
    assert [e["data"]["assignees"]["roles"] for e in assigned] == [["approver"], ["mops"]]
    report = await wf.ok("GET", "/v1/reports/sla", ADMIN, params={"definition": "fast"})
    assert report["sla_attainment_pct"] == 0.0
    assert [{k: s[k] for k in ("stage", "tasks", "breaches")} for s in report["breaches_per_stage"]] == [
        {"stage": "Review", "tasks": 1, "breaches": 1}
    ]
    assert report["breaches_per_stage"][0]["attainment_pct"] == 0.0


async def test_add_approver_and_notify_escalation(wf):
    await wf.short_sla_definition("notify", 0.5, escalation={"add_approver": "boss", "notify": ["admin"]})
    inst = await wf.start("notify")
    await eventually(lambda: n_events(wf, "workflow.sla.breached"), timeout=10)
    data = (await wf.events("workflow.sla.breached"))[0]["data"]
    assert data["escalation"] == {"add_approver": "boss", "notify": ["admin"]}
    task_id = inst["tasks"][0]["id"]
    # The original approvers keep the task; the boss may now decide too.
    assert [t["id"] for t in (await wf.ok("GET", "/v1/tasks", APPROVER_EMEA))["items"]] == [task_id]
    done = await wf.ok("POST", f"/v1/tasks/{task_id}/approve", who("boss", "marketer"), {})
    assert done["status"] == "approved"


async def test_the_clock_pauses_while_changes_are_requested(wf):
    await wf.short_sla_definition("pause", 3.0, warn_at="0.9")
    inst = await wf.start("pause")
    task = inst["tasks"][0]
    due = dt.datetime.fromisoformat(task["due_at"])
    await asyncio.sleep(0.3)
    before = utcnow()
    await wf.ok("POST", f"/v1/tasks/{task['id']}/request-changes", APPROVER_ALL, {"comment": "fix"})
    after = utcnow()
    await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.8)  # well past the original due time
    assert await n_events(wf, "workflow.sla.breached") == 0
    assert (await wf.timer_counts()).get("pending", 0) == 0
    resumed_before = utcnow()
    again = await wf.ok("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {})
    resumed_after = utcnow()
    new_due = dt.datetime.fromisoformat(again["tasks"][-1]["due_at"])
    # The business time left when the clock stopped (kept in whole seconds, rounded up) runs from the resubmission.
    slack = dt.timedelta(seconds=1)
    assert resumed_before + (due - after) <= new_due <= resumed_after + (due - before) + slack
    await eventually(lambda: n_events(wf, "workflow.sla.breached"), timeout=10)
    assert await n_events(wf, "workflow.sla.breached") == 1
    assert await n_events(wf, "workflow.sla.warning") == 1


async def test_a_restart_mid_sla_loses_no_timer_and_fires_none_twice(db_url):
    first = create_app(settings_for(db_url))
    async with first.router.lifespan_context(first):
        h = Harness(first, db_url)
        await h.short_sla_definition("restart", 6.0, warn_at="0.15")
        inst = await h.start("restart")
        await eventually(lambda: n_events(h, "workflow.sla.warning"), timeout=10)
        assert await n_events(h, "workflow.sla.breached") == 0
        await h.client.aclose()
    # The service is down when the breach falls due.
    due = dt.datetime.fromisoformat(inst["tasks"][0]["due_at"])
    await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.5)
    second = create_app(settings_for(db_url))
    async with second.router.lifespan_context(second):
        h = Harness(second, db_url)
        await eventually(lambda: n_events(h, "workflow.sla.breached"), timeout=10)
        await asyncio.sleep(1.0)  # give a duplicate every chance to appear
        assert await n_events(h, "workflow.sla.warning") == 1
        assert await n_events(h, "workflow.sla.breached") == 1
        assert await h.timer_counts() == {"fired": 2}
        task = (await h.ok("GET", f"/v1/instances/{inst['id']}", MARKETER))["tasks"][0]
        assert task["sla_state"] == "breached" and task["assignees"]["roles"] == ["mops"]
        await h.client.aclose()


async def test_tool_renewal_sla_ends_at_the_notice_deadline(wf):
    deadline = (utcnow() + dt.timedelta(seconds=1.5)).isoformat()
    body = {
        "definition_key": "tool-renewal",
        "subject": {"type": "contract", "id": "k-1", "service": "registry"},
        "context": {"tool_name": "Acme", "notice_deadline": deadline},
    }
    inst = await wf.ok("POST", "/v1/instances", MOPS, body, status=201)
    assert dt.datetime.fromisoformat(inst["tasks"][0]["due_at"]) == dt.datetime.fromisoformat(deadline)
    assert inst["tasks"][0]["assignees"] == {"roles": ["mops"], "users": []}
    await eventually(lambda: n_events(wf, "workflow.sla.breached"), timeout=10)
    # A date means the end of that day in the calendar's zone (UTC for `default`).
    body["context"]["notice_deadline"] = "2031-05-30"
    body["subject"]["id"] = "k-2"
    later = await wf.ok("POST", "/v1/instances", MOPS, body, status=201)
    assert later["tasks"][0]["due_at"] == "2031-05-31T00:00:00+00:00"
    body["context"] = {"tool_name": "Acme"}
    r = await wf.call("POST", "/v1/instances", MOPS, body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "context.notice_deadline"


async def test_decisions_racing_with_firing_timers_never_fail(wf):
    """Requests lock timers before the instance, as the scheduler does: no deadlock, no 500."""
    await wf.short_sla_definition("race", 8.0, warn_at="0.25")
    loop = asyncio.get_running_loop()
    created = []
    for i in range(30):
        created.append(((await wf.start("race", subject_id=f"r{i}"))["tasks"][0]["id"], loop.time()))

    async def approve_when_warning_fires(task_id: str, at: float, jitter: float):
        # Each approval lands around its task's warning (2 s after creation; the poll adds up to 0.25 s).
        await asyncio.sleep(max(0.0, at + 2.0 + jitter - loop.time()))
        return await wf.call("POST", f"/v1/tasks/{task_id}/approve", APPROVER_EMEA, {"comment": "ok"})

    answers = await asyncio.gather(
        *(approve_when_warning_fires(t, at, (i % 6) * 0.05 - 0.1) for i, (t, at) in enumerate(created))
    )
    assert [r.status_code for r in answers] == [200] * len(created), [r.text for r in answers if r.status_code != 200]
    assert len(await wf.events("workflow.instance.approved")) == len(created)
    assert await n_events(wf, "workflow.sla.breached") == 0
    assert (await wf.timer_counts()).get("pending", 0) == 0
