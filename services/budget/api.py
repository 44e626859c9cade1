"""Routes of the budget service: parse, authorize, call the domain, shape the answer. Plans and
lines are here; postings in api_ledger.py, what arrives from elsewhere in api_integrations.py.

Role rules (admin always may): plans, lines, allocations, transfers, period close,
FX rates, import and reversals by mops and finance; commitments and actuals also by
marketers (within their scopes) and partners (ERP); approve/release by finance;
every authenticated caller may read what its scopes cover; analysts never write.

Every route documents its answer (`schemas`) and its problems; answers are the domain's views,
encoded as they always were (reads through `json`, writes through the idempotency wrapper).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from services.budget import (
    lines,
    plans,
    reports,
    schemas,
)
from shared.app import Runtime, get_runtime
from shared.errors import Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

PLANNERS = ("mops", "finance")
SPENDERS = ("mops", "finance", "marketer", "partner")
APPROVERS = ("finance",)
ERP = ("partner", "finance")

Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
From = Query(None, alias="from")
To = Query(None, alias="to")
CSV = {"text/csv": {"schema": {"type": "string"}}}


def json(body: Any, version: int | None = None, status_code: int = 200) -> Response:
    """A read's answer as FastAPI encodes a returned dict (with the ETag of a versioned resource)."""
    headers = {"ETag": f'"{version}"'} if version is not None else None
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


# ---------------------------------------------------------------- plans


@router.post("/plans", status_code=201, tags=["plans"], response_model=schemas.PlanOut, responses=problems(409))
async def create_plan(
    body: schemas.PlanIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda uow: plans.create_plan(uow, who, **dict(body)))


@router.get("/plans", tags=["plans"], response_model=schemas.PlanPage, responses=problems())
async def list_plans(
    limit: int = Limit,
    cursor: str | None = None,
    status: str | None = None,
    fiscal_year: int | None = Query(None, ge=2000, le=2100),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        items, nxt = await plans.list_plans(uow, limit=limit, cursor=cursor, status=status, fiscal_year=fiscal_year)
    return json({"items": items, "next_cursor": nxt})


@router.get("/plans/{plan_id}", tags=["plans"], response_model=schemas.PlanDetail, responses=problems(404))
async def get_plan(plan_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        view = plans.plan_view(await plans.get_plan(uow, plan_id))
        view["closed_periods"] = await plans.closed_periods_of(uow, plan_id)
    return json(view, view["version"])


@router.patch(
    "/plans/{plan_id}", tags=["plans"], response_model=schemas.PlanOut, responses=problems(404, 409, 412, 428)
)
async def patch_plan(
    plan_id: str,
    body: schemas.PlanPatch,
    if_match: str | None = Header(None),
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    expected = parse_if_match(if_match, required=True, what="plan")
    assert expected is not None
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    for key in ("name", "overspend_policy", "fiscal_year_start", "control_period"):
        if key in changes and changes[key] is None:
            raise Invalid.on(key, "may not be null")
    async with rt.unit_of_work() as uow:
        view = await plans.update_plan(uow, who, plan_id=plan_id, expected_version=expected, changes=changes)
    return json(view, view["version"])


@router.post("/plans/{plan_id}/activate", tags=["plans"], response_model=schemas.PlanOut, responses=problems(404, 409))
async def activate_plan(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: plans.activate_plan(uow, who, plan_id=plan_id), status_code=200
    )


@router.post("/plans/{plan_id}/close", tags=["plans"], response_model=schemas.PlanOut, responses=problems(404, 409))
async def close_plan(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda uow: plans.close_plan(uow, who, plan_id=plan_id), status_code=200)


@router.post(
    "/plans/{plan_id}/periods/{period}/close",
    tags=["plans"],
    response_model=schemas.ClosedPeriodOut,
    responses=problems(404, 409),
)
async def close_period(
    plan_id: str,
    period: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: plans.close_period(uow, who, plan_id=plan_id, period=period), status_code=200
    )


@router.get("/plans/{plan_id}/summary", tags=["plans"], response_model=schemas.Summary, responses=problems(404))
async def plan_summary(
    plan_id: str,
    group_by: str | None = Query(None, pattern="^(region|channel|campaign|cost_center|owner)$"),
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.summary(uow, who, plan_id=plan_id, group_by=group_by, start=start, end=end))


# ---------------------------------------------------------------- lines


@router.post(
    "/plans/{plan_id}/lines",
    status_code=201,
    tags=["lines"],
    response_model=schemas.LineOut,
    responses=problems(404, 409),
)
async def create_line(
    plan_id: str,
    body: schemas.LineIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    data = dict(body)
    data["dimensions"] = body.dimensions.model_dump(exclude_none=True)
    return await rt.idempotent(request, who, lambda uow: lines.create_line(uow, who, plan_id=plan_id, **data))


@router.get("/plans/{plan_id}/lines", tags=["lines"], response_model=schemas.LineTree, responses=problems(404))
async def line_tree(
    plan_id: str,
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.tree(uow, who, plan_id=plan_id, start=start, end=end))


@router.get("/lines/{line_id}", tags=["lines"], response_model=schemas.LineDetail, responses=problems(404))
async def get_line(
    line_id: str, who: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.line_detail(uow, who, line_id=line_id))


@router.get("/lines/{line_id}/balance", tags=["lines"], response_model=schemas.LineBalance, responses=problems(404))
async def line_balance(
    line_id: str,
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.line_balance(uow, who, line_id=line_id, start=start, end=end))


@router.get("/lines/{line_id}/entries", tags=["lines"], response_model=schemas.EntryPage, responses=problems(404))
async def line_entries(
    line_id: str,
    limit: int = Limit,
    cursor: str | None = None,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        items, nxt = await reports.line_entries(uow, who, line_id=line_id, limit=limit, cursor=cursor)
    return json({"items": items, "next_cursor": nxt})
