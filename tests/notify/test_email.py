"""Events become e-mail in a real SMTP server (aiosmtpd): who gets what, once, folded, limited, quiet."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from services.notify import messages
from services.notify.models import Notification
from shared.db import utcnow
from tests.conftest import eventually
from tests.harness import identity
from tests.notify.conftest import add_person, client, domain

pytestmark = pytest.mark.db


def instance_started(instance_id: str, **context) -> dict:
    return {
        "instance_id": instance_id,
        "definition_key": "budget-approval",
        "definition_version": 1,
        "subject": {"type": "commitment", "id": "c-1", "service": "budget"},
        "context": {
            "amount": "25000.00",
            "currency": "EUR",
            "line_code": "EMEA-EVENTS",
            "memo": "Trade fair",
            **context,
        },
        "requester": "mark",
        "status": "pending",
    }


def task_assigned(task_id: str, instance_id: str, roles=("approver",), users=(), scope=None) -> dict:
    due = (utcnow() + dt.timedelta(hours=8)).isoformat()
    return {
        "task_id": task_id,
        "instance_id": instance_id,
        "definition_key": "budget-approval",
        "stage": "Regional approval",
        "stage_index": 0,
        "assignees": {"roles": list(roles), "users": list(users)},
        "scope": scope or {"region": "EMEA"},
        "due_at": due,
        "decision": None,
        "actor": None,
    }


async def rows(app, **where) -> list[Notification]:
    rt = app.state.runtime
    async with rt.unit_of_work(readonly=True) as uow:
        q = select(Notification)
        for k, v in where.items():
            q = q.where(getattr(Notification, k) == v)
        return list((await uow.scalars(q)).all())


async def test_a_task_reaches_its_assignees_by_e_mail_and_in_app_once(app, api, bus, smtp):
    await add_person(api, "ann", roles=["approver"], scopes=["region:EMEA"])
    await add_person(api, "otto", roles=["approver"], scopes=["region:APAC"])
    await add_person(api, "mark", roles=["approver", "marketer"])  # the requester: four eyes
    inst, task = str(uuid.uuid4()), str(uuid.uuid4())
    await bus.publish("workflow.instance.started", instance_started(inst), inst)
    env = await bus.publish("workflow.task.assigned", task_assigned(task, inst), task)
    await eventually(lambda: len(smtp.sink.messages) >= 1, timeout=15)
    # Redelivered: the inbox knows the event; and even past the inbox, each (event, person, channel) is once.
    rt = app.state.runtime
    assert await rt.consumer.handle(env, rt.consumer.handler_for(env.type)) is False
    async with rt.unit_of_work() as uow:
        assert await messages.task_assigned(domain(app).composer, uow, env) == 0
    await bus.publish("budget.actual.posted", {"x": 1})  # nothing to say about it
    async with client(app, identity("ann", "approver")) as ann:
        items = await eventually(lambda: _inbox(ann), timeout=10)
    mails = smtp.sink.parsed()
    assert [m["To"] for m in mails] == ["Ann <ann@example.com>"]
    m = mails[0]
    assert "Trade fair" in m["Subject"]
    text = m.get_body(("plain",)).get_content()
    html = m.get_body(("html",)).get_content()
    for part in (text, html):
        assert "25000.00 EUR" in part and "EMEA-EVENTS" in part and "Time left" in part
        assert f"http://gateway.test/workflow/v1/tasks/{task}" in part
        assert "http://gateway.test/notify/v1/actions/" in part and "/notify/v1/unsubscribe/" in part
    assert m["List-Unsubscribe"].startswith("<http://gateway.test/notify/v1/unsubscribe/")
    assert len(items) == 1 and items[0]["title"] == m["Subject"]
    async with client(app, identity("ann", "approver")) as ann:
        r = await ann.post(f"/v1/inbox/{items[0]['id']}/read")
        assert r.status_code == 200 and r.json()["read_at"]
        assert (await ann.get("/v1/inbox", params={"unread": "true"})).json()["items"] == []
    async with client(app, identity("otto", "approver")) as otto:
        assert (await otto.get("/v1/inbox")).json()["items"] == []
        assert (await otto.post(f"/v1/inbox/{items[0]['id']}/read")).status_code == 404
    await eventually(lambda: _handled(app, 3), timeout=10)
    assert len(smtp.sink.messages) == 1


async def _inbox(c):
    return (await c.get("/v1/inbox")).json()["items"]


async def _handled(app, n):
    rt = app.state.runtime
    async with rt.unit_of_work(readonly=True) as uow:
        return (await uow.scalar(select(func.count()).select_from(rt.infra.inbox))) >= n


async def test_repeated_sla_warnings_fold_and_a_breach_reaches_the_escalation(app, api, bus, smtp):
    await add_person(api, "ann", roles=["approver"], scopes=["region:EMEA"])
    await add_person(api, "mo", roles=["mops"])
    inst, task = str(uuid.uuid4()), str(uuid.uuid4())
    await bus.publish("workflow.instance.started", instance_started(inst), inst)
    await bus.publish("workflow.task.assigned", task_assigned(task, inst), task)
    warning = {
        "task_id": task,
        "instance_id": inst,
        "stage": "Regional approval",
        "due_at": utcnow().isoformat(),
        "escalation": {"reassign_to_role": "mops"},
        "context": {},
        "subject": {},
    }
    for _ in range(3):
        await bus.publish("workflow.sla.warning", warning, task)
    await bus.publish("workflow.sla.breached", warning, task)
    await eventually(lambda: len(smtp.sink.messages) >= 4, timeout=15)
    await eventually(lambda: _handled(app, 6), timeout=10)
    folded = await rows(app, kind="sla_warning", channel="email")
    assert len(folded) == 1 and folded[0].repeats == 2
    subjects = sorted((m["To"], m["Subject"].split(":")[0]) for m in smtp.sink.parsed())
    assert subjects == [
        ("Ann <ann@example.com>", "Due soon"),
        ("Ann <ann@example.com>", "SLA breached"),
        ("Ann <ann@example.com>", "Your decision is needed"),
        ("Mo <mo@example.com>", "SLA breached"),
    ]
    breach = next(m for m in smtp.sink.parsed() if m["Subject"].startswith("SLA breached"))
    assert "cannot be unsubscribed" in breach.get_body(("plain",)).get_content()


@pytest.mark.parametrize("overrides", [{"rate_limit_count": 3}])
async def test_a_storm_is_folded_into_one_summary_per_person(app, api, bus, smtp, overrides):
    await add_person(api, "fin", roles=["finance"])
    for i in range(10):
        await bus.publish(
            "budget.line.threshold_crossed",
            {
                "line_id": f"l{i}",
                "line_code": f"L{i}",
                "period": "2027-01",
                "threshold": 100,
                "allocated": "10.00",
                "consumed": "11.00",
                "currency": "EUR",
            },
        )
    await eventually(lambda: _handled(app, 10), timeout=15)
    await eventually(lambda: len(smtp.sink.messages) >= 3, timeout=10)
    held = await rows(app, status="bundled", channel="email")
    assert len(held) == 7 and len({h.bundle_id for h in held}) == 1
    assert len(smtp.sink.messages) == 3
    # The summary goes out at the end of the rate window with everything it holds.
    await domain(app).outbound.pass_once(now=utcnow() + dt.timedelta(hours=1, minutes=1))
    assert len(smtp.sink.messages) == 4
    summary = smtp.sink.parsed()[-1]
    assert summary["Subject"].startswith("7 more Pitcrew notification")
    assert summary.get_body(("plain",)).get_content().count("Budget line L") == 7


async def test_quiet_hours_hold_a_message_until_they_end(app, api, bus, smtp):
    now = utcnow()
    start, end = (now - dt.timedelta(hours=1)).strftime("%H:%M"), (now + dt.timedelta(hours=2)).strftime("%H:%M")
    await add_person(api, "fin", roles=["finance"], quiet_hours={"start": start, "end": end})
    await bus.publish("budget.line.threshold_crossed", {"line_id": "l1", "line_code": "L1", "threshold": 80})
    await eventually(lambda: _handled(app, 1), timeout=15)
    (row,) = await rows(app, channel="email")
    assert row.status == "pending" and row.due_at > now + dt.timedelta(hours=1)
    assert (row.due_at - now).total_seconds() < 2 * 3600 + 60
    assert await domain(app).outbound.pass_once() == 0 and smtp.sink.messages == []
    assert await domain(app).outbound.pass_once(now=row.due_at) == 1
    assert len(smtp.sink.messages) == 1


async def test_a_digest_collects_a_days_notifications(app, api, bus, smtp):
    await add_person(api, "fin", roles=["finance"], timezone="America/New_York")
    async with client(app, identity("fin", "finance")) as fin:
        r = await fin.put(
            "/v1/people/fin/preferences", json={"items": [{"kind": "*", "channels": ["email"], "mode": "digest"}]}
        )
        assert r.status_code == 200
    for i in range(3):
        await bus.publish("budget.line.threshold_crossed", {"line_id": f"l{i}", "line_code": f"L{i}", "threshold": 80})
    await eventually(lambda: _handled(app, 3), timeout=15)
    (digest,) = await rows(app, kind="digest")
    local = digest.due_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (8, 0) and digest.due_at > utcnow()
    await domain(app).outbound.pass_once(now=digest.due_at)
    (m,) = smtp.sink.parsed()
    assert m["Subject"] == "Your Pitcrew digest: 3 notification(s)"


@pytest.mark.parametrize("overrides", [{"rate_limit_count": 1000}])
async def test_smtp_down_while_100_are_due_all_100_go_out_once_when_it_returns(app, api, bus, smtp, overrides):
    await add_person(api, "fin", roles=["finance"])
    async with client(app, identity("fin", "finance")) as fin:
        await fin.put("/v1/people/fin/preferences", json={"items": [{"kind": "*", "channels": ["email"]}]})
    smtp.stop()
    for i in range(100):
        await bus.publish(
            "kpi.target.at_risk", {"target_id": f"t{i}", "metric": "leads", "period": "2027-Q1", "owner": "fin"}
        )

    async def all_tried():
        got = await rows(app, channel="email")
        return len(got) == 100 and all(r.attempts >= 1 for r in got)

    await eventually(all_tried, timeout=30)
    assert smtp.sink.messages == []
    smtp.start()
    await eventually(lambda: len(smtp.sink.messages) >= 100, timeout=30)
    await eventually(lambda: _all_sent(app), timeout=10)
    ids = [m["Message-ID"] for m in smtp.sink.parsed()]
    assert len(ids) == 100 and len(set(ids)) == 100


async def _all_sent(app):
    got = await rows(app, channel="email")
    return all(r.status == "sent" for r in got)


async def test_a_refused_commitment_reaches_line_owners_with_its_reason(app, api, bus, smtp):
    """budget.commitment.refused as budget publishes it: no commitment, a refusal, asked by a service."""
    await add_person(api, "fin", roles=["finance"])
    await bus.publish(
        "budget.commitment.refused",
        {
            "refusal_id": "r-1",
            "kind": "contract_commitment",
            "external_ref": "contract:c-1:1",
            "plan_id": "p-1",
            "line_id": "l-1",
            "line_code": "MARTECH",
            "fiscal_year": 2027,
            "period": "2027-01",
            "amount": "12000.00",
            "currency": "EUR",
            "memo": "Acme CRM contract term 1",
            "reason": "Line 'MARTECH' has 0.00 EUR available in 2027-01; short by 12000.00 EUR.",
            "code": "conflict",
            "requested_by": "service:registry",
            "dimensions": {"channel": "martech"},
        },
    )
    await eventually(lambda: _handled(app, 1), timeout=15)
    await eventually(lambda: len(smtp.sink.messages) >= 1, timeout=10)
    (mail,) = smtp.sink.parsed()
    assert mail["Subject"].startswith("Commitment refused: Acme CRM contract term 1")
    body = mail.get_body(("plain",)).get_content()
    assert "short by 12000.00 EUR" in body and "12000.00 EUR" in body and "/budget/v1/refusals" in body
