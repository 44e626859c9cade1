"""Deliverables: what a request promises, assigned to an internal team (an owner acts for it, under
an OLA) or to a supplier (its principals act, under an underpinning contract), due in business
time on the assignee's calendar (the supplier's own, the registered team's, else the definition's),
with an SLA that warns, breaches and escalates on the exactly-once timers (`deliverable_sla`).

The moves are `deliverable_states`; who may see a deliverable: the supplier's principals (only
their supplier's: anything else is a 404, as if it did not exist), its owner, and whoever sees its
request. Every move is written to the request's instance history and published as
`workflow.deliverable.<verb>` through the outbox.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update

from services.workflow import deliverable_reports, deliverable_sla, events, sla, store, suppliers, teams, work_requests
from services.workflow.calendars import HORIZON, BusinessCalendar, CalendarError
from services.workflow.container import Workflow
from services.workflow.definitions import hours
from services.workflow.deliverable_schemas import DeliverableIn, DeliverableOut, DeliverablePage
from services.workflow.deliverable_states import RUNNING, VERBS, WAITING, Action, IllegalMove, State, part, step
from services.workflow.instances import new_id
from services.workflow.models import attachments, definitions, deliverables, instances, requests
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, Invalid, NotFound, PreconditionFailed
from shared.identity import Principal
from shared.pagination import decode_cursor, encode_cursor, instant
from shared.uow import UnitOfWork

SPECS = {
    "accept": events.DELIVERABLE_ACCEPTED,
    "start": events.DELIVERABLE_STARTED,
    "deliver": events.DELIVERABLE_DELIVERED,
    "review": events.DELIVERABLE_REVIEW_STARTED,
    "approve": events.DELIVERABLE_APPROVED,
    "send_back": events.DELIVERABLE_SENT_BACK,
    "cancel": events.DELIVERABLE_CANCELLED,
}
_WITH_REQUEST = (*deliverables.c, requests.c.number, requests.c.instance_id, requests.c.requester)


def _manages(who: Principal, request: Mapping[Any, Any]) -> bool:
    """The requester, or mops and admins whose scopes cover the request's data."""
    return who.subject == request["requester"] or (who.has_role("mops", "admin") and who.may_see(request["data"]))


def is_assignee(row: Mapping[Any, Any], who: Principal) -> bool:
    if row["supplier_id"] is not None:
        return suppliers.acts_for(who, row["supplier_id"])
    return suppliers.supplier_ids(who) is None and who.subject == row["owner"]


async def add(uow: UnitOfWork, who: Principal, *, ref: str, body: DeliverableIn, wf: Workflow) -> DeliverableOut:
    request = await work_requests.visible_row(uow, who, ref=ref)
    if not _manages(who, request):
        raise Forbidden("Only the requester, or mops and admins in the request's scope, add deliverables.")
    if request["status"] in ("rejected", "cancelled"):
        raise Conflict(f"The request is {request['status']}; it promises nothing more.")
    if (body.due_date is None) == (body.business_hours is None):
        raise Invalid.on("due_date", "give exactly one of due_date or business_hours")
    sla_kind, assignee_calendar = await _assignment(uow, body)
    if body.calendar and body.calendar not in await wf.calendars.keys(uow):
        raise Invalid.on("calendar", f"unknown calendar {body.calendar!r}")
    key = body.calendar or assignee_calendar or await _definition_calendar(uow, request["instance_id"])
    cal = await wf.calendars.get(uow, key)
    now = utcnow()
    due_at = _due(cal, now, body.due_date, body.business_hours, key)
    window = deliverable_sla.window(cal, now, due_at, body.warn_at)
    row = {
        "id": new_id(),
        "request_id": request["id"],
        "name": body.name,
        "owner": body.owner,
        "team": body.team,
        "supplier_id": body.supplier_id,
        "sla_kind": sla_kind,
        "status": "open",
        "calendar": key,
        "business_hours": str(body.business_hours) if body.business_hours is not None else None,
        "due_at": due_at,
        "warn_at": window.warn_at,
        "sla_seconds": window.seconds,
        "warned": False,
        "breached": False,
        "escalated": False,
        "escalation": {"notify": body.escalate_to or [request["requester"]]},
        "paused_remaining_seconds": None,
        "paused_warn_seconds": None,
        "rework_rounds": 0,
        "link": None,
        "attachment_id": None,
        "delivered_at": None,
        "finished_at": None,
        "created_at": now,
        "created_by": who.subject,
        "version": 1,
    }
    await uow.execute(insert(deliverables).values(**row))
    await deliverable_sla.start(uow, wf, row)
    full = {**row, "number": request["number"], "instance_id": request["instance_id"]}
    await _announce(uow, who, full, "created", events.DELIVERABLE_CREATED, None)
    return await view(uow, row, wf, now)


async def _assignment(uow: UnitOfWork, body: DeliverableIn) -> tuple[str, str | None]:
    """The SLA's kind and the assignee's calendar: a supplier's (an underpinning contract) or a registered
    team's (an OLA; None when the team has no calendar or is not registered: the definition's then)."""
    if body.supplier_id is not None:
        if body.owner is not None or body.team is not None:
            raise Invalid.on("supplier_id", "a supplier's deliverable has no owner or team: its principals act on it")
        supplier = await suppliers.row_of(uow, body.supplier_id)
        if supplier is None:
            raise Invalid.on("supplier_id", f"unknown supplier {body.supplier_id!r}")
        return "underpinning_contract", str(supplier["calendar"])
    if body.owner is None:
        raise Invalid.on("owner", "give the owner who acts for the team, or a supplier_id")
    team = await teams.row_of(uow, body.team) if body.team is not None else None
    if team is None:  # no team, or one never registered: the definition's calendar
        return "ola", None
    if team["members"] and body.owner not in team["members"]:
        raise Invalid.on("owner", f"{body.owner!r} is not a member of team {body.team!r}")
    return "ola", team["calendar"]


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


async def visible(uow: UnitOfWork, who: Principal, deliverable_id: str, *, lock: bool = False) -> Mapping[Any, Any]:
    """The deliverable (with its request's number, instance and requester) if the caller may see it:
    a supplier's principal only its supplier's, the owner, or whoever sees the request; else 404."""
    q = select(*_WITH_REQUEST).join(requests, requests.c.id == deliverables.c.request_id)
    q = q.where(deliverables.c.id == deliverable_id)
    if lock:
        q = q.with_for_update(of=deliverables)
    row = (await uow.execute(q)).mappings().first()
    missing = NotFound(f"No deliverable {deliverable_id}.")
    if row is None:
        raise missing
    if suppliers.supplier_ids(who) is not None:
        if not suppliers.acts_for(who, row["supplier_id"]):
            raise missing
        return row
    if who.subject == row["owner"]:
        return row
    try:
        await work_requests.visible_row(uow, who, ref=row["request_id"])
    except NotFound as exc:
        raise missing from exc
    return row


async def act(
    uow: UnitOfWork,
    who: Principal,
    *,
    deliverable_id: str,
    action: Action,
    if_match: int | None,
    wf: Workflow,
    reason: str | None = None,
    link: str | None = None,
    attachment_id: str | None = None,
) -> DeliverableOut:
    """Take `action` if the deliverable's state and the caller's part allow it (409, 403 otherwise)."""
    row = await visible(uow, who, deliverable_id, lock=True)
    if if_match is not None and row["version"] != if_match:
        raise PreconditionFailed(f"The deliverable is at version {row['version']}, not {if_match}; reload it.")
    try:
        after = step(State(row["status"], row["rework_rounds"]), action)
    except IllegalMove as exc:
        raise Conflict(str(exc)) from exc
    if part(action) == "assignee" and not is_assignee(row, who):
        raise Forbidden("Only the assignee (the owner, or the supplier's principals) accepts, starts and delivers.")
    if part(action) == "requester" and not _manages(who, await _request(uow, row)):
        raise Forbidden(
            "Only the requester (or mops, admins in the request's scope) reviews, approves, sends back, cancels."
        )
    now = utcnow()
    values: dict[str, Any] = {"status": after.status, "rework_rounds": after.rework_rounds}
    values["version"] = row["version"] + 1
    if action == "deliver":
        if attachment_id is not None:
            await _delivered_file(uow, row["id"], attachment_id)
        values |= {
            "delivered_at": now,
            "link": link or row["link"],
            "attachment_id": attachment_id or row["attachment_id"],
        }
        values |= await deliverable_sla.pause(uow, wf, row, now)
    elif action == "send_back":
        values |= await deliverable_sla.resume(uow, wf, row, now)
    elif action in ("approve", "cancel"):
        values["finished_at"] = now
        await sla.stop(uow, wf, row["id"])
    await uow.execute(update(deliverables).where(deliverables.c.id == row["id"]).values(**values))
    full = {**row, **values}
    outcome: dict[str, Any] = {}
    if action == "approve":
        late = await deliverable_reports.lateness_hours(uow, wf, full)
        outcome = {"on_time": deliverable_reports.on_time(full), "lateness_business_hours": float(round(late, 6))}
    await _announce(uow, who, full, VERBS[action], SPECS[action], reason, **outcome)
    return await view(uow, full, wf, now)


async def _delivered_file(uow: UnitOfWork, deliverable_id: str, attachment_id: str) -> None:
    q = select(attachments.c.id).where(
        attachments.c.id == attachment_id, attachments.c.deliverable_id == deliverable_id
    )
    if await uow.scalar(q) is None:
        raise Invalid.on("attachment_id", "no file of this deliverable: upload it to its attachments first")


async def _request(uow: UnitOfWork, row: Mapping[Any, Any]) -> Mapping[Any, Any]:
    q = select(requests.c.requester, requests.c.data).where(requests.c.id == row["request_id"])
    return (await uow.execute(q)).mappings().one()


async def _announce(
    uow: UnitOfWork, who: Principal, row: Mapping[Any, Any], verb: str, spec: Any, reason: str | None, **outcome: Any
) -> None:
    detail = {"deliverable_id": row["id"], "name": row["name"], "status": row["status"]}
    await store.record(uow, row["instance_id"], who.subject, f"deliverable_{verb}", comment=reason, detail=detail)
    data = events.WorkflowDeliverable(
        **deliverable_sla.ref(row),
        status=row["status"],
        rework_rounds=row["rework_rounds"],
        actor=who.subject,
        reason=reason,
        link=row["link"],
        attachment_id=row["attachment_id"],
        **outcome,
    )
    await uow.publish(spec, row["id"], data, correlation_id=who.request_id)


async def list_for(uow: UnitOfWork, who: Principal, *, ref: str, wf: Workflow) -> DeliverablePage:
    request = await work_requests.visible_row(uow, who, ref=ref)
    q = select(deliverables).where(deliverables.c.request_id == request["id"])
    rows = (await uow.execute(q.order_by(deliverables.c.created_at, deliverables.c.id))).mappings().all()
    now = utcnow()
    return DeliverablePage(items=[await view(uow, r, wf, now) for r in rows], next_cursor=None)


async def list_mine(
    uow: UnitOfWork, who: Principal, *, status: str | None, limit: int, cursor: str | None, wf: Workflow
) -> DeliverablePage:
    """The caller's work, soonest due first: its supplier's deliverables, or those it owns."""
    ids = suppliers.supplier_ids(who)
    mine = deliverables.c.supplier_id.in_(sorted(ids)) if ids is not None else deliverables.c.owner == who.subject
    q = select(deliverables).where(mine).order_by(deliverables.c.due_at, deliverables.c.id)
    if status:
        q = q.where(deliverables.c.status == status)
    after = decode_cursor(cursor, instant, str)
    if after:
        at, last = after
        q = q.where((deliverables.c.due_at > at) | ((deliverables.c.due_at == at) & (deliverables.c.id > last)))
    rows = (await uow.execute(q.limit(limit + 1))).mappings().all()
    nxt = None
    if len(rows) > limit:
        nxt = encode_cursor(rows[limit - 1]["due_at"].isoformat(), rows[limit - 1]["id"])
    now = utcnow()
    return DeliverablePage(items=[await view(uow, r, wf, now) for r in rows[:limit]], next_cursor=nxt)


def sla_state(row: Mapping[Any, Any], now: dt.datetime) -> str | None:
    """While the assignee works: on_track | at_risk | breached; paused while it waits on the requester
    (delivered, in_review); met | breached once done."""
    status = row["status"]
    if status == "cancelled":
        return None
    if status in WAITING:
        return "breached" if row["breached"] else "paused"
    if status == "done":
        late = row["breached"] or row["delivered_at"] is None or row["delivered_at"] > row["due_at"]
        return "breached" if late else "met"
    if row["breached"] or now >= row["due_at"]:
        return "breached"
    if row["warned"] or (row["warn_at"] is not None and now >= row["warn_at"]):
        return "at_risk"
    return "on_track"


async def view(uow: UnitOfWork, row: Mapping[Any, Any], wf: Workflow, now: dt.datetime) -> DeliverableOut:
    remaining = None
    if row["status"] in RUNNING and abs(row["due_at"] - now) <= 2 * HORIZON:
        cal = await wf.calendars.get(uow, row["calendar"])
        remaining = math.floor(cal.between(now, row["due_at"]).total_seconds() / 60)
    elif row["status"] in WAITING and row["paused_remaining_seconds"] is not None:
        remaining = math.floor(row["paused_remaining_seconds"] / 60)
    return DeliverableOut.model_validate(
        {**row, "sla_state": sla_state(row, now), "remaining_business_minutes": remaining}
    )
