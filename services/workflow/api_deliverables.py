"""Routes of deliverables and suppliers.

The requester (or mops, admins in the request's scope) adds deliverables, starts the review of a
delivery (delivered -> in_review), approves or sends it back and cancels; the assignee (the owner
of a team's deliverable, the `supplier` principals of a supplier's) accepts, starts and delivers
(`deliverables`, `deliverable_states`). Mops and admins without dimension scopes register
suppliers; a supplier's principal reads only its own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.workflow import comments, deliverable_reports, deliverables, suppliers, teams
from services.workflow.api import IfMatch, Limit, answer, configurers, movers, query_instant, staff, stored, writers
from services.workflow.container import Workflow, domain
from services.workflow.deliverable_reports import Period
from services.workflow.deliverable_schemas import (
    AssigneeReport,
    CalendarTimeline,
    DeliverableIn,
    DeliverableOut,
    DeliverablePage,
    DeliverIn,
    Empty,
    ReasonIn,
    SupplierIn,
    SupplierOut,
    SupplierPage,
    TeamIn,
    TeamOut,
    TeamPage,
)
from services.workflow.deliverable_states import Action, Status
from services.workflow.request_schemas import RequestCommentIn, RequestCommentOut
from shared.app import Runtime, get_runtime
from shared.db import utcnow
from shared.errors import Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal
from shared.openapi import problems
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)


@router.post(
    "/requests/{ref}/deliverables", status_code=201, response_model=DeliverableOut, responses=problems(404, 409)
)
async def add_deliverable(
    ref: str,
    body: DeliverableIn,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async with rt.unit_of_work() as uow:
        return answer(await deliverables.add(uow, p, ref=ref, body=body, wf=wf), 201)


@router.get("/requests/{ref}/deliverables", response_model=DeliverablePage, responses=problems(404))
async def list_deliverables(
    ref: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await deliverables.list_for(uow, p, ref=ref, wf=wf))


@router.get("/deliverables", response_model=DeliverablePage, responses=problems())
async def my_deliverables(
    assignee: str = Query("me", pattern="^me$", description="only `me`: the caller's own work"),
    status: Status | None = None,
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The caller's work, soonest due first: a supplier's principal its supplier's, anyone else what it owns."""
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await deliverables.list_mine(uow, p, status=status, limit=limit, cursor=cursor, wf=wf))


@router.get("/deliverables/{deliverable_id}", response_model=DeliverableOut, responses=problems(404))
async def get_deliverable(
    deliverable_id: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        row = await deliverables.visible(uow, p, deliverable_id)
        return answer(await deliverables.view(uow, row, wf, utcnow()))


async def _act(
    rt: Runtime, wf: Workflow, p: Principal, deliverable_id: str, action: Action, if_match: str | None, **kw: Any
) -> Response:
    version = parse_if_match(if_match)
    async with rt.unit_of_work() as uow:
        out = await deliverables.act(
            uow, p, deliverable_id=deliverable_id, action=action, if_match=version, wf=wf, **kw
        )
        return answer(out)


MOVED = problems(404, 409, 412)


@router.post("/deliverables/{deliverable_id}/accept", response_model=DeliverableOut, responses=MOVED)
async def accept_deliverable(
    deliverable_id: str,
    body: Empty | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(movers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The assignee takes the work on (open -> accepted)."""
    return await _act(rt, wf, p, deliverable_id, "accept", if_match)


@router.post("/deliverables/{deliverable_id}/start", response_model=DeliverableOut, responses=MOVED)
async def start_deliverable(
    deliverable_id: str,
    body: Empty | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(movers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The assignee starts (open | accepted -> in_progress)."""
    return await _act(rt, wf, p, deliverable_id, "start", if_match)


@router.post("/deliverables/{deliverable_id}/deliver", response_model=DeliverableOut, responses=MOVED)
async def deliver_deliverable(
    deliverable_id: str,
    body: DeliverIn | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(movers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The assignee delivers, with a link to the work or a file it uploaded (in_progress -> delivered):
    the SLA pauses."""
    return await _act(
        rt,
        wf,
        p,
        deliverable_id,
        "deliver",
        if_match,
        link=body.link if body else None,
        attachment_id=body.attachment_id if body else None,
    )


@router.post("/deliverables/{deliverable_id}/review", response_model=DeliverableOut, responses=MOVED)
async def review_deliverable(
    deliverable_id: str,
    body: Empty | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The requester starts reviewing the delivery (delivered -> in_review): the assignee sees it is being
    looked at; the SLA stays paused. Optional: approve and send-back also apply straight to a delivery."""
    return await _act(rt, wf, p, deliverable_id, "review", if_match)


@router.post("/deliverables/{deliverable_id}/approve", response_model=DeliverableOut, responses=MOVED)
async def approve_deliverable(
    deliverable_id: str,
    body: Empty | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The requester approves the delivery (delivered | in_review -> done)."""
    return await _act(rt, wf, p, deliverable_id, "approve", if_match)


@router.post("/deliverables/{deliverable_id}/send-back", response_model=DeliverableOut, responses=MOVED)
async def send_back_deliverable(
    deliverable_id: str,
    body: ReasonIn,
    if_match: str | None = IfMatch,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The requester sends the delivery back with a reason (delivered | in_review -> in_progress): one more rework
    round, the SLA runs again from the business time that was left."""
    return await _act(rt, wf, p, deliverable_id, "send_back", if_match, reason=body.reason)


@router.post("/deliverables/{deliverable_id}/cancel", response_model=DeliverableOut, responses=MOVED)
async def cancel_deliverable(
    deliverable_id: str,
    body: Empty | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The requester cancels unfinished work."""
    return await _act(rt, wf, p, deliverable_id, "cancel", if_match)


@router.post(
    "/deliverables/{deliverable_id}/questions",
    status_code=201,
    response_model=RequestCommentOut,
    responses=problems(404),
)
async def ask_about_deliverable(
    deliverable_id: str,
    body: RequestCommentIn,
    p: Principal = Depends(movers),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """The assignee asks the requester a question: a comment on the request that mentions the requester."""
    async with rt.unit_of_work() as uow:
        return answer(await comments.ask(uow, p, deliverable_id=deliverable_id, body=body.body), 201)


# ----------------------------------------------------------------------------- suppliers


@router.post("/suppliers", status_code=201, response_model=SupplierOut, responses=problems(409))
async def create_supplier(
    body: SupplierIn,
    request: Request,
    p: Principal = Depends(configurers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return stored(await suppliers.create(uow, p, body=body, wf=wf))

    return await rt.idempotent(request, p, action)


@router.get("/suppliers", response_model=SupplierPage, responses=problems())
async def list_suppliers(
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await suppliers.list_suppliers(uow, p, limit=limit, cursor=cursor))


@router.get("/suppliers/{supplier_id}", response_model=SupplierOut, responses=problems(404))
async def get_supplier(
    supplier_id: str, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await suppliers.get(uow, p, supplier_id))


# ----------------------------------------------------------------------------- teams


@router.post("/teams", status_code=201, response_model=TeamOut, responses=problems(409))
async def create_team(
    body: TeamIn,
    request: Request,
    p: Principal = Depends(configurers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """Register an internal team: its members and the business calendar its deliverables are due on."""

    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return stored(await teams.create(uow, p, body=body, wf=wf))

    return await rt.idempotent(request, p, action)


@router.get("/teams", response_model=TeamPage, responses=problems())
async def list_teams(
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(staff),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await teams.list_teams(uow, limit=limit, cursor=cursor))


@router.get("/teams/{name}", response_model=TeamOut, responses=problems(404))
async def get_team(name: str, p: Principal = Depends(staff), rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await teams.get(uow, name))


# ----------------------------------------------------------------------------- reports and the timeline

From = Query(..., alias="from", description="a date (from its start) or an ISO datetime")
To = Query(..., description="a date (inclusive) or an ISO datetime (exclusive)")
PeriodQuery = Query("month", description="group by the month or the ISO week of completion")


def _span(from_: str, to: str) -> tuple[dt.datetime, dt.datetime]:
    start, end = query_instant(from_, "from"), query_instant(to, "to", end=True)
    if start is None:  # an empty `from=` passes FastAPI's "required" but names no instant
        raise Invalid.on("query.from", "a date or datetime is required", "missing")
    if end is None:
        raise Invalid.on("query.to", "a date or datetime is required", "missing")
    return start, end


async def _report(
    rt: Runtime, wf: Workflow, by: Literal["supplier", "team"], from_: str, to: str, period: Period
) -> Response:
    start, end = _span(from_, to)
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await deliverable_reports.report(uow, wf, by=by, start=start, end=end, period=period))


@router.get("/reports/suppliers", response_model=AssigneeReport, responses=problems())
async def supplier_report(
    from_: str = From,
    to: str = To,
    period: Period = PeriodQuery,
    p: Principal = Depends(staff),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """Per supplier and period: deliverables done, on time, on-time rate, average lateness, rework rounds."""
    return await _report(rt, wf, "supplier", from_, to, period)


@router.get("/reports/teams", response_model=AssigneeReport, responses=problems())
async def team_report(
    from_: str = From,
    to: str = To,
    period: Period = PeriodQuery,
    p: Principal = Depends(staff),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """Per internal team and period: deliverables done, on time, on-time rate, average lateness, rework rounds."""
    return await _report(rt, wf, "team", from_, to, period)


@router.get("/calendar", response_model=CalendarTimeline, responses=problems())
async def calendar_timeline(
    from_: str = From,
    to: str = To,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Deliverables due in the window that the caller may see, soonest first (no campaign dates: the
    budget has no campaigns with dates yet)."""
    start, end = _span(from_, to)
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await deliverable_reports.timeline(uow, p, start=start, end=end))
