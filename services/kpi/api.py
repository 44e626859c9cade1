"""Routes of the KPI service: parse, authorize, call the domain, shape the answer."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from services.kpi import attribution, definitions, export, ingest, journeys, periods, rollups, schemas, series, targets
from services.kpi.container import Kpi, domain
from services.kpi.quality import report as quality_report
from services.kpi.values import EPOCH
from shared.app import Runtime, get_runtime
from shared.bounds import INT32_MAX, within
from shared.db import utcnow
from shared.errors import Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

definers = require_roles("mops")  # admin always may
# Definitions, rollups and journeys carry no dimensions: they reach every scope.
org_definers = require_roles("mops", unscoped="A metric definition, a rollup rebuild or a target check")
journey_feeders = require_roles("mops", "partner", unscoped="A touchpoint (journeys carry no dimensions)")
feeders = require_roles("mops", "partner")
quality_readers = require_roles("mops", "analyst")
CSV_BODY = {"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}}
CSV_OUT: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            export.PARQUET: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": (
            "JSON, CSV (format=csv or Accept: text/csv) or Parquet (format=parquet or Accept: "
            "application/vnd.apache.parquet), the metric versions in the file (docs/kpi.md#data-out)"
        ),
    }
}
Format = Literal["json", "csv", "parquet"]
FORMAT = Query(None, description="json, csv or parquet; without it, Accept: text/csv or application/vnd.apache.parquet")


def _with_etag(d: definitions.Definition) -> JSONResponse:
    return JSONResponse(d.as_dict(), headers={"ETag": f'"{d.version}"'})


# ---------------------------------------------------------------- metric definitions


@router.post("/metrics", status_code=201, response_model=schemas.DefinitionOut, responses=problems(409))
async def create_metric(
    body: schemas.MetricIn, request: Request, p: Principal = Depends(org_definers), rt: Runtime = Depends(get_runtime)
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return (await definitions.create_definition(uow, p, spec=body.model_dump())).as_dict()

    return await rt.idempotent(request, p, action)


@router.get("/metrics", response_model=schemas.DefinitionPage, responses=problems())
async def list_metrics(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None, rt: Runtime = Depends(get_runtime)
) -> dict[str, Any]:
    async with rt.unit_of_work(readonly=True) as uow:
        items, nxt = await definitions.list_definitions(uow, limit=limit, cursor=cursor)
    return {"items": [d.as_dict() for d in items], "next_cursor": nxt}


@router.get("/metrics/{key}", response_model=schemas.DefinitionOut, responses=problems(404))
async def get_metric(
    key: str, version: int | None = Query(None, ge=1, le=INT32_MAX), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        d = await definitions.get_definition(uow, key, version)
    return _with_etag(d)


@router.get("/metrics/{key}/versions", response_model=schemas.DefinitionPage, responses=problems(404))
async def metric_versions(key: str, rt: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    async with rt.unit_of_work(readonly=True) as uow:
        return {"items": [d.as_dict() for d in await definitions.list_versions(uow, key)], "next_cursor": None}


@router.put("/metrics/{key}", response_model=schemas.DefinitionOut, responses=problems(404, 412))
async def put_metric(
    key: str,
    body: schemas.MetricPut,
    p: Principal = Depends(org_definers),
    if_match: str | None = Header(None),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    version = parse_if_match(if_match)
    async with rt.unit_of_work() as uow:
        d = await definitions.update_definition(uow, p, key=key, spec=body.model_dump(), if_match=version)
    return _with_etag(d)


@router.get(
    "/metrics/{key}/series",
    response_model=schemas.SeriesOut,
    response_model_exclude_unset=True,
    responses={**problems(404), **CSV_OUT},
)
async def metric_series(
    request: Request,
    key: str,
    from_: dt.date = Query(..., alias="from"),
    to: dt.date = Query(...),
    grain: Literal["day", "week", "month", "quarter", "fiscal_quarter", "fiscal_year"] = "month",
    group_by: list[str] = Query([]),
    filter: list[str] = Query([]),
    tz: str = "UTC",
    version: int | None = Query(None, ge=1, le=INT32_MAX),
    read_from: Literal["auto", "rollup", "raw"] = "auto",
    compare: list[str] = Query([], description="previous_period, last_year (comma-separated or repeated)"),
    cumulative: Literal["month_to_date", "quarter_to_date", "year_to_date", "fiscal_year_to_date", "trailing"]
    | None = Query(None, description="each bucket's value to its last day: since the period's start, or trailing_days"),
    trailing_days: int = Query(90, ge=1, le=366, description="with cumulative=trailing: the days up to a bucket's end"),
    format: Format | None = FORMAT,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> Any:
    groups = periods.parse_group_by(group_by)
    flt = periods.parse_filter(filter)
    compares = periods.parse_compare(compare)
    async with rt.unit_of_work(readonly=True) as uow:
        answer = await series.series(
            uow,
            p,
            key=key,
            start=from_,
            end=to,
            grain=grain,
            group_by=groups,
            flt=flt,
            tz=tz,
            version=version,
            read_from=read_from,
            fiscal_start=kpi.fiscal_start,
            compare=compares,
            cumulative=cumulative,
            trailing_days=trailing_days,
            cohort_limits=kpi.cohort_limits,
        )
    out = export.wanted(request, format)
    if out == "json":
        return answer
    used = str(answer["version"])  # the definition version the values were computed with
    headers = {"X-Metric": key, "X-Metric-Version": used}
    if cumulative:
        headers["X-Cumulative"] = cumulative if cumulative != "trailing" else f"trailing {trailing_days} days"
    table = export.series_table(answer, groups, compares)
    return export.file_response(table, out, f"{key}-v{used}-{grain}", headers)


# ---------------------------------------------------------------- measurements


async def _ingest(request: Request, p: Principal, rt: Runtime, kpi: Kpi, items: list[Any]) -> Any:
    ing = kpi.ingestor
    if request.headers.get("Idempotency-Key") is None:
        result = await ing.ingest(rt.db, p, items=items, default_source=p.subject)
        return result.as_dict()
    if len(items) > ingest.MAX_BATCH:
        raise Invalid.on("items", f"at most {ingest.MAX_BATCH:,} measurements per batch")
    rows, rejected = ing.validate(items, p, default_source=p.subject)

    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return (await ing.write(uow, rows, rejected)).as_dict()

    return await rt.idempotent(request, p, action, status_code=200)


@router.post("/measurements", response_model=schemas.IngestOut, responses=problems(409))
async def post_measurements(
    body: schemas.MeasurementsIn,
    request: Request,
    p: Principal = Depends(feeders),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> Any:
    """Up to 10,000 measurements; answers accepted, duplicates and the rejected items with reasons."""
    return await _ingest(request, p, rt, kpi, body.items)


@router.post("/measurements/import", response_model=schemas.IngestOut, responses=problems(409), openapi_extra=CSV_BODY)
async def import_measurements(
    request: Request, p: Principal = Depends(feeders), rt: Runtime = Depends(get_runtime), kpi: Kpi = Depends(domain)
) -> Any:
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
    return await _ingest(request, p, rt, kpi, items)


@router.post("/rollups/rebuild", response_model=schemas.RebuildOut, responses=problems())
async def rebuild(
    body: schemas.RebuildIn | None = None,
    p: Principal = Depends(require_roles(unscoped="A rollup rebuild")),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    """Recompute daily rollups from raw measurements (admin only)."""
    body = body or schemas.RebuildIn()
    first = None if body.from_ is None else (body.from_ - EPOCH).days
    last = None if body.to is None else (body.to - EPOCH).days
    async with rt.unit_of_work() as uow:
        rows = await rollups.rebuild_rollups(uow, types=body.types, from_day=first, to_day=last)
    return {"rollup_rows": rows}


@router.get("/quality", response_model=schemas.QualityOut, response_model_exclude_unset=True, responses=problems())
async def quality(
    since: dt.datetime | None = None,
    limit: int = Query(200, ge=1, le=MAX_LIMIT),
    p: Principal = Depends(quality_readers),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> dict[str, Any]:
    """Rejected measurements, duplicates dropped, late arrivals and first-seen values (default: 7 days)."""
    if since is not None and since.tzinfo is None:
        raise Invalid.on("query.since", "needs a UTC offset (e.g. 2027-03-01T00:00:00Z)")
    if since is not None:
        within(since, "query.since")
    since = since or utcnow() - kpi.quality_window
    async with rt.unit_of_work(readonly=True) as uow:
        defs = await definitions.latest_definitions(uow)
        known = {d.measurement_type for d in defs.values() if d.measurement_type}
        return await quality_report(uow, since=since, known_types=known, limit=limit)


# ---------------------------------------------------------------- targets and scorecard


@router.post("/targets", status_code=201, response_model=schemas.TargetOut, responses=problems(404, 409))
async def create_target(
    body: schemas.TargetIn,
    request: Request,
    p: Principal = Depends(definers),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return await targets.create_target(uow, p, body=body.model_dump(), fiscal_start=kpi.fiscal_start)

    return await rt.idempotent(request, p, action)


@router.get("/targets", response_model=schemas.TargetPage, responses=problems())
async def list_targets(
    metric: str | None = None,
    period: str | None = None,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    async with rt.unit_of_work(readonly=True) as uow:
        items, nxt = await targets.list_targets(uow, p, metric=metric, period=period, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}


@router.get("/targets/{target_id}", response_model=schemas.TargetOut, responses=problems(404))
async def get_target(
    target_id: str, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> dict[str, Any]:
    async with rt.unit_of_work(readonly=True) as uow:
        return await targets.get_target(uow, p, target_id=target_id)


@router.post("/targets/evaluate", response_model=schemas.EvaluateOut, responses=problems())
async def evaluate_targets(
    p: Principal = Depends(org_definers), rt: Runtime = Depends(get_runtime), kpi: Kpi = Depends(domain)
) -> dict[str, Any]:
    """Run the at-risk check now (it also runs periodically)."""
    published = await targets.evaluate_targets(
        rt.unit_of_work, now=utcnow(), min_elapsed=kpi.target_min_elapsed, fiscal_start=kpi.fiscal_start
    )
    return {"published": published}


@router.get(
    "/scorecard",
    response_model=schemas.ScorecardOut,
    response_model_exclude_unset=True,
    responses={**problems(404), **CSV_OUT},
)
async def scorecard(
    request: Request,
    metrics_: str = Query(..., alias="metrics"),
    period: str = Query(..., description="2027, 2027-Q1, 2027-03, FY2027 or FY2027-Q1"),
    filter: list[str] = Query([]),
    compare: list[str] = Query([], description="previous_period, last_year (comma-separated or repeated)"),
    format: Format | None = FORMAT,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> Any:
    keys = periods.parse_group_by([metrics_], "query.metrics") if metrics_ else []
    if not keys:
        raise Invalid.on("query.metrics", "name at least one metric, e.g. metrics=cpl,roi")
    flt = periods.parse_filter(filter)
    compares = periods.parse_compare(compare)
    async with rt.unit_of_work(readonly=True) as uow:
        card = await targets.scorecard(
            uow,
            p,
            keys=keys,
            period=period,
            flt=flt,
            now=utcnow(),
            fiscal_start=kpi.fiscal_start,
            compare=compares,
            cohort_limits=kpi.cohort_limits,
        )
    out = export.wanted(request, format)
    if out == "json":
        return card
    versions = export.versions_of(card["items"])
    table = export.scorecard_table(card, compares)
    return export.file_response(table, out, f"scorecard-{period}", {"X-Metric-Versions": versions})


# ---------------------------------------------------------------- attribution


@router.post("/touchpoints", status_code=201, response_model=schemas.AcceptedOut, responses=problems(409))
async def post_touchpoints(
    body: schemas.TouchpointsIn,
    request: Request,
    p: Principal = Depends(journey_feeders),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return {"accepted": await journeys.add_touchpoints(uow, p, items=[i.model_dump() for i in body.items])}

    return await rt.idempotent(request, p, action)


@router.post("/conversions", status_code=201, response_model=schemas.AcceptedOut, responses=problems(409))
async def post_conversions(
    body: schemas.ConversionsIn, request: Request, p: Principal = Depends(feeders), rt: Runtime = Depends(get_runtime)
) -> Response:
    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return {"accepted": await journeys.add_conversions(uow, p, items=[i.model_dump() for i in body.items])}

    return await rt.idempotent(request, p, action)


@router.get(
    "/attribution",
    response_model=schemas.AttributionOut,
    response_model_exclude_unset=True,
    responses={**problems(), **CSV_OUT},
)
async def get_attribution(
    request: Request,
    model: str = "linear",
    from_: dt.date = Query(..., alias="from"),
    to: dt.date = Query(...),
    half_life_days: float = Query(7.0, ge=0.01, le=3650),
    lookback_days: int = Query(90, ge=1, le=3650),
    group_by: str = Query("channel", description="channel or campaign"),
    ci: float | None = Query(None, description="a bootstrap confidence interval at this level (e.g. 0.95)"),
    resamples: int = Query(1000, description="bootstrap resamples (with ci; at most 10,000 by default)"),
    seed: int = Query(0, ge=0, le=2**63 - 1, description="the bootstrap's seed: the same seed, the same interval"),
    format: Format | None = FORMAT,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    kpi: Kpi = Depends(domain),
) -> Any:
    limits = kpi.attribution_limits
    attribution.check_query(
        model, from_, to, half_life_days, group_by=group_by, ci=ci, resamples=resamples, limits=limits
    )
    async with rt.unit_of_work(readonly=True) as uow:
        found = await attribution.load(uow, p, start=from_, end=to, lookback_days=lookback_days, limits=limits)
    answer = await attribution.report(
        found,
        model,
        from_,
        to,
        half_life_days=half_life_days,
        lookback_days=lookback_days,
        limits=limits,
        group_by=group_by,
        boot=attribution.Bootstrap(ci, resamples, seed),
        caller=request,
    )
    out = export.wanted(request, format)
    if out == "json":
        return answer
    headers = {"X-Attribution-Model": model, "X-Lookback-Days": str(lookback_days)}
    if ci is not None:
        headers["X-Bootstrap"] = f"ci={ci} resamples={resamples} seed={seed}"
    table = export.attribution_table(answer)
    return export.file_response(table, out, f"attribution-{model}-{from_}-{to}", headers)
