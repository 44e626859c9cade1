"""Comments, deliverables, overspent lines and broken integrations reach whom they concern, once.

Payloads are built with the publishers' own event models (services/workflow, budget, registry), so
what notify reads is what those services send."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from services.budget.events import BudgetLineOverspent
from services.notify import messages, work_messages
from services.registry.events import RegistryIntegrationBroken
from services.workflow.events import (
    WorkflowDeliverable,
    WorkflowDeliverableSla,
    WorkflowRequest,
    WorkflowRequestComment,
)
from shared.db import utcnow
from tests.conftest import eventually
from tests.harness import identity
from tests.notify.conftest import add_person, client, domain
from tests.notify.test_email import rows
from tests.notify.test_routing import told

pytestmark = pytest.mark.db


def submitted(request_id: str, title: str = "Spring campaign", requester: str = "rita") -> dict:
    return WorkflowRequest(
        request_id=request_id,
        number="REQ-2027-000001",
        type_key="campaign",
        type_version=1,
        title=title,
        data={"region": "EMEA"},
        requester=requester,
        instance_id=str(uuid.uuid4()),
        definition_key="campaign-approval",
        submitted_at=utcnow(),
    ).model_dump(mode="json")


def deliverable(did: str, request_id: str, *, actor: str = "rita", **fields) -> dict:
    base = {
        "deliverable_id": did,
        "request_id": request_id,
        "request_number": "REQ-2027-000001",
        "name": "Key visual",
        "team": None,
        "owner": None,
        "supplier_id": None,
        "sla_kind": "ola",
        "due_at": utcnow() + dt.timedelta(days=3),
        "status": "open",
        "rework_rounds": 0,
        "actor": actor,
        "reason": None,
        "link": None,
    }
    return WorkflowDeliverable(**{**base, **fields}).model_dump(mode="json")


def deliverable_sla(did: str, request_id: str, escalation: dict, **fields) -> dict:
    data = deliverable(did, request_id, **fields)
    keep = set(WorkflowDeliverableSla.model_fields) - {"escalation"}
    return WorkflowDeliverableSla(**{k: v for k, v in data.items() if k in keep}, escalation=escalation).model_dump(
        mode="json"
    )


async def handled(app, n: int) -> bool:
    rt = app.state.runtime
    async with rt.unit_of_work(readonly=True) as uow:
        return (await uow.scalar(select(func.count()).select_from(rt.infra.inbox))) >= n


async def redelivered_tells_nobody(app, env, handler) -> None:
    """The consumer's inbox knows the event; past it, each (event, person, channel) is still once."""
    rt = app.state.runtime
    assert await rt.consumer.handle(env, rt.consumer.handler_for(env.type)) is False
    async with rt.unit_of_work() as uow:
        assert await handler(domain(app).composer, uow, env) == 0


async def test_a_comment_reaches_the_people_it_mentions_not_its_author(app, api, bus, smtp):
    for who in ("ann", "bob", "cy", "rita"):
        await add_person(api, who, roles=["marketer"])
    rid = str(uuid.uuid4())
    await bus.publish("workflow.request.submitted", submitted(rid), rid)
    body = "Could you check the budget split? " + "The venue quote moved. " * 20 + "TAIL-NOT-IN-EXCERPT"
    comment = WorkflowRequestComment(
        request_id=rid,
        number="REQ-2027-000001",
        comment_id=str(uuid.uuid4()),
        deliverable_id=None,
        author="bob",
        body=body,
        mentions=["ann", "bob", "ghost"],  # bob mentions himself; ghost is not in the directory
        created_at=utcnow(),
    ).model_dump(mode="json")
    env = await bus.publish("workflow.request.commented", comment, rid)
    await eventually(lambda: handled(app, 2), timeout=15)
    await eventually(lambda: len(smtp.sink.messages) >= 1, timeout=10)
    await redelivered_tells_nobody(app, env, work_messages.request_commented)
    assert await told(app) == {("ann", "request_commented")}
    (mail,) = smtp.sink.parsed()
    assert mail["To"] == "Ann <ann@example.com>"
    assert mail["Subject"] == "bob mentioned you on REQ-2027-000001 Spring campaign"
    text = mail.get_body(("plain",)).get_content()
    assert "Could you check the budget split?" in text and "…" in text
    assert "TAIL-NOT-IN-EXCERPT" not in text
    assert f"http://gateway.test/workflow/v1/requests/{rid}" in text


async def test_deliverables_reach_the_assignee_and_the_requester(app, api, bus, smtp):
    await add_person(api, "rita", roles=["marketer"])  # the requester
    await add_person(api, "olga", roles=["marketer"], team="design")  # acts for the team
    await add_person(api, "dan", roles=["marketer"], team="design")
    await add_person(api, "eve", roles=["marketer"], team="web")
    await add_person(api, "sam", roles=["supplier"], scopes=["supplier:s1"])
    await add_person(api, "sid", roles=["supplier"], scopes=["supplier:s9"])
    await add_person(api, "mo", roles=["mops"])
    rid, unknown_rid = str(uuid.uuid4()), str(uuid.uuid4())
    d1, d2, d3, d4 = (str(uuid.uuid4()) for _ in range(4))
    await bus.publish("workflow.request.submitted", submitted(rid), rid)
    team = {"team": "design", "owner": "olga"}
    await bus.publish("workflow.deliverable.created", deliverable(d1, rid, **team), d1)
    supplier = {"supplier_id": "s1", "sla_kind": "underpinning_contract", "name": "Print run"}
    await bus.publish("workflow.deliverable.created", deliverable(d2, rid, **supplier), d2)
    unreachable = {**supplier, "supplier_id": "s2", "name": "Booth build"}
    await bus.publish("workflow.deliverable.created", deliverable(d3, rid, **unreachable), d3)
    for _ in range(2):
        await bus.publish("workflow.deliverable.sla_warning", deliverable_sla(d1, rid, {}, **team), d1)
    escalation = {"notify": ["rita", "mops"]}  # a user and a role
    breach = await bus.publish("workflow.deliverable.sla_breached", deliverable_sla(d1, rid, escalation, **team), d1)
    done = {**team, "status": "delivered", "actor": "olga", "link": "https://files.example.com/kv-v1.pdf"}
    await bus.publish("workflow.deliverable.delivered", deliverable(d1, rid, **done), d1)
    back = {**team, "status": "in_progress", "rework_rounds": 1, "reason": "Logo too small on the banner"}
    await bus.publish("workflow.deliverable.sent_back", deliverable(d1, rid, **back), d1)
    late = {**team, "status": "delivered", "actor": "olga", "link": "https://files.example.com/x.pdf"}
    await bus.publish("workflow.deliverable.delivered", deliverable(d4, unknown_rid, **late), d4)

    await eventually(lambda: handled(app, 10), timeout=20)
    await redelivered_tells_nobody(app, breach, work_messages.deliverable)
    assert await told(app) == {
        ("olga", "deliverable_assigned"),
        ("dan", "deliverable_assigned"),  # the team's members; eve (another team) is not
        ("sam", "deliverable_assigned"),  # the supplier's person; sid (another supplier) is not
        ("rita", "deliverable_assigned"),  # nobody at supplier s2 is in the directory: the requester passes it on
        ("olga", "deliverable_sla_warning"),
        ("dan", "deliverable_sla_warning"),
        ("olga", "deliverable_sla_breached"),
        ("dan", "deliverable_sla_breached"),
        ("rita", "deliverable_sla_breached"),  # the escalation's user
        ("mo", "deliverable_sla_breached"),  # the escalation's role
        ("rita", "deliverable_delivered"),
        ("mo", "deliverable_delivered"),  # a request notify never saw submitted: mops stand in
        ("olga", "deliverable_sent_back"),
        ("dan", "deliverable_sent_back"),
    }
    (warning,) = await rows(app, kind="deliverable_sla_warning", person_id="olga", channel="email")
    assert warning.repeats == 1  # two warnings, one message
    await eventually(lambda: len(smtp.sink.messages) >= 14, timeout=20)
    mails = smtp.sink.parsed()
    assert len(mails) == 14  # one per (event, person), the warnings folded

    def mail(to: str, starts: str):
        (m,) = [m for m in mails if m["To"].startswith(to) and m["Subject"].startswith(starts)]
        return m, m.get_body(("plain",)).get_content()

    m, text = mail("Rita", "Pass on to supplier s2")
    assert "Booth build" in m["Subject"] and "nobody at the supplier is in the directory" in text
    m, text = mail("Olga", "Sent back for rework: Key visual")
    assert "Logo too small on the banner" in text and f"/workflow/v1/deliverables/{d1}" in text
    m, text = mail("Rita", "Delivered, for your review: Key visual")
    assert "https://files.example.com/kv-v1.pdf" in text and "REQ-2027-000001 Spring campaign" in m["Subject"]
    m, text = mail("Dan", "Deliverable overdue")
    assert "cannot be unsubscribed" in text  # a breach on one's own deliverable is required


async def test_an_overspent_line_and_a_broken_integration_reach_their_owners(app, api, bus, smtp):
    await add_person(api, "fin", roles=["finance"])
    await add_person(api, "mo", roles=["mops"])
    await add_person(api, "lou", roles=["marketer"])
    async with client(app, identity("mo", "mops")) as mo:
        r = await mo.put(
            "/v1/people/mo/preferences", json={"items": [{"kind": "integration_broken", "channels": ["in_app"]}]}
        )
        assert r.status_code == 200, r.text
    overspent = BudgetLineOverspent(
        entry_id=str(uuid.uuid4()),
        plan_id=str(uuid.uuid4()),
        line_id="l-1",
        line_code="EMEA-EVENTS",
        period="2027-03",
        amount="4000.00",
        available="-1250.00",
        overspent_by="1250.00",
        currency="EUR",
        external_ref="INV-77",
        vendor="Messe GmbH",
        dimensions={"region": "EMEA"},
    ).model_dump(mode="json")
    env = await bus.publish("budget.line.overspent", overspent, "l-1")

    def broken(owner: str | None) -> dict:
        return RegistryIntegrationBroken(
            integration_id=str(uuid.uuid4()),
            from_tool_id="t1",
            from_tool_name="Acme CRM",
            to_tool_id="t2",
            to_tool_name="MailBlast",
            data_objects=["contacts", "consents"],
            method="api",
            owner=owner,
            previous_status="working",
            last_seen_working_at=utcnow(),
            detail="401 from MailBlast since the key rotation",
            reported_by="mo",
        ).model_dump(mode="json")

    await bus.publish("registry.integration.broken", broken("lou"))
    await bus.publish("registry.integration.broken", broken(None))  # nobody named: the tool owner roles (mops)
    await eventually(lambda: handled(app, 3), timeout=15)
    await redelivered_tells_nobody(app, env, messages.line_overspent)
    assert await told(app) == {("fin", "line_overspent"), ("lou", "integration_broken"), ("mo", "integration_broken")}
    await eventually(lambda: len(smtp.sink.messages) >= 2, timeout=10)
    mails = {m["To"]: m for m in smtp.sink.parsed()}
    assert set(mails) == {"Fin <fin@example.com>", "Lou <lou@example.com>"}  # mo chose in-app only
    fin = mails["Fin <fin@example.com>"]
    assert fin["Subject"] == "Budget line EMEA-EVENTS is overspent by 1250.00 EUR"
    text = fin.get_body(("plain",)).get_content()
    assert "Over by: 1250.00 EUR" in text and "-1250.00 EUR" in text and "/budget/v1/lines/l-1" in text
    lou = mails["Lou <lou@example.com>"]
    assert lou["Subject"] == "Integration broken: Acme CRM -> MailBlast"
    text = lou.get_body(("plain",)).get_content()
    assert "401 from MailBlast since the key rotation" in text and "contacts, consents" in text


async def test_an_anomaly_reaches_the_metrics_owner_once(app, api, bus, smtp):
    from services.kpi.events import KpiAnomalyDetected

    await add_person(api, "ola", roles=["marketer"])
    await add_person(api, "mo", roles=["mops"])

    def anomaly(owner: str | None) -> dict:
        return KpiAnomalyDetected(
            anomaly_id=str(uuid.uuid4()),
            metric="leads",
            group={"channel": "search"},
            day="2027-03-29",
            observed="3",
            expected="40",
            low="31",
            high="49",
            direction="below",
            baseline_days=8,
            owner=owner,
        ).model_dump(mode="json")

    env = await bus.publish("kpi.anomaly.detected", anomaly("ola"))
    await bus.publish("kpi.anomaly.detected", anomaly(None))  # no owner: the metric owner roles (mops)
    await eventually(lambda: handled(app, 2), timeout=15)
    await redelivered_tells_nobody(app, env, messages.anomaly_detected)
    assert await told(app) == {("ola", "anomaly_detected"), ("mo", "anomaly_detected")}
    await eventually(lambda: len(smtp.sink.messages) >= 2, timeout=10)
    ola = {m["To"]: m for m in smtp.sink.parsed()}["Ola <ola@example.com>"]
    assert ola["Subject"] == "Unusual leads on 2027-03-29 (channel=search): below its usual range"
    text = ola.get_body(("plain",)).get_content()
    assert "Observed: 3" in text and "40 (range 31 to 49)" in text and "/kpi/v1/anomalies?metric=leads" in text


async def test_accepted_started_approved_and_cancelled_reach_the_other_side(app, api, bus, smtp):
    """The requester hears the assignee took the work on and started; the assignee hears the approval
    (on time or how late); a cancellation reaches both sides; whoever acted is never told; an unknown
    deliverable verb (review_started) tells nobody."""
    await add_person(api, "rita", roles=["marketer"])  # the requester
    await add_person(api, "olga", roles=["marketer"], team="design")  # acts for the team
    await add_person(api, "dan", roles=["marketer"], team="design")
    await add_person(api, "sam", roles=["supplier"], scopes=["supplier:s1"])
    await add_person(api, "mo", roles=["mops"])
    rid = str(uuid.uuid4())
    d1, d2 = str(uuid.uuid4()), str(uuid.uuid4())
    await bus.publish("workflow.request.submitted", submitted(rid), rid)
    team = {"team": "design", "owner": "olga"}
    acme = {"supplier_id": "s1", "sla_kind": "underpinning_contract", "name": "Print run"}
    await bus.publish(
        "workflow.deliverable.accepted", deliverable(d1, rid, **team, status="accepted", actor="olga"), d1
    )
    await bus.publish(
        "workflow.deliverable.started", deliverable(d2, rid, **acme, status="in_progress", actor="sam"), d2
    )
    await bus.publish(
        "workflow.deliverable.review_started", deliverable(d1, rid, **team, status="in_review", actor="rita"), d1
    )
    approved = deliverable(
        d1, rid, **team, status="done", actor="rita", rework_rounds=2, on_time=False, lateness_business_hours=3.5
    )
    env = await bus.publish("workflow.deliverable.approved", approved, d1)
    await bus.publish(
        "workflow.deliverable.cancelled", deliverable(d2, rid, **acme, status="cancelled", actor="mo"), d2
    )

    await eventually(lambda: handled(app, 6), timeout=20)
    await redelivered_tells_nobody(app, env, work_messages.deliverable)
    assert await told(app) == {
        ("rita", "deliverable_accepted"),  # olga accepted: she is not told of her own act
        ("rita", "deliverable_started"),
        ("olga", "deliverable_approved"),  # the team's owner and members; rita approved, so not her
        ("dan", "deliverable_approved"),
        ("rita", "deliverable_cancelled"),  # mops cancelled: the requester and the supplier hear
        ("sam", "deliverable_cancelled"),
    }
    await eventually(lambda: len(smtp.sink.messages) >= 6, timeout=20)
    mails = smtp.sink.parsed()
    assert len(mails) == 6

    def mail(to: str, starts: str):
        (m,) = [m for m in mails if m["To"].startswith(to) and m["Subject"].startswith(starts)]
        return m, m.get_body(("plain",)).get_content()

    m, text = mail("Olga", "Approved: Key visual")
    assert "REQ-2027-000001 Spring campaign" in m["Subject"]
    assert "no, 3.5 business hours late" in text and "Approved by" in text and f"/workflow/v1/deliverables/{d1}" in text
    m, text = mail("Rita", "Work started: Print run")
    assert "sam" in text
    m, text = mail("Sam", "Cancelled: Print run")
    assert "Cancelled by" in text and "mo" in text
