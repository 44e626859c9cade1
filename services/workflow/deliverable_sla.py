"""A deliverable's SLA (an OLA for an internal team, an underpinning contract for a supplier) on
the same exactly-once timers as the approval SLAs: `sla.span` computes its window, `sla.arm` and
`sla.stop` write and cancel its timers, `sla.left` and `sla.resumed` pause and resume its clock.

The clock runs while the work is the assignee's, pauses while a delivery waits on the requester
(the business time left is kept) and runs again from what was left when the delivery is sent
back. Warning and breach fire once, in the scheduler's transaction, with their history row and
their `workflow.deliverable.sla_*` event; a breach marks the deliverable escalated and names who
is notified (its `escalation`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from services.workflow import events, sla, store
from services.workflow.calendars import BusinessCalendar
from services.workflow.container import Workflow
from services.workflow.deliverable_states import RUNNING
from services.workflow.instances import SYSTEM
from services.workflow.models import deliverables, requests
from shared.uow import UnitOfWork

WARNING, BREACH = "workflow.deliverable.warning", "workflow.deliverable.breach"  # timer kinds
KINDS = (WARNING, BREACH)


@dataclass(frozen=True, slots=True)
class Clock:
    """A deliverable row seen as an SLA clock (`sla.Clock`)."""

    due_at: dt.datetime | None
    warn_at: dt.datetime | None
    warned: bool

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Clock:
        return cls(row["due_at"], row["warn_at"], bool(row["warned"]))


def window(cal: BusinessCalendar, now: dt.datetime, due_at: dt.datetime, warn_frac: Decimal) -> sla.Window:
    return sla.span(cal, now, cal.between(now, due_at), due_at, warn_frac)


async def start(uow: UnitOfWork, wf: Workflow, row: Mapping[str, Any]) -> None:
    await sla.arm(uow, wf, row["id"], KINDS, Clock.of(row), bool(row["breached"]), {"deliverable_id": row["id"]})


async def pause(uow: UnitOfWork, wf: Workflow, row: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Stop the clock; the values that keep the business time left (to the due time, to the warning)."""
    await sla.stop(uow, wf, row["id"])
    remaining, warn_remaining = sla.left(Clock.of(row), await wf.calendars.get(uow, row["calendar"]), now)
    return {"paused_remaining_seconds": remaining, "paused_warn_seconds": warn_remaining}


async def resume(uow: UnitOfWork, wf: Workflow, row: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Run the clock again from what was left; the new due and warning times (timers written)."""
    paused = sla.Paused(
        row["paused_remaining_seconds"],
        row["paused_warn_seconds"],
        bool(row["warned"]),
        bool(row["breached"]),
        row["sla_seconds"],
    )
    if paused.remaining is None:
        return {}
    w = sla.resumed(paused, await wf.calendars.get(uow, row["calendar"]), now)
    values = {
        "due_at": w.due_at,
        "warn_at": w.warn_at if w.warn_at is not None else row["warn_at"],
        "paused_remaining_seconds": None,
        "paused_warn_seconds": None,
    }
    await start(uow, wf, {**row, **values})
    return values


# --- the timers firing -------------------------------------------------------------------------------------


async def _running(uow: UnitOfWork, timer: Any) -> Mapping[Any, Any] | None:
    """The timer's deliverable with its request's number and instance, locked, if its clock still runs."""
    deliverable_id = (timer.payload or {}).get("deliverable_id") or timer.subject_id
    q = (
        select(deliverables, requests.c.number, requests.c.instance_id, requests.c.requester)
        .join(requests, requests.c.id == deliverables.c.request_id)
        .where(deliverables.c.id == deliverable_id)
        .with_for_update(of=deliverables)
    )
    row = (await uow.execute(q)).mappings().first()
    if row is None or row["status"] not in RUNNING:
        return None
    return row


async def on_warning(uow: UnitOfWork, wf: Workflow, timer: Any) -> None:
    row = await _running(uow, timer)
    if row is None or row["warned"]:
        return
    await _mark(uow, row, warned=True)
    await store.record(
        uow,
        row["instance_id"],
        SYSTEM,
        "deliverable_sla_warning",
        detail={"deliverable_id": row["id"], "name": row["name"], "due_at": store.iso(row["due_at"])},
    )
    await uow.publish(events.DELIVERABLE_SLA_WARNING, row["id"], sla_event(row, {}))


async def on_breach(uow: UnitOfWork, wf: Workflow, timer: Any) -> None:
    row = await _running(uow, timer)
    if row is None or row["breached"]:
        return
    escalation = dict(row["escalation"] or {})
    await _mark(uow, row, breached=True, escalated=bool(escalation))
    await store.record(
        uow,
        row["instance_id"],
        SYSTEM,
        "deliverable_sla_breached",
        detail={"deliverable_id": row["id"], "name": row["name"], "due_at": store.iso(row["due_at"]), **escalation},
    )
    await uow.publish(events.DELIVERABLE_SLA_BREACHED, row["id"], sla_event(row, escalation))


async def _mark(uow: UnitOfWork, row: Mapping[str, Any], **values: Any) -> None:
    values["version"] = row["version"] + 1
    await uow.execute(update(deliverables).where(deliverables.c.id == row["id"]).values(**values))


def ref(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every deliverable event carries (`events.WorkflowDeliverableRef`)."""
    return {
        "deliverable_id": row["id"],
        "request_id": row["request_id"],
        "request_number": row["number"],
        "name": row["name"],
        "team": row["team"],
        "owner": row["owner"],
        "supplier_id": row["supplier_id"],
        "sla_kind": row["sla_kind"],
        "due_at": row["due_at"],
    }


def sla_event(row: Mapping[str, Any], escalation: dict[str, Any]) -> events.WorkflowDeliverableSla:
    return events.WorkflowDeliverableSla(**ref(row), escalation=escalation)
