"""The budget approval round trip through a real NATS JetStream server."""

from __future__ import annotations

import json
import uuid

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.workflow.main import create_app
from shared.events import new_event
from tests.conftest import eventually
from tests.workflow.conftest import APPROVER_EMEA, MOPS, Harness, settings_for

pytestmark = pytest.mark.db


def commitment_requested(amount: str, channel: str) -> tuple[str, object]:
    cid = str(uuid.uuid4())
    return cid, new_event(
        "budget.commitment.requested",
        "budget",
        cid,
        {
            "commitment_id": cid,
            "plan_id": "p1",
            "line_id": "l1",
            "line_code": "EMEA-EVENTS",
            "period": "2027-03",
            "amount": amount,
            "currency": "EUR",
            "original_amount": amount,
            "original_currency": "EUR",
            "external_ref": "PO-1001",
            "memo": "booth",
            "requested_by": "mia",
            "reason": "threshold",
            "dimensions": {
                "region": "EMEA",
                "channel": channel,
                "campaign": "spring",
                "cost_center": None,
                "owner": None,
            },
        },
    )


async def instance_for(h: Harness, subject_id: str) -> dict | None:
    items = (await h.ok("GET", "/v1/instances", MOPS, params={"subject_id": subject_id}))["items"]
    return items[0] if items else None


async def test_commitment_requested_starts_the_best_definition_and_approval_is_published(db_url, nats_url):
    app = create_app(settings_for(db_url, nats_url))
    async with app.router.lifespan_context(app):
        h = Harness(app, db_url)
        assert await h.runtime.bus.wait_connected(10)
        await h.ok(
            "POST",
            "/v1/definitions",
            MOPS,
            {
                "key": "big-events",
                "name": "Big event spend",
                "trigger": {
                    "event": "budget.commitment.requested",
                    "conditions": [
                        {"field": "amount", "op": "gte", "value": "10000"},
                        {"field": "channel", "op": "eq", "value": "events"},
                    ],
                },
                "stages": [
                    {"name": "Events lead", "assignees": {"roles": ["approver"], "scope_from_context": ["region"]}}
                ],
            },
            status=201,
        )
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            big_id, big = commitment_requested("25000.00", "events")
            small_id, small = commitment_requested("9999.99", "events")
            for env in (big, small):
                await js.publish(env.type, env.to_json().encode(), headers={"Nats-Msg-Id": env.id})
            # A redelivery of the same event (another message id) starts nothing new.
            await js.publish(big.type, big.to_json().encode(), headers={"Nats-Msg-Id": f"again-{big.id}"})

            inst = await eventually(lambda: instance_for(h, big_id), timeout=15)
            other = await eventually(lambda: instance_for(h, small_id), timeout=15)
            assert inst["definition_key"] == "big-events" and other["definition_key"] == "budget-approval"
            assert inst["subject"] == {"type": "commitment", "id": big_id, "service": "budget"}
            assert inst["requester"] == "mia"
            assert inst["context"]["region"] == "EMEA" and inst["context"]["amount"] == "25000.00"

            full = await h.ok("GET", f"/v1/instances/{inst['id']}", MOPS)
            task = full["tasks"][0]
            assert task["scope"] == {"region": "EMEA"}
            done = await h.ok("POST", f"/v1/tasks/{task['id']}/approve", APPROVER_EMEA, {"comment": "go"})
            assert done["status"] == "approved"

            sub = await js.pull_subscribe(
                "workflow.instance.approved", stream="WORKFLOW", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            )

            async def approved_event() -> dict | None:
                try:
                    msgs = await sub.fetch(50, timeout=0.5)
                except nats.errors.TimeoutError:
                    return None
                for m in msgs:
                    await m.ack()
                    body = json.loads(m.data)
                    if body["data"]["subject"]["id"] == big_id:
                        return body
                return None

            event = await eventually(approved_event, timeout=15)
            assert event["type"] == "workflow.instance.approved" and event["source"] == "workflow"
            assert event["subject_id"] == inst["id"]
            data = event["data"]
            assert data["subject"] == {"type": "commitment", "id": big_id, "service": "budget"}
            assert data["status"] == "approved" and data["sla_met"] is True
            assert isinstance(data["cycle_time_business_hours"], float) and data["cycle_time_hours"] >= 0
            assert len((await h.ok("GET", "/v1/instances", MOPS, params={"subject_id": big_id}))["items"]) == 1

            # A renewal falling due starts the shipped tool-renewal review, due at the notice deadline.
            contract_id = str(uuid.uuid4())
            renewal = new_event(
                "registry.renewal.due",
                "registry",
                contract_id,
                {
                    "contract_id": contract_id,
                    "tool_id": "t1",
                    "tool_name": "Acme CRM",
                    "term": 1,
                    "start": "2031-01-01",
                    "end": "2031-12-31",
                    "notice_days": 60,
                    "notice_deadline": "2031-11-01",
                    "auto_renew": True,
                    "annual_cost": "12000.00",
                    "currency": "EUR",
                    "owner": {"team": "mops", "person": "dana"},
                    "utilization": 0.4,
                    "seats": 25,
                    "budget_line_code": "MARTECH",
                },
            )
            await js.publish(renewal.type, renewal.to_json().encode(), headers={"Nats-Msg-Id": renewal.id})
            review = await eventually(lambda: instance_for(h, contract_id), timeout=15)
            assert review["definition_key"] == "tool-renewal"
            assert review["subject"] == {"type": "contract", "id": contract_id, "service": "registry"}
            review = await h.ok("GET", f"/v1/instances/{review['id']}", MOPS)
            assert review["tasks"][0]["due_at"] == "2031-11-02T00:00:00+00:00"
            assert review["tasks"][0]["assignees"] == {"roles": ["mops"], "users": []}
        finally:
            await nc.close()
            await h.client.aclose()
