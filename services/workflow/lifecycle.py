"""An instance moving through its stages: started, each stage's task opened (auto-approved stages
skipped), and finished with its cycle times. Every step appends to the history and publishes its
event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update

from services.workflow import events, instances, sla, store
from services.workflow.container import Workflow
from services.workflow.definitions import Definition, definition_to_start
from services.workflow.events import FinalStatus
from services.workflow.instances import SYSTEM, Instance, Task
from services.workflow.models import tasks
from services.workflow.schemas import InstanceIn
from shared.db import utcnow
from shared.errors import Invalid
from shared.identity import Principal
from shared.uow import UnitOfWork


async def start_instance(uow: UnitOfWork, who: Principal, *, body: InstanceIn, wf: Workflow) -> Instance:
    """A request over the API: the caller is the requester, and the context lies within their scopes."""
    definition = await definition_to_start(uow, body.definition_key, body.definition_version)
    if not who.may_see(body.context):
        raise Invalid.on("context", "is outside your scopes")
    return await start(
        uow,
        wf,
        definition,
        subject=body.subject.model_dump(),
        context=body.context,
        requester=who.subject,
        correlation_id=who.request_id,
    )


async def start(
    uow: UnitOfWork,
    wf: Workflow,
    definition: Definition,
    *,
    subject: Mapping[str, str],
    context: dict[str, Any],
    requester: str,
    correlation_id: str | None = None,
    instance_id: str | None = None,
) -> Instance:
    """Start `definition` (by a request or an event): every stage's SLA must be computable first.
    `instance_id` lets a caller name the instance before it exists (a request announces it)."""
    now = utcnow()
    inst = instances.started(
        definition_id=definition.id,
        definition_key=definition.key,
        definition_version=definition.version,
        subject=subject,
        context=context,
        requester=requester,
        now=now,
        correlation_id=correlation_id,
        instance_id=instance_id,
    )
    for i, stage in enumerate(definition.stages):  # e.g. a missing notice_deadline fails before any write
        await sla.stage_window(uow, wf, stage, context, now, f"stages[{i}].sla")
    await store.add_instance(uow, inst)
    await store.record(uow, inst.id, requester, "started", detail={"definition_version": definition.version})
    await store.publish_instance(uow, inst, "started")
    return await activate(uow, wf, inst, definition, 0, now)


async def activate(
    uow: UnitOfWork,
    wf: Workflow,
    inst: Instance,
    definition: Definition,
    index: int,
    now: dt.datetime,
    resume: sla.Paused | None = None,
) -> Instance:
    """Open the task of stage `index` (skipping auto-approved stages, unless resuming a paused one);
    past the last stage, approve."""
    skipped: list[str] = []
    if resume is None:
        index, skipped = instances.next_stage(definition.stages, index, inst.context)
    for name in skipped:
        await store.record(uow, inst.id, SYSTEM, "auto_approved", stage=name)
    if index >= len(definition.stages):
        return await finish(uow, wf, inst, "approved", now)
    stage = definition.stages[index]
    inst = await store.save(uow, inst, instances.changed(inst, current_stage=index))
    seats = instances.seats_of(stage["assignees"])
    calendar = (stage.get("sla") or {}).get("calendar") or definition.calendar
    window = await _window(uow, wf, stage, inst.context, now, index, resume)
    task = Task(
        id=instances.new_id(),
        instance_id=inst.id,
        stage_index=index,
        stage=stage["name"],
        status="open",
        mode=stage["mode"],
        required=instances.required_approvals(stage, len(seats)),
        scope=instances.task_scope(stage, inst.context),
        calendar=calendar,
        sla_seconds=window.seconds,
        warn_at=window.warn_at,
        due_at=window.due_at,
        warned=resume.warned if resume else False,
        breached=resume.breached if resume else False,
        escalated=False,
        decision=None,
        actor=None,
        created_at=now,
        completed_at=None,
        paused_remaining_seconds=None,
        paused_warn_seconds=None,
    )
    await store.add_task(uow, task, seats)
    await sla.schedule(uow, wf, task)
    await store.record(
        uow,
        inst.id,
        SYSTEM,
        "task_assigned",
        task_id=task.id,
        stage=task.stage,
        detail={"assignees": stage["assignees"], "due_at": store.iso(task.due_at)},
    )
    await store.publish_task(uow, inst, task, events.TASK_ASSIGNED)
    return inst


async def _window(
    uow: UnitOfWork,
    wf: Workflow,
    stage: dict[str, Any],
    context: dict[str, Any],
    now: dt.datetime,
    index: int,
    resume: sla.Paused | None,
) -> sla.Window:
    """A fresh SLA window, or a business-hours SLA resumed with the time it had left (a deadline from
    the context stays absolute, so it is computed afresh)."""
    spec = stage.get("sla")
    if spec and resume is not None and not spec.get("deadline_from_context") and resume.remaining is not None:
        cal = await wf.calendars.get(uow, spec["calendar"])
        with sla.stored_config(f"stages[{index}].sla"):
            return sla.resumed(resume, cal, now)
    return await sla.stage_window(uow, wf, stage, context, now, f"stages[{index}].sla")


async def finish(uow: UnitOfWork, wf: Workflow, inst: Instance, status: FinalStatus, now: dt.datetime) -> Instance:
    """approved | rejected | cancelled: open tasks close with their timers; the cycle time is counted on
    the definition's calendar."""
    definition = await wf.definitions.pinned(uow, inst.definition_id)
    cal = await wf.calendars.get(uow, definition.calendar)
    business = cal.between(inst.started_at, now)
    inst = await store.save(uow, inst, instances.finish(inst, status, now, business))
    open_ids = list(
        (await uow.scalars(select(tasks.c.id).where(tasks.c.instance_id == inst.id, tasks.c.status == "open"))).all()
    )
    for tid in open_ids:
        await sla.stop(uow, wf, tid)
    if open_ids:
        await uow.execute(update(tasks).where(tasks.c.id.in_(open_ids)).values(status="cancelled", completed_at=now))
    await store.record(
        uow,
        inst.id,
        SYSTEM,
        "finished",
        detail={
            "status": status,
            "sla_met": bool(inst.sla_met),
            "cycle_time_business_hours": round(business.total_seconds() / 3600, 4),
        },
    )
    await store.publish_instance(uow, inst, status)
    return inst
