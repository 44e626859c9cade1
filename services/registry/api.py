"""Routes of the registry service: parse, authorize, call the domain, shape the answer."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from services.registry import (
    catalog,
    contracts,
    discovery,
    export,
    graph,
    history,
    impact,
    integrations,
    layers,
    logins,
    renewals,
    reviews,
    savings,
    schemas,
    sunset,
    tools,
    utilization,
)
from services.registry.container import Registry, domain
from services.registry.events import Lifecycle
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.problems import problem

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

# Who may write what (admin always may): the catalogue is marketing operations' job, contracts are
# finance's too, and partners (SSO/SCIM exports) may post usage. Everyone else reads.
# The catalogue's rows (tools, contracts, integrations, usage) carry no dimensions: they reach every
# scope, so a principal narrowed by one (region:EMEA) reads them but does not change them (the domain
# checks it again on every path that writes).
catalog_writer = require_roles("mops", unscoped=tools.WHAT)
contract_writer = require_roles("mops", "finance", unscoped=contracts.WHAT)
usage_writer = require_roles("mops", "partner", unscoped=utilization.WHAT)

Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
IfMatch = Header(None, alias="If-Match")
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
TEXT = {"schema": {"type": "string"}}


def with_etag(body: BaseModel, version: int, status_code: int = 200) -> Response:
    return Response(
        body.model_dump_json(), status_code=status_code, media_type="application/json", headers={"ETag": f'"{version}"'}
    )


# --- taxonomy and tools ---------------------------------------------------------------------------


@router.get("/categories", response_model=schemas.Categories, responses=problems())
async def list_categories(rt: Runtime = Depends(get_runtime)) -> schemas.Categories:
    async with rt.unit_of_work(readonly=True) as uow:
        return schemas.Categories(items=await tools.categories(uow))


@router.post("/tools", status_code=201, response_model=schemas.ToolOut, responses=problems(409))
async def create_tool(
    body: schemas.ToolIn, request: Request, p: Principal = Depends(catalog_writer), rt: Runtime = Depends(get_runtime)
) -> Response:
    return await rt.idempotent(request, p, lambda uow: tools.create_tool(uow, p, body=body))


@router.get("/tools", response_model=schemas.ToolPage, responses=problems())
async def list_tools(
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
    category: str | None = None,
    lifecycle: Lifecycle | None = None,
    team: str | None = None,
    capability: str | None = None,
) -> schemas.ToolPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await tools.list_tools(
            uow, limit=limit, cursor=cursor, category=category, lifecycle=lifecycle, team=team, capability=capability
        )


@router.get("/tools/{tool_id}", response_model=schemas.ToolOut, responses=problems(404))
async def get_tool(tool_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        tool = tools.record(await tools.get_tool(uow, tool_id))
    return with_etag(tool, tool.version)


@router.patch("/tools/{tool_id}", response_model=schemas.ToolOut, responses=problems(404, 409, 412, 428))
async def update_tool(
    tool_id: str,
    body: schemas.ToolPatch,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = IfMatch,
) -> Response:
    version = parse_if_match(if_match, required=True, what="tool")
    assert version is not None
    async with rt.unit_of_work() as uow:
        tool = await tools.update_tool(uow, p, tool_id=tool_id, patch=body, expected_version=version)
    return with_etag(tool, tool.version)


@router.post("/tools/{tool_id}/lifecycle", response_model=schemas.ToolOut, responses=problems(404, 409, 412))
async def change_lifecycle(
    tool_id: str,
    body: schemas.LifecycleIn,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = IfMatch,
) -> Response:
    version = parse_if_match(if_match, required=False)
    async with rt.unit_of_work() as uow:
        tool = await tools.change_lifecycle(uow, p, tool_id=tool_id, body=body, expected_version=version)
    return with_etag(tool, tool.version)


@router.get("/tools/{tool_id}/history", response_model=schemas.HistoryPage, responses=problems(404))
async def tool_history(
    tool_id: str, rt: Runtime = Depends(get_runtime), limit: int = Limit, cursor: str | None = None
) -> schemas.HistoryPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await history.list_history(uow, tool_id=tool_id, limit=limit, cursor=cursor)


@router.get("/tools/{tool_id}/spend", response_model=schemas.ToolSpendOut, responses=problems(404))
async def tool_spend(tool_id: str, rt: Runtime = Depends(get_runtime)) -> schemas.ToolSpendOut:
    """What the budget's actuals paid the tool's vendor (and its aliases)."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await discovery.spend_of(uow, tool_id=tool_id)


@router.get("/tools/{tool_id}/utilization", response_model=schemas.Utilization, responses=problems(404))
async def tool_utilization(
    tool_id: str, rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> schemas.Utilization:
    async with rt.unit_of_work(readonly=True) as uow:
        await tools.get_tool(uow, tool_id)
        return (await reg.usage.of_tools(uow, [tool_id]))[tool_id]


# --- contracts ------------------------------------------------------------------------------------


@router.post("/contracts", status_code=201, response_model=schemas.ContractOut, responses=problems(409))
async def create_contract(
    body: schemas.ContractIn,
    request: Request,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
) -> Response:
    return await rt.idempotent(request, p, lambda uow: reg.contracts.create(uow, p, body=body))


@router.get("/contracts", response_model=schemas.ContractPage, responses=problems())
async def list_contracts(
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
    tool_id: str | None = None,
    status: Literal["active", "cancelled"] | None = None,
) -> schemas.ContractPage:
    async with rt.unit_of_work(readonly=True) as uow:
        return await contracts.list_contracts(uow, limit=limit, cursor=cursor, tool_id=tool_id, status=status)


@router.get("/contracts/{contract_id}", response_model=schemas.ContractDetail, responses=problems(404))
async def get_contract(
    contract_id: str, rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        contract = await reg.contracts.get(uow, contract_id=contract_id)
    return with_etag(contract, contract.version)


@router.post("/contracts/{contract_id}/renew", response_model=schemas.ContractOut, responses=problems(404, 409, 412))
async def renew_contract(
    contract_id: str,
    request: Request,
    body: schemas.RenewIn | None = None,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    if_match: str | None = IfMatch,
) -> Response:
    version = parse_if_match(if_match, required=False)
    renewal = body or schemas.RenewIn()
    return await rt.idempotent(
        request,
        p,
        lambda uow: reg.contracts.renew(uow, p, contract_id=contract_id, body=renewal, expected_version=version),
        status_code=200,
    )


@router.post("/contracts/{contract_id}/cancel", response_model=schemas.ContractOut, responses=problems(404, 409, 412))
async def cancel_contract(
    contract_id: str,
    body: schemas.CancelIn | None = None,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    if_match: str | None = IfMatch,
) -> Response:
    version = parse_if_match(if_match, required=False)
    async with rt.unit_of_work() as uow:
        contract = await reg.contracts.cancel(
            uow, p, contract_id=contract_id, body=body or schemas.CancelIn(), expected_version=version
        )
    return with_etag(contract, contract.version)


@router.get("/renewals/decisions", response_model=schemas.DecisionPage, responses=problems())
async def renewal_decisions(
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
    contract_id: str | None = None,
    late: bool | None = None,
) -> schemas.DecisionPage:
    """What renewal reviews decided and what the registry did, latest first; `late=true` for the late ones."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await reviews.list_decisions(uow, limit=limit, cursor=cursor, contract_id=contract_id, late=late)


@router.get("/contracts/{contract_id}/milestones", response_model=schemas.Milestones, responses=problems(404))
async def get_milestones(
    contract_id: str, rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> schemas.Milestones:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.milestones.get(uow, contract_id=contract_id)


@router.put("/contracts/{contract_id}/milestones", response_model=schemas.Milestones, responses=problems(404, 409))
async def put_milestones(
    contract_id: str,
    body: schemas.MilestonesIn,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
) -> schemas.Milestones:
    """The contract's own milestones (days before the notice deadline), or `null` for the default."""
    async with rt.unit_of_work() as uow:
        return await reg.milestones.put(uow, p, contract_id=contract_id, body=body)


@router.get("/renewals", response_model=schemas.Renewals, responses=problems())
async def renewal_calendar(
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    within_days: int = Query(90, ge=0, le=3650),
) -> schemas.Renewals:
    async with rt.unit_of_work(readonly=True) as uow:
        return await renewals.calendar(uow, within_days=within_days, usage=reg.usage)


# --- usage ----------------------------------------------------------------------------------------


@router.post("/utilization", status_code=201, response_model=schemas.SnapshotOut, responses=problems(409))
async def post_utilization(
    body: schemas.UtilizationIn,
    request: Request,
    p: Principal = Depends(usage_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
) -> Response:
    return await rt.idempotent(request, p, lambda uow: reg.usage.record(uow, p, body=body))


@router.get("/utilization", response_model=schemas.Utilizations, responses=problems())
async def get_utilization(
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    tool_id: str | None = None,
    flag: Literal["underused", "shelfware"] | None = None,
) -> schemas.Utilizations:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.usage.listing(uow, tool_id=tool_id, flag=flag)


@router.post(
    "/usage/import",
    status_code=201,
    response_model=schemas.UsageImportResult,
    responses=problems(409, 413, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": TEXT},
            "description": "An SSO or app-login export: columns person, tool, last_login (ISO 8601), at most 16 MiB",
        }
    },
)
async def import_usage(
    request: Request,
    p: Principal = Depends(usage_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
) -> Response:
    """Each person's last login per tool; all or nothing, unknown tools reported rather than refused."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != "text/csv":
        raise HTTPException(415, f"Send the export as text/csv, not {media or 'nothing'}.")
    raw = await _bounded_body(request, catalog.MAX_BODY_BYTES)
    if raw is None:
        message = f"the export is larger than {catalog.MAX_BODY_BYTES // (1024 * 1024)} MiB; split it"
        return problem(
            413,
            f"body: {message}",
            instance=request.url.path,
            errors_=[{"field": "body", "message": message, "code": "too_large"}],
        )
    rows = logins.parse(raw)
    return await rt.idempotent(request, p, lambda uow: logins.import_logins(uow, p, rows=rows, usage=reg.usage))


@router.get("/rightsizing", response_model=schemas.Rightsizing, responses=problems(409))
async def rightsizing(rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)) -> schemas.Rightsizing:
    """Seats paid against people active in 30 and 90 days, and what the surplus seats cost a year."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await logins.rightsizing(uow, costs=reg.costs, headroom=reg.rightsizing_headroom)


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


@router.get("/tools/{tool_id}/impact", response_model=schemas.Impact, responses=problems(404, 499))
async def tool_impact(
    tool_id: str, request: Request, rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> schemas.Impact:
    """Everything that depends on the tool, the contracts involved, the single points of failure its
    retirement would create; computed off the event loop within the graph's limits."""
    return await impact.impact(
        lambda: rt.unit_of_work(readonly=True), tool_id=tool_id, limits=reg.graph_limits, caller=request
    )


@router.get(
    "/graph",
    response_model=schemas.Graph,
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


@router.get("/analysis", response_model=schemas.Analysis, responses=problems(499))
async def analysis(
    request: Request, rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)
) -> schemas.Analysis:
    """Orphans, islands and single points of failure, computed off the event loop within the graph's limits."""
    async with rt.unit_of_work(readonly=True) as uow:
        flows = await graph.load_flows(uow, limits=reg.graph_limits)
    return await graph.analysis(flows, limits=reg.graph_limits, caller=request)


@router.get("/layers", response_model=schemas.Layers, responses=problems())
async def get_layers(rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        config = await layers.get_layers(uow)
    return with_etag(config, config.version)


@router.put("/layers", response_model=schemas.Layers, responses=problems(409, 412))
async def put_layers(
    body: schemas.LayersIn,
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


@router.get("/discovery", response_model=schemas.Candidates, responses=problems())
async def list_candidates(
    rt: Runtime = Depends(get_runtime),
    status: Literal["open", "accepted", "merged", "ignored", "all"] = "open",
) -> schemas.Candidates:
    """Vendors the budget paid that no tool matches, with their spend (the discovery run)."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await discovery.candidates(uow, status=None if status == "all" else status)


@router.post("/discovery/{candidate_id}/accept", response_model=schemas.CandidateOut, responses=problems(404, 409))
async def accept_candidate(
    candidate_id: str,
    body: schemas.AcceptIn,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
) -> schemas.CandidateOut:
    async with rt.unit_of_work() as uow:
        return await discovery.accept(uow, p, candidate_id=candidate_id, body=body)


@router.post("/discovery/{candidate_id}/merge", response_model=schemas.CandidateOut, responses=problems(404, 409))
async def merge_candidate(
    candidate_id: str, body: schemas.MergeIn, p: Principal = Depends(catalog_writer), rt: Runtime = Depends(get_runtime)
) -> schemas.CandidateOut:
    async with rt.unit_of_work() as uow:
        return await discovery.merge(uow, p, candidate_id=candidate_id, body=body)


@router.post("/discovery/{candidate_id}/ignore", response_model=schemas.CandidateOut, responses=problems(404, 409))
async def ignore_candidate(
    candidate_id: str,
    body: schemas.IgnoreIn | None = None,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
) -> schemas.CandidateOut:
    async with rt.unit_of_work() as uow:
        return await discovery.ignore(uow, p, candidate_id=candidate_id, body=body or schemas.IgnoreIn())


# --- money across the stack -----------------------------------------------------------------------


@router.get("/reports/savings", response_model=schemas.SavingsReport, responses=problems(409))
async def savings_report(
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    from_: str | None = Query(None, alias="from", pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    to: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
) -> schemas.SavingsReport:
    """What cancellations and cheaper renewals save per year, per period (YYYY-MM), and as KPI measurements."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await savings.report(uow, base=reg.costs.base, since=from_, until=to)


@router.get("/reports/sunset", response_model=schemas.SunsetReport, responses=problems(409))
async def sunset_report(rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)) -> schemas.SunsetReport:
    """Tools to retire first: most annual cost at stake, least used, overlapping a tool that stays."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await sunset.report(uow, costs=reg.costs, usage=reg.usage)


@router.get("/overlaps", response_model=schemas.Overlaps, responses=problems(409))
async def overlaps(rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)) -> schemas.Overlaps:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.costs.overlaps(uow)


@router.get("/costs", response_model=schemas.Costs, responses=problems(409))
async def costs(
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
    group_by: Literal["category", "team"] = "category",
) -> schemas.Costs:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.costs.by_group(uow, group_by=group_by)


@router.post("/fx-rates", status_code=200, response_model=schemas.FxRateOut, responses=problems())
async def set_fx_rate(
    body: schemas.FxRateIn,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    reg: Registry = Depends(domain),
) -> schemas.FxRateOut:
    async with rt.unit_of_work() as uow:
        return await reg.costs.set_rate(uow, p, body=body)


@router.get("/fx-rates", response_model=schemas.FxRates, responses=problems())
async def list_fx_rates(rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)) -> schemas.FxRates:
    async with rt.unit_of_work(readonly=True) as uow:
        return await reg.costs.rates(uow)


# --- import and export ----------------------------------------------------------------------------


@router.post(
    "/import",
    status_code=201,
    response_model=schemas.ImportResult,
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
    raw = await _bounded_body(request, catalog.MAX_BODY_BYTES)
    if raw is None:
        message = f"the catalogue is larger than {catalog.MAX_BODY_BYTES // (1024 * 1024)} MiB; split it"
        return problem(
            413,
            f"body: {message}",
            instance=request.url.path,
            errors_=[{"field": "body", "message": message, "code": "too_large"}],
        )
    if media in YAML_TYPES:
        docs, label = catalog.parse_yaml(raw), "documents"
    elif media == "text/csv":
        docs, label = catalog.parse_csv(raw), "rows"
    else:
        raise HTTPException(415, f"Send the catalogue as application/yaml or text/csv, not {media or 'nothing'}.")
    return await rt.idempotent(
        request, p, lambda uow: catalog.import_catalogue(uow, p, docs=docs, contracts=reg.contracts, label=label)
    )


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is (or says it will be) longer than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    raw = b"".join(chunks)
    request._body = raw  # Starlette's cache: request.body() (the Idempotency-Key fingerprint) reads it again
    return raw


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
