"""Routes over the stack as a whole: integrations and the graph, layers and analysis, discovery from
spend, the money reports, import and export. Roles and helpers are api.py's; see its docstring.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import PlainTextResponse, Response

from services.registry import (
    catalog,
    discovery,
    export,
    graph,
    impact,
    integrations,
    layers,
    savings,
    schemas,
    stack_schemas,
    sunset,
)
from services.registry.api import (
    TEXT,
    YAML_TYPES,
    IfMatch,
    Limit,
    catalog_writer,
    contract_writer,
    upload,
    usage_writer,
    with_etag,
)
from services.registry.container import Registry, domain
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal
from shared.openapi import problems

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)


# --- integrations and the graph -------------------------------------------------------------------


@router.post("/integrations", status_code=201, response_model=schemas.IntegrationOut, responses=problems(409))
async def create_integration(
    body: schemas.IntegrationIn,
    request: Request,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, p, lambda uow: integrations.create_integration(uow, p, body=body))


@router.get("/integrations", response_model=schemas.IntegrationPage, responses=problems())
async def list_integrations(
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
    tool_id: str | None = None,
    status: schemas.IntegrationStatus | None = None,
) -> schemas.IntegrationPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await integrations.list_integrations(uow, limit=limit, cursor=cursor, tool_id=tool_id, status=status)


@router.get("/integrations/{integration_id}", response_model=schemas.IntegrationOut, responses=problems(404))
async def get_integration(integration_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        edge = await integrations.get_integration(uow, integration_id)
    return with_etag(edge, edge.version)


@router.patch(
    "/integrations/{integration_id}", response_model=schemas.IntegrationOut, responses=problems(404, 409, 412, 428)
)
async def update_integration(
    integration_id: str,
    body: schemas.IntegrationPatch,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = IfMatch,
) -> Response:
    version = parse_if_match(if_match, required=True, what="integration")
    assert version is not None
    async with rt.unit_of_work() as uow:
        edge = await integrations.update_integration(
            uow, p, integration_id=integration_id, patch=body, expected_version=version
        )
    return with_etag(edge, edge.version)


@router.delete(
    "/integrations/{integration_id}", response_model=schemas.IntegrationOut, responses=problems(404, 409, 412)
)
async def retire_integration(
    integration_id: str,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = IfMatch,
    reason: str | None = Query(None, max_length=2000),
) -> Response:
    """Retire the integration (kept, with its history, out of the graph and the reports)."""
    version = parse_if_match(if_match, required=False)
    async with rt.unit_of_work() as uow:
        edge = await integrations.retire_integration(
            uow, p, integration_id=integration_id, expected_version=version, reason=reason
        )
    return with_etag(edge, edge.version)


@router.post(
    "/integrations/{integration_id}/health", response_model=schemas.IntegrationOut, responses=problems(404, 409)
)
async def report_health(
    integration_id: str,
    body: schemas.HealthIn,
    p: Principal = Depends(usage_writer),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """A monitor or a person reports the flow working or failing; failing publishes registry.integration.broken."""
    async with rt.unit_of_work() as uow:
        edge = await integrations.report_health(uow, p, integration_id=integration_id, body=body)
    return with_etag(edge, edge.version)


@router.get(
    "/integrations/{integration_id}/history", response_model=schemas.IntegrationHistoryPage, responses=problems(404)
)
async def integration_history(
    integration_id: str, rt: Runtime = Depends(get_runtime), limit: int = Limit, cursor: str | None = None
) -> schemas.IntegrationHistoryPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await integrations.list_history(uow, integration_id=integration_id, limit=limit, cursor=cursor)


@router.get("/tools/{tool_id}/impact", response_model=stack_schemas.Impact, responses=problems(404, 499))
async def tool_impact(
    tool_id: str, request: Request, rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> stack_schemas.Impact:
    """Everything that depends on the tool, the contracts involved, the single points of failure its
    retirement would create; computed off the event loop within the graph's limits."""
    return await impact.impact(
        lambda: rt.unit_of_work(readonly=True), tool_id=tool_id, limits=reg.graph_limits, caller=request
    )


@router.get(
    "/graph",
    response_model=stack_schemas.Graph,
    responses={
        **problems(),
        200: {"description": "The graph; a Mermaid flowchart with format=mermaid", "content": {"text/plain": TEXT}},
    },
)
async def get_graph(
    rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain), format: Literal["json", "mermaid"] = "json"
) -> Any:
    async with rt.unit_of_work(readonly=True) as uow:
        if format == "mermaid":
            return PlainTextResponse(await graph.flowchart(uow, limits=reg.graph_limits))
        return await graph.graph(uow, limits=reg.graph_limits)


@router.get("/analysis", response_model=stack_schemas.Analysis, responses=problems(499))
async def analysis(
    request: Request, rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> stack_schemas.Analysis:
    """Orphans, islands and single points of failure, computed off the event loop within the graph's limits."""
    async with rt.unit_of_work(readonly=True) as uow:
        flows = await graph.load_flows(uow, limits=reg.graph_limits)
    return await graph.analysis(flows, limits=reg.graph_limits, caller=request)


@router.get("/layers", response_model=stack_schemas.Layers, responses=problems())
async def get_layers(rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        config = await layers.get_layers(uow)
    return with_etag(config, config.version)


@router.put("/layers", response_model=stack_schemas.Layers, responses=problems(409, 412))
async def put_layers(
    body: stack_schemas.LayersIn,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = IfMatch,
) -> Response:
    """Replace the layers and their rules (If-Match honoured: the version of GET, 0 for the default)."""
    version = parse_if_match(if_match, required=False)
    async with rt.unit_of_work() as uow:
        config = await layers.put_layers(uow, p, body=body, expected_version=version)
    return with_etag(config, config.version)


# --- discovery from spend -------------------------------------------------------------------------


@router.get("/discovery", response_model=stack_schemas.Candidates, responses=problems())
async def list_candidates(
    rt: Runtime = Depends(get_runtime),
    status: Literal["open", "accepted", "merged", "ignored", "all"] = "open",
) -> stack_schemas.Candidates:
    """Vendors the budget paid that no tool matches, with their spend (the discovery run)."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await discovery.candidates(uow, status=None if status == "all" else status)


@router.post(
    "/discovery/{candidate_id}/accept", response_model=stack_schemas.CandidateOut, responses=problems(404, 409)
)
async def accept_candidate(
    candidate_id: str,
    body: stack_schemas.AcceptIn,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
) -> stack_schemas.CandidateOut:
    async with rt.unit_of_work() as uow:
        return await discovery.accept(uow, p, candidate_id=candidate_id, body=body)


@router.post("/discovery/{candidate_id}/merge", response_model=stack_schemas.CandidateOut, responses=problems(404, 409))
async def merge_candidate(
    candidate_id: str,
    body: stack_schemas.MergeIn,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
) -> stack_schemas.CandidateOut:
    async with rt.unit_of_work() as uow:
        return await discovery.merge(uow, p, candidate_id=candidate_id, body=body)


@router.post(
    "/discovery/{candidate_id}/ignore", response_model=stack_schemas.CandidateOut, responses=problems(404, 409)
)
async def ignore_candidate(
    candidate_id: str,
    body: stack_schemas.IgnoreIn | None = None,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
) -> stack_schemas.CandidateOut:
    async with rt.unit_of_work() as uow:
        return await discovery.ignore(uow, p, candidate_id=candidate_id, body=body or stack_schemas.IgnoreIn())


# --- money across the stack -----------------------------------------------------------------------


@router.get("/reports/savings", response_model=stack_schemas.SavingsReport, responses=problems(409))
async def savings_report(
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    from_: str | None = Query(None, alias="from", pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    to: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
) -> stack_schemas.SavingsReport:
    """What cancellations and cheaper renewals save per year, per period (YYYY-MM), and as KPI measurements."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await savings.report(uow, base=reg.costs.base, since=from_, until=to)


@router.get("/reports/sunset", response_model=stack_schemas.SunsetReport, responses=problems(409))
async def sunset_report(
    rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> stack_schemas.SunsetReport:
    """Tools to retire first: most annual cost at stake, least used, overlapping a tool that stays."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await sunset.report(uow, costs=reg.costs, usage=reg.usage)


@router.get("/overlaps", response_model=stack_schemas.Overlaps, responses=problems(409))
async def overlaps(rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)) -> stack_schemas.Overlaps:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.costs.overlaps(uow)


@router.get("/costs", response_model=stack_schemas.Costs, responses=problems(409))
async def costs(
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    group_by: Literal["category", "team"] = "category",
) -> stack_schemas.Costs:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.costs.by_group(uow, group_by=group_by)


@router.post("/fx-rates", status_code=200, response_model=stack_schemas.FxRateOut, responses=problems())
async def set_fx_rate(
    body: stack_schemas.FxRateIn,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
) -> stack_schemas.FxRateOut:
    async with rt.unit_of_work() as uow:
        return await reg.costs.set_rate(uow, p, body=body)


@router.get("/fx-rates", response_model=stack_schemas.FxRates, responses=problems())
async def list_fx_rates(rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)) -> stack_schemas.FxRates:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.costs.rates(uow)


# --- import and export ----------------------------------------------------------------------------


@router.post(
    "/import",
    status_code=201,
    response_model=stack_schemas.ImportResult,
    responses=problems(409, 413, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": TEXT, "text/csv": TEXT},
            "description": "YAML catalogue documents (one per tool) or a CSV of tools, at most 16 MiB",
        }
    },
)
async def import_catalogue(
    request: Request,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
) -> Response:
    """YAML (one document per tool) or CSV (one row per tool), chosen by Content-Type; all or nothing."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await upload(request, "the catalogue")
    if isinstance(raw, Response):
        return raw
    if media in YAML_TYPES:
        docs, label = catalog.parse_yaml(raw), "documents"
    elif media == "text/csv":
        docs, label = catalog.parse_csv(raw), "rows"
    else:
        raise HTTPException(415, f"Send the catalogue as application/yaml or text/csv, not {media or 'nothing'}.")
    return await rt.idempotent(
        request, p, lambda uow: catalog.import_catalogue(uow, p, docs=docs, contracts=reg.contracts, label=label)
    )


@router.get(
    "/export",
    response_class=Response,
    responses={
        **problems(499),
        200: {
            "description": "The catalogue: YAML documents, or a CSV of tools with format=csv",
            "content": {"application/yaml": TEXT, "text/csv": TEXT},
        },
    },
)
async def export_catalogue(
    request: Request,
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    format: Literal["yaml", "csv"] = "yaml",
) -> PlainTextResponse:
    """Written off the event loop within the export's limits."""
    async with rt.unit_of_work(readonly=True) as uow:
        stack = await export.load(uow, limits=reg.export_limits)
    text = await export.render(stack, format, limits=reg.export_limits, caller=request)
    return PlainTextResponse(text, media_type="text/csv" if format == "csv" else "application/yaml")
