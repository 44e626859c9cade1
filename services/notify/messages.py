"""What each event says, and to whom: the rules of issue 19's "what is sent, to whom".

Each function reads the event's data through notify's tolerant models (events.py), resolves the
recipients in the directory (named people, role holders in scope, owners) and queues one message
per person through `dispatch.notify`. Workflow instances and tasks are remembered as their events
pass, so a task's message says what it is about and an SLA warning reaches its assignees.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.notify import events, people, work_messages
from services.notify.compose import Composer, read
from services.notify.dispatch import Message
from services.notify.models import KnownInstance, KnownTask
from shared.db import utcnow
from shared.events import Envelope
from shared.uow import UnitOfWork


def _left(due_at: str | None) -> str | None:
    if not due_at:
        return None
    try:
        due = dt.datetime.fromisoformat(due_at.replace("Z", "+00:00"))
    except ValueError:
        return due_at
    seconds = (due - utcnow()).total_seconds()
    if seconds <= 0:
        return f"overdue since {due:%Y-%m-%d %H:%M} UTC"
    hours = seconds / 3600
    return f"{hours:.1f} hours (due {due:%Y-%m-%d %H:%M} UTC)" if hours < 48 else f"{hours / 24:.0f} days"


def _about(inst: KnownInstance | None, fallback: str) -> tuple[str, list[tuple[str, str]]]:
    """What an instance is about, in words, and its essentials (amount, line, memo, tool, deadline)."""
    if inst is None:
        return fallback, []
    c = inst.context or {}
    facts: list[tuple[str, str]] = []
    if c.get("amount") is not None:
        facts.append(("Amount", f"{c['amount']} {c.get('currency') or ''}".strip()))
    for key, label in (
        ("line_code", "Budget line"),
        ("period", "Period"),
        ("tool_name", "Tool"),
        ("annual_cost", "Annual cost"),
        ("notice_deadline", "Notice deadline"),
        ("memo", "Memo"),
        ("reason", "Why it needs approval"),
    ):
        if c.get(key) not in (None, ""):
            facts.append((label, str(c[key])))
    if inst.requester:
        facts.append(("Requested by", inst.requester))
    subject = inst.subject or {}
    what = c.get("memo") or c.get("tool_name") or f"{subject.get('type', 'request')} {subject.get('id', '')}".strip()
    return f"{inst.definition_key or 'request'}: {what}", facts


async def remember_instance(uow: UnitOfWork, env: Envelope) -> None:
    data = env.data if isinstance(env.data, dict) else {}
    instance_id = str(data.get("instance_id") or env.subject_id)
    row = await uow.get(KnownInstance, instance_id)
    if row is None:
        row = KnownInstance(id=instance_id, updated_at=utcnow())
        uow.add(row)
    row.definition_key = str(data.get("definition_key") or "")[:100] or row.definition_key
    if isinstance(data.get("subject"), dict):
        row.subject = data["subject"]
    if isinstance(data.get("context"), dict):
        row.context = data["context"]
    if isinstance(data.get("requester"), str):
        row.requester = data["requester"][:200]
    row.updated_at = utcnow()
    await uow.flush()


async def task_assigned(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.TaskAssigned, env)
    task = await uow.get(KnownTask, d.task_id)
    if task is None:
        task = KnownTask(id=d.task_id, instance_id=d.instance_id, updated_at=utcnow())
        uow.add(task)
    task.stage, task.roles, task.users = d.stage, d.assignees.roles, d.assignees.users
    task.scope, task.due_at, task.updated_at = d.scope, d.due_at, utcnow()
    inst = await uow.get(KnownInstance, d.instance_id)
    what, facts = _about(inst, d.definition_key or "a request")
    facts = [("Stage", d.stage or "")] + facts
    if (left := _left(d.due_at)) is not None:
        facts.append(("Time left", left))
    to = await people.people(uow, d.assignees.users) + await people.holders(uow, d.assignees.roles, d.scope)
    requester = inst.requester if inst else None
    to = [p for p in to if p.id != requester]  # four eyes: the requester cannot decide their own request
    m = Message(
        "task_assigned", f"Your decision is needed: {what}", facts, c.link(f"/workflow/v1/tasks/{d.task_id}"), d.task_id
    )
    return await c.send(uow, to, m, env)


async def sla(c: Composer, uow: UnitOfWork, env: Envelope, breached: bool) -> int:
    d = read(events.SlaEvent, env)
    task = await uow.get(KnownTask, d.task_id)
    roles, users = (
        (d.assignees.roles, d.assignees.users) if d.assignees else ((task.roles, task.users) if task else ([], []))
    )
    scope = task.scope if task else {}
    to = await people.people(uow, users) + await people.holders(uow, roles, scope)
    if breached:
        e = d.escalation
        to += await people.holders(uow, [*e.notify, *([e.reassign_to_role] if e.reassign_to_role else [])], scope)
        to += await people.people(uow, [*e.notify, *([e.add_approver] if e.add_approver else [])])
    inst = await uow.get(KnownInstance, d.instance_id)
    what, facts = _about(inst, d.definition_key or "a request")
    facts = [("Stage", d.stage or ""), ("Due", d.due_at or "")] + facts
    if (left := _left(d.due_at)) is not None:
        facts.append(("Time left", left))
    kind = "sla_breached" if breached else "sla_warning"
    title = f"{'SLA breached' if breached else 'Due soon'}: {what}"
    m = Message(kind, title, facts, c.link(f"/workflow/v1/tasks/{d.task_id}"), d.task_id)
    # Warnings for one task fold into one message per person and channel (keyed by the task).
    return await c.send(uow, to, m, env, key=None if breached else f"sla_warning:{d.task_id}")


async def instance_finished(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    await remember_instance(uow, env)
    d = read(events.InstanceFinished, env)
    inst = await uow.get(KnownInstance, d.instance_id)
    what, facts = _about(inst, d.definition_key or "your request")
    status = d.status or env.type.rsplit(".", 1)[-1]
    m = Message(
        "instance_finished",
        f"Your request was {status}: {what}",
        [("Outcome", status), *facts],
        c.link(f"/workflow/v1/instances/{d.instance_id}"),
    )
    return await c.send(uow, await people.people(uow, [d.requester or ""]), m, env)


async def threshold_crossed(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.ThresholdCrossed, env)
    to = await people.owner_or_holders(uow, d.owner, c.line_owner_roles)
    facts = [("Line", d.line_code or d.line_id), ("Period", d.period or "")]
    if d.consumed is not None:
        facts.append(("Consumed", f"{d.consumed} of {d.allocated} {d.currency or ''}".strip()))
    level = f"{d.threshold}%" if d.threshold is not None else "a threshold"
    m = Message(
        "threshold_crossed",
        f"Budget line {d.line_code or d.line_id} passed {level}",
        facts,
        c.link(f"/budget/v1/lines/{d.line_id}"),
    )
    return await c.send(uow, to, m, env)


async def commitment_decided(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.CommitmentDecided, env)
    status = d.status or env.type.rsplit(".", 1)[-1]
    facts = [("Amount", f"{d.amount} {d.currency or ''}".strip()), ("Line", d.line_code or ""), ("Status", status)]
    if d.memo:
        facts.append(("Memo", d.memo))
    if d.refusal_id is not None:  # budget.commitment.refused: kept at /v1/refusals, to retry once funded
        facts.append(("Reason", d.reason or ""))
        m = Message(
            "commitment_decided",
            f"Commitment refused: {d.memo or d.line_code or d.refusal_id}",
            facts,
            c.link(f"/budget/v1/refusals?status={status}"),
        )
        # Sent by a service (a registry contract, an ERP order): whoever owns lines hears about it.
        asked = await people.people(uow, [d.requested_by or ""])
        return await c.send(uow, asked or await people.holders(uow, c.line_owner_roles), m, env)
    m = Message(
        "commitment_decided",
        f"Commitment {status}: {d.memo or d.commitment_id}",
        facts,
        c.link(f"/budget/v1/commitments/{d.commitment_id}"),
    )
    return await c.send(uow, await people.people(uow, [d.requested_by or ""]), m, env)


async def renewal_due(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.RenewalDue, env)
    if d.owner.person:
        to = await people.people(uow, [d.owner.person])
    else:
        to = await people.holders(uow, c.tool_owner_roles)
    facts = [
        ("Tool", d.tool_name or ""),
        ("Term ends", d.end or ""),
        ("Notice deadline", d.notice_deadline or ""),
        ("Annual cost", f"{d.annual_cost} {d.currency or ''}".strip()),
        ("Auto-renews", str(d.auto_renew)),
    ]
    when = d.milestone or (f"{d.days_before} days" if d.days_before is not None else None)
    title = f"Renewal review{f' ({when} before)' if when else ''}: {d.tool_name or d.contract_id}"
    m = Message("renewal_due", title, facts, c.link(f"/registry/v1/contracts/{d.contract_id}"))
    key = f"{env.id}" if not when else f"renewal:{d.contract_id}:{d.term}:{when}"
    return await c.send(uow, to, m, env, key=key)


async def target_at_risk(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.TargetAtRisk, env)
    to = await people.owner_or_holders(uow, d.owner, c.metric_owner_roles)
    facts = [
        ("Metric", d.metric or ""),
        ("Period", d.period or ""),
        ("Target", d.target or ""),
        ("Actual so far", d.actual or ""),
        ("Projected", d.projected or ""),
    ]
    m = Message(
        "target_at_risk", f"Target at risk: {d.metric} for {d.period}", facts, c.link(f"/kpi/v1/targets/{d.target_id}")
    )
    return await c.send(uow, to, m, env)


async def anomaly_detected(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.AnomalyDetected, env)
    to = await people.owner_or_holders(uow, d.owner, c.metric_owner_roles)
    group = ", ".join(f"{k}={v}" for k, v in sorted(d.group.items())) or "all"
    facts = [
        ("Metric", d.metric or ""),
        ("Group", group),
        ("Day", d.day or ""),
        ("Observed", d.observed or ""),
        ("Expected", f"{d.expected} (range {d.low} to {d.high})"),
    ]
    title = f"Unusual {d.metric} on {d.day} ({group}): {d.direction or 'outside'} its usual range"
    m = Message("anomaly_detected", title, facts, c.link(f"/kpi/v1/anomalies?metric={d.metric}"))
    return await c.send(uow, to, m, env, key=f"anomaly:{d.anomaly_id}")


async def line_overspent(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.LineOverspent, env)
    to = await people.owner_or_holders(uow, d.owner, c.line_owner_roles)
    cur = d.currency or ""
    facts = [("Line", d.line_code or d.line_id), ("Period", d.period or "")]
    facts.append(("Over by", f"{d.overspent_by} {cur}".strip() if d.overspent_by is not None else "unknown"))
    if d.available is not None:
        facts.append(("Available now", f"{d.available} {cur}".strip()))
    if d.amount is not None:
        facts.append(("The actual that did it", f"{d.amount} {cur}".strip()))
    facts += [(label, v) for label, v in (("Vendor", d.vendor), ("Reference", d.external_ref)) if v]
    over = f" by {d.overspent_by} {cur}".rstrip() if d.overspent_by is not None else ""
    m = Message(
        "line_overspent",
        f"Budget line {d.line_code or d.line_id} is overspent{over}",
        facts,
        c.link(f"/budget/v1/lines/{d.line_id}"),
    )
    return await c.send(uow, to, m, env)


async def integration_broken(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.IntegrationBroken, env)
    to = await people.owner_or_holders(uow, d.owner, c.tool_owner_roles)
    flow = f"{d.from_tool_name or '?'} -> {d.to_tool_name or '?'}"
    facts = [
        ("Integration", flow),
        ("Data", ", ".join(d.data_objects)),
        ("Method", d.method or ""),
        ("Was", d.previous_status or ""),
        ("Last seen working", d.last_seen_working_at or "unknown"),
        ("What was reported", d.detail or ""),
        ("Reported by", d.reported_by or ""),
    ]
    m = Message(
        "integration_broken",
        f"Integration broken: {flow}",
        facts,
        c.link(f"/registry/v1/integrations/{d.integration_id}"),
    )
    return await c.send(uow, to, m, env)


ROUTES: dict[str, Any] = {
    events.REQUEST_SUBMITTED: work_messages.remember_request,
    events.REQUEST_COMMENTED: work_messages.request_commented,
    **dict.fromkeys(
        (
            events.DELIVERABLE_CREATED,
            events.DELIVERABLE_DELIVERED,
            events.DELIVERABLE_SENT_BACK,
            events.DELIVERABLE_ACCEPTED,
            events.DELIVERABLE_STARTED,
            events.DELIVERABLE_APPROVED,
            events.DELIVERABLE_CANCELLED,
            events.DELIVERABLE_SLA_WARNING,
            events.DELIVERABLE_SLA_BREACHED,
        ),
        work_messages.deliverable,
    ),
    events.LINE_OVERSPENT: line_overspent,
    events.INTEGRATION_BROKEN: integration_broken,
}


def route(subject: str) -> Any:
    """The function that handles `subject` (or None): a plain table, so the consumer stays a dispatcher."""
    if subject == events.TASK_ASSIGNED:
        return task_assigned
    if subject == events.SLA_WARNING:
        return lambda c, uow, env: sla(c, uow, env, False)
    if subject in (events.SLA_BREACHED, "workflow.sla.breach"):
        return lambda c, uow, env: sla(c, uow, env, True)
    if subject in events.INSTANCE_FINISHED:
        return instance_finished
    if subject == events.THRESHOLD_CROSSED:
        return threshold_crossed
    if subject in events.COMMITMENT_DECIDED:
        return commitment_decided
    if subject in (events.RENEWAL_DUE, events.RENEWAL_MILESTONE):
        return renewal_due
    if subject == events.TARGET_AT_RISK:
        return target_at_risk
    if subject == events.ANOMALY_DETECTED:
        return anomaly_detected
    if subject in ROUTES:
        return ROUTES[subject]
    if subject.startswith("workflow.instance."):
        return lambda c, uow, env: remember_instance(uow, env)
    return None
