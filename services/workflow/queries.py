"""What the workflow shows: an instance with its tasks, stages and history, lists narrowed by the
caller's scopes, the caller's inbox of tasks to decide, and the SLA report.

Visibility: the requester and the current assignees always see an instance; anyone else only
within their scopes on its context (otherwise 404, as if it did not exist).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import Integer, and_, cast, func, or_, select

from services.workflow import instances as rules
from services.workflow import store
from services.workflow.calendars import HORIZON
from services.workflow.container import Workflow
from services.workflow.instances import Instance, Task
from services.workflow.models import approvals, history, instances, task_seats, tasks
from services.workflow.schemas import (
    ApprovalOut,
    AssigneesOut,
    HistoryOut,
    InstanceOut,
    InstancePage,
    InstanceSummary,
    Percentiles,
    SlaReport,
    StageBreaches,
    StageOut,
    SubjectOut,
    TaskOut,
    TaskPage,
)
from shared.bounds import MAX_DATE
from shared.db import utcnow
from shared.errors import NotFound
from shared.identity import Principal
from shared.pagination import decode_cursor, encode_cursor, instant
from shared.uow import UnitOfWork

FAR = dt.datetime.combine(MAX_DATE, dt.time.max, tzinfo=dt.UTC)  # no SLA sorts last; a cursor must hold it


async def ensure_visible(uow: UnitOfWork, who: Principal, *, inst: Instance) -> None:
    """Requester and assignees always see an instance; others within their scopes."""
    if who.subject == inst.requester or who.may_see(inst.context):
        return
    row = (
        (await uow.execute(select(tasks).where(tasks.c.instance_id == inst.id, tasks.c.status == "open")))
        .mappings()
        .first()
    )
    if row is not None and await store.seats_for(uow, Task.from_row(row), who):
        return
    raise NotFound(f"No workflow instance {inst.id}.")


async def visible_instance(uow: UnitOfWork, who: Principal, *, instance_id: str, wf: Workflow) -> InstanceOut:
    await ensure_visible(uow, who, inst=await store.get_instance(uow, instance_id))
    return await instance_view(uow, instance_id, wf=wf)


async def visible_task(uow: UnitOfWork, who: Principal, *, task_id: str, wf: Workflow) -> TaskOut:
    task = await store.get_task(uow, task_id)
    if task is None:
        raise NotFound(f"No task {task_id}.")
    inst = await store.get_instance(uow, task.instance_id)
    await ensure_visible(uow, who, inst=inst)
    return await task_view(uow, task, inst, dt.datetime.now(dt.UTC), wf=wf)


def summary(inst: Instance) -> dict[str, Any]:
    b, w = inst.cycle_time_business_seconds, inst.cycle_time_seconds
    return {
        "id": inst.id,
        "status": inst.status,
        "definition_key": inst.definition_key,
        "definition_version": inst.definition_version,
        "subject": inst.subject,
        "context": inst.context,
        "requester": inst.requester,
        "current_stage": inst.current_stage,
        "sla_met": bool(inst.sla_met),
        "started_at": inst.started_at,
        "finished_at": inst.finished_at,
        "cycle_time_business_hours": round(b / 3600, 4) if b is not None else None,
        "cycle_time_hours": round(w / 3600, 4) if w is not None else None,
        "version": inst.version,
    }


async def instance_view(uow: UnitOfWork, instance_id: str, *, wf: Workflow) -> InstanceOut:
    inst = await store.get_instance(uow, instance_id)
    definition = await wf.definitions.pinned(uow, inst.definition_id)
    now = utcnow()
    task_rows = await store.tasks_of(uow, instance_id)
    stages = []
    for i, st in enumerate(definition.stages):
        mine = [t for t in task_rows if t.stage_index == i]
        status = mine[-1].status if mine else ("auto_approved" if i < inst.current_stage else "pending")
        stages.append(
            StageOut(
                index=i,
                name=st["name"],
                mode=st["mode"],
                status=status,
                sla=st.get("sla"),
                escalation=st.get("escalation"),
            )
        )
    entries = (
        (await uow.execute(select(history).where(history.c.instance_id == instance_id).order_by(history.c.seq)))
        .mappings()
        .all()
    )
    return InstanceOut(
        **summary(inst),
        tasks=[await task_view(uow, t, inst, now, wf=wf) for t in task_rows],
        stages=stages,
        history=[HistoryOut.model_validate(dict(h)) for h in entries],
    )


async def task_view(uow: UnitOfWork, task: Task, inst: Instance, now: dt.datetime, *, wf: Workflow) -> TaskOut:
    remaining = None
    # Due times lie within HORIZON of the task's start; one beyond twice that (a row written before the
    # bounds, or a task overdue for decades) gets no count rather than a walk over every day in between.
    if task.due_at is not None and task.status == "open" and abs(task.due_at - now) <= 2 * HORIZON:
        cal = await wf.calendars.get(uow, task.calendar)
        remaining = math.floor(cal.between(now, task.due_at).total_seconds() / 60)
    approved = (
        await uow.execute(
            select(approvals.c.actor, approvals.c.at).where(approvals.c.task_id == task.id).order_by(approvals.c.at)
        )
    ).all()
    return TaskOut(
        id=task.id,
        instance_id=task.instance_id,
        definition_key=inst.definition_key,
        subject=SubjectOut(**inst.subject),
        requester=inst.requester,
        stage=task.stage,
        stage_index=task.stage_index,
        status=task.status,
        mode=task.mode,
        required_approvals=task.required,
        approvals=[ApprovalOut(actor=a.actor, at=a.at) for a in approved],
        assignees=AssigneesOut(**await store.assignees(uow, task.id)),
        scope=task.scope,
        calendar=task.calendar,
        warn_at=task.warn_at,
        due_at=task.due_at,
        remaining_business_minutes=remaining,
        sla_state=rules.sla_state(task, now),
        escalated=task.escalated,
        decision=task.decision,
        actor=task.actor,
        created_at=task.created_at,
        completed_at=task.completed_at,
    )


async def list_instances(
    uow: UnitOfWork,
    who: Principal,
    *,
    status: str | None,
    definition_key: str | None,
    subject_id: str | None,
    limit: int,
    cursor: str | None,
) -> InstancePage:
    """Newest first, those the caller may see (filtered in batches, so a page is always full)."""
    q = select(instances).order_by(instances.c.started_at.desc(), instances.c.id.desc())
    if status:
        q = q.where(instances.c.status == status)
    if definition_key:
        q = q.where(instances.c.definition_key == definition_key)
    if subject_id:
        q = q.where(instances.c.subject_id == subject_id)
    after = decode_cursor(cursor, instant, str)
    if after:
        at = after[0]
        q = q.where(or_(instances.c.started_at < at, and_(instances.c.started_at == at, instances.c.id < after[1])))
    out: list[Instance] = []
    batch = max(limit * 2, 50)
    offset = 0
    while len(out) <= limit:
        rows = (await uow.execute(q.limit(batch).offset(offset))).mappings().all()
        out.extend(
            inst for inst in map(Instance.from_row, rows) if who.subject == inst.requester or who.may_see(inst.context)
        )
        if len(rows) < batch:
            break
        offset += batch
    nxt = encode_cursor(out[limit - 1].started_at.isoformat(), out[limit - 1].id) if len(out) > limit else None
    return InstancePage(items=[InstanceSummary(**summary(i)) for i in out[:limit]], next_cursor=nxt)


async def inbox(uow: UnitOfWork, who: Principal, *, limit: int, cursor: str | None, wf: Workflow) -> TaskPage:
    """Open tasks the caller may decide now, by SLA due time (no SLA last)."""
    seat_match = or_(
        and_(task_seats.c.kind == "user", task_seats.c.value == who.subject),
        and_(task_seats.c.kind == "role", task_seats.c.value.in_(sorted(who.roles))),
    )
    q = (
        select(tasks)
        .join(task_seats, task_seats.c.task_id == tasks.c.id)
        .join(instances, instances.c.id == tasks.c.instance_id)
        .where(
            tasks.c.status == "open", task_seats.c.active.is_(True), seat_match, instances.c.requester != who.subject
        )
        .distinct()
    )
    candidates = [Task.from_row(r) for r in (await uow.execute(q)).mappings().all()]
    candidates.sort(key=lambda t: (t.due_at or FAR, t.id))
    after = decode_cursor(cursor, instant, str)
    if after:
        key = (after[0], after[1])
        candidates = [t for t in candidates if (t.due_at or FAR, t.id) > key]
    now = utcnow()
    out: list[TaskOut] = []
    for t in candidates:
        mine = await uow.scalar(
            select(approvals.c.seat).where(approvals.c.task_id == t.id, approvals.c.actor == who.subject)
        )
        if mine is None and await store.seats_for(uow, t, who):
            out.append(await task_view(uow, t, await store.get_instance(uow, t.instance_id), now, wf=wf))
        if len(out) > limit:
            break
    nxt = None
    if len(out) > limit:
        last = out[limit - 1]
        nxt = encode_cursor((last.due_at or FAR).isoformat(), last.id)
    return TaskPage(items=out[:limit], next_cursor=nxt)


async def sla_report(
    uow: UnitOfWork,
    *,
    definition_key: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    wf: Workflow | None = None,
) -> SlaReport:
    """The bottleneck view over instances finished in [start, end)."""
    q = select(instances).where(instances.c.finished_at.is_not(None))
    if definition_key:
        q = q.where(instances.c.definition_key == definition_key)
    if start:
        q = q.where(instances.c.finished_at >= start)
    if end:
        q = q.where(instances.c.finished_at < end)
    rows = [Instance.from_row(r) for r in (await uow.execute(q)).mappings().all()]
    business = sorted((r.cycle_time_business_seconds or 0) / 3600 for r in rows)
    wall = sorted((r.cycle_time_seconds or 0) / 3600 for r in rows)
    per_stage = await _breaches(uow, [r.id for r in rows])
    stage_hours = await _stage_hours(uow, wf, [r.id for r in rows]) if wf is not None else {}
    met = sum(1 for r in rows if r.sla_met)
    by_outcome: dict[str, int] = {}
    for r in rows:
        by_outcome[r.status] = by_outcome.get(r.status, 0) + 1
    return SlaReport.model_validate(
        {
            "definition": definition_key,
            "from": start,
            "to": end,
            "count": len(rows),
            "outcomes": by_outcome,
            "cycle_time_business_hours": Percentiles(median=percentile(business, 50), p90=percentile(business, 90)),
            "cycle_time_hours": Percentiles(median=percentile(wall, 50), p90=percentile(wall, 90)),
            "sla_attainment_pct": round(100 * met / len(rows), 2) if rows else None,
            "breaches_per_stage": [
                StageBreaches(
                    stage=k,
                    tasks=v[0],
                    breaches=v[1],
                    attainment_pct=round(100 * (v[0] - v[1]) / v[0], 2) if v[0] else None,
                    cycle_time_business_hours=Percentiles(
                        median=percentile(stage_hours.get(k, []), 50), p90=percentile(stage_hours.get(k, []), 90)
                    ),
                )
                for k, v in sorted(per_stage.items(), key=lambda kv: (-kv[1][1], kv[0]))
            ],
        }
    )


async def _breaches(uow: UnitOfWork, ids: list[str]) -> dict[str, tuple[int, int]]:
    """Stage name -> (tasks, breached tasks) over the instances, in chunks the databases accept."""
    per_stage: dict[str, tuple[int, int]] = {}
    for i in range(0, len(ids), 500):
        stmt = (
            select(
                tasks.c.stage, func.count().label("total"), func.sum(cast(tasks.c.breached, Integer)).label("breached")
            )
            .where(tasks.c.instance_id.in_(ids[i : i + 500]))
            .group_by(tasks.c.stage)
        )
        for row in (await uow.execute(stmt)).mappings().all():
            stage, total, breached = row["stage"], row["total"], row["breached"]
            seen = per_stage.get(stage, (0, 0))
            per_stage[stage] = (seen[0] + int(total), seen[1] + int(breached or 0))
    return per_stage


async def _stage_hours(uow: UnitOfWork, wf: Workflow, ids: list[str]) -> dict[str, list[float]]:
    """Stage name -> the sorted business hours its completed tasks took, each in its own calendar."""
    out: dict[str, list[float]] = {}
    for i in range(0, len(ids), 500):
        stmt = select(tasks.c.stage, tasks.c.calendar, tasks.c.created_at, tasks.c.completed_at).where(
            tasks.c.instance_id.in_(ids[i : i + 500]), tasks.c.completed_at.is_not(None)
        )
        for row in (await uow.execute(stmt)).mappings().all():
            begun, done = row["created_at"], row["completed_at"]
            if abs(done - begun) > HORIZON:
                continue
            cal = await wf.calendars.get(uow, row["calendar"])
            out.setdefault(row["stage"], []).append(cal.between(begun, done).total_seconds() / 3600)
    return {stage: sorted(hours) for stage, hours in out.items()}


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Percentile with linear interpolation between closest ranks."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    value = sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
    return round(value, 4)
