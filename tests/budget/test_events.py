"""The approval round trip and the registry contracts through a real NATS server, and what the outbox holds."""

from __future__ import annotations

import json
import uuid

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import select

from shared.events import Envelope, new_event
from tests.budget.conftest import ADMIN, FINANCE, Budget, start_budget
from tests.conftest import eventually

pytestmark = pytest.mark.db


@pytest.fixture()
async def live(new_db, nats_url):
    app = await start_budget(await new_db("budgetnats"), nats_url, nats=True)
    async with app.router.lifespan_context(app):
        assert await app.state.runtime.bus.wait_connected(10)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://budget") as client:
            nc = await nats.connect(nats_url)
            try:
                yield Budget(app, client), nc.jetstream()
            finally:
                await nc.close()


async def requested_events(js, commitment_id: str) -> list[Envelope]:
    sub = await js.pull_subscribe(
        "budget.commitment.requested", stream="BUDGET", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    found: list[Envelope] = []
    try:
        for _ in range(20):
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                break
            for m in msgs:
                await m.ack()
                env = Envelope.from_json(m.data)
                if env.subject_id == commitment_id:
                    found.append(env)
    finally:
        await sub.unsubscribe()
    return found


async def publish(js, subject: str, source: str, subject_id: str, data: dict) -> Envelope:
    env = new_event(subject, source, subject_id, data)
    await js.publish(subject, env.to_json().encode(), headers={"Nats-Msg-Id": env.id})
    return env


async def status_of(budget: Budget, cid: str) -> str:
    return (await budget.ok("GET", f"/v1/commitments/{cid}"))["status"]


async def test_workflow_approval_and_rejection_commit_and_release_pending_commitments(live):
    budget, js = live
    plan = await budget.plan(threshold="10000.00")
    ln = await budget.line(plan["id"], "EMEA-EVENTS", region="EMEA", channel="events")
    await budget.allocate(ln["id"], "60000.00")
    first = (await budget.commit(ln["id"], "25000.00", external_ref="PO-1", memo="booth")).json()
    second = (await budget.commit(ln["id"], "20000.00", external_ref="PO-2")).json()
    assert first["status"] == second["status"] == "pending_approval"

    events = await eventually(lambda: requested_events(js, first["id"]))
    data = events[0].data
    assert data["amount"] == "25000.00" and data["currency"] == "EUR" and data["reason"] == "threshold"
    assert data["dimensions"]["region"] == "EMEA" and data["line_code"] == "EMEA-EVENTS"
    assert data["requested_by"] == "dana" and data["external_ref"] == "PO-1"

    def decision(cid: str, status: str, service: str = "budget", type: str = "commitment") -> dict:
        """workflow.instance.approved|rejected as workflow publishes it (services.workflow.events)."""
        return {
            "instance_id": str(uuid.uuid4()),
            "definition_key": "budget-approval",
            "definition_version": 1,
            "subject": {"type": type, "id": cid, "service": service},
            "context": {},
            "requester": "dana",
            "status": status,
            "finished_at": "2027-03-02T10:00:00+00:00",
            "cycle_time_business_hours": 2.5,
            "cycle_time_hours": 20.0,
            "sla_met": True,
        }

    approved = await publish(
        js, "workflow.instance.approved", "workflow", str(uuid.uuid4()), decision(first["id"], "approved")
    )
    await publish(js, "workflow.instance.rejected", "workflow", str(uuid.uuid4()), decision(second["id"], "rejected"))
    # Another service's approval is none of budget's business.
    await publish(
        js,
        "workflow.instance.approved",
        "workflow",
        str(uuid.uuid4()),
        decision(first["id"], "approved", service="registry", type="contract"),
    )
    await eventually(lambda: _is(budget, first["id"], "committed"))
    await eventually(lambda: _is(budget, second["id"], "released"))
    bal = await budget.balance(ln["id"])
    assert bal["committed"] == "25000.00" and bal["pending"] == "0.00" and bal["available"] == "35000.00"
    # A redelivery of the same event (same envelope id) changes nothing.
    await js.publish(approved.type, approved.to_json().encode(), headers={"Nats-Msg-Id": "again-" + approved.id})
    entries_before = len((await budget.ok("GET", f"/v1/lines/{ln['id']}/entries"))["items"])
    await publish(js, "workflow.instance.approved", "workflow", str(uuid.uuid4()), decision(first["id"], "approved"))
    await eventually(lambda: _inbox_count(budget, 4))  # the redelivered copy adds no inbox row
    assert len((await budget.ok("GET", f"/v1/lines/{ln['id']}/entries"))["items"]) == entries_before


async def _is(budget: Budget, cid: str, status: str) -> bool:
    return await status_of(budget, cid) == status


async def _inbox_count(budget: Budget, n: int) -> bool:
    infra = budget.runtime.infra
    async with budget.runtime.transaction(readonly=True) as s:
        return len((await s.execute(select(infra.inbox))).all()) >= n


async def test_registry_contracts_commit_and_cancel_against_the_martech_line(live):
    budget, js = live
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "MARTECH", channel="martech")
    await budget.allocate(ln["id"], "20000.00", period="2027-01")
    contract = {
        "contract_id": "c-1",
        "tool_id": "t-1",
        "tool_name": "Acme CRM",
        "term": 1,
        "start": "2027-01-01",
        "end": "2027-12-31",
        "billing_period": "annual",
        "cost": "12000.00",
        "currency": "EUR",
        "annual_cost": "12000.00",
        "commit_amount": "12000.00",
        "budget_line_code": "MARTECH",
        "fiscal_year": 2027,
        "period": "2027-01",
        "seats": 50,
        "auto_renew": True,
        "notice_days": 60,
        "external_ref": "contract:c-1:1",
    }
    await publish(js, "registry.contract.created", "registry", "c-1", contract)
    await publish(js, "registry.contract.created", "registry", "c-1", contract)  # a second copy: one commitment

    async def committed() -> bool:
        return (await budget.balance(ln["id"]))["committed"] == "12000.00"

    await eventually(committed)
    await publish(js, "registry.contract.cancelled", "registry", "c-1", {**contract, "reason": "replaced"})

    async def released() -> bool:
        return (await budget.balance(ln["id"]))["committed"] == "0.00"

    await eventually(released)


async def test_threshold_crossed_events_at_80_and_100_percent(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "DISPLAY", channel="display")
    await budget.allocate(ln["id"], "1000.00")
    for amount in ("700.00", "150.00", "150.00"):
        r = await budget.commit(ln["id"], amount)
        assert r.status_code == 201
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        rows = (
            (
                await s.execute(
                    select(outbox.c.payload)
                    .where(outbox.c.subject == "budget.line.threshold_crossed")
                    .order_by(outbox.c.seq)
                )
            )
            .scalars()
            .all()
        )
    got = [json.loads(p)["data"] for p in rows]
    assert [(d["threshold"], d["consumed"], d["allocated"]) for d in got] == [
        (80, "850.00", "1000.00"),
        (100, "1000.00", "1000.00"),
    ]


async def test_actual_posted_event_carries_dimensions_and_date(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "SEARCH", region="NA", channel="search", campaign="spring")
    await budget.allocate(ln["id"], "1000.00")
    e = await budget.ok(
        "POST",
        "/v1/actuals",
        201,
        headers=ADMIN,
        json={
            "line_id": ln["id"],
            "period": "2027-03",
            "date": "2027-03-04",
            "amount": "120.00",
            "currency": "EUR",
            "external_ref": "INV-1",
            "vendor": "Google",
        },
    )
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        payload = await s.scalar(select(outbox.c.payload).where(outbox.c.subject == "budget.actual.posted"))
    env = Envelope.from_json(payload)
    assert env.subject_id == e["id"]
    assert env.data["dimensions"] == {"region": "NA", "channel": "search", "campaign": "spring"}
    assert env.data["date"].startswith("2027-03-04T00:00:00") and env.data["amount"] == "120.00"
    assert env.data["vendor"] == "Google" and env.data["external_ref"] == "INV-1"


async def test_plan_line_allocation_transfer_and_release_events_are_in_the_outbox(budget):
    plan = await budget.plan()
    a = await budget.line(plan["id"], "A", region="EMEA")
    b = await budget.line(plan["id"], "B", region="NA")
    alloc = await budget.allocate(a["id"], "500.00")
    tr = await budget.ok(
        "POST",
        "/v1/transfers",
        201,
        json={
            "from_line_id": a["id"],
            "to_line_id": b["id"],
            "period": "2027-03",
            "amount": "100.00",
            "currency": "EUR",
        },
    )
    c = (await budget.commit(a["id"], "50.00")).json()
    await budget.ok("POST", f"/v1/commitments/{c['id']}/release", headers=FINANCE)
    outbox = budget.runtime.infra.outbox
    async with budget.runtime.transaction(readonly=True) as s:
        rows = (await s.execute(select(outbox.c.subject, outbox.c.payload).order_by(outbox.c.seq))).all()
    events: dict[str, list[Envelope]] = {}
    for subject, payload in rows:
        events.setdefault(subject, []).append(Envelope.from_json(payload))

    (activated,) = events["budget.plan.activated"]
    assert activated.subject_id == plan["id"] and activated.data["plan_id"] == plan["id"]
    created = {e.data["code"]: e.data for e in events["budget.line.created"]}
    assert created["A"]["dimensions"] == {"region": "EMEA"} and created["B"]["line_id"] == b["id"]
    (allocated,) = events["budget.allocation.posted"]
    assert allocated.data["entry_id"] == alloc["id"] and allocated.data["amount"] == "500.00"
    (moved,) = events["budget.transfer.posted"]
    assert (moved.data["from_line_id"], moved.data["to_line_id"], moved.data["amount"]) == (a["id"], b["id"], "100.00")
    assert moved.data["transfer_id"] == tr["id"]
    (released,) = events["budget.commitment.released"]
    assert released.subject_id == c["id"] and released.data["status"] == "released"
