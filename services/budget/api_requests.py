"""Routes of bottom-up requests: a line owner asks for money per line and month, the workflow approves."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.budget import planning_schemas, requests
from services.budget.api import Limit, json
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

REQUESTERS = ("mops", "finance", "marketer")  # line owners


@router.post(
    "/requests",
    status_code=201,
    tags=["requests"],
    response_model=planning_schemas.RequestOut,
    responses=problems(409),
)
async def submit_request(
    body: planning_schemas.RequestIn,
    request: Request,
    who: Principal = Depends(require_roles(*REQUESTERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Ask for money per line and month of a plan, with a justification: `pending_approval` until the
    workflow decides (budget.request.submitted starts its approval); approval allocates the amounts."""
    return await rt.idempotent(request, who, lambda uow: requests.submit(uow, who, body=body))


@router.get("/requests", tags=["requests"], response_model=planning_schemas.RequestPage, responses=problems())
async def list_requests(
    plan_id: str | None = None,
    status: planning_schemas.RequestStatus | None = None,
    mine: bool = False,
    limit: int = Limit,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Newest first, within the caller's scopes (`mine=true`: only the caller's own)."""
    async with rt.unit_of_work(readonly=True) as uow:
        items = await requests.list_requests(uow, who, plan_id=plan_id, status=status, mine=mine, limit=limit)
    return json({"items": items})


@router.get(
    "/requests/{request_id}", tags=["requests"], response_model=planning_schemas.RequestOut, responses=problems(404)
)
async def get_request(
    request_id: str, who: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> Response:
    """A request with its items (and the allocation each approval posted), status and history."""
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await requests.get_request(uow, who, request_id=request_id))
