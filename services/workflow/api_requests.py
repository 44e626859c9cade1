"""Routes of request types and requests.

Request types are written by admin and mops (no scope may narrow them: a type serves every
region); marketers, mops and admins submit requests; every role reads, each request seen only by
its requester, its current assignees and those whose scopes cover its data. Deliverables and
suppliers have their routes in `api_deliverables`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.workflow import comments, intake, request_page, work_requests
from services.workflow.api import Limit, answer, configurers, staff, stored, writers
from services.workflow.container import Workflow, domain
from services.workflow.events import InstanceStatus
from services.workflow.request_schemas import (
    RequestCommentIn,
    RequestCommentOut,
    RequestIn,
    RequestOut,
    RequestPage,
    RequestTypeIn,
    RequestTypeOut,
    RequestTypePage,
)
from shared.app import Runtime, get_runtime
from shared.bounds import INT32_MAX
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(staff)], route_class=JsonRoute)

submitters = require_roles("marketer", "mops")


@router.post("/request-types", status_code=201, response_model=RequestTypeOut, responses=problems(409))
async def create_request_type(
    body: RequestTypeIn, request: Request, p: Principal = Depends(configurers), rt: Runtime = Depends(get_runtime)
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return stored(await intake.create_request_type(uow, p, body=body))

    return await rt.idempotent(request, p, action)


@router.get("/request-types", response_model=RequestTypePage, responses=problems())
async def list_request_types(
    limit: int = Limit, cursor: str | None = None, rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await intake.list_request_types(uow, limit=limit, cursor=cursor))


@router.get("/request-types/{key}", response_model=RequestTypeOut, responses=problems(404))
async def get_request_type(
    key: str, version: int | None = Query(None, ge=1, le=INT32_MAX), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer((await intake.get_request_type(uow, key, version)).view())


@router.post("/requests", status_code=201, response_model=RequestOut, responses=problems(409))
async def submit_request(
    body: RequestIn,
    request: Request,
    p: Principal = Depends(submitters),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        request_id = await work_requests.submit(uow, p, body=body, wf=wf)
        return stored(await request_page.view(uow, p, ref=request_id, wf=wf))

    return await rt.idempotent(request, p, action)


@router.get("/requests", response_model=RequestPage, responses=problems())
async def list_requests(
    type: str | None = Query(None, max_length=100, description="a request type's key"),
    status: InstanceStatus | None = Query(None, description="the status of the request's instance"),
    mine: bool = Query(False, description="only the caller's own requests"),
    limit: int = Limit,
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(
            await work_requests.list_requests(
                uow, p, type_key=type, status=status, mine=mine, limit=limit, cursor=cursor
            )
        )


@router.get("/requests/{ref}", response_model=RequestOut, responses=problems(404))
async def get_request(
    ref: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """A request by its id or its number (REQ-2027-000123): its page of truth (fields, workflow,
    approvals, deliverables, comments, history)."""
    async with rt.unit_of_work(readonly=True) as uow:
        return answer(await request_page.view(uow, p, ref=ref, wf=wf))


@router.post("/requests/{ref}/comments", status_code=201, response_model=RequestCommentOut, responses=problems(404))
async def comment_on_request(
    ref: str,
    body: RequestCommentIn,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """A comment on the request; `@user` mentions that user (in the `workflow.request.commented` event)."""
    async with rt.unit_of_work() as uow:
        return answer(await comments.add(uow, p, ref=ref, body=body.body), 201)
