"""Routes of the registry service: parse, authorize, call the domain, shape the answer."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel

from services.registry import (
    catalog,
    contracts,
    discovery,
    history,
    logins,
    renewals,
    reviews,
    schemas,
    stack_schemas,
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


@router.get("/tools/{tool_id}/spend", response_model=stack_schemas.ToolSpendOut, responses=problems(404))
async def tool_spend(tool_id: str, rt: Runtime = Depends(get_runtime)) -> stack_schemas.ToolSpendOut:
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
    response_model=stack_schemas.UsageImportResult,
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
    raw = await upload(request, "the export")
    if isinstance(raw, Response):
        return raw
    rows = logins.parse(raw)
    return await rt.idempotent(request, p, lambda uow: logins.import_logins(uow, p, rows=rows, usage=reg.usage))


@router.get("/rightsizing", response_model=stack_schemas.Rightsizing, responses=problems(409))
async def rightsizing(rt: Runtime = Depends(get_runtime), reg: Registry = Depends(domain)) -> stack_schemas.Rightsizing:
    """Seats paid against people active in 30 and 90 days, and what the surplus seats cost a year."""
    async with rt.unit_of_work(readonly=True) as uow:
        return await logins.rightsizing(uow, costs=reg.costs, headroom=reg.rightsizing_headroom)


async def bounded_body(request: Request, limit: int) -> bytes | None:
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


async def upload(request: Request, what: str) -> bytes | Response:
    """An uploaded file's bytes, or the 413 problem naming `body` when it is larger than an import takes."""
    raw = await bounded_body(request, catalog.MAX_BODY_BYTES)
    if raw is not None:
        return raw
    message = f"{what} is larger than {catalog.MAX_BODY_BYTES // (1024 * 1024)} MiB; split it"
    return problem(
        413,
        f"body: {message}",
        instance=request.url.path,
        errors_=[{"field": "body", "message": message, "code": "too_large"}],
    )
