"""Routes of a plan's versions (forecasts and scenarios, their promotion), the variance report that
compares them with the budget and the actuals, and the phasing helper."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.budget import phasing, planning_schemas, variance, versions
from services.budget.api import PLANNERS, From, To, json
from services.budget.container import Budget, domain
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)


@router.post(
    "/plans/{plan_id}/versions",
    status_code=201,
    tags=["versions"],
    response_model=planning_schemas.VersionDetail,
    responses=problems(404),
)
async def create_version(
    plan_id: str,
    body: planning_schemas.VersionIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """A forecast (actuals up to `as_of`, then the expected amounts) or a scenario (a free copy)."""
    return await rt.idempotent(request, who, lambda uow: versions.create_version(uow, who, plan_id=plan_id, body=body))


@router.get(
    "/plans/{plan_id}/versions", tags=["versions"], response_model=planning_schemas.VersionPage, responses=problems(404)
)
async def list_versions(plan_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json({"items": await versions.list_versions(uow, plan_id=plan_id)})


@router.get(
    "/plans/{plan_id}/versions/{version_id}",
    tags=["versions"],
    response_model=planning_schemas.VersionDetail,
    responses=problems(404),
)
async def get_version(
    plan_id: str,
    version_id: str,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await versions.get_version(uow, who, plan_id=plan_id, version_id=version_id))


@router.put(
    "/plans/{plan_id}/versions/{version_id}/amounts",
    tags=["versions"],
    response_model=planning_schemas.VersionDetail,
    responses=problems(404, 409),
)
async def set_amounts(
    plan_id: str,
    version_id: str,
    body: planning_schemas.VersionAmountsIn,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Set amounts of an open version (a forecast's months after `as_of` only); others stay."""
    async with rt.unit_of_work() as uow:
        view = await versions.set_amounts(uow, who, plan_id=plan_id, version_id=version_id, items=body.amounts)
    return json(view)


@router.post(
    "/plans/{plan_id}/versions/{version_id}/promote",
    tags=["versions"],
    response_model=planning_schemas.VersionDetail,
    responses=problems(404, 409),
)
async def promote(
    plan_id: str,
    version_id: str,
    body: planning_schemas.PromoteIn,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    """A scenario becomes the latest forecast; or (admins) the budget: each line's allocation is set
    to the version's amount by allocation entries, refused (409) where a cut would take money that is
    committed or spent."""
    async with rt.unit_of_work() as uow:
        view = await versions.promote(
            uow, who, postings=budget.postings, plan_id=plan_id, version_id=version_id, to=body.to
        )
    return json(view)


@router.get(
    "/plans/{plan_id}/variance", tags=["versions"], response_model=planning_schemas.VarianceOut, responses=problems(404)
)
async def plan_variance(
    plan_id: str,
    compare: str = Query("budget,forecast:latest,actual", max_length=300),
    group_by: str | None = None,
    period: str = Query(
        "month", max_length=20, description="the rows of each group: month, fiscal_quarter or fiscal_year"
    ),
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Each compared figure per line (or dimension value) and month, fiscal quarter or fiscal year, with
    its variance against the first one named, absolute and in per cent; a total per group and in all."""
    async with rt.unit_of_work(readonly=True) as uow:
        body = await variance.report(
            uow, who, plan_id=plan_id, compare=compare, group_by=group_by, start=start, end=end, interval=period
        )
    return json(body)


@router.post("/phasing", tags=["versions"], response_model=planning_schemas.PhasingOut, responses=problems())
async def phase(
    body: planning_schemas.PhasingIn,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """An annual amount spread over the twelve months: evenly, by weights, or by last year's actual
    seasonality of the line; the months add up to the amount exactly. Nothing is posted."""
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await phasing.phase(uow, who, body))
