"""Routes of the registry service: parse, authorize, call the domain, shape the answer."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry import catalog, schemas
from services.registry.stack import Stack, mermaid, tool_view
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.problems import problem

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

# Who may write what (admin always may): the catalogue is marketing operations' job, contracts are
# finance's too, and partners (SSO/SCIM exports) may post usage. Everyone else reads.
# The catalogue's rows (tools, contracts, integrations, usage) carry no dimensions: they reach every
# scope, so a principal narrowed by one (region:EMEA) reads them but does not change them.
catalog_writer = require_roles("mops", unscoped="The tool catalogue")
contract_writer = require_roles("mops", "finance", unscoped="A tool contract")
usage_writer = require_roles("mops", "partner", unscoped="Tool usage")

Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}


def stack_of(rt: Runtime) -> Stack:
    return rt.extras["stack"]


def with_etag(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers={"ETag": f'"{body["version"]}"'})


# --- taxonomy and tools ---------------------------------------------------------------------------


@router.get("/categories")
async def list_categories(rt: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return {"items": await stack_of(rt).categories(s)}


@router.post("/tools", status_code=201, response_model=schemas.ToolOut)
async def create_tool(
    body: schemas.ToolIn, request: Request, p: Principal = Depends(catalog_writer), rt: Runtime = Depends(get_runtime)
) -> Response:
    async def action(s: AsyncSession) -> dict[str, Any]:
        return await stack_of(rt).create_tool(s, body, p.subject)

    return await rt.idempotent(request, p, action)


@router.get("/tools")
async def list_tools(
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
    category: str | None = None,
    lifecycle: schemas.Lifecycle | None = None,
    team: str | None = None,
    capability: str | None = None,
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        items, next_cursor = await stack_of(rt).list_tools(
            s, limit=limit, cursor=cursor, category=category, lifecycle=lifecycle, team=team, capability=capability
        )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/tools/{tool_id}", response_model=schemas.ToolOut)
async def get_tool(tool_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.transaction(readonly=True) as s:
        return with_etag(tool_view(await stack_of(rt).get_tool(s, tool_id)))


@router.patch("/tools/{tool_id}", response_model=schemas.ToolOut)
async def update_tool(
    tool_id: str,
    body: schemas.ToolPatch,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = Header(None, alias="If-Match"),
) -> Response:
    version = parse_if_match(if_match, required=True, what="tool")
    async with rt.transaction() as s:
        view = await stack_of(rt).update_tool(s, tool_id, body, version, p.subject)  # type: ignore[arg-type]
    return with_etag(view)


@router.post("/tools/{tool_id}/lifecycle", response_model=schemas.ToolOut)
async def change_lifecycle(
    tool_id: str,
    body: schemas.LifecycleIn,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = Header(None, alias="If-Match"),
) -> Response:
    version = parse_if_match(if_match, required=False)
    async with rt.transaction() as s:
        view = await stack_of(rt).change_lifecycle(s, tool_id, body, version, p.subject)
    return with_etag(view)


@router.get("/tools/{tool_id}/history")
async def tool_history(
    tool_id: str, rt: Runtime = Depends(get_runtime), limit: int = Limit, cursor: str | None = None
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        items, next_cursor = await stack_of(rt).history(s, tool_id, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/tools/{tool_id}/utilization")
async def tool_utilization(tool_id: str, rt: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        await stack_of(rt).get_tool(s, tool_id)
        return (await stack_of(rt).utilization(s, [tool_id]))[tool_id]


# --- contracts ------------------------------------------------------------------------------------


@router.post("/contracts", status_code=201, response_model=schemas.ContractOut)
async def create_contract(
    body: schemas.ContractIn,
    request: Request,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async def action(s: AsyncSession) -> dict[str, Any]:
        return await stack_of(rt).create_contract(s, body)

    return await rt.idempotent(request, p, action)


@router.get("/contracts")
async def list_contracts(
    rt: Runtime = Depends(get_runtime),
    limit: int = Limit,
    cursor: str | None = None,
    tool_id: str | None = None,
    status: Literal["active", "cancelled"] | None = None,
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        items, next_cursor = await stack_of(rt).list_contracts(
            s, limit=limit, cursor=cursor, tool_id=tool_id, status=status
        )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/contracts/{contract_id}")
async def get_contract(contract_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.transaction(readonly=True) as s:
        return with_etag(await stack_of(rt).get_contract(s, contract_id))


@router.post("/contracts/{contract_id}/renew", response_model=schemas.ContractOut)
async def renew_contract(
    contract_id: str,
    request: Request,
    body: schemas.RenewIn | None = None,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = Header(None, alias="If-Match"),
) -> Response:
    version = parse_if_match(if_match, required=False)

    async def action(s: AsyncSession) -> dict[str, Any]:
        return await stack_of(rt).renew_contract(s, contract_id, body or schemas.RenewIn(), version)

    return await rt.idempotent(request, p, action, status_code=200)


@router.post("/contracts/{contract_id}/cancel", response_model=schemas.ContractOut)
async def cancel_contract(
    contract_id: str,
    body: schemas.CancelIn | None = None,
    p: Principal = Depends(contract_writer),
    rt: Runtime = Depends(get_runtime),
    if_match: str | None = Header(None, alias="If-Match"),
) -> Response:
    version = parse_if_match(if_match, required=False)
    async with rt.transaction() as s:
        view = await stack_of(rt).cancel_contract(s, contract_id, body or schemas.CancelIn(), version)
    return with_etag(view)


@router.get("/renewals")
async def renewals(rt: Runtime = Depends(get_runtime), within_days: int = Query(90, ge=0, le=3650)) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return {"within_days": within_days, "items": await stack_of(rt).renewals(s, within_days)}


# --- usage ----------------------------------------------------------------------------------------


@router.post("/utilization", status_code=201)
async def post_utilization(
    body: schemas.UtilizationIn,
    request: Request,
    p: Principal = Depends(usage_writer),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async def action(s: AsyncSession) -> dict[str, Any]:
        return await stack_of(rt).record_utilization(s, body)

    return await rt.idempotent(request, p, action)


@router.get("/utilization")
async def get_utilization(
    rt: Runtime = Depends(get_runtime),
    tool_id: str | None = None,
    flag: Literal["underused", "shelfware"] | None = None,
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        rows = await stack_of(rt).utilization(s, [tool_id] if tool_id else None)
    items = [r for r in rows.values() if flag is None or r[flag]]
    return {"items": sorted(items, key=lambda r: (r["utilization"] is None, r["utilization"] or 0, r["tool_id"]))}


# --- integrations and the graph -------------------------------------------------------------------


@router.post("/integrations", status_code=201)
async def create_integration(
    body: schemas.IntegrationIn,
    request: Request,
    p: Principal = Depends(catalog_writer),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async def action(s: AsyncSession) -> dict[str, Any]:
        return await stack_of(rt).create_integration(s, body)

    return await rt.idempotent(request, p, action)


@router.get("/integrations")
async def list_integrations(
    rt: Runtime = Depends(get_runtime), limit: int = Limit, cursor: str | None = None, tool_id: str | None = None
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        items, next_cursor = await stack_of(rt).list_integrations(s, limit=limit, cursor=cursor, tool_id=tool_id)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/graph", response_model=None)
async def graph(
    rt: Runtime = Depends(get_runtime), format: Literal["json", "mermaid"] = "json"
) -> dict[str, Any] | PlainTextResponse:
    async with rt.transaction(readonly=True) as s:
        g = await stack_of(rt).graph(s)
    if format == "mermaid":
        return PlainTextResponse(mermaid(g))
    return g


@router.get("/analysis")
async def analysis(rt: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await stack_of(rt).analysis(s)


# --- money across the stack -----------------------------------------------------------------------


@router.get("/overlaps")
async def overlaps(rt: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await stack_of(rt).overlaps(s)


@router.get("/costs")
async def costs(
    rt: Runtime = Depends(get_runtime), group_by: Literal["category", "team"] = "category"
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await stack_of(rt).costs(s, group_by)


@router.post("/fx-rates", status_code=200)
async def set_fx_rate(
    body: schemas.FxRateIn, p: Principal = Depends(contract_writer), rt: Runtime = Depends(get_runtime)
) -> dict[str, Any]:
    async with rt.transaction() as s:
        return await stack_of(rt).set_fx_rate(s, body)


@router.get("/fx-rates")
async def list_fx_rates(rt: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return {"base_currency": rt.settings.base_currency, "items": await stack_of(rt).fx_rates(s)}


# --- import and export ----------------------------------------------------------------------------


@router.post("/import", status_code=201)
async def import_catalogue(
    request: Request, p: Principal = Depends(catalog_writer), rt: Runtime = Depends(get_runtime)
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

    async def action(s: AsyncSession) -> dict[str, Any]:
        return await catalog.import_catalogue(s, stack_of(rt), docs, p.subject, label)

    return await rt.idempotent(request, p, action)


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


@router.get("/export", response_model=None)
async def export_catalogue(
    rt: Runtime = Depends(get_runtime), format: Literal["yaml", "csv"] = "yaml"
) -> PlainTextResponse:
    async with rt.transaction(readonly=True) as s:
        docs = await catalog.export_documents(s)
    if format == "csv":
        return PlainTextResponse(catalog.to_csv(docs), media_type="text/csv")
    return PlainTextResponse(catalog.to_yaml(docs), media_type="application/yaml")
