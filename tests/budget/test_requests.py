"""Bottom-up requests: a line owner asks for next year's money per line and month with a justification;
the workflow's approval decides over a real NATS (budget.request.submitted -> the shipped
`budget-request` definition -> workflow.instance.approved|rejected); approval posts the allocations
through the ledger, rejection keeps the approver's comment, and the status and history show each step.
The input checks, the scopes and the approval that can no longer post run on the budget alone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from services.budget import requests
from services.budget.models import budget_request_items, budget_requests, entries
from shared.identity import Principal
from tests.budget.conftest import ADMIN, Budget, problem, who
from tests.conftest import eventually
from tests.harness import identity
from tests.registry.test_reviews import Loop, loop_of, own_nats  # noqa: F401  (own_nats: the fixture)

pytestmark = pytest.mark.db

EMEA_MARKETER = who("marketer", scopes=("region:EMEA",), subject="mia")
APAC_MARKETER = who("marketer", scopes=("region:APAC",), subject="pat")
FINANCE_REVIEWER = identity("fiona", "finance")


def _request(plan_id: str, items: list[tuple[str, str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "currency": "EUR",
        "justification": "Two more trade fairs next year",
        "items": [{"line_id": line, "period": period, "amount": amount} for line, period, amount in items],
        **extra,
    }


async def _next_year(loop: Loop) -> tuple[str, dict[str, str]]:
    body = {"name": "FY28", "fiscal_year": 2028, "currency": "EUR", "overspend_policy": "block"}
    plan = await loop.ok("budget", "POST", "/v1/plans", 201, json=body)
    ids = {}
    for code in ("EVENTS", "SEARCH"):
        line = {"code": code, "name": code.title(), "dimensions": {"region": "EMEA", "channel": code.lower()}}
        ids[code] = (await loop.ok("budget", "POST", f"/v1/plans/{plan['id']}/lines", 201, json=line))["id"]
    await loop.ok("budget", "POST", f"/v1/plans/{plan['id']}/activate")
    return plan["id"], ids


async def _task(loop: Loop, request_id: str) -> dict[str, Any] | None:
    tasks = (await loop.c["workflow"].get("/v1/tasks", params={"assignee": "me"}, headers=FINANCE_REVIEWER)).json()
    for task in tasks["items"]:
        inst = await loop.ok("workflow", "GET", f"/v1/instances/{task['instance_id']}")
        if inst["subject"] == {"type": "budget_request", "id": request_id, "service": "budget"}:
            return {**task, "instance": inst}
    return None


async def test_a_request_approved_in_the_workflow_is_allocated_and_a_rejected_one_keeps_the_reason(
    new_db,
    own_nats,  # noqa: F811
):
    async with loop_of(new_db, own_nats) as loop:
        plan_id, ids = await _next_year(loop)
        items = [(ids["EVENTS"], "2028-03", "12000.00"), (ids["SEARCH"], "2028-01", "800.50")]
        asked = await loop.ok(
            "budget", "POST", "/v1/requests", 201, json=_request(plan_id, items), headers=EMEA_MARKETER
        )
        assert (asked["status"], asked["total"], asked["requested_by"]) == ("pending_approval", "12800.50", "mia")
        assert [(s["action"], s["actor"]) for s in asked["history"]] == [("submitted", "mia")]

        task = await eventually(lambda: _task(loop, asked["id"]), timeout=20)
        inst = task["instance"]
        assert inst["definition_key"] == "budget-request" and inst["requester"] == "mia"
        assert inst["context"]["region"] == "EMEA" and inst["context"]["total"] == "12800.50"
        assert inst["context"]["justification"] == "Two more trade fairs next year"
        await loop.ok("workflow", "POST", f"/v1/tasks/{task['id']}/approve", json={}, headers=FINANCE_REVIEWER)

        async def decided(rid: str) -> dict[str, Any] | None:
            got = await loop.ok("budget", "GET", f"/v1/requests/{rid}", headers=EMEA_MARKETER)
            return got if got["status"] != "pending_approval" else None

        done = await eventually(lambda: decided(asked["id"]), timeout=20)
        assert (done["status"], done["decided_by"], done["reason"]) == ("approved", "fiona", None)
        assert done["instance_id"] == inst["id"]
        assert [s["action"] for s in done["history"]] == ["submitted", "approved"]
        assert all(i["entry_id"] for i in done["items"])
        for line, period, amount in items:
            bal = await loop.ok("budget", "GET", f"/v1/lines/{line}/balance", params={"from": period, "to": period})
            assert bal["allocated"] == amount
        entry = await loop.ok("budget", "GET", f"/v1/lines/{ids['EVENTS']}/entries")
        [alloc] = entry["items"]
        assert (alloc["kind"], alloc["external_ref"]) == ("allocation", f"request:{asked['id']}")

        second = await loop.ok(
            "budget",
            "POST",
            "/v1/requests",
            201,
            json=_request(plan_id, [(ids["SEARCH"], "2028-02", "99000.00")], justification="Brand push"),
            headers=EMEA_MARKETER,
        )
        task = await eventually(lambda: _task(loop, second["id"]), timeout=20)
        await loop.ok(
            "workflow",
            "POST",
            f"/v1/tasks/{task['id']}/reject",
            json={"comment": "No room in 2028; ask again in the spring reforecast"},
            headers=FINANCE_REVIEWER,
        )
        rejected = await eventually(lambda: decided(second["id"]), timeout=20)
        assert rejected["status"] == "rejected" and rejected["decided_by"] == "fiona"
        assert rejected["reason"] == "No room in 2028; ask again in the spring reforecast"
        assert [(s["action"], s["comment"]) for s in rejected["history"]] == [
            ("submitted", None),
            ("rejected", "No room in 2028; ask again in the spring reforecast"),
        ]
        assert rejected["items"][0]["entry_id"] is None
        feb = await loop.ok(
            "budget", "GET", f"/v1/lines/{ids['SEARCH']}/balance", params={"from": "2028-02", "to": "2028-02"}
        )
        assert feb["allocated"] == "0.00"
        mine = await loop.ok("budget", "GET", "/v1/requests", params={"mine": "true"}, headers=EMEA_MARKETER)
        assert [r["id"] for r in mine["items"]] == [second["id"], asked["id"]]
        assert (await loop.ok("budget", "GET", "/v1/requests", params={"status": "rejected"}))["items"][0][
            "id"
        ] == second["id"]


async def _plan(budget: Budget) -> tuple[dict, dict, dict]:
    plan = await budget.plan(year=2028)
    emea = await budget.line(plan["id"], "EMEA-EVENTS", region="EMEA")
    apac = await budget.line(plan["id"], "APAC-EVENTS", region="APAC")
    return plan, emea, apac


async def _counts(budget: Budget) -> tuple[int, int, int, int]:
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        return (
            await s.scalar(select(func.count()).select_from(budget_requests)),
            await s.scalar(select(func.count()).select_from(budget_request_items)),
            await s.scalar(select(func.count()).select_from(entries)),
            await s.scalar(select(func.count()).select_from(outbox).where(outbox.c.subject.like("budget.request.%"))),
        )


async def test_bad_requests_name_their_field_and_write_nothing(budget):
    plan, emea, apac = await _plan(budget)
    other = await budget.plan(year=2029)
    foreign = await budget.line(other["id"], "ELSEWHERE")
    before = await _counts(budget)
    good = _request(plan["id"], [(emea["id"], "2028-01", "100.00")])
    one = good["items"][0]
    cases = [
        ({"plan_id": "nope"}, 422, "plan_id"),
        ({"currency": "USD"}, 422, "currency"),
        ({"justification": ""}, 422, "justification"),
        ({"items": []}, 422, "items"),
        ({"items": [{**one, "line_id": "nope"}]}, 422, "items[0].line_id"),
        ({"items": [{**one, "line_id": foreign["id"]}]}, 422, "items[0].line_id"),
        ({"items": [{**one, "period": "2027-12"}]}, 422, "items[0].period"),
        ({"items": [{**one, "amount": "0.00"}]}, 422, "items[0].amount"),
        ({"items": [{**one, "amount": "-5.00"}]}, 422, "items[0].amount"),
        ({"items": [{**one, "amount": "1.001"}]}, 422, "items[0].amount"),
        ({"items": [one, {**one, "amount": "5.00"}]}, 422, "items[1].period"),
        ({"items": [{**one, "amount": 1.5}]}, 422, "body.items.0.amount"),
    ]
    for change, status, field in cases:
        body = problem(await budget.c.post("/v1/requests", headers=ADMIN, json={**good, **change}), status)
        fields = {e["field"] for e in body.get("errors", [])}
        assert any(f == field or f.endswith(field.split(".", 1)[-1]) for f in fields), (change, body)
    assert await _counts(budget) == before


async def test_the_submitter_must_be_allowed_to_change_every_line_and_sees_only_their_scope(budget):
    plan, emea, apac = await _plan(budget)
    before = await _counts(budget)
    mixed = _request(plan["id"], [(emea["id"], "2028-01", "100.00"), (apac["id"], "2028-01", "100.00")])
    problem(await budget.c.post("/v1/requests", headers=EMEA_MARKETER, json=mixed), 403)
    analyst = who("analyst", subject="ann")
    only_emea = _request(plan["id"], [(emea["id"], "2028-01", "100.00")])
    problem(await budget.c.post("/v1/requests", headers=analyst, json=only_emea), 403)
    assert await _counts(budget) == before
    mine = await budget.ok("POST", "/v1/requests", 201, headers=EMEA_MARKETER, json=only_emea)
    problem(await budget.c.get(f"/v1/requests/{mine['id']}", headers=APAC_MARKETER), 404)
    assert (await budget.ok("GET", "/v1/requests", headers=APAC_MARKETER))["items"] == []
    assert [r["id"] for r in (await budget.ok("GET", "/v1/requests", headers=EMEA_MARKETER))["items"]] == [mine["id"]]
    problem(await budget.c.get("/v1/requests/nope", headers=ADMIN), 404)
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        [payload] = (
            await s.execute(select(outbox.c.payload).where(outbox.c.subject == "budget.request.submitted"))
        ).scalars()
    data = json.loads(payload)["data"]
    assert data["request_id"] == mine["id"] and data["requested_by"] == "mia" and data["fiscal_year"] == 2028
    assert data["items"] == [
        {"line_id": emea["id"], "line_code": "EMEA-EVENTS", "period": "2028-01", "amount": "100.00"}
    ]
    assert data["dimensions"]["region"] == "EMEA" and data["line_codes"] == ["EMEA-EVENTS"]


async def test_an_approval_that_can_no_longer_post_fails_with_the_reason_and_posts_nothing(budget):
    """February was closed after submission: the approval is refused then, January's allocation too."""
    plan, emea, _ = await _plan(budget)
    items = [(emea["id"], "2028-01", "100.00"), (emea["id"], "2028-02", "200.00")]
    asked = await budget.ok("POST", "/v1/requests", 201, headers=EMEA_MARKETER, json=_request(plan["id"], items))
    await budget.ok("POST", f"/v1/plans/{plan['id']}/periods/2028-02/close")
    service = Principal("service:workflow", frozenset({"admin"}), kind="service")
    entries_before = (await _counts(budget))[2]
    async with budget.runtime.unit_of_work() as uow:
        await requests.decided(
            uow,
            service,
            postings=budget.domain.postings,
            request_id=asked["id"],
            outcome="approved",
            instance_id="i-1",
            actor=None,
            comment=None,
        )
    got = await budget.ok("GET", f"/v1/requests/{asked['id']}")
    assert got["status"] == "failed" and "2028-02" in got["reason"] and "closed" in got["reason"]
    assert [s["action"] for s in got["history"]] == ["submitted", "approved", "failed"]
    assert (await _counts(budget))[2] == entries_before  # neither allocation was posted
    async with budget.runtime.unit_of_work() as uow:  # a redelivered decision changes nothing
        await requests.decided(
            uow,
            service,
            postings=budget.domain.postings,
            request_id=asked["id"],
            outcome="rejected",
            instance_id="i-1",
            actor="x",
            comment="late",
        )
    assert (await budget.ok("GET", f"/v1/requests/{asked['id']}"))["status"] == "failed"


async def test_requests_approved_while_next_years_plan_is_a_draft_become_its_locked_budget(budget):
    plan = await budget.plan(year=2028, activate=False)
    ln = await budget.line(plan["id"], "EMEA-EVENTS", region="EMEA")
    asked = await budget.ok(
        "POST", "/v1/requests", 201, headers=EMEA_MARKETER, json=_request(plan["id"], [(ln["id"], "2028-05", "640.00")])
    )
    service = Principal("service:workflow", frozenset({"admin"}), kind="service")
    async with budget.runtime.unit_of_work() as uow:
        await requests.decided(
            uow,
            service,
            postings=budget.domain.postings,
            request_id=asked["id"],
            outcome="approved",
            instance_id="i-9",
            actor=None,
            comment=None,
        )
    assert (await budget.ok("GET", f"/v1/requests/{asked['id']}"))["status"] == "approved"
    await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    await budget.allocate(ln["id"], "60.00", period="2028-05")  # after activation: the working figures only
    v = await budget.ok("GET", f"/v1/plans/{plan['id']}/variance?compare=budget,allocated&from=2028-05&to=2028-05")
    assert v["total"]["figures"] == {"budget": "640.00", "allocated": "700.00"}
