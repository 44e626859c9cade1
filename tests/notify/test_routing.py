"""Each event reaches the person it concerns: requester, owner, or the owning roles when none is named."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from services.notify.models import Notification
from tests.conftest import eventually
from tests.notify.conftest import add_person
from tests.notify.test_email import instance_started

pytestmark = pytest.mark.db


async def told(app) -> set[tuple[str, str]]:
    rt = app.state.runtime
    async with rt.unit_of_work(readonly=True) as uow:
        rows = (
            await uow.execute(select(Notification.person_id, Notification.kind).where(Notification.channel == "in_app"))
        ).all()
    return {(r[0], r[1]) for r in rows}


async def test_each_event_reaches_whom_it_concerns(app, api, bus, smtp):
    await add_person(api, "mark", roles=["marketer"])
    await add_person(api, "tina", roles=["mops"])  # owns a tool
    await add_person(api, "mo", roles=["mops"])
    await add_person(api, "fin", roles=["finance"])
    await add_person(api, "kim", roles=["analyst"])  # owns a metric
    inst = str(uuid.uuid4())
    await bus.publish("workflow.instance.started", instance_started(inst), inst)
    await bus.publish("workflow.instance.approved", {**instance_started(inst), "status": "approved"}, inst)
    await bus.publish(
        "budget.commitment.committed",
        {
            "commitment_id": "c1",
            "line_code": "EVENTS",
            "amount": "25000.00",
            "currency": "EUR",
            "requested_by": "mark",
            "status": "committed",
            "memo": "Fair",
        },
        "c1",
    )
    await bus.publish(
        "registry.renewal.due",
        {
            "contract_id": "k1",
            "tool_name": "Acme CRM",
            "end": "2027-12-31",
            "notice_deadline": "2027-10-31",
            "annual_cost": "12000.00",
            "currency": "EUR",
            "auto_renew": True,
            "owner": {"team": "mops", "person": "tina"},
        },
        "k1",
    )
    await bus.publish("registry.renewal.due", {"contract_id": "k2", "owner": {"team": None, "person": None}}, "k2")
    await bus.publish("kpi.target.at_risk", {"target_id": "t1", "metric": "cpl", "period": "2027-Q1", "owner": "kim"})
    await bus.publish("kpi.target.at_risk", {"target_id": "t2", "metric": "roi", "period": "2027-Q1"})
    await bus.publish("budget.line.threshold_crossed", {"line_id": "l1", "line_code": "EVENTS", "threshold": 80})
    await bus.publish(
        "budget.line.threshold_crossed", {"line_id": "l2", "line_code": "SOCIAL", "threshold": 100, "owner": "mo"}
    )
    await bus.publish("kpi.target.at_risk", {"metric": "no id"})  # cannot be read: dead-lettered, nothing sent

    expected = {
        ("mark", "instance_finished"),
        ("mark", "commitment_decided"),
        ("tina", "renewal_due"),  # the named owner
        ("mo", "renewal_due"),  # no owner named: the tool owner roles (mops)
        ("kim", "target_at_risk"),
        ("tina", "target_at_risk"),  # no owner: the metric owner roles (mops)
        ("mo", "target_at_risk"),
        ("fin", "threshold_crossed"),  # no owner: finance
        ("mo", "threshold_crossed"),
    }
    await eventually(lambda: _has(app, expected), timeout=20)

    async def dead():
        return (await api.get("/v1/dead-letters")).json()["items"]

    (letter,) = await eventually(dead, timeout=10)
    assert "target_id" in letter["reason"]
    assert await told(app) == expected
    await eventually(lambda: len(smtp.sink.messages) >= len(expected), timeout=20)
    renewal = next(m for m in smtp.sink.parsed() if "Acme CRM" in m["Subject"])
    text = renewal.get_body(("plain",)).get_content()
    assert "2027-10-31" in text and "12000.00 EUR" in text and renewal["To"] == "Tina <tina@example.com>"


async def _has(app, expected):
    return expected <= await told(app)
