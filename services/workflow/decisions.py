"""What people do to a running instance: approve, reject or ask for changes on a task, delegate
their seat, and, as its requester, resubmit, cancel or comment.

Four eyes: the requester never decides on their own request, nor receives a delegated seat. A
decider's scopes must cover the request's context, and their seat (by user, or by a role narrowed
to the task's scope) must be one of the task's. Every change locks the instance first (store), so
concurrent approvals of an `all` task cannot lose one.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sqlalchemy import insert, select

from services.workflow import events, instances, lifecycle, queries, sla, store
from services.workflow.container import Workflow
from services.workflow.instances import Instance, Task
from services.workflow.models import approvals, tasks
from services.workflow.schemas import CommentOut, InstanceOut, TaskOut
from shared.db import utcnow
from shared.errors import Conflict, Forbidden
from shared.identity import Principal
from shared.uow import UnitOfWork

Decision = Literal["approve", "reject", "request_changes"]


async def decide(
    uow: UnitOfWork, who: Principal, *, task_id: str, decision: Decision, comment: str | None, wf: Workflow
) -> InstanceOut:
    """approve | reject | request_changes by one of the task's seats (never the requester)."""
    task, inst = await store.lock_task(uow, wf.timers, task_id)
    seats = await eligible_seats(uow, task, inst, who)
    now = utcnow()
    if decision == "approve":
        await approve(uow, who, task=task, inst=inst, seats=seats, comment=comment, wf=wf, now=now)
    elif decision == "reject":
        await store.record(uow, inst.id, who.subject, "rejected", task_id=task.id, stage=task.stage, comment=comment)
        await complete(uow, wf, inst, task, "rejected", who.subject, now)
        await lifecycle.finish(uow, wf, inst, "rejected", now)
    else:
        await request_changes(uow, who, task=task, inst=inst, comment=comment, wf=wf, now=now)
    return await queries.instance_view(uow, inst.id, wf=wf)


async def approve(
    uow: UnitOfWork,
    who: Principal,
    *,
    task: Task,
    inst: Instance,
    seats: list[int],
    comment: str | None,
    wf: Workflow,
    now: dt.datetime,
) -> None:
    """Fill the caller's first free seat; the task completes at its required count and the next stage opens."""
    rows = (await uow.execute(select(approvals.c.seat, approvals.c.actor).where(approvals.c.task_id == task.id))).all()
    filled = {int(r.seat): str(r.actor) for r in rows}
    if who.subject in filled.values():
        raise Conflict("You have already approved this task.")
    free = [n for n in seats if n not in filled]
    if not free:
        raise Conflict("Every seat you could fill on this task is already approved by someone else.")
    await uow.execute(insert(approvals).values(task_id=task.id, seat=free[0], actor=who.subject, at=now))
    count = len(filled) + 1
    await store.record(
        uow,
        inst.id,
        who.subject,
        "approved",
        task_id=task.id,
        stage=task.stage,
        comment=comment,
        detail={"approvals": count, "required": task.required},
    )
    if count >= task.required:
        await complete(uow, wf, inst, task, "approved", who.subject, now)
        definition = await wf.definitions.pinned(uow, inst.definition_id)
        await lifecycle.activate(uow, wf, inst, definition, task.stage_index + 1, now)


async def complete(
    uow: UnitOfWork, wf: Workflow, inst: Instance, task: Task, decision: str, actor: str, now: dt.datetime
) -> Task:
    await sla.stop(uow, wf, task.id)
    task = await store.set_task(uow, task, status=decision, decision=decision, actor=actor, completed_at=now)
    await store.publish_task(uow, inst, task, events.TASK_COMPLETED)
    return task


async def request_changes(
    uow: UnitOfWork, who: Principal, *, task: Task, inst: Instance, comment: str | None, wf: Workflow, now: dt.datetime
) -> None:
    """Stop the SLA clock: cancel the timers and keep the business time that was left."""
    remaining = warn_remaining = None
    if task.due_at is not None:
        remaining, warn_remaining = sla.left(task, await wf.calendars.get(uow, task.calendar), now)
    await sla.stop(uow, wf, task.id)
    task = await store.set_task(
        uow,
        task,
        status="changes_requested",
        decision="changes_requested",
        actor=who.subject,
        completed_at=now,
        paused_remaining_seconds=remaining,
        paused_warn_seconds=warn_remaining,
    )
    await store.record(
        uow,
        inst.id,
        who.subject,
        "changes_requested",
        task_id=task.id,
        stage=task.stage,
        comment=comment,
        detail={"remaining_business_seconds": remaining},
    )
    await store.publish_task(uow, inst, task, events.TASK_COMPLETED)
    inst = await store.save(uow, inst, instances.pause(inst))
    await store.publish_instance(uow, inst, "changes_requested")


async def resubmit(
    uow: UnitOfWork,
    who: Principal,
    *,
    instance_id: str,
    context_patch: dict[str, object] | None,
    comment: str | None,
    if_match: int | None,
    wf: Workflow,
) -> InstanceOut:
    """The requester reworked the request: the stage that asked opens again, with the SLA time left."""
    before = await store.lock_instance(uow, wf.timers, instance_id, if_match)
    inst = instances.rework(before, who, context_patch)
    paused = Task.from_row(
        (
            await uow.execute(
                select(tasks)
                .where(tasks.c.instance_id == instance_id, tasks.c.status == "changes_requested")
                .order_by(tasks.c.created_at.desc())
                .limit(1)
            )
        )
        .mappings()
        .one()
    )
    now = utcnow()
    definition = await wf.definitions.pinned(uow, inst.definition_id)
    stage = definition.stages[paused.stage_index]
    if (stage.get("sla") or {}).get("deadline_from_context"):  # the reworked context must still give one
        await sla.stage_window(uow, wf, stage, inst.context, now, f"stages[{paused.stage_index}].sla")
    inst = await store.save(uow, before, inst)
    await store.record(
        uow,
        instance_id,
        who.subject,
        "resubmitted",
        stage=paused.stage,
        comment=comment,
        detail={"context_changes": sorted(context_patch or {})},
    )
    await store.publish_instance(uow, inst, "resubmitted")
    await lifecycle.activate(uow, wf, inst, definition, paused.stage_index, now, resume=sla.Paused.of(paused))
    return await queries.instance_view(uow, instance_id, wf=wf)


async def cancel(
    uow: UnitOfWork, who: Principal, *, instance_id: str, comment: str | None, if_match: int | None, wf: Workflow
) -> InstanceOut:
    inst = await store.lock_instance(uow, wf.timers, instance_id, if_match)
    instances.check_cancel(inst, who)
    await store.record(uow, instance_id, who.subject, "cancelled", comment=comment)
    await lifecycle.finish(uow, wf, inst, "cancelled", utcnow())
    return await queries.instance_view(uow, instance_id, wf=wf)


async def delegate(
    uow: UnitOfWork, who: Principal, *, task_id: str, to_user: str, comment: str | None, wf: Workflow
) -> TaskOut:
    """Hand one's seat to another user, who may then decide on it as well."""
    task, inst = await store.lock_task(uow, wf.timers, task_id)
    seats = await eligible_seats(uow, task, inst, who)
    instances.check_delegate(inst, who, to_user)
    await store.add_seat(uow, task_id, seats[0], "user", to_user, who.subject)
    await store.record(
        uow,
        inst.id,
        who.subject,
        "delegated",
        task_id=task_id,
        stage=task.stage,
        comment=comment,
        detail={"to_user": to_user},
    )
    await store.publish_task(uow, inst, task, events.TASK_ASSIGNED)
    return await queries.task_view(uow, task, inst, utcnow(), wf=wf)


async def comment(uow: UnitOfWork, who: Principal, *, instance_id: str, text: str, wf: Workflow) -> CommentOut:
    inst = await store.lock_instance(uow, wf.timers, instance_id)
    await queries.ensure_visible(uow, who, inst=inst)
    seq = await store.record(uow, instance_id, who.subject, "commented", comment=text)
    return CommentOut(seq=seq, instance_id=instance_id, actor=who.subject, comment=text)


async def eligible_seats(uow: UnitOfWork, task: Task, inst: Instance, who: Principal) -> list[int]:
    """The seats `who` may fill on the task: four eyes and scopes first, then their user or roles."""
    instances.check_decider(inst, who)
    seats = await store.seats_for(uow, task, who)
    if not seats:
        raise Forbidden("This task is not assigned to you (by user, role or scope).")
    return seats
