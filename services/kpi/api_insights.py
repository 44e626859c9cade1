"""Routes of the KPI service's funnel and analysis: CRM lifecycle facts and cohort conversions.

Thin as api.py's: parse, authorize, call the domain (lifecycle.py, cohorts.py), shape the answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.kpi import cohorts, lifecycle, periods, query, schemas
from services.kpi.container import Kpi, domain
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

feeders = require_roles("mops", "partner")


@router.post("/lifecycle", response_model=schemas.LifecycleOut, responses=problems(409))
async def post_lifecycle(
    body: schemas.LifecycleIn, request: Request, p: Principal = Depends(feeders), rt: Runtime = Depends(get_runtime)
) -> Response:
    """Up to 10,000 CRM lifecycle facts (the CRM webhook sends them); an entity's repeat of a stage is a duplicate."""

    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return await lifecycle.add_facts(uow, p, items=[i.model_dump() for i in body.items])

    return await rt.idempotent(request, p, action, status_code=200)


@router.get("/cohorts", response_model=schemas.CohortOut, responses=problems())
async def get_cohorts(
    request: Request,
    from_stage: str = Query(..., description="lead, mql, sql, opportunity, won or lost"),
    to_stage: str = Query(..., description="the stage a conversion reaches"),
    period: str = Query(..., description="when the cohort reached from_stage: 2027-03, 2027-Q1, 2027, FY2027-Q1"),
    window_days: int = Query(90, description="days after from_stage within which to_stage counts (1 to 3650)"),
    group_by: list[str] = Query([], description="dimensions of the from_stage fact (channel, region, ...)"),
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> dict[str, Any]:
    """Of the entities that reached from_stage in the period: how many reached to_stage in the window, how fast."""
    return await cohorts.cohort(
        rt.unit_of_work,
        p,
        from_stage=from_stage,
        to_stage=to_stage,
        period=period,
        window_days=window_days,
        group_by=periods.parse_group_by(group_by),
        fiscal_start=kpi.fiscal_start,
        limits=kpi.cohort_limits,
        caller=request,
    )


@router.post("/query", response_model=schemas.QueryOut, responses=problems())
async def post_query(
    body: schemas.QueryIn,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> dict[str, Any]:
    """Metrics by dimensions and time in one table, for BI tools and notebooks (read-only; the series' rules)."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await query.run(uow, p, body.model_dump(), fiscal_start=kpi.fiscal_start)
