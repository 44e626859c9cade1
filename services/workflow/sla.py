"""SLAs on business time: a stage's window (warning and due instants), the clock paused while
changes are requested, and the durable timers that warn and breach.

Warning and breach are rows of the service's timers table written with the task, cancelled in
the transaction that completes or pauses it, and fired by the scheduler in one transaction with
their effect: the history row, the `workflow.sla.*` event and, on breach, the escalation
(`reassign_to_role` replaces the seats, `add_approver` adds one, `notify` rides in the event).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import func, select, update

from services.workflow import events, store
from services.workflow.calendars import HORIZON, HORIZON_YEARS, BusinessCalendar, CalendarError
from services.workflow.container import Workflow
from services.workflow.definitions import Stage, hours
from services.workflow.instances import SYSTEM, Instance, Task, changed
from services.workflow.models import approvals, task_seats, tasks
from shared import timers
from shared.bounds import check_date
from shared.errors import Conflict, FieldError, Invalid
from shared.uow import UnitOfWork

WARNING, BREACH = "workflow.sla.warning", "workflow.sla.breach"  # timer kinds (not event subjects)


@dataclass(frozen=True, slots=True)
class Window:
    """A task's SLA: when it warns, when it is due, and how much business time it gives."""

    warn_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Paused:
    """What a paused task kept of its SLA, to resume with on resubmit."""

    remaining: int | None
    warn_remaining: int | None
    warned: bool
    breached: bool
    sla_seconds: int | None

    @classmethod
    def of(cls, task: Task) -> Paused:
        return cls(
            task.paused_remaining_seconds, task.paused_warn_seconds, task.warned, task.breached, task.sla_seconds
        )


# --- the arithmetic (pure) -----------------------------------------------------------------------------


@contextmanager
def stored_config(where: str) -> Iterator[None]:
    """Turn a CalendarError (a stored definition asking more business time than its calendar gives
    within calendars.HORIZON) into a 409 naming the stage's sla; the request's transaction rolls back."""
    try:
        yield
    except CalendarError as exc:
        raise Conflict(
            f"{where}: {exc}; publish a definition version or calendar that fits.",
            errors=[FieldError(where, str(exc), "unsatisfiable")],
        ) from exc


def deadline(raw: Any, cal: BusinessCalendar, where: str, now: dt.datetime) -> dt.datetime:
    """A date means the end of that day in the calendar's time zone; a datetime is taken as is (in the
    calendar's zone without an offset). It must lie within shared.bounds and within HORIZON of now:
    the SLA's business time is counted day by day."""
    if raw in (None, ""):
        raise Invalid.on(where, "is required by this definition's SLA (a date or datetime)")
    text = str(raw)
    try:
        value: dt.date = (
            dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        )
    except ValueError as exc:
        raise Invalid.on(where, f"{text!r} is not an ISO date or datetime") from exc
    try:
        check_date(value)  # before any arithmetic: year 1 or 9999 plus a day or an offset overflows
    except ValueError as exc:
        raise Invalid.on(where, f"{text!r} {exc}") from exc
    if isinstance(value, dt.datetime):
        due = (value if value.tzinfo else value.replace(tzinfo=cal.tz)).astimezone(dt.UTC)
    else:
        due = dt.datetime.combine(value + dt.timedelta(days=1), dt.time(), tzinfo=cal.tz).astimezone(dt.UTC)
    if abs(due - now) > HORIZON:
        raise Invalid.on(where, f"{text!r} must lie within {HORIZON_YEARS} years of now")
    return due


def window(sla: Mapping[str, Any], cal: BusinessCalendar, context: Mapping[str, Any], now: dt.datetime) -> Window:
    """The SLA starting now: business_hours on the calendar, or up to the context's deadline; the
    warning at warn_at of that business time (none when it would not come before the due time)."""
    warn_frac = Decimal(str(sla.get("warn_at") or "0.75"))
    if sla.get("deadline_from_context"):
        name = sla["deadline_from_context"]
        due_at = deadline(context.get(name), cal, f"context.{name}", now)
        total = cal.between(now, due_at) if due_at > now else dt.timedelta(0)
    else:
        total = hours(sla["business_hours"])
        due_at = cal.add(now, total)
    return span(cal, now, total, due_at, warn_frac)


def span(
    cal: BusinessCalendar, now: dt.datetime, total: dt.timedelta, due_at: dt.datetime, warn_frac: Decimal
) -> Window:
    """The window of `total` business time from now to `due_at`, warning at `warn_frac` of it (none when
    the warning would not come before the due time). Deliverables use it for their OLAs and contracts."""
    warn_at: dt.datetime | None = cal.add(now, dt.timedelta(seconds=int(total.total_seconds() * float(warn_frac))))
    if warn_at is not None and warn_at >= due_at:
        warn_at = None
    return Window(warn_at, due_at, int(total.total_seconds()))


def resumed(paused: Paused, cal: BusinessCalendar, now: dt.datetime) -> Window:
    """A business-hours SLA reopened with the business time that was left when changes were asked."""
    assert paused.remaining is not None
    due_at = cal.add(now, dt.timedelta(seconds=max(0, paused.remaining)))
    warn_at = None
    if paused.warn_remaining is not None and not paused.warned:
        warn_at = cal.add(now, dt.timedelta(seconds=max(0, paused.warn_remaining)))
    return Window(warn_at, due_at, paused.sla_seconds)


class Clock(Protocol):
    """What pausing reads of a running SLA: a task, or a deliverable (`deliverable_sla.Clock`)."""

    @property
    def due_at(self) -> dt.datetime | None: ...
    @property
    def warn_at(self) -> dt.datetime | None: ...
    @property
    def warned(self) -> bool: ...


def left(clock: Clock, cal: BusinessCalendar, now: dt.datetime) -> tuple[int | None, int | None]:
    """Business seconds left (rounded up) to the due time and to a warning not yet given."""
    if clock.due_at is None:
        return None, None
    remaining = math.ceil(cal.between(now, clock.due_at).total_seconds())
    warn_remaining = None
    if clock.warn_at is not None and not clock.warned:
        warn_remaining = math.ceil(cal.between(now, clock.warn_at).total_seconds())
    return remaining, warn_remaining


# --- with the stored calendars --------------------------------------------------------------------------


async def stage_window(
    uow: UnitOfWork, wf: Workflow, stage: Stage, context: Mapping[str, Any], now: dt.datetime, where: str
) -> Window:
    """A stage's SLA window starting now (an empty one without SLA); `where` names the stage's sla in a
    Conflict when the stored definition asks more than its calendar gives."""
    sla = stage.get("sla")
    if not sla:
        return Window()
    cal = await wf.calendars.get(uow, sla["calendar"])
    with stored_config(where):
        return window(sla, cal, context, now)


async def schedule(uow: UnitOfWork, wf: Workflow, task: Task) -> None:
    payload = {"task_id": task.id, "instance_id": task.instance_id}
    await arm(uow, wf, task.id, (WARNING, BREACH), task, task.breached, payload)


async def arm(
    uow: UnitOfWork,
    wf: Workflow,
    subject_id: str,
    kinds: tuple[str, str],
    clock: Clock,
    breached: bool,
    payload: dict[str, Any],
) -> None:
    """Write the warning (unless given) and breach (unless already breached) timers of an SLA clock:
    `kinds` are the timer kinds of its warning and its breach (a task's, a deliverable's)."""
    warning, breach = kinds
    if clock.warn_at is not None and not clock.warned:
        await timers.schedule(uow.session, wf.timers, warning, subject_id, clock.warn_at, payload)
    if clock.due_at is not None and not breached:
        await timers.schedule(uow.session, wf.timers, breach, subject_id, clock.due_at, payload)


async def stop(uow: UnitOfWork, wf: Workflow, subject_id: str) -> None:
    """Cancel the pending timers of a task's or a deliverable's SLA."""
    await timers.cancel(uow.session, wf.timers, subject_id)


# --- the timers firing -------------------------------------------------------------------------------------


async def timer_task(uow: UnitOfWork, wf: Workflow, timer: Any) -> tuple[Task, Instance] | None:
    """The timer's task and its locked instance, or None when the task is no longer open."""
    payload = timer.payload or {}
    task_id = payload.get("task_id") or timer.subject_id
    instance_id = payload.get("instance_id") or await uow.scalar(
        select(tasks.c.instance_id).where(tasks.c.id == task_id)
    )
    if instance_id is None:
        return None
    inst = await store.lock_instance(uow, wf.timers, instance_id, from_timer=True)
    task = await store.get_task(uow, task_id)
    if task is None or task.status != "open" or inst.status != "running":
        return None
    return task, inst


async def on_warning(uow: UnitOfWork, wf: Workflow, timer: Any) -> None:
    found = await timer_task(uow, wf, timer)
    if found is None or found[0].warned:
        return
    task, inst = found
    task = await store.set_task(uow, task, warned=True)
    stage = (await wf.definitions.pinned(uow, inst.definition_id)).stages[task.stage_index]
    await store.record(
        uow,
        inst.id,
        SYSTEM,
        "sla_warning",
        task_id=task.id,
        stage=task.stage,
        detail={"due_at": store.iso(task.due_at)},
    )
    await store.publish_sla(uow, inst, task, events.SLA_WARNING, stage.get("escalation") or {})


async def on_breach(uow: UnitOfWork, wf: Workflow, timer: Any) -> None:
    found = await timer_task(uow, wf, timer)
    if found is None or found[0].breached:
        return
    task, inst = found
    escalation: dict[str, Any] = (await wf.definitions.pinned(uow, inst.definition_id)).stages[task.stage_index].get(
        "escalation"
    ) or {}
    task = await store.set_task(uow, task, breached=True, escalated=bool(escalation))
    inst = await store.save(uow, inst, changed(inst, sla_met=False))
    reassigned = await escalate(uow, task, escalation)
    await store.record(
        uow,
        inst.id,
        SYSTEM,
        "sla_breached",
        task_id=task.id,
        stage=task.stage,
        detail={"due_at": store.iso(task.due_at), "escalation": escalation},
    )
    await store.publish_sla(uow, inst, task, events.SLA_BREACHED, escalation)
    if reassigned:
        await store.publish_task(uow, inst, task, events.TASK_ASSIGNED)


async def escalate(uow: UnitOfWork, task: Task, escalation: Mapping[str, Any]) -> bool:
    """Apply a breached stage's escalation to its task's seats; True when the seats changed.

    reassign_to_role: every seat steps down and the role takes one new seat, so one more approval by it
    completes the task; add_approver: the user gets a seat beside the others."""
    reassigned = False
    if escalation.get("reassign_to_role"):
        top = await uow.scalar(select(func.max(task_seats.c.seat)).where(task_seats.c.task_id == task.id))
        approved = await uow.scalar(select(func.count()).select_from(approvals).where(approvals.c.task_id == task.id))
        await uow.execute(update(task_seats).where(task_seats.c.task_id == task.id).values(active=False))
        await store.add_seat(uow, task.id, (top or 0) + 1, "role", escalation["reassign_to_role"], None)
        await uow.execute(update(tasks).where(tasks.c.id == task.id).values(required=(approved or 0) + 1))
        reassigned = True
    if escalation.get("add_approver"):
        top = await uow.scalar(select(func.max(task_seats.c.seat)).where(task_seats.c.task_id == task.id))
        await store.add_seat(uow, task.id, (top or 0) + 1, "user", escalation["add_approver"], None)
        reassigned = True
    return reassigned
