"""Routes of the budget service: parse, authorize, call the domain, shape the answer.

Role rules (admin always may): plans, lines, allocations, transfers, period close,
FX rates, import and reversals by mops and finance; commitments and actuals also by
marketers (within their scopes) and partners (ERP); approve/release by finance;
every authenticated caller may read what its scopes cover; analysts never write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from services.budget import schemas
from services.budget.ledger import Ledger, Raced, plan_view
from shared.app import Runtime, get_runtime
from shared.db import is_unique_violation
from shared.errors import Conflict, Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

PLANNERS = ("mops", "finance")
SPENDERS = ("mops", "finance", "marketer", "partner")
APPROVERS = ("finance",)
ERP = ("partner", "finance")

Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


def ledger_of(rt: Runtime) -> Ledger:
    return rt.extras["ledger"]  # set by main.create_app


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


# ---------------------------------------------------------------- plans


@router.post("/plans", status_code=201, tags=["plans"])
async def create_plan(
    body: schemas.PlanIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).create_plan(s, who, **dict(body)))


@router.get("/plans", tags=["plans"])
async def list_plans(
    limit: int = Limit,
    cursor: str | None = None,
    status: str | None = None,
    fiscal_year: int | None = Query(None, ge=2000, le=2100),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        items, nxt = await ledger_of(rt).list_plans(
            s, limit=limit, cursor=cursor, status=status, fiscal_year=fiscal_year
        )
    return {"items": items, "next_cursor": nxt}


@router.get("/plans/{plan_id}", tags=["plans"])
async def get_plan(plan_id: str, rt: Runtime = Depends(get_runtime)) -> JSONResponse:
    led = ledger_of(rt)
    async with rt.transaction(readonly=True) as s:
        view = plan_view(await led.plan(s, plan_id))
        view["closed_periods"] = await led.list_closed_periods(s, plan_id)
    return JSONResponse(jsonable_encoder(view), headers=etag(view["version"]))


@router.patch("/plans/{plan_id}", tags=["plans"])
async def patch_plan(
    plan_id: str,
    body: schemas.PlanPatch,
    if_match: str | None = Header(None),
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> JSONResponse:
    expected = parse_if_match(if_match, required=True, what="plan")
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    for key in ("name", "overspend_policy"):
        if key in changes and changes[key] is None:
            raise Invalid.on(key, "may not be null")
    async with rt.transaction() as s:
        view = await ledger_of(rt).update_plan(s, who, plan_id, expected, changes)
    return JSONResponse(jsonable_encoder(view), headers=etag(view["version"]))


@router.post("/plans/{plan_id}/activate", tags=["plans"])
async def activate_plan(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).activate_plan(s, who, plan_id), status_code=200)


@router.post("/plans/{plan_id}/close", tags=["plans"])
async def close_plan(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).close_plan(s, who, plan_id), status_code=200)


@router.post("/plans/{plan_id}/periods/{period}/close", tags=["plans"])
async def close_period(
    plan_id: str,
    period: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(
        request, who, lambda s: ledger_of(rt).close_period(s, who, plan_id, period), status_code=200
    )


@router.get("/plans/{plan_id}/summary", tags=["plans"])
async def plan_summary(
    plan_id: str,
    group_by: str | None = Query(None, pattern="^(region|channel|campaign|cost_center|owner)$"),
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await ledger_of(rt).summary(s, who, plan_id, group_by, start, end)


# ---------------------------------------------------------------- lines


@router.post("/plans/{plan_id}/lines", status_code=201, tags=["lines"])
async def create_line(
    plan_id: str,
    body: schemas.LineIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    data = dict(body)
    data["dimensions"] = body.dimensions.model_dump(exclude_none=True)
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).create_line(s, who, plan_id, **data))


@router.get("/plans/{plan_id}/lines", tags=["lines"])
async def line_tree(
    plan_id: str,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await ledger_of(rt).tree(s, who, plan_id, start, end)


@router.get("/lines/{line_id}", tags=["lines"])
async def get_line(
    line_id: str, who: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await ledger_of(rt).line_detail(s, who, line_id)


@router.get("/lines/{line_id}/balance", tags=["lines"])
async def line_balance(
    line_id: str,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await ledger_of(rt).line_balance(s, who, line_id, start, end)


@router.get("/lines/{line_id}/entries", tags=["lines"])
async def line_entries(
    line_id: str,
    limit: int = Limit,
    cursor: str | None = None,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        items, nxt = await ledger_of(rt).line_entries(s, who, line_id, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}


# ---------------------------------------------------------------- postings


@router.post("/allocations", status_code=201, tags=["ledger"])
async def allocate(
    body: schemas.AllocationIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).allocate(s, who, **dict(body)))


@router.post("/transfers", status_code=201, tags=["ledger"])
async def transfer(
    body: schemas.TransferIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).transfer(s, who, **dict(body)))


@router.post("/commitments", status_code=201, tags=["ledger"])
async def commit(
    body: schemas.CommitmentIn,
    request: Request,
    who: Principal = Depends(require_roles(*SPENDERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).create_commitment(s, who, **dict(body)))


@router.get("/commitments/{commitment_id}", tags=["ledger"])
async def get_commitment(
    commitment_id: str, who: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        return await ledger_of(rt).get_commitment(s, who, commitment_id)


@router.post("/commitments/{commitment_id}/approve", tags=["ledger"])
async def approve(
    commitment_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*APPROVERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).approve(s, who, commitment_id), status_code=200)


@router.post("/commitments/{commitment_id}/release", tags=["ledger"])
async def release(
    commitment_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*APPROVERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).release(s, who, commitment_id), status_code=200)


@router.post("/actuals", status_code=201, tags=["ledger"])
async def post_actual(
    body: schemas.ActualIn,
    request: Request,
    who: Principal = Depends(require_roles(*SPENDERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).post_actual(s, who, **dict(body)))


@router.post("/entries/{entry_id}/reverse", status_code=201, tags=["ledger"])
async def reverse(
    entry_id: str,
    request: Request,
    body: schemas.ReverseIn | None = None,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    memo = body.memo if body else None
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).reverse(s, who, entry_id, memo))


# ---------------------------------------------------------------- FX


@router.post("/fx-rates", status_code=201, tags=["fx"])
async def post_rate(
    body: schemas.FxRateIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).post_rate(s, who, **dict(body)))


@router.get("/fx-rates", tags=["fx"])
async def list_rates(
    base: str | None = None,
    quote: str | None = None,
    limit: int = Limit,
    cursor: str | None = None,
    rt: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    async with rt.transaction(readonly=True) as s:
        items, nxt = await ledger_of(rt).list_rates(
            s, base=base and base.upper(), quote=quote and quote.upper(), limit=limit, cursor=cursor
        )
    return {"items": items, "next_cursor": nxt}


# ---------------------------------------------------------------- spreadsheets


@router.post(
    "/plans/{plan_id}/import",
    tags=["spreadsheets"],
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_csv(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("text/csv", "text/plain")):
        raise HTTPException(415, "Send the spreadsheet as text/csv.")
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid.on("body", f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return await rt.idempotent(request, who, lambda s: ledger_of(rt).import_csv(s, who, plan_id, text), status_code=200)


@router.get("/plans/{plan_id}/export", tags=["spreadsheets"], response_class=PlainTextResponse)
async def export_csv(
    plan_id: str,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.transaction(readonly=True) as s:
        text = await ledger_of(rt).export_csv(s, who, plan_id, start, end)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="plan-{plan_id}.csv"'},
    )


# ---------------------------------------------------------------- ERP ingest (forwarded by the gateway)


@router.post("/erp/purchase-orders", tags=["erp"])
async def erp_purchase_order(
    body: schemas.PurchaseOrderIn, who: Principal = Depends(require_roles(*ERP)), rt: Runtime = Depends(get_runtime)
) -> JSONResponse:
    missing = body.missing_for_upsert()
    if missing:
        raise Invalid(
            "; ".join(f"{m}: is required for action {body.action}" for m in missing),
            errors=[Invalid.on(m, f"is required for action {body.action}").errors[0] for m in missing],
        )
    view, created = await _erp_delivery(rt, lambda s: ledger_of(rt).erp_purchase_order(s, who, dict(body)))
    return JSONResponse(jsonable_encoder(view), status_code=201 if created else 200)


@router.post("/erp/invoices", tags=["erp"])
async def erp_invoice(
    body: schemas.InvoiceIn, who: Principal = Depends(require_roles(*ERP)), rt: Runtime = Depends(get_runtime)
) -> JSONResponse:
    view, created = await _erp_delivery(rt, lambda s: ledger_of(rt).erp_invoice(s, who, dict(body)))
    return JSONResponse(jsonable_encoder(view), status_code=201 if created else 200)


async def _erp_delivery(rt: Runtime, ingest: Callable[[Any], Awaitable[tuple[Any, bool]]]) -> tuple[Any, bool]:
    """One ERP document in one transaction. The same document delivered twice at once (ERPs retry) makes
    the later one trip on the first one's key (the PO's external_ref, the invoice number); run again, it
    finds the document and answers as the replay it is, instead of a 409 or 500 that the ERP would retry.
    A document whose commitment a concurrent request moved or decided (`Raced`) runs again the same way."""
    for _attempt in range(2):
        try:
            async with rt.transaction() as s:
                return await ingest(s)
        except (DBAPIError, Conflict) as exc:
            raced = (
                is_unique_violation(exc)
                if isinstance(exc, DBAPIError)
                else isinstance(exc, Raced)
                or any(e.field == "external_ref" and e.code == "duplicate" for e in exc.errors)
            )
            if not raced:
                raise
    async with rt.transaction() as s:
        return await ingest(s)
