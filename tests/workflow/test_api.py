"""The approval API on a real database: definitions, instances, tasks, four eyes, history, reports."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.workflow.defaults import ensure_defaults
from services.workflow.intake_forms import REQUEST_DEFINITIONS, REQUEST_TYPES
from tests.workflow.conftest import (
    ANALYST,
    APPROVER_ALL,
    APPROVER_EMEA,
    APPROVER_US,
    MARKETER,
    MOPS,
    who,
)

pytestmark = pytest.mark.db


def stage(name="Review", **kw):
    return {"name": name, "assignees": {"roles": ["approver"]}, **kw}


async def test_shipped_defaults_exist_once_after_startup(wf):
    cals = await wf.ok("GET", "/v1/calendars", ANALYST)
    assert [c["key"] for c in cals["items"]] == ["default"]
    assert cals["items"][0]["timezone"] == "UTC"
    budget = await wf.ok("GET", "/v1/definitions/budget-approval", ANALYST)
    assert budget["version"] == 1
    assert budget["stages"][0]["assignees"]["scope_from_context"] == ["region"]
    assert budget["stages"][0]["sla"]["business_hours"] == "8"
    assert budget["stages"][0]["escalation"] == {"reassign_to_role": "mops"}
    renewal = await wf.ok("GET", "/v1/definitions/tool-renewal", ANALYST)
    assert renewal["stages"][0]["sla"]["deadline_from_context"] == "notice_deadline"
    await ensure_defaults(wf.runtime, wf.runtime.domain)  # a second replica starting: no duplicates
    listed = await wf.ok("GET", "/v1/definitions", ANALYST)
    shipped = {"budget-approval", "budget-request", "tool-renewal", *(d["key"] for d in REQUEST_DEFINITIONS)}
    assert sorted((d["key"], d["version"]) for d in listed["items"]) == [(k, 1) for k in sorted(shipped)]
    types = await wf.ok("GET", "/v1/request-types", ANALYST)
    assert [(t["key"], t["version"]) for t in types["items"]] == [
        ("campaign-brief", 1),
        ("creative-request", 1),
        ("event-request", 1),
        ("supplier-job", 1),
    ]


async def test_a_bad_definition_gets_every_reason_at_once(wf):
    r = await wf.call(
        "POST",
        "/v1/definitions",
        MOPS,
        {
            "key": "bad",
            "name": "Bad",
            "calendar": "nope",
            "trigger": {"event": "budget.commitment.requested", "conditions": [{"field": "amount", "op": "approx"}]},
            "stages": [
                {
                    "name": "A",
                    "assignees": {"users": ["u1"]},
                    "mode": "quorum",
                    "quorum": 3,
                    "sla": {"business_hours": 4, "calendar": "mars"},
                },
                {"name": "A", "assignees": {}, "auto_approve": {"all": "yes"}},
            ],
        },
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {
        "calendar",
        "trigger.conditions[0].op",
        "stages[0].quorum",
        "stages[0].sla.calendar",
        "stages[1].assignees",
        "stages[1].name",
        "stages[1].auto_approve.all",
    }
    r = await wf.call("POST", "/v1/definitions", MOPS, {"key": "empty", "name": "Empty", "stages": []})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stages"
    # Nothing was written.
    assert (await wf.call("GET", "/v1/definitions/bad", MOPS)).status_code == 404


async def test_only_admin_and_mops_configure_and_analysts_never_write(wf):
    body = {"key": "x", "name": "X", "stages": [stage()]}
    assert (await wf.call("POST", "/v1/definitions", MARKETER, body)).status_code == 403
    assert (await wf.call("POST", "/v1/definitions", MOPS, body)).status_code == 201
    cal = {"key": "de", "timezone": "Europe/Berlin", "hours": {"mon": ["09:00", "17:00"]}}
    assert (await wf.call("POST", "/v1/calendars", APPROVER_ALL, cal)).status_code == 403
    r = await wf.call(
        "POST", "/v1/instances", ANALYST, {"definition_key": "x", "subject": {"type": "t", "id": "1", "service": "s"}}
    )
    assert r.status_code == 403
    assert (await wf.call("GET", "/v1/tasks", ANALYST)).status_code == 200
    assert (await wf.client.get("/v1/tasks")).status_code == 401


async def test_calendar_with_holidays_and_idempotent_create(wf):
    body = {
        "key": "de-office",
        "timezone": "Europe/Berlin",
        "hours": {d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": {"country": "DE", "subdivision": "BE"},
        "closed_dates": ["2027-12-24"],
    }
    first = await wf.ok("POST", "/v1/calendars", MOPS, body, status=201, headers={"Idempotency-Key": "k1"})
    again = await wf.call("POST", "/v1/calendars", MOPS, body, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.json()["id"] == first["id"]
    assert (await wf.call("POST", "/v1/calendars", MOPS, body)).status_code == 409
    bad = await wf.call(
        "POST",
        "/v1/calendars",
        MOPS,
        {**body, "key": "zz", "timezone": "Nowhere/City", "holidays": {"country": "DE", "subdivision": "QQ"}},
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"timezone", "holidays.subdivision"}


async def test_budget_approval_narrowed_by_region_with_four_eyes(wf):
    inst = await wf.start("budget-approval")
    assert inst["status"] == "running" and inst["definition_version"] == 1
    task = inst["tasks"][0]
    assert task["scope"] == {"region": "EMEA"} and task["sla_state"] == "on_track"
    assert task["remaining_business_minutes"] <= 8 * 60
    # The EMEA approver and the unscoped approver see it; the NA approver does not.
    assert [t["id"] for t in (await wf.ok("GET", "/v1/tasks", APPROVER_EMEA, params={"assignee": "me"}))["items"]] == [
        task["id"]
    ]
    assert len((await wf.ok("GET", "/v1/tasks", APPROVER_ALL))["items"]) == 1
    assert (await wf.ok("GET", "/v1/tasks", APPROVER_US))["items"] == []
    assert (await wf.call("POST", f"/v1/tasks/{task['id']}/approve", APPROVER_US, {})).status_code == 403
    # Four eyes: the requester holds the approver role too, and still may not approve.
    sneaky = who(MARKETER.subject, "marketer", "approver")
    r = await wf.call("POST", f"/v1/tasks/{task['id']}/approve", sneaky, {})
    assert r.status_code == 403 and "Four eyes" in r.json()["detail"]
    assert (await wf.ok("GET", "/v1/tasks", sneaky))["items"] == []
    done = await wf.ok("POST", f"/v1/tasks/{task['id']}/approve", APPROVER_EMEA, {"comment": "fine"})
    assert done["status"] == "approved" and done["sla_met"] is True
    assert [h["action"] for h in done["history"]] == ["started", "task_assigned", "approved", "finished"]
    assert done["history"][2]["actor"] == APPROVER_EMEA.subject and done["history"][2]["comment"] == "fine"
    # Acting on a finished instance is a conflict.
    assert (await wf.call("POST", f"/v1/tasks/{task['id']}/reject", APPROVER_ALL, {})).status_code == 409
    approved = (await wf.events("workflow.instance.approved"))[0]["data"]
    assert approved["subject"] == {"type": "commitment", "id": "c-1", "service": "budget"}
    assert approved["status"] == "approved" and approved["sla_met"] is True
    assert set(approved) >= {
        "instance_id",
        "definition_key",
        "definition_version",
        "context",
        "requester",
        "finished_at",
        "cycle_time_business_hours",
        "cycle_time_hours",
    }
    completed = (await wf.events("workflow.task.completed"))[0]["data"]
    assert completed["decision"] == "approved" and completed["actor"] == APPROVER_EMEA.subject
    # The SLA timers of the finished task were cancelled, not left to fire.
    assert await wf.timer_counts() == {"cancelled": 2}


async def test_quorum_all_and_delegation(wf):
    await wf.ok(
        "POST",
        "/v1/definitions",
        MOPS,
        {
            "key": "two-of-three",
            "name": "Two of three",
            "stages": [
                {"name": "Board", "assignees": {"users": ["b1", "b2", "b3"]}, "mode": "quorum", "quorum": 2},
                {"name": "Finance", "assignees": {"roles": ["finance"], "users": ["cfo"]}, "mode": "all"},
            ],
        },
        status=201,
    )
    inst = await wf.start("two-of-three")
    board = inst["tasks"][0]["id"]
    b1, b2, b3 = who("b1", "marketer"), who("b2", "marketer"), who("b3", "marketer")
    step = await wf.ok("POST", f"/v1/tasks/{board}/approve", b1, {})
    assert step["status"] == "running" and step["tasks"][0]["approvals"][0]["actor"] == "b1"
    assert (await wf.call("POST", f"/v1/tasks/{board}/approve", b1, {})).status_code == 409
    # b3 hands the seat to dana, who approves: the quorum is reached.
    r = await wf.call("POST", f"/v1/tasks/{board}/delegate", b3, {"to_user": MARKETER.subject})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to_user"
    await wf.ok("POST", f"/v1/tasks/{board}/delegate", b3, {"to_user": "dana", "comment": "on leave"})
    assert [t["id"] for t in (await wf.ok("GET", "/v1/tasks", who("dana", "marketer")))["items"]] == [board]
    step = await wf.ok("POST", f"/v1/tasks/{board}/approve", who("dana", "marketer"), {})
    assert [t["status"] for t in step["tasks"]] == ["approved", "open"]
    fin = step["tasks"][1]["id"]
    assert (await wf.call("POST", f"/v1/tasks/{board}/approve", b2, {})).status_code == 409
    step = await wf.ok("POST", f"/v1/tasks/{fin}/approve", who("fred", "finance"), {})
    assert step["status"] == "running"
    # A second finance person cannot fill the cfo's seat in mode all.
    assert (await wf.call("POST", f"/v1/tasks/{fin}/approve", who("fran", "finance"), {})).status_code == 409
    step = await wf.ok("POST", f"/v1/tasks/{fin}/approve", who("cfo", "finance"), {})
    assert step["status"] == "approved"
    assert [s["status"] for s in step["stages"]] == ["approved", "approved"]


async def test_reject_cancel_and_auto_approve(wf):
    await wf.ok(
        "POST",
        "/v1/definitions",
        MOPS,
        {
            "key": "small",
            "name": "Small",
            "stages": [
                stage("Auto", auto_approve={"field": "amount", "op": "lt", "value": "1000"}),
                stage("Manual"),
            ],
        },
        status=201,
    )
    small = await wf.start("small", context={"amount": "999.99", "region": "EMEA"}, subject_id="s1")
    assert small["status"] == "running" and small["tasks"][0]["stage"] == "Manual"
    assert small["stages"][0]["status"] == "auto_approved"
    rejected = await wf.ok("POST", f"/v1/tasks/{small['tasks'][0]['id']}/reject", APPROVER_EMEA, {"comment": "no"})
    assert rejected["status"] == "rejected"
    assert (await wf.events("workflow.instance.rejected"))[0]["data"]["subject"]["id"] == "s1"
    other = await wf.start("small", context={"amount": "5000", "region": "EMEA"}, subject_id="s2")
    assert (await wf.call("POST", f"/v1/instances/{other['id']}/cancel", APPROVER_EMEA, {})).status_code == 403
    r = await wf.call("POST", f"/v1/instances/{other['id']}/cancel", MARKETER, {}, headers={"If-Match": '"1"'})
    assert r.status_code == 412
    cancelled = await wf.ok(
        "POST", f"/v1/instances/{other['id']}/cancel", MARKETER, {}, headers={"If-Match": str(other["version"])}
    )
    assert cancelled["status"] == "cancelled" and cancelled["tasks"][0]["status"] == "cancelled"
    assert (await wf.call("POST", f"/v1/instances/{other['id']}/cancel", MARKETER, {})).status_code == 409


async def test_a_new_version_never_changes_running_instances(wf):
    await wf.ok("POST", "/v1/definitions", MOPS, {"key": "v", "name": "V1", "stages": [stage("One")]}, status=201)
    old = await wf.start("v")
    v2 = await wf.ok(
        "POST", "/v1/definitions", MOPS, {"key": "v", "name": "V2", "stages": [stage("One"), stage("Two")]}, status=201
    )
    assert v2["version"] == 2
    done = await wf.ok("POST", f"/v1/tasks/{old['tasks'][0]['id']}/approve", APPROVER_EMEA, {})
    assert done["status"] == "approved" and done["definition_version"] == 1 and len(done["stages"]) == 1
    new = await wf.start("v", subject_id="c-2")
    assert new["definition_version"] == 2 and len(new["stages"]) == 2
    assert (await wf.ok("GET", "/v1/definitions/v", ANALYST, params={"version": 1}))["name"] == "V1"
    assert (
        await wf.call(
            "POST",
            "/v1/instances",
            MARKETER,
            {"definition_key": "nope", "subject": {"type": "t", "id": "1", "service": "s"}},
        )
    ).json()["errors"][0]["field"] == "definition_key"


async def test_request_changes_and_resubmit_return_to_the_stage_that_asked(wf):
    await wf.ok(
        "POST",
        "/v1/definitions",
        MOPS,
        {"key": "rework", "name": "R", "stages": [stage("One"), stage("Two", sla={"business_hours": 40})]},
        status=201,
    )
    inst = await wf.start("rework")
    step = await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/approve", APPROVER_EMEA, {})
    two = step["tasks"][1]
    paused = await wf.ok("POST", f"/v1/tasks/{two['id']}/request-changes", APPROVER_ALL, {"comment": "add a quote"})
    assert paused["status"] == "changes_requested"
    assert paused["tasks"][1]["sla_state"] == "paused" and paused["tasks"][0]["sla_state"] is None
    assert (await wf.ok("GET", "/v1/tasks", APPROVER_ALL))["items"] == []
    assert (await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", APPROVER_ALL, {})).status_code == 403
    again = await wf.ok(
        "POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": {"quote": "Q-7"}, "comment": "attached"}
    )
    assert again["status"] == "running" and again["context"]["quote"] == "Q-7"
    reopened = again["tasks"][-1]
    assert reopened["stage"] == "Two" and reopened["status"] == "open"
    # Still 40 business hours, give or take the seconds spent in this test.
    assert 40 * 60 - 2 <= reopened["remaining_business_minutes"] <= 40 * 60
    assert (await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {})).status_code == 409
    assert [e["data"]["status"] for e in await wf.events("workflow.instance.resubmitted")] == ["running"]
    assert len(await wf.events("workflow.instance.started")) == 1
    changes = await wf.events("workflow.instance.changes_requested")
    assert len(changes) == 1 and changes[0]["data"]["status"] == "changes_requested"
    actions = [h["action"] for h in again["history"]]
    assert actions.count("changes_requested") == 1 and "resubmitted" in actions


async def test_history_is_append_only_in_the_database(wf):
    inst = await wf.start("budget-approval")
    await wf.ok("POST", f"/v1/instances/{inst['id']}/comments", APPROVER_EMEA, {"comment": "looking"}, status=201)
    view = await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER)
    assert view["history"][-1]["comment"] == "looking"
    for sql in ("UPDATE history SET actor = 'nobody'", "DELETE FROM history"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with wf.runtime.transaction() as s:
                await s.execute(text(sql))
    assert len((await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER))["history"]) == len(view["history"])


async def test_instances_are_visible_within_scopes(wf):
    emea = await wf.start("budget-approval", subject_id="e1")
    await wf.start(
        "budget-approval", as_=who("nia", "marketer"), context={"amount": "1", "region": "NA"}, subject_id="n1"
    )
    assert [i["id"] for i in (await wf.ok("GET", "/v1/instances", MARKETER))["items"]] == [emea["id"]]
    assert len((await wf.ok("GET", "/v1/instances", ANALYST))["items"]) == 2
    assert (await wf.call("GET", f"/v1/instances/{emea['id']}", APPROVER_US)).status_code == 404
    page = await wf.ok("GET", "/v1/instances", ANALYST, params={"limit": 1})
    rest = await wf.ok("GET", "/v1/instances", ANALYST, params={"limit": 1, "cursor": page["next_cursor"]})
    assert page["items"][0]["id"] != rest["items"][0]["id"] and rest["next_cursor"] is None


async def test_sla_report(wf):
    for i in range(3):
        inst = await wf.start("budget-approval", subject_id=f"r{i}")
        await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/approve", APPROVER_EMEA, {})
    await wf.start("budget-approval", subject_id="open")
    report = await wf.ok(
        "GET", "/v1/reports/sla", ANALYST, params={"definition": "budget-approval", "from": "2020-01-01"}
    )
    assert report["count"] == 3 and report["sla_attainment_pct"] == 100.0
    assert report["outcomes"] == {"approved": 3}
    assert report["cycle_time_hours"]["median"] is not None
    (stage,) = report["breaches_per_stage"]
    assert {k: stage[k] for k in ("stage", "tasks", "breaches", "attainment_pct")} == {
        "stage": "Regional approval",
        "tasks": 3,
        "breaches": 0,
        "attainment_pct": 100.0,
    }
    # Each stage's cycle time in business hours: the three approvals took some, never a negative time.
    assert (
        stage["cycle_time_business_hours"]["median"] is not None and stage["cycle_time_business_hours"]["median"] >= 0
    )
    empty = await wf.ok("GET", "/v1/reports/sla", ANALYST, params={"to": "2020-01-01"})
    assert empty["count"] == 0 and empty["sla_attainment_pct"] is None
    bad = await wf.call("GET", "/v1/reports/sla", ANALYST, params={"from": "yesterday"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.from"


async def test_the_inbox_is_sorted_by_due_time_and_pages(wf):
    await wf.ok(
        "POST",
        "/v1/definitions",
        MOPS,
        {"key": "slow", "name": "Slow", "stages": [stage(sla={"business_hours": 30})]},
        status=201,
    )
    await wf.ok("POST", "/v1/definitions", MOPS, {"key": "none", "name": "No SLA", "stages": [stage()]}, status=201)
    ids = {}
    for key in ("none", "slow", "budget-approval"):
        ids[key] = (await wf.start(key, subject_id=key))["tasks"][0]["id"]
    items = (await wf.ok("GET", "/v1/tasks", APPROVER_EMEA))["items"]
    assert [t["id"] for t in items] == [ids["budget-approval"], ids["slow"], ids["none"]]
    assert [t["sla_state"] for t in items] == ["on_track", "on_track", None]
    assert items[0]["due_at"] < items[1]["due_at"] and items[2]["due_at"] is None
    seen, cursor = [], None
    while True:
        page = await wf.ok(
            "GET", "/v1/tasks", APPROVER_EMEA, params={"limit": 1, **({"cursor": cursor} if cursor else {})}
        )
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [t["id"] for t in items]


async def test_concurrent_approvals_of_an_all_task_count_every_one_once(wf):
    import asyncio

    await wf.ok(
        "POST",
        "/v1/definitions",
        MOPS,
        {
            "key": "trio",
            "name": "Trio",
            "stages": [{"name": "All three", "assignees": {"users": ["p1", "p2", "p3"]}, "mode": "all"}],
        },
        status=201,
    )
    inst = await wf.start("trio")
    task = inst["tasks"][0]["id"]
    answers = await asyncio.gather(
        *(wf.call("POST", f"/v1/tasks/{task}/approve", who(u, "marketer"), {}) for u in ("p1", "p2", "p3"))
    )
    assert sorted(r.status_code for r in answers) == [200, 200, 200]
    final = await wf.ok("GET", f"/v1/instances/{inst['id']}", MOPS)
    assert final["status"] == "approved"
    assert sorted(a["actor"] for a in final["tasks"][0]["approvals"]) == ["p1", "p2", "p3"]
    assert len(await wf.events("workflow.instance.approved")) == 1


async def test_replicas_starting_together_ship_the_defaults_once(db_url):
    import asyncio

    from services.workflow.main import create_app
    from tests.workflow.conftest import Harness, settings_for

    apps = [create_app(settings_for(db_url)) for _ in range(3)]
    contexts = [app.router.lifespan_context(app) for app in apps]
    await asyncio.gather(*(c.__aenter__() for c in contexts))
    try:
        h = Harness(apps[0], db_url)
        listed = await h.ok("GET", "/v1/definitions", ANALYST)
        shipped = {"budget-approval", "budget-request", "tool-renewal", *(d["key"] for d in REQUEST_DEFINITIONS)}
        assert sorted((d["key"], d["version"]) for d in listed["items"]) == [(k, 1) for k in sorted(shipped)]
        types = (await h.ok("GET", "/v1/request-types", ANALYST))["items"]
        assert [(t["key"], t["version"]) for t in types] == [(d["key"], 1) for d in REQUEST_TYPES]
        assert [c["key"] for c in (await h.ok("GET", "/v1/calendars", ANALYST))["items"]] == ["default"]
        await h.client.aclose()
    finally:
        for c in contexts:
            await c.__aexit__(None, None, None)
