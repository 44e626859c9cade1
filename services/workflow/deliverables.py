"""Deliverables: what a request promises, each with an owner and a due time in business time (the
end of a given business day, or business hours from its creation on a calendar), and its status:

    open -> in_progress -> delivered -> done        delivered -> in_progress (sent back)
    open | in_progress | delivered -> cancelled

Who: the request's requester and mops/admins whose scopes cover the request add deliverables and
accept (done) or send back a delivery; the owner starts and delivers; any of them may cancel.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update

from services.workflow import work_requests
from services.workflow.calendars import HORIZON, BusinessCalendar, CalendarError
from services.workflow.container import Workflow
from services.workflow.definitions import hours
from services.workflow.instances import new_id
from services.workflow.models import definitions, deliverables, instances
from services.workflow.request_schemas import DeliverableIn, DeliverableOut, DeliverablePage
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, Invalid, NotFound, PreconditionFailed
from shared.identity import Principal
from shared.uow import UnitOfWork

# status -> the statuses it may move to, and who may move it there ("owner" or "requester")
MOVES: dict[str, dict[str, str]] = {
    "open": {"in_progress": "owner", "cancelled": "any"},
    "in_progress": {"delivered": "owner", "cancelled": "any"},
    "delivered": {"done": "requester", "in_progress": "requester", "cancelled": "any"},
    "done": {},
    "cancelled": {},
}


def _manages(who: Principal, request: Mapping[Any, Any]) -> bool:
    """The requester, or mops and admins whose scopes cover the request's data."""
    return who.subject == request["requester"] or (who.has_role("mops", "admin") and who.may_see(request["data"]))


async def add(uow: UnitOfWork, who: Principal, *, ref: str, body: DeliverableIn, wf: Workflow) -> DeliverableOut:
    request = await work_requests.visible_row(uow, who, ref=ref)
    if not _manages(who, request):
        raise Forbidden("Only the requester, or mops and admins in the request's scope, add deliverables.")
    if request["status"] in ("rejected", "cancelled"):
        raise Conflict(f"The request is {request['status']}; it promises nothing more.")
    if (body.due_date is None) == (body.business_hours is None):
        raise Invalid.on("due_date", "give exactly one of due_date or business_hours")
    key = body.calendar or await _definition_calendar(uow, request["instance_id"])
    if body.calendar and body.calendar not in await wf.calendars.keys(uow):
        raise Invalid.on("calendar", f"unknown calendar {body.calendar!r}")
    cal = await wf.calendars.get(uow, key)
    now = utcnow()
    due_at = _due(cal, now, body.due_date, body.business_hours, key)
    row = {
        "id": new_id(),
        "request_id": request["id"],
        "name": body.name,
        "owner": body.owner,
        "status": "open",
        "calendar": key,
        "business_hours": str(body.business_hours) if body.business_hours is not None else None,
        "due_at": due_at,
        "delivered_at": None,
        "finished_at": None,
        "created_at": now,
        "created_by": who.subject,
        "version": 1,
    }
    await uow.execute(insert(deliverables).values(**row))
    return await view(uow, row, wf, now)


def _due(
    cal: BusinessCalendar, now: dt.datetime, due_date: dt.date | None, business_hours: Decimal | None, key: str
) -> dt.datetime:
    """The end of the due date's last business interval, or `business_hours` of business time from now."""
    if due_date is not None:
        intervals = cal.intervals_on(due_date)
        if not intervals:
            raise Invalid.on("due_date", f"{due_date} is not a business day on calendar {key!r}")
        if intervals[-1][1] <= now:
            raise Invalid.on("due_date", f"the business day {due_date} is over")
        return intervals[-1][1]
    try:
        return cal.add(now, hours(business_hours))
    except CalendarError as exc:
        raise Invalid.on("business_hours", f"{exc} (calendar {key!r})") from exc


async def _definition_calendar(uow: UnitOfWork, instance_id: str) -> str:
    q = select(definitions.c.calendar).join(instances, instances.c.definition_id == definitions.c.id)
    key = await uow.scalar(q.where(instances.c.id == instance_id))
    return str(key)


async def move(
    uow: UnitOfWork, who: Principal, *, deliverable_id: str, status: str, if_match: int | None, wf: Workflow
) -> DeliverableOut:
    """Take a deliverable to `status` if its state and the caller's part allow it (409, 403 otherwise)."""
    row = (
        (await uow.execute(select(deliverables).where(deliverables.c.id == deliverable_id).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No deliverable {deliverable_id}.")
    request = await work_requests.visible_row(uow, who, ref=row["request_id"])
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(f"The deliverable is at version {row['version']}, not {if_match}; reload it.")
    allowed = MOVES[row["status"]]
    if status not in allowed:
        raise Conflict(f"A deliverable {row['status']} cannot become {status}.")
    part = allowed[status]
    is_owner, manages = who.subject == row["owner"], _manages(who, request)
    if (part == "owner" and not is_owner) or (part == "requester" and not manages) or not (is_owner or manages):
        raise Forbidden(
            "Only the owner starts and delivers; the requester (or mops, admins in scope) accepts or sends back."
        )
    now = utcnow()
    values: dict[str, Any] = {"status": status, "version": row["version"] + 1}
    if status == "delivered":
        values["delivered_at"] = now
    if status in ("done", "cancelled"):
        values["finished_at"] = now
    await uow.execute(update(deliverables).where(deliverables.c.id == deliverable_id).values(**values))
    return await view(uow, {**row, **values}, wf, now)


async def list_for(uow: UnitOfWork, who: Principal, *, ref: str, wf: Workflow) -> DeliverablePage:
    request = await work_requests.visible_row(uow, who, ref=ref)
    q = select(deliverables).where(deliverables.c.request_id == request["id"])
    rows = (await uow.execute(q.order_by(deliverables.c.created_at, deliverables.c.id))).mappings().all()
    now = utcnow()
    return DeliverablePage(items=[await view(uow, r, wf, now) for r in rows], next_cursor=None)


def sla_state(row: Mapping[Any, Any], now: dt.datetime) -> str | None:
    """Open work: on_track | breached; delivered work: met | breached by its latest delivery."""
    if row["status"] == "cancelled":
        return None
    if row["status"] in ("delivered", "done"):
        return "met" if row["delivered_at"] is not None and row["delivered_at"] <= row["due_at"] else "breached"
    return "breached" if now >= row["due_at"] else "on_track"


async def view(uow: UnitOfWork, row: Mapping[Any, Any], wf: Workflow, now: dt.datetime) -> DeliverableOut:
    remaining = None
    if row["status"] in ("open", "in_progress") and abs(row["due_at"] - now) <= 2 * HORIZON:
        cal = await wf.calendars.get(uow, row["calendar"])
        remaining = math.floor(cal.between(now, row["due_at"]).total_seconds() / 60)
    return DeliverableOut.model_validate(
        {**row, "sla_state": sla_state(row, now), "remaining_business_minutes": remaining}
    )
