"""Routes of the workflow service: parse, authorize, call the domain, shape the answer.

Roles: calendars and definitions are written by admin and mops; any role but analyst
may start instances and act on tasks, and the engine then checks that the caller holds
a seat of the task (403 otherwise) and is not the requester (four eyes).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request

from services.workflow.engine import Engine, definition_view
from services.workflow.schemas import (
    CalendarIn,
    CommentIn,
    CommentRequired,
    DefinitionIn,
    DelegateIn,
    InstanceIn,
    ResubmitIn,
)
from shared.app import Runtime, get_runtime
from shared.bounds import INT32_MAX, within
from shared.errors import Invalid, NotFound
from shared.http import JsonRoute, parse_if_match
from shared.identity import ROLES, Principal, current_principal, require_roles
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

configurers = require_roles("mops", unscoped="A calendar or definition")
writers = require_roles(*(r for r in ROLES if r != "analyst"))
Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


def engine_of(runtime: Runtime) -> Engine:
    """The service's one Engine (its calendar cache lives as long as the process)."""
    engine = runtime.extras.get("engine")
    if engine is None:
        engine = runtime.extras["engine"] = Engine(runtime)
    return engine


async def get_engine(rt: Runtime = Depends(get_runtime)) -> Engine:
    return engine_of(rt)


def _instant(value: str | None, field: str, *, end: bool = False) -> dt.datetime | None:
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


@router.post("/calendars", status_code=201)
async def create_calendar(
    body: CalendarIn,
    request: Request,
    p: Principal = Depends(configurers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    return await rt.idempotent(request, p, lambda s: engine.create_calendar(s, body.model_dump(), p.subject))


@router.get("/calendars")
async def list_calendars(rt: Runtime = Depends(get_runtime), engine: Engine = Depends(get_engine)):
    async with rt.transaction(readonly=True) as s:
        return {"items": await engine.list_calendars(s), "next_cursor": None}


@router.get("/calendars/{key}")
async def get_calendar(key: str, rt: Runtime = Depends(get_runtime), engine: Engine = Depends(get_engine)):
    async with rt.transaction(readonly=True) as s:
        return await engine.get_calendar_view(s, key)


# --------------------------------------------------------------------------- definitions


@router.post("/definitions", status_code=201)
async def create_definition(
    body: DefinitionIn,
    request: Request,
    p: Principal = Depends(configurers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    doc = body.model_dump(mode="json")
    return await rt.idempotent(request, p, lambda s: engine.create_definition(s, doc, p.subject))


@router.get("/definitions")
async def list_definitions(
    limit: int = Limit,
    cursor: str | None = None,
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction(readonly=True) as s:
        items, nxt = await engine.list_definitions(s, limit, cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/definitions/{key}")
async def get_definition(
    key: str,
    version: int | None = Query(None, ge=1, le=INT32_MAX),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction(readonly=True) as s:
        return definition_view(await engine.get_definition(s, key, version))


# ----------------------------------------------------------------------------- instances


@router.post("/instances", status_code=201)
async def start_instance(
    body: InstanceIn,
    request: Request,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async def action(s: Any) -> dict[str, Any]:
        try:
            definition = await engine.get_definition(s, body.definition_key, body.definition_version)
        except NotFound as exc:  # an unknown key in the body is a 422 naming the field
            raise Invalid.on(
                "definition_key",
                f"no definition {body.definition_key!r}"
                + (f" version {body.definition_version}" if body.definition_version else ""),
            ) from exc
        if not p.may_see(body.context):
            raise Invalid.on("context", "is outside your scopes")
        inst = await engine.start(s, definition, body.subject.model_dump(), body.context, p.subject, p.request_id)
        return await engine.instance_view(s, inst["id"])

    return await rt.idempotent(request, p, action)


@router.get("/instances")
async def list_instances(
    status: str | None = None,
    definition: str | None = None,
    subject_id: str | None = None,
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction(readonly=True) as s:
        items, nxt = await engine.list_instances(
            s, p, status=status, definition_key=definition, subject_id=subject_id, limit=limit, cursor=cursor
        )
    return {"items": items, "next_cursor": nxt}


@router.get("/instances/{instance_id}")
async def get_instance(
    instance_id: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction(readonly=True) as s:
        await engine.ensure_visible(s, await engine.get_instance_row(s, instance_id), p)
        return await engine.instance_view(s, instance_id)


@router.post("/instances/{instance_id}/resubmit")
async def resubmit(
    instance_id: str,
    body: ResubmitIn | None = None,
    if_match: str | None = Header(None),
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    body = body or ResubmitIn()
    async with rt.transaction() as s:
        return await engine.resubmit(s, instance_id, p, body.context, body.comment, parse_if_match(if_match))


@router.post("/instances/{instance_id}/cancel")
async def cancel(
    instance_id: str,
    body: CommentIn | None = None,
    if_match: str | None = Header(None),
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction() as s:
        return await engine.cancel(s, instance_id, p, (body or CommentIn()).comment, parse_if_match(if_match))


@router.post("/instances/{instance_id}/comments", status_code=201)
async def comment(
    instance_id: str,
    body: CommentRequired,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction() as s:
        return await engine.comment(s, instance_id, p, body.comment)


# --------------------------------------------------------------------------------- tasks


@router.get("/tasks")
async def inbox(
    assignee: str = Query("me", description="only `me`: the caller's user, roles and scopes"),
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    if assignee != "me":
        raise Invalid.on("query.assignee", "only assignee=me is supported")
    async with rt.transaction(readonly=True) as s:
        items, nxt = await engine.inbox(s, p, limit, cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/tasks/{task_id}")
async def get_task(
    task_id: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction(readonly=True) as s:
        task, inst = await engine.get_task(s, task_id)
        await engine.ensure_visible(s, inst, p)
        return await engine.task_view(s, task, inst, dt.datetime.now(dt.UTC))


async def _decide(
    task_id: str, decision: str, body: CommentIn | None, p: Principal, rt: Runtime, engine: Engine
) -> dict[str, Any]:
    async with rt.transaction() as s:
        return await engine.decide(s, task_id, p, decision, (body or CommentIn()).comment)


@router.post("/tasks/{task_id}/approve")
async def approve(
    task_id: str,
    body: CommentIn | None = None,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    return await _decide(task_id, "approve", body, p, rt, engine)


@router.post("/tasks/{task_id}/reject")
async def reject(
    task_id: str,
    body: CommentIn | None = None,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    return await _decide(task_id, "reject", body, p, rt, engine)


@router.post("/tasks/{task_id}/request-changes")
async def request_changes(
    task_id: str,
    body: CommentIn | None = None,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    return await _decide(task_id, "request_changes", body, p, rt, engine)


@router.post("/tasks/{task_id}/delegate")
async def delegate(
    task_id: str,
    body: DelegateIn,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    async with rt.transaction() as s:
        return await engine.delegate(s, task_id, p, body.to_user, body.comment)


# ------------------------------------------------------------------------------- reports


@router.get("/reports/sla")
async def sla_report(
    definition: str | None = None,
    from_: str | None = Query(None, alias="from"),
    to: str | None = None,
    rt: Runtime = Depends(get_runtime),
    engine: Engine = Depends(get_engine),
):
    start, end = _instant(from_, "from"), _instant(to, "to", end=True)
    if start and end and end <= start:
        raise Invalid.on("query.to", "must be after from")
    async with rt.transaction(readonly=True) as s:
        return await engine.sla_report(s, definition, start, end)
