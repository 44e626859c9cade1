"""Routes of the workflow service: parse, authorize, call the domain, shape the answer.

Roles: calendars and definitions are written by admin and mops; any role but analyst
may start instances and act on tasks, and the domain then checks that the caller holds
a seat of the task (403 otherwise) and is not the requester (four eyes).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.workflow import calendar_store, decisions, definitions, lifecycle, queries, schemas
from services.workflow.container import Workflow, domain
from services.workflow.decisions import Decision
from services.workflow.instances import Instance
from services.workflow.schemas import CommentIn, ResubmitIn
from shared.app import Runtime, get_runtime
from shared.bounds import INT32_MAX, within
from shared.errors import Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import ROLES, Principal, current_principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.uow import UnitOfWork

# Everyone but a supplier's principals, who reach only their deliverables (api_deliverables) and
# suppliers: the gateway confines them too, this is the service's own check.
staff = require_roles(*(r for r in ROLES if r != "supplier"))
router = APIRouter(prefix="/v1", dependencies=[Depends(staff)], route_class=JsonRoute)

configurers = require_roles("mops", unscoped="A calendar or definition")
writers = require_roles(*(r for r in ROLES if r not in ("analyst", "supplier")))
# who may move a deliverable: the writers and suppliers' principals (the domain checks whose part it is)
movers = require_roles(*(r for r in ROLES if r != "analyst"))
Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
IfMatch = Header(None, alias="If-Match")


def answer(model: BaseModel, status_code: int = 200) -> Response:
    """The model as JSON, serialised once by pydantic: `response_model` documents the route, and
    returning a Response spares FastAPI dumping the answer and validating it again."""
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")


def stored(model: BaseModel) -> dict[str, Any]:
    """An idempotent route's answer as plain JSON data, which the idempotency record stores as is."""
    return model.model_dump(mode="json", by_alias=True)


def query_instant(value: str | None, field: str, *, end: bool = False) -> dt.datetime | None:
    """A query date (whole day; `to` is inclusive) or an ISO datetime (UTC if no offset), within
    shared.bounds (checked before the day is added or the instant is bound as UTC)."""
    if not value:
        return None
    try:
        parsed: dt.date = (
            dt.date.fromisoformat(value)
            if len(value) == 10
            else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        )
    except ValueError as exc:
        raise Invalid.on(f"query.{field}", f"{value!r} is not an ISO date or datetime") from exc
    within(parsed, f"query.{field}")
    if not isinstance(parsed, dt.datetime):
        day = parsed + dt.timedelta(days=1 if end else 0)
        return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# ----------------------------------------------------------------------------- calendars


@router.post("/calendars", status_code=201, response_model=schemas.CalendarOut, responses=problems(409))
async def create_calendar(
    body: schemas.CalendarIn, request: Request, p: Principal = Depends(configurers), rt: Runtime = Depends(get_runtime)
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return stored(await calendar_store.create_calendar(uow, p, body=body))

    return await rt.idempotent(request, p, action)


@router.get("/calendars", response_model=schemas.CalendarPage, responses=problems())
async def list_calendars(rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(schemas.CalendarPage(items=await calendar_store.list_calendars(uow), next_cursor=None))


@router.get("/calendars/{key}", response_model=schemas.CalendarOut, responses=problems(404))
async def get_calendar(key: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await calendar_store.get_calendar(uow, key))


# --------------------------------------------------------------------------- definitions


@router.post("/definitions", status_code=201, response_model=schemas.DefinitionOut, responses=problems(409))
async def create_definition(
    body: schemas.DefinitionIn,
    request: Request,
    p: Principal = Depends(configurers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return stored(await definitions.create_definition(uow, p, body=body, calendars=wf.calendars))

    return await rt.idempotent(request, p, action)


@router.get("/definitions", response_model=schemas.DefinitionPage, responses=problems())
async def list_definitions(
    limit: int = Limit, cursor: str | None = None, rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await definitions.list_definitions(uow, limit=limit, cursor=cursor))


@router.get("/definitions/{key}", response_model=schemas.DefinitionOut, responses=problems(404))
async def get_definition(
    key: str, version: int | None = Query(None, ge=1, le=INT32_MAX), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer((await definitions.get_definition(uow, key, version)).view())


# ----------------------------------------------------------------------------- instances


@router.post("/instances", status_code=201, response_model=schemas.InstanceOut, responses=problems(409))
async def start_instance(
    body: schemas.InstanceIn,
    request: Request,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        inst: Instance = await lifecycle.start_instance(uow, p, body=body, wf=wf)
        return stored(await queries.instance_view(uow, inst.id, wf=wf))

    return await rt.idempotent(request, p, action)


@router.get("/instances", response_model=schemas.InstancePage, responses=problems())
async def list_instances(
    status: str | None = None,
    definition: str | None = None,
    subject_id: str | None = None,
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(
            await queries.list_instances(
                uow, p, status=status, definition_key=definition, subject_id=subject_id, limit=limit, cursor=cursor
            )
        )


@router.get("/instances/{instance_id}", response_model=schemas.InstanceOut, responses=problems(404))
async def get_instance(
    instance_id: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await queries.visible_instance(uow, p, instance_id=instance_id, wf=wf))


@router.post("/instances/{instance_id}/resubmit", response_model=schemas.InstanceOut, responses=problems(404, 409, 412))
async def resubmit(
    instance_id: str,
    body: ResubmitIn | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    body = body or ResubmitIn()
    version = parse_if_match(if_match)
    async with rt.unit_of_work() as uow:
        return answer(
            await decisions.resubmit(
                uow,
                p,
                instance_id=instance_id,
                context_patch=body.context,
                comment=body.comment,
                if_match=version,
                wf=wf,
            )
        )


@router.post("/instances/{instance_id}/cancel", response_model=schemas.InstanceOut, responses=problems(404, 409, 412))
async def cancel(
    instance_id: str,
    body: CommentIn | None = None,
    if_match: str | None = IfMatch,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    comment, version = (body or CommentIn()).comment, parse_if_match(if_match)
    async with rt.unit_of_work() as uow:
        return answer(await decisions.cancel(uow, p, instance_id=instance_id, comment=comment, if_match=version, wf=wf))


@router.post(
    "/instances/{instance_id}/comments", status_code=201, response_model=schemas.CommentOut, responses=problems(404)
)
async def comment(
    instance_id: str,
    body: schemas.CommentRequired,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async with rt.unit_of_work() as uow:
        return answer(await decisions.comment(uow, p, instance_id=instance_id, text=body.comment, wf=wf), 201)


# --------------------------------------------------------------------------------- tasks


@router.get("/tasks", response_model=schemas.TaskPage, responses=problems())
async def inbox(
    assignee: str = Query("me", description="only `me`: the caller's user, roles and scopes"),
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    if assignee != "me":
        raise Invalid.on("query.assignee", "only assignee=me is supported")
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await queries.inbox(uow, p, limit=limit, cursor=cursor, wf=wf))


@router.get("/tasks/{task_id}", response_model=schemas.TaskOut, responses=problems(404))
async def get_task(
    task_id: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await queries.visible_task(uow, p, task_id=task_id, wf=wf))


async def _decide(
    task_id: str, decision: Decision, body: CommentIn | None, p: Principal, rt: Runtime, wf: Workflow
) -> Response:
    async with rt.unit_of_work() as uow:
        return answer(
            await decisions.decide(
                uow, p, task_id=task_id, decision=decision, comment=(body or CommentIn()).comment, wf=wf
            )
        )


@router.post("/tasks/{task_id}/approve", response_model=schemas.InstanceOut, responses=problems(404, 409))
async def approve(
    task_id: str,
    body: CommentIn | None = None,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    return await _decide(task_id, "approve", body, p, rt, wf)


@router.post("/tasks/{task_id}/reject", response_model=schemas.InstanceOut, responses=problems(404, 409))
async def reject(
    task_id: str,
    body: CommentIn | None = None,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    return await _decide(task_id, "reject", body, p, rt, wf)


@router.post("/tasks/{task_id}/request-changes", response_model=schemas.InstanceOut, responses=problems(404, 409))
async def request_changes(
    task_id: str,
    body: CommentIn | None = None,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    return await _decide(task_id, "request_changes", body, p, rt, wf)


@router.post("/tasks/{task_id}/delegate", response_model=schemas.TaskOut, responses=problems(404, 409))
async def delegate(
    task_id: str,
    body: schemas.DelegateIn,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async with rt.unit_of_work() as uow:
        return answer(
            await decisions.delegate(uow, p, task_id=task_id, to_user=body.to_user, comment=body.comment, wf=wf)
        )


# ------------------------------------------------------------------------------- reports


@router.get("/reports/sla", response_model=schemas.SlaReport, responses=problems())
async def sla_report(
    definition: str | None = None,
    from_: str | None = Query(None, alias="from"),
    to: str | None = None,
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    start, end = query_instant(from_, "from"), query_instant(to, "to", end=True)
    if start and end and end <= start:
        raise Invalid.on("query.to", "must be after from")
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await queries.sla_report(uow, definition_key=definition, start=start, end=end, wf=wf))
