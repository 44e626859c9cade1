"""The budget's boundaries are typed: every answer documented and true to its model, every event in
the catalogue (with its audit entry, postings included), and currencies read exactly as ISO 4217 writes them."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from services.budget import schemas
from services.budget.events import CATALOGUE
from tests.budget.conftest import ADMIN, FINANCE, Budget, problem

pytestmark = pytest.mark.db


async def test_every_operation_documents_its_answer_and_its_problems(budget: Budget):
    doc = (await budget.c.get("/openapi.json", headers=ADMIN)).json()
    ours = [
        (path, method, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if path.startswith("/v1/") and "operations" not in op.get("tags", [])
    ]
    # with the ERP mapping (a rule's GET and PUT too) and suspense (8), versions, variance and phasing (7),
    # campaigns (5), bottom-up requests (3)
    assert len(ours) == 52
    for path, method, op in ours:
        responses = op["responses"]
        ok = [status for status in responses if status.startswith("2")]
        assert ok, (path, method)
        for status in ok:
            content = responses[status]["content"]
            assert content and all(c.get("schema") for c in content.values()), (path, method, content)
            if "application/json" in content:
                assert "$ref" in content["application/json"]["schema"], (path, method)  # a model, not `{}`
        for status in ("401", "403", "422", "500"):
            assert "application/problem+json" in responses[status]["content"], (path, method, status)
    by_path = {(path, method): op for path, method, op in ours}
    assert set(by_path["/v1/plans/{plan_id}/export", "get"]["responses"]["200"]["content"]) == {"text/csv"}
    assert set(by_path["/v1/plans/{plan_id}/import", "post"]["requestBody"]["content"]) == {"text/csv"}
    assert {"404", "409", "412", "428"} <= set(by_path["/v1/plans/{plan_id}", "patch"]["responses"])
    assert set(by_path["/v1/erp/purchase-orders", "post"]["responses"]) >= {"200", "201", "202", "409"}
    assert set(by_path["/v1/erp/suspense/{suspense_id}/assign", "post"]["responses"]) >= {"200", "404", "409"}
    summary = doc["components"]["schemas"]["Summary"]["properties"]
    assert {"from", "to", "groups", "total"} <= set(summary)


async def test_the_service_serves_its_part_of_the_asyncapi_document(budget: Budget):
    part = (await budget.c.get("/asyncapi.json", headers=ADMIN)).json()
    assert part["service"] == "budget"
    assert {s.subject for s in CATALOGUE.publishes} <= set(part["channels"])
    assert "budget.commitment.changed" in part["channels"]  # the one docs/events.md had missed
    data = part["components"]["schemas"]["BudgetCommitmentRequested"]
    assert {"commitment_id", "amount", "currency", "reason", "dimensions"} <= set(data["required"])


def _is(model: type[BaseModel], body: dict) -> None:
    """`body` is exactly what `model` documents: every field it names and no other (Out forbids extras)."""
    model.model_validate(body)


async def test_answers_are_what_their_models_document(budget: Budget):
    """A tour of the API, each answer checked against its route's model field for field."""
    plan = await budget.plan(threshold="500.00")
    _is(schemas.PlanOut, plan)
    _is(schemas.PlanDetail, await budget.ok("GET", f"/v1/plans/{plan['id']}"))
    _is(schemas.PlanPage, await budget.ok("GET", "/v1/plans"))
    root = await budget.line(plan["id"], "EMEA", region="EMEA")
    leaf = await budget.line(plan["id"], "EMEA-SEARCH", "EMEA", channel="search")
    other = await budget.line(plan["id"], "EMEA-SOCIAL", "EMEA", channel="social")
    _is(schemas.LineOut, leaf)
    _is(schemas.EntryOut, await budget.allocate(leaf["id"], "1000.00"))
    body = {"from_line_id": leaf["id"], "to_line_id": other["id"], "period": "2027-03", "amount": "100.00"}
    _is(schemas.TransferOut, await budget.ok("POST", "/v1/transfers", 201, json={**body, "currency": "EUR"}))
    held = (await budget.commit(leaf["id"], "600.00", external_ref="PO-9")).json()
    _is(schemas.CommitmentOut, held)
    assert held["status"] == "pending_approval"
    _is(schemas.CommitmentOut, await budget.ok("POST", f"/v1/commitments/{held['id']}/approve", headers=FINANCE))
    _is(schemas.CommitmentOut, await budget.ok("GET", f"/v1/commitments/{held['id']}"))
    actual = {"line_id": leaf["id"], "period": "2027-03", "amount": "50.00", "currency": "EUR"}
    spent = await budget.ok("POST", "/v1/actuals", 201, json={**actual, "commitment_id": held["id"]})
    _is(schemas.ActualOut, spent)
    _is(schemas.ReversalOut, await budget.ok("POST", f"/v1/entries/{spent['id']}/reverse", 201))
    _is(schemas.LineDetail, await budget.ok("GET", f"/v1/lines/{leaf['id']}"))
    _is(schemas.LineBalance, await budget.balance(leaf["id"]))
    _is(schemas.EntryPage, await budget.ok("GET", f"/v1/lines/{leaf['id']}/entries"))
    _is(schemas.LineTree, await budget.ok("GET", f"/v1/plans/{plan['id']}/lines"))
    _is(schemas.Summary, await budget.ok("GET", f"/v1/plans/{plan['id']}/summary?group_by=channel"))
    rate = {"base": "USD", "quote": "EUR", "date": "2027-03-01", "rate": "0.9"}
    _is(schemas.FxRateOut, await budget.ok("POST", "/v1/fx-rates", 201, json=rate))
    _is(schemas.FxRatePage, await budget.ok("GET", "/v1/fx-rates"))
    csv = "code,parent_code,name,period,amount\nEMEA-EVENTS,EMEA,Events,2027-04,10.00\n"
    imported = await budget.c.post(
        f"/v1/plans/{plan['id']}/import", headers={**ADMIN, "Content-Type": "text/csv"}, content=csv
    )
    assert imported.status_code == 200, imported.text
    _is(schemas.ImportOut, imported.json())
    _is(schemas.ClosedPeriodOut, await budget.ok("POST", f"/v1/plans/{plan['id']}/periods/2027-12/close"))
    patched = await budget.ok(
        "PATCH", f"/v1/plans/{plan['id']}", headers={**ADMIN, "If-Match": '"2"'}, json={"name": "FY27"}
    )
    _is(schemas.PlanOut, patched)
    _is(schemas.PlanOut, await budget.ok("POST", f"/v1/plans/{plan['id']}/close"))
    assert root["dimensions"] == {"region": "EMEA"}


async def test_a_posting_leaves_an_audit_entry_for_each_event_it_publishes(budget: Budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "DISPLAY", channel="display")
    alloc = await budget.allocate(ln["id"], "100.00")
    c = (await budget.commit(ln["id"], "90.00")).json()  # takes the line past 80 %: a threshold event too
    trail = (await budget.ok("GET", "/v1/audit?limit=200"))["items"]
    by_action = {(e["action"], e["entity_id"]): e for e in trail}
    committed = by_action["budget.commitment.committed", c["id"]]
    assert committed["entity"] == "commitment" and committed["actor"] == "dana"
    assert committed["after"]["amount"] == "90.00" and committed["after"]["status"] == "committed"
    assert committed["method"] == "POST" and committed["path"] == "/v1/commitments"
    allocated = by_action["budget.allocation.posted", alloc["id"]]
    assert allocated["after"]["entry_id"] == alloc["id"] and allocated["actor"] == "dana"
    crossed = by_action["budget.line.threshold_crossed", ln["id"]]
    assert crossed["entity"] == "line" and crossed["actor"] == "dana"
    assert (crossed["after"]["threshold"], crossed["after"]["consumed"]) == (80, "90.00")
    # Every event in the outbox has its audit entry (the same data).
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        payloads = (await s.execute(select(outbox.c.payload))).scalars().all()
    published = {(e["type"], e["subject_id"]) for e in map(json.loads, payloads)}
    assert published <= set(by_action)


async def test_the_csv_import_reads_currencies_as_iso_writes_them(budget: Budget):
    plan = await budget.plan()
    csv = "code,name,period,amount,currency\nA,Alpha,2027-03,10.00,eur\nB,Beta,2027-03,10.00,EUR\n"
    r = await budget.c.post(
        f"/v1/plans/{plan['id']}/import", headers={**ADMIN, "Content-Type": "text/csv"}, content=csv
    )
    body = problem(r, 422)
    assert [e["field"] for e in body["errors"]] == ["rows[2].currency"]
    assert "'eur' is not an ISO 4217 currency code" in body["errors"][0]["message"]
    assert '"EUR"' in body["errors"][0]["message"]  # the hint
    tree = await budget.ok("GET", f"/v1/plans/{plan['id']}/lines")
    assert tree["items"] == []  # nothing was imported
