"""Routes of the KPI service's funnel and analysis: CRM lifecycle facts and cohort conversions.

Thin as api.py's: parse, authorize, call the domain (lifecycle.py, cohorts.py), shape the answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.kpi import anomalies, cohorts, export, insight_schemas, lifecycle, pathview, periods, query, schemas
from services.kpi.api import CSV_OUT, FORMAT, Format
from services.kpi.container import Kpi, domain
from shared.app import Runtime, get_runtime
from shared.db import utcnow
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.pagination import MAX_LIMIT
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

feeders = require_roles("mops", "partner")
definers = require_roles("mops")
org_definers = require_roles("mops", unscoped="An anomaly check")


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


@router.post(
    "/query",
    response_model=insight_schemas.QueryOut,
    responses={**problems(), **CSV_OUT},
)
async def post_query(
    body: insight_schemas.QueryIn,
    request: Request,
    format: Format | None = FORMAT,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> Any:
    """Metrics by dimensions and time in one table, for BI tools and notebooks (read-only; the series' rules)."""
    out = export.wanted(request, format)  # before the work: a 406 costs nothing
    async with rt.unit_of_work(readonly=True) as uow:
        answer = await query.run(
            uow, p, body.model_dump(), fiscal_start=kpi.fiscal_start, cohort_limits=kpi.cohort_limits
        )
    if out == "json":
        return answer
    versions = export.versions_of((c for c in answer["columns"] if c["kind"] == "metric"), "name")
    headers = {"X-Metric-Versions": versions, "X-Truncated": "true" if answer["truncated"] else "false"}
    return export.file_response(export.query_table(answer), out, "query", headers)


@router.get("/anomalies", response_model=insight_schemas.AnomaliesOut, responses=problems())
async def list_anomalies(
    metric: str | None = None,
    status: Literal["open", "dismissed", "all"] = "open",
    since: dt.date | None = Query(None, description="the first day to list"),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    """The anomalies the daily check found, newest day first (groups within the caller's scopes)."""
    async with rt.unit_of_work(readonly=True) as uow:
        items = await anomalies.list_anomalies(uow, p, metric=metric, status=status, since=since, limit=limit)
    return {"items": items}


@router.post("/anomalies/{anomaly_id}/dismiss", response_model=insight_schemas.AnomalyOut, responses=problems(404))
async def dismiss_anomaly(
    anomaly_id: str,
    body: insight_schemas.DismissIn | None = None,
    p: Principal = Depends(definers),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    """A false alarm: dismissed and remembered (the check will not raise that metric, group and day again)."""
    async with rt.unit_of_work() as uow:
        return await anomalies.dismiss(uow, p, anomaly_id=anomaly_id, note=(body or insight_schemas.DismissIn()).note)


@router.post("/anomalies/check", response_model=insight_schemas.AnomalyCheckOut, responses=problems(404))
async def check_anomalies(
    body: insight_schemas.AnomalyCheckIn | None = None,
    p: Principal = Depends(org_definers),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> dict[str, Any]:
    """Run the daily check now, for a day (default: yesterday, UTC); it also runs periodically."""
    day = (body.day if body and body.day else None) or utcnow().date() - dt.timedelta(days=1)
    async with rt.unit_of_work() as uow:
        return {"detected": await anomalies.check_day(uow, day=day, cfg=kpi.anomaly)}


@router.get("/journeys/{journey_id}", response_model=insight_schemas.JourneyOut, responses=problems(404))
async def get_journey(
    journey_id: str,
    request: Request,
    lookback_days: int = Query(90, ge=1, le=3650),
    half_life_days: float = Query(7.0, ge=0.01, le=3650),
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> dict[str, Any]:
    """A journey's path view: each conversion, its touchpoints and the credit every model gives each."""
    return await pathview.view(
        rt.unit_of_work,
        p,
        journey_id,
        lookback_days=lookback_days,
        half_life_days=half_life_days,
        seconds=kpi.attribution_limits.seconds,
        caller=request,
    )
