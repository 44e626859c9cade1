"""Where instances and their tasks live: loading and locking them, writing a transition's changes,
the seats of a task, the append-only history, and the events each change publishes.

Lock order is timers, then instance, everywhere: the scheduler holds its claimed timer rows when a
handler locks the instance, so a request locks the instance's pending timers first (waiting for a
firing in flight to commit) instead of deadlocking with it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Table, insert, select, update

from services.workflow import events
from services.workflow.instances import Instance, Seat, Task, check_open, my_seats
from services.workflow.models import history, instances, task_seats, tasks
from shared.contracts import EventSpec
from shared.db import utcnow
from shared.errors import NotFound, PreconditionFailed
from shared.identity import Principal
from shared.uow import UnitOfWork

# --- instances -----------------------------------------------------------------------------------


async def get_instance(uow: UnitOfWork, instance_id: str) -> Instance:
    row = (await uow.execute(select(instances).where(instances.c.id == instance_id))).mappings().first()
    if row is None:
        raise NotFound(f"No workflow instance {instance_id}.")
    return Instance.from_row(row)


async def lock_instance(
    uow: UnitOfWork, timers: Table, instance_id: str, if_match: int | None = None, *, from_timer: bool = False
) -> Instance:
    """Lock the instance row (after its pending timers): every change of one instance is serialised."""
    if not from_timer:
        await uow.execute(
            select(timers.c.id)
            .where(
                timers.c.subject_id.in_(select(tasks.c.id).where(tasks.c.instance_id == instance_id)),
                timers.c.status == "pending",
            )
            .with_for_update()
        )
    row = (
        (await uow.execute(select(instances).where(instances.c.id == instance_id).with_for_update())).mappings().first()
    )
    if row is None:
        raise NotFound(f"No workflow instance {instance_id}.")
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(f"The instance is at version {row['version']}, not {if_match}; reload it.")
    return Instance.from_row(row)


async def add_instance(uow: UnitOfWork, inst: Instance) -> None:
    await uow.execute(insert(instances).values(**inst.row()))


async def save(uow: UnitOfWork, before: Instance, after: Instance) -> Instance:
    """Write what a transition changed (and the new version); returns `after`."""
    old, new = before.row(), after.row()
    values = {k: v for k, v in new.items() if old[k] != v}
    if values:
        await uow.execute(update(instances).where(instances.c.id == after.id).values(**values))
    return after


# --- tasks ----------------------------------------------------------------------------------------


async def get_task(uow: UnitOfWork, task_id: str) -> Task | None:
    row = (await uow.execute(select(tasks).where(tasks.c.id == task_id))).mappings().first()
    return None if row is None else Task.from_row(row)


async def lock_task(uow: UnitOfWork, timers: Table, task_id: str) -> tuple[Task, Instance]:
    """An open task and its locked instance, for a decision on it."""
    instance_id = await uow.scalar(select(tasks.c.instance_id).where(tasks.c.id == task_id))
    if instance_id is None:
        raise NotFound(f"No task {task_id}.")
    inst = await lock_instance(uow, timers, instance_id)
    task = await get_task(uow, task_id)
    assert task is not None  # tasks are never deleted
    check_open(inst, task)
    return task, inst


async def tasks_of(uow: UnitOfWork, instance_id: str) -> list[Task]:
    rows = (
        (
            await uow.execute(
                select(tasks).where(tasks.c.instance_id == instance_id).order_by(tasks.c.created_at, tasks.c.id)
            )
        )
        .mappings()
        .all()
    )
    return [Task.from_row(r) for r in rows]


async def add_task(uow: UnitOfWork, task: Task, seats: list[Seat]) -> None:
    await uow.execute(insert(tasks).values(**task.row()))
    await uow.execute(
        insert(task_seats),
        [
            {"task_id": task.id, "seat": n, "kind": kind, "value": value, "delegated_by": None, "active": True}
            for n, (kind, value) in enumerate(seats)
        ],
    )


async def set_task(uow: UnitOfWork, task: Task, **values: Any) -> Task:
    await uow.execute(update(tasks).where(tasks.c.id == task.id).values(**values))
    return Task.from_row({**task.row(), **values})


async def add_seat(uow: UnitOfWork, task_id: str, seat: int, kind: str, value: str, delegated_by: str | None) -> None:
    await uow.execute(
        insert(task_seats).values(
            task_id=task_id, seat=seat, kind=kind, value=value, delegated_by=delegated_by, active=True
        )
    )


async def active_seats(uow: UnitOfWork, task_id: str) -> list[tuple[int, str, str]]:
    """(seat, kind, value) of a task's active seats, by seat."""
    rows = (
        await uow.execute(
            select(task_seats.c.seat, task_seats.c.kind, task_seats.c.value)
            .where(task_seats.c.task_id == task_id, task_seats.c.active.is_(True))
            .order_by(task_seats.c.seat)
        )
    ).all()
    return [(int(r.seat), str(r.kind), str(r.value)) for r in rows]


async def seats_for(uow: UnitOfWork, task: Task, who: Principal) -> list[int]:
    return my_seats(await active_seats(uow, task.id), task, who)


async def assignees(uow: UnitOfWork, task_id: str) -> dict[str, list[str]]:
    """Who may decide a task now: the roles and users of its active seats."""
    rows = await active_seats(uow, task_id)
    return {
        "roles": list(dict.fromkeys(v for _, k, v in rows if k == "role")),
        "users": list(dict.fromkeys(v for _, k, v in rows if k == "user")),
    }


# --- history and events ----------------------------------------------------------------------------


async def record(
    uow: UnitOfWork,
    instance_id: str,
    actor: str,
    action: str,
    *,
    task_id: str | None = None,
    stage: str | None = None,
    comment: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append to the instance's history (the migration makes the table append-only); returns its seq."""
    result = await uow.execute(
        insert(history).values(
            instance_id=instance_id,
            at=utcnow(),
            actor=actor,
            action=action,
            task_id=task_id,
            stage=stage,
            comment=comment,
            detail=detail or {},
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[attr-defined]


async def publish_instance(uow: UnitOfWork, inst: Instance, what: str) -> None:
    """`workflow.instance.<what>`; a finished instance's event carries its cycle times."""
    data: dict[str, Any] = {
        "instance_id": inst.id,
        "definition_key": inst.definition_key,
        "definition_version": inst.definition_version,
        "subject": inst.subject,
        "context": inst.context,
        "requester": inst.requester,
        "status": inst.status,
    }
    if inst.finished:
        business, wall = inst.cycle_time_business_seconds or 0, inst.cycle_time_seconds or 0
        data.update(
            finished_at=inst.finished_at,
            cycle_time_business_hours=round(business / 3600, 4),
            cycle_time_hours=round(wall / 3600, 4),
            sla_met=bool(inst.sla_met),
        )
        if what in ("approved", "rejected", "cancelled"):  # who did it and why: the step that finished it
            q = select(history.c.actor, history.c.comment).where(
                history.c.instance_id == inst.id, history.c.action == what
            )
            step = (await uow.execute(q.order_by(history.c.seq.desc()).limit(1))).first()
            if step is not None:
                data.update(decided_by=step.actor, comment=step.comment)
    await uow.publish(events.INSTANCE_EVENTS[what], inst.id, data, correlation_id=inst.correlation_id)


async def publish_task(uow: UnitOfWork, inst: Instance, task: Task, spec: EventSpec[events.WorkflowTask]) -> None:
    data = events.WorkflowTask(
        task_id=task.id,
        instance_id=inst.id,
        definition_key=inst.definition_key,
        stage=task.stage,
        stage_index=task.stage_index,
        assignees=events.WorkflowAssignees(**await assignees(uow, task.id)),
        scope=task.scope,
        due_at=task.due_at,
        decision=task.decision,
        actor=task.actor,
    )
    await uow.publish(spec, task.id, data, correlation_id=inst.correlation_id)


async def publish_sla(
    uow: UnitOfWork, inst: Instance, task: Task, spec: EventSpec[events.WorkflowSla], escalation: dict[str, Any]
) -> None:
    data = events.WorkflowSla(
        task_id=task.id,
        instance_id=inst.id,
        definition_key=inst.definition_key,
        stage=task.stage,
        due_at=task.due_at,
        escalation=escalation,
        context=inst.context,
        subject=events.WorkflowSubject(**inst.subject),
    )
    await uow.publish(spec, task.id, data, correlation_id=inst.correlation_id)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
