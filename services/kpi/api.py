"""Routes of the kpi service: parse, authorize, call the domain, shape the answer."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.kpi import attribution, ingest, metrics
from services.kpi.ingest import Ingestor
from services.kpi.schemas import ConversionsIn, MeasurementsIn, MetricIn, MetricPut, RebuildIn, TargetIn, TouchpointsIn
from shared.app import Runtime, get_runtime
from shared.bounds import INT32_MAX, within
from shared.db import utcnow
from shared.errors import Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

definers = require_roles("mops")  # admin always may
# Definitions, rollups and journeys carry no dimensions: they reach every scope.
org_definers = require_roles("mops", unscoped="A metric definition, a rollup rebuild or a target check")
journey_feeders = require_roles("mops", "partner", unscoped="A touchpoint (journeys carry no dimensions)")
feeders = require_roles("mops", "partner")
quality_readers = require_roles("mops", "analyst")


def _ingestor(rt: Runtime) -> Ingestor:
    return rt.extras["ingestor"]


# ---------------------------------------------------------------- metric definitions


@router.post("/metrics", status_code=201)
async def create_metric(
    body: MetricIn, request: Request, p: Principal = Depends(org_definers), rt: Runtime = Depends(get_runtime)
):
    async def action(s: AsyncSession) -> dict[str, Any]:
        return (await metrics.create_definition(s, body.model_dump(), p)).as_dict()

    return await rt.idempotent(request, p, action)


@router.get("/metrics")
async def list_metrics(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None, rt: Runtime = Depends(get_runtime)
):
    async with rt.transaction(readonly=True) as s:
        items, nxt = await metrics.list_definitions(s, limit, cursor)
    return {"items": [d.as_dict() for d in items], "next_cursor": nxt}


@router.get("/metrics/{key}")
async def get_metric(
    key: str, version: int | None = Query(None, ge=1, le=INT32_MAX), rt: Runtime = Depends(get_runtime)
):
    async with rt.transaction(readonly=True) as s:
        d = await metrics.get_definition(s, key, version)
    return JSONResponse(d.as_dict(), headers={"ETag": f'"{d.version}"'})


@router.get("/metrics/{key}/versions")
async def metric_versions(key: str, rt: Runtime = Depends(get_runtime)):
    async with rt.transaction(readonly=True) as s:
        return {"items": [d.as_dict() for d in await metrics.list_versions(s, key)], "next_cursor": None}


@router.put("/metrics/{key}")
async def put_metric(
    key: str,
    body: MetricPut,
    p: Principal = Depends(org_definers),
    if_match: str | None = Header(None),
    rt: Runtime = Depends(get_runtime),
):
    version = parse_if_match(if_match)
    async with rt.transaction() as s:
        d = await metrics.update_definition(s, key, body.model_dump(), p, version)
    return JSONResponse(d.as_dict(), headers={"ETag": f'"{d.version}"'})


@router.get("/metrics/{key}/series")
async def metric_series(
    key: str,
    from_: dt.date = Query(..., alias="from"),
    to: dt.date = Query(...),
    grain: Literal["day", "week", "month", "quarter"] = "month",
    group_by: list[str] = Query([]),
    filter: list[str] = Query([]),
    tz: str = "UTC",
    version: int | None = Query(None, ge=1, le=INT32_MAX),
    read_from: Literal["auto", "rollup", "raw"] = "auto",
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
):
    groups = metrics.parse_group_by(group_by)
    flt = metrics.parse_filter(filter)
    async with rt.transaction(readonly=True) as s:
        return await metrics.series(
            s,
            key,
            start=from_,
            end=to,
            grain=grain,
            group_by=groups,
            flt=flt,
            tz=tz,
            principal=p,
            version=version,
            read_from=read_from,
        )


# ---------------------------------------------------------------- measurements


async def _ingest(request: Request, p: Principal, rt: Runtime, items: list[Any]) -> Any:
    ing = _ingestor(rt)
    if request.headers.get("Idempotency-Key") is None:
        result = await ing.ingest(rt.db, items, p, default_source=p.subject)
        return result.as_dict()
    if len(items) > ingest.MAX_BATCH:
        raise Invalid.on("items", f"at most {ingest.MAX_BATCH:,} measurements per batch")
    rows, rejected = ing.validate(items, p, default_source=p.subject)

    async def action(s: AsyncSession) -> dict[str, Any]:
        return (await ing.write(s, rows, rejected)).as_dict()

    return await rt.idempotent(request, p, action, status_code=200)


@router.post("/measurements")
async def post_measurements(
    body: MeasurementsIn, request: Request, p: Principal = Depends(feeders), rt: Runtime = Depends(get_runtime)
):
    """Up to 10,000 measurements; answers accepted, duplicates and the rejected items with reasons."""
    return await _ingest(request, p, rt, body.items)


@router.post(
    "/measurements/import",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}},
)
async def import_measurements(request: Request, p: Principal = Depends(feeders), rt: Runtime = Depends(get_runtime)):
    """CSV with columns type, value, time, [source, external_id]; every other column is a dimension."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("text/csv", "application/csv"):
        raise Invalid.on("header.Content-Type", "must be text/csv")
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid.on("body", "the CSV must be UTF-8") from None
    items = ingest.csv_items(text)
    if not items:
        raise Invalid.on("body", "the CSV has no data rows")
    return await _ingest(request, p, rt, items)


@router.post("/rollups/rebuild")
async def rebuild(
    body: RebuildIn | None = None,
    p: Principal = Depends(require_roles(unscoped="A rollup rebuild")),
    rt: Runtime = Depends(get_runtime),
):
    """Recompute daily rollups from raw measurements (admin only)."""
    body = body or RebuildIn()
    first = None if body.from_ is None else (body.from_ - ingest.EPOCH).days
    last = None if body.to is None else (body.to - ingest.EPOCH).days
    async with rt.transaction() as s:
        rows = await ingest.rebuild_rollups(s, types=body.types, from_day=first, to_day=last)
    return {"rollup_rows": rows}


@router.get("/quality")
async def quality(
    since: dt.datetime | None = None,
    limit: int = Query(200, ge=1, le=MAX_LIMIT),
    p: Principal = Depends(quality_readers),
    rt: Runtime = Depends(get_runtime),
):
    """Rejected measurements, duplicates dropped, late arrivals and first-seen values (default: 7 days)."""
    if since is not None and since.tzinfo is None:
        raise Invalid.on("query.since", "needs a UTC offset (e.g. 2027-03-01T00:00:00Z)")
    if since is not None:
        within(since, "query.since")
    since = since or utcnow() - dt.timedelta(days=rt.settings.quality_window_days)
    async with rt.transaction(readonly=True) as s:
        defs = await metrics.latest_definitions(s)
        known = {d.measurement_type for d in defs.values() if d.measurement_type}
        return await ingest.quality_report(s, since, known, limit)


# ---------------------------------------------------------------- targets and scorecard


@router.post("/targets", status_code=201)
async def create_target(
    body: TargetIn, request: Request, p: Principal = Depends(definers), rt: Runtime = Depends(get_runtime)
):
    async def action(s: AsyncSession) -> dict[str, Any]:
        return await metrics.create_target(s, body.model_dump(), p)

    return await rt.idempotent(request, p, action)


@router.get("/targets")
async def list_targets(
    metric: str | None = None,
    period: str | None = None,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
):
    async with rt.transaction(readonly=True) as s:
        items, nxt = await metrics.list_targets(s, p, metric=metric, period=period, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/targets/{target_id}")
async def get_target(target_id: str, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)):
    async with rt.transaction(readonly=True) as s:
        item = await metrics.get_target(s, target_id, p)
    return item


@router.post("/targets/evaluate")
async def evaluate_targets(p: Principal = Depends(org_definers), rt: Runtime = Depends(get_runtime)):
    """Run the at-risk check now (it also runs periodically)."""
    published = await metrics.evaluate_targets(rt.db, rt.outbox, utcnow(), rt.settings.target_min_elapsed)
    return {"published": published}


@router.get("/scorecard")
async def scorecard(
    metrics_: str = Query(..., alias="metrics"),
    period: str = Query(...),
    filter: list[str] = Query([]),
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
):
    keys = metrics.parse_group_by([metrics_], "query.metrics") if metrics_ else []
    if not keys:
        raise Invalid.on("query.metrics", "name at least one metric, e.g. metrics=cpl,roi")
    flt = metrics.parse_filter(filter)
    async with rt.transaction(readonly=True) as s:
        return await metrics.scorecard(s, keys, period, flt, p, utcnow())


# ---------------------------------------------------------------- attribution


@router.post("/touchpoints", status_code=201)
async def post_touchpoints(
    body: TouchpointsIn, request: Request, p: Principal = Depends(journey_feeders), rt: Runtime = Depends(get_runtime)
):
    async def action(s: AsyncSession) -> dict[str, Any]:
        return {"accepted": await attribution.add_touchpoints(s, [i.model_dump() for i in body.items])}

    return await rt.idempotent(request, p, action)


@router.post("/conversions", status_code=201)
async def post_conversions(
    body: ConversionsIn, request: Request, p: Principal = Depends(feeders), rt: Runtime = Depends(get_runtime)
):
    async def action(s: AsyncSession) -> dict[str, Any]:
        return {"accepted": await attribution.add_conversions(s, [i.model_dump() for i in body.items], p)}

    return await rt.idempotent(request, p, action)


@router.get("/attribution")
async def get_attribution(
    request: Request,
    model: str = "linear",
    from_: dt.date = Query(..., alias="from"),
    to: dt.date = Query(...),
    half_life_days: float = Query(7.0, ge=0.01, le=3650),
    lookback_days: int = Query(90, ge=1, le=3650),
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
):
    st = rt.settings
    limits = attribution.Limits(
        st.attribution_max_conversions, st.attribution_max_touchpoints, st.attribution_max_steps, st.attribution_seconds
    )
    attribution.check_query(model, from_, to, half_life_days)
    async with rt.transaction(readonly=True) as s:
        journeys = await attribution.load(s, from_, to, lookback_days, p, limits)
    return await attribution.report(
        journeys,
        model,
        from_,
        to,
        half_life_days=half_life_days,
        lookback_days=lookback_days,
        limits=limits,
        caller=request,
    )
