"""Routes of the budget service: parse, authorize, call the domain, shape the answer.

Role rules (admin always may): plans, lines, allocations, transfers, period close,
FX rates, import and reversals by mops and finance; commitments and actuals also by
marketers (within their scopes) and partners (ERP); approve/release by finance;
every authenticated caller may read what its scopes cover; analysts never write.

Every route documents its answer (`schemas`) and its problems; answers are the domain's views,
encoded as they always were (reads through `json`, writes through the idempotency wrapper).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from services.budget import (
    actuals,
    allocations,
    commitments,
    csv_import,
    fx,
    integrations,
    lines,
    plans,
    refusals,
    reports,
    reversals,
    schemas,
)
from services.budget.container import Budget, domain
from services.budget.postings import Raced
from shared.app import Runtime, get_runtime
from shared.db import is_unique_violation
from shared.errors import Conflict, Invalid
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

PLANNERS = ("mops", "finance")
SPENDERS = ("mops", "finance", "marketer", "partner")
APPROVERS = ("finance",)
ERP = ("partner", "finance")

Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
From = Query(None, alias="from")
To = Query(None, alias="to")
CSV = {"text/csv": {"schema": {"type": "string"}}}


def json(body: Any, version: int | None = None, status_code: int = 200) -> Response:
    """A read's answer as FastAPI encodes a returned dict (with the ETag of a versioned resource)."""
    headers = {"ETag": f'"{version}"'} if version is not None else None
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


# ---------------------------------------------------------------- plans


@router.post("/plans", status_code=201, tags=["plans"], response_model=schemas.PlanOut, responses=problems(409))
async def create_plan(
    body: schemas.PlanIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda uow: plans.create_plan(uow, who, **dict(body)))


@router.get("/plans", tags=["plans"], response_model=schemas.PlanPage, responses=problems())
async def list_plans(
    limit: int = Limit,
    cursor: str | None = None,
    status: str | None = None,
    fiscal_year: int | None = Query(None, ge=2000, le=2100),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        items, nxt = await plans.list_plans(uow, limit=limit, cursor=cursor, status=status, fiscal_year=fiscal_year)
    return json({"items": items, "next_cursor": nxt})


@router.get("/plans/{plan_id}", tags=["plans"], response_model=schemas.PlanDetail, responses=problems(404))
async def get_plan(plan_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        view = plans.plan_view(await plans.get_plan(uow, plan_id))
        view["closed_periods"] = await plans.closed_periods_of(uow, plan_id)
    return json(view, view["version"])


@router.patch(
    "/plans/{plan_id}", tags=["plans"], response_model=schemas.PlanOut, responses=problems(404, 409, 412, 428)
)
async def patch_plan(
    plan_id: str,
    body: schemas.PlanPatch,
    if_match: str | None = Header(None),
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    expected = parse_if_match(if_match, required=True, what="plan")
    assert expected is not None
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    for key in ("name", "overspend_policy"):
        if key in changes and changes[key] is None:
            raise Invalid.on(key, "may not be null")
    async with rt.unit_of_work() as uow:
        view = await plans.update_plan(uow, who, plan_id=plan_id, expected_version=expected, changes=changes)
    return json(view, view["version"])


@router.post("/plans/{plan_id}/activate", tags=["plans"], response_model=schemas.PlanOut, responses=problems(404, 409))
async def activate_plan(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: plans.activate_plan(uow, who, plan_id=plan_id), status_code=200
    )


@router.post("/plans/{plan_id}/close", tags=["plans"], response_model=schemas.PlanOut, responses=problems(404, 409))
async def close_plan(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda uow: plans.close_plan(uow, who, plan_id=plan_id), status_code=200)


@router.post(
    "/plans/{plan_id}/periods/{period}/close",
    tags=["plans"],
    response_model=schemas.ClosedPeriodOut,
    responses=problems(404, 409),
)
async def close_period(
    plan_id: str,
    period: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: plans.close_period(uow, who, plan_id=plan_id, period=period), status_code=200
    )


@router.get("/plans/{plan_id}/summary", tags=["plans"], response_model=schemas.Summary, responses=problems(404))
async def plan_summary(
    plan_id: str,
    group_by: str | None = Query(None, pattern="^(region|channel|campaign|cost_center|owner)$"),
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.summary(uow, who, plan_id=plan_id, group_by=group_by, start=start, end=end))


# ---------------------------------------------------------------- lines


@router.post(
    "/plans/{plan_id}/lines",
    status_code=201,
    tags=["lines"],
    response_model=schemas.LineOut,
    responses=problems(404, 409),
)
async def create_line(
    plan_id: str,
    body: schemas.LineIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    data = dict(body)
    data["dimensions"] = body.dimensions.model_dump(exclude_none=True)
    return await rt.idempotent(request, who, lambda uow: lines.create_line(uow, who, plan_id=plan_id, **data))


@router.get("/plans/{plan_id}/lines", tags=["lines"], response_model=schemas.LineTree, responses=problems(404))
async def line_tree(
    plan_id: str,
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.tree(uow, who, plan_id=plan_id, start=start, end=end))


@router.get("/lines/{line_id}", tags=["lines"], response_model=schemas.LineDetail, responses=problems(404))
async def get_line(
    line_id: str, who: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.line_detail(uow, who, line_id=line_id))


@router.get("/lines/{line_id}/balance", tags=["lines"], response_model=schemas.LineBalance, responses=problems(404))
async def line_balance(
    line_id: str,
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await reports.line_balance(uow, who, line_id=line_id, start=start, end=end))


@router.get("/lines/{line_id}/entries", tags=["lines"], response_model=schemas.EntryPage, responses=problems(404))
async def line_entries(
    line_id: str,
    limit: int = Limit,
    cursor: str | None = None,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        items, nxt = await reports.line_entries(uow, who, line_id=line_id, limit=limit, cursor=cursor)
    return json({"items": items, "next_cursor": nxt})


# ---------------------------------------------------------------- postings


@router.post("/allocations", status_code=201, tags=["ledger"], response_model=schemas.EntryOut, responses=problems(409))
async def allocate(
    body: schemas.AllocationIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: allocations.allocate(uow, who, postings=budget.postings, **dict(body))
    )


@router.post(
    "/transfers", status_code=201, tags=["ledger"], response_model=schemas.TransferOut, responses=problems(409)
)
async def transfer(
    body: schemas.TransferIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: allocations.transfer(uow, who, postings=budget.postings, **dict(body))
    )


@router.post(
    "/commitments", status_code=201, tags=["ledger"], response_model=schemas.CommitmentOut, responses=problems(409)
)
async def commit(
    body: schemas.CommitmentIn,
    request: Request,
    who: Principal = Depends(require_roles(*SPENDERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: commitments.create_commitment(uow, who, postings=budget.postings, **dict(body))
    )


@router.get(
    "/commitments/{commitment_id}", tags=["ledger"], response_model=schemas.CommitmentOut, responses=problems(404)
)
async def get_commitment(
    commitment_id: str,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        view = await commitments.get_commitment(uow, who, postings=budget.postings, commitment_id=commitment_id)
    return json(view)


@router.post(
    "/commitments/{commitment_id}/approve",
    tags=["ledger"],
    response_model=schemas.CommitmentOut,
    responses=problems(404, 409),
)
async def approve(
    commitment_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*APPROVERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    def action(uow: UnitOfWork) -> Awaitable[dict[str, Any]]:
        return commitments.approve(uow, who, postings=budget.postings, commitment_id=commitment_id)

    return await rt.idempotent(request, who, action, status_code=200)


@router.post(
    "/commitments/{commitment_id}/release",
    tags=["ledger"],
    response_model=schemas.CommitmentOut,
    responses=problems(404, 409),
)
async def release(
    commitment_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*APPROVERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    def action(uow: UnitOfWork) -> Awaitable[dict[str, Any]]:
        return commitments.release(uow, who, postings=budget.postings, commitment_id=commitment_id)

    return await rt.idempotent(request, who, action, status_code=200)


@router.post("/actuals", status_code=201, tags=["ledger"], response_model=schemas.ActualOut, responses=problems(409))
async def post_actual(
    body: schemas.ActualIn,
    request: Request,
    who: Principal = Depends(require_roles(*SPENDERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    return await rt.idempotent(
        request, who, lambda uow: actuals.post_actual(uow, who, postings=budget.postings, **dict(body))
    )


@router.post(
    "/entries/{entry_id}/reverse",
    status_code=201,
    tags=["ledger"],
    response_model=schemas.ReversalOut,
    responses=problems(404, 409),
)
async def reverse(
    entry_id: str,
    request: Request,
    body: schemas.ReverseIn | None = None,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    memo = body.memo if body else None

    def action(uow: UnitOfWork) -> Awaitable[dict[str, Any]]:
        return reversals.reverse(uow, who, postings=budget.postings, entry_id=entry_id, memo=memo)

    return await rt.idempotent(request, who, action)


# ---------------------------------------------------------------- FX


@router.post("/fx-rates", status_code=201, tags=["fx"], response_model=schemas.FxRateOut, responses=problems(409))
async def post_rate(
    body: schemas.FxRateIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    return await rt.idempotent(request, who, lambda uow: fx.post_rate(uow, who, **dict(body)))


@router.get("/fx-rates", tags=["fx"], response_model=schemas.FxRatePage, responses=problems())
async def list_rates(
    base: str | None = None,
    quote: str | None = None,
    limit: int = Limit,
    cursor: str | None = None,
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        items, nxt = await fx.list_rates(
            uow, base=base and base.upper(), quote=quote and quote.upper(), limit=limit, cursor=cursor
        )
    return json({"items": items, "next_cursor": nxt})


# ---------------------------------------------------------------- spreadsheets


@router.post(
    "/plans/{plan_id}/import",
    tags=["spreadsheets"],
    response_model=schemas.ImportOut,
    responses=problems(404, 409, 415),
    openapi_extra={"requestBody": {"content": CSV, "required": True}},
)
async def import_csv(
    plan_id: str,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("text/csv", "text/plain")):
        raise HTTPException(415, "Send the spreadsheet as text/csv.")
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid.on("body", f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    def action(uow: UnitOfWork) -> Awaitable[dict[str, Any]]:
        return csv_import.import_csv(uow, who, postings=budget.postings, plan_id=plan_id, text=text)

    return await rt.idempotent(request, who, action, status_code=200)


@router.get(
    "/plans/{plan_id}/export",
    tags=["spreadsheets"],
    response_class=Response,
    responses={**problems(404), 200: {"content": CSV, "description": "the plan's lines and figures as CSV"}},
)
async def export_csv(
    plan_id: str,
    start: str | None = From,
    end: str | None = To,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        text = await reports.export_csv(uow, who, plan_id=plan_id, start=start, end=end)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="plan-{plan_id}.csv"'},
    )


# ---------------------------------------------------------------- ERP ingest (forwarded by the gateway)


@router.post(
    "/erp/purchase-orders",
    tags=["erp"],
    response_model=schemas.CommitmentOut,
    responses={
        **problems(404, 409),
        201: {"model": schemas.CommitmentOut, "description": "a new order"},
        202: {"model": schemas.RefusalOut, "description": "its commitment was refused: kept to be retried"},
    },
)
async def erp_purchase_order(
    body: schemas.PurchaseOrderIn,
    who: Principal = Depends(require_roles(*ERP)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    """An order's commitment: 201 when the order is new, 200 for a change, a cancellation or a replay;
    202 with the refusal (GET /v1/refusals, retriable) when the budget refuses its commitment."""
    missing = body.missing_for_upsert()
    if missing:
        raise Invalid(
            "; ".join(f"{m}: is required for action {body.action}" for m in missing),
            errors=[Invalid.on(m, f"is required for action {body.action}").errors[0] for m in missing],
        )
    try:
        view, created = await _erp_delivery(
            rt, lambda uow: integrations.erp_purchase_order(uow, who, postings=budget.postings, order=body)
        )
    except (Conflict, Invalid) as refused:
        if body.action == "cancelled" or isinstance(refused, Raced) or not refusals.fundable(refused):
            raise
        # The ERP is not waiting for a 409 it cannot act on: the order is kept as a refusal to retry.
        async with rt.unit_of_work() as uow:
            view = await refusals.record(uow, who, refused, **refusals.order_request(body))
        return json(view, status_code=202)
    return json(view, status_code=201 if created else 200)


@router.post(
    "/erp/invoices",
    tags=["erp"],
    response_model=schemas.InvoiceOut,
    responses={**problems(409), 201: {"model": schemas.InvoiceOut, "description": "a new invoice"}},
)
async def erp_invoice(
    body: schemas.InvoiceIn,
    who: Principal = Depends(require_roles(*ERP)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    """An invoice's actual: 201 when the invoice is new, 200 (`replayed`) for one seen before."""
    view, created = await _erp_delivery(
        rt, lambda uow: integrations.erp_invoice(uow, who, postings=budget.postings, invoice=body)
    )
    return json(view, status_code=201 if created else 200)


# ---------------------------------------------------------------- refusals (commitments refused on arrival)


@router.get("/refusals", tags=["refusals"], response_model=schemas.RefusalPage)
async def list_refusals(
    status: Literal["refused", "retried"] | None = None,
    limit: int = Limit,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Refused contract and purchase-order commitments the caller's scopes cover, the newest first."""
    async with rt.unit_of_work(readonly=True) as uow:
        return json({"items": await refusals.list_refusals(uow, who, status=status, limit=limit)})


@router.post(
    "/refusals/{refusal_id}/retry",
    tags=["refusals"],
    response_model=schemas.RefusalOut,
    responses=problems(404, 409),
)
async def retry_refusal(
    refusal_id: str,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    """Run the refused request again (after funding its line): 200 `retried` with its commitment, once;
    409 when it still does not fit (nothing changes) or was retried already."""
    async with rt.unit_of_work() as uow:
        view = await refusals.retry(uow, who, postings=budget.postings, refusal_id=refusal_id)
    return json(view)


async def _erp_delivery(
    rt: Runtime, ingest: Callable[[UnitOfWork], Awaitable[tuple[dict[str, Any], bool]]]
) -> tuple[dict[str, Any], bool]:
    """One ERP document in one transaction. The same document delivered twice at once (ERPs retry) makes
    the later one trip on the first one's key (the PO's external_ref, the invoice number); run again, it
    finds the document and answers as the replay it is, instead of a 409 or 500 that the ERP would retry.
    A document whose commitment a concurrent request moved or decided (`Raced`) runs again the same way."""
    for _attempt in range(2):
        try:
            async with rt.unit_of_work() as uow:
                return await ingest(uow)
        except (DBAPIError, Conflict) as exc:
            raced = (
                is_unique_violation(exc)
                if isinstance(exc, DBAPIError)
                else isinstance(exc, Raced)
                or any(e.field == "external_ref" and e.code == "duplicate" for e in exc.errors)
            )
            if not raced:
                raise
    async with rt.unit_of_work() as uow:
        return await ingest(uow)
