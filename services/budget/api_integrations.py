"""Routes where money arrives from elsewhere: FX rates, the spreadsheet import and export, the ERP
documents the gateway forwards, and the refusals of what arrived and could not be taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from services.budget import (
    commitments,
    csv_import,
    erp_schemas,
    fx,
    integrations,
    refusals,
    reports,
    schemas,
    suspense,
)
from services.budget.api import CSV, ERP, PLANNERS, From, Limit, To, json
from services.budget.container import Budget, domain
from services.budget.postings import Raced
from shared.app import Runtime, get_runtime
from shared.db import is_unique_violation
from shared.errors import Conflict, Invalid
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.uow import UnitOfWork

D = TypeVar("D", schemas.PurchaseOrderIn, schemas.InvoiceIn)
router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)


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
        202: {
            "model": erp_schemas.OrderHeld,
            "description": "its commitment was refused (a refusal, kept to be retried), or it named no line "
            "and matched no mapping rule (a suspense item, waiting to be assigned)",
        },
    },
)
async def erp_purchase_order(
    body: schemas.PurchaseOrderIn,
    who: Principal = Depends(require_roles(*ERP)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    """An order's commitment: 201 when the order is new, 200 for a change, a cancellation or a replay;
    202 with the refusal (GET /v1/refusals, retriable) when the budget refuses its commitment, or with
    the suspense item (GET /v1/erp/suspense) when it names no line and no mapping rule matches it."""
    missing = body.missing_for_upsert()
    if missing:
        raise Invalid(
            "; ".join(f"{m}: is required for action {body.action}" for m in missing),
            errors=[Invalid.on(m, f"is required for action {body.action}").errors[0] for m in missing],
        )
    body, held = await _route(rt, who, body)
    if held is not None:
        return json(held, status_code=202)
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
    if body.action != "cancelled" and view.get("status") == "committed":
        # Invoices that came before this order consume it now (its own transaction: the order is kept
        # whatever happens here, and the next delivery of the order matches what is still unmatched).
        async with rt.unit_of_work() as uow:
            if await integrations.match_earlier_invoices(uow, who, postings=budget.postings, po_number=body.po_number):
                c = await commitments.get_commitment(uow, who, postings=budget.postings, commitment_id=view["id"])
                view = c
    return json(view, status_code=201 if created else 200)


@router.post(
    "/erp/invoices",
    tags=["erp"],
    response_model=schemas.InvoiceOut,
    responses={
        **problems(409),
        201: {"model": schemas.InvoiceOut, "description": "a new invoice"},
        202: {
            "model": erp_schemas.InvoiceKept,
            "description": "posted without a commitment (its po_number is not known: `unknown_po`), or kept "
            "in suspense (its line could not be found: no rule matches, no active plan has the line code, "
            "or its purchase order is not known and it names no line)",
        },
    },
)
async def erp_invoice(
    body: schemas.InvoiceIn,
    who: Principal = Depends(require_roles(*ERP)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    """An invoice's actual: 201 when the invoice is new, 200 (`replayed`) for one seen before. An invoice is
    a fact and is never lost: 202 with the actual (`unknown_po`) when its purchase order is not known yet,
    or with the suspense item (GET /v1/erp/suspense) when its line cannot be found; 422 only when it is
    malformed (bad money or currency, a required field missing)."""
    if body.missing():
        raise Invalid.on("budget_line", "is required unless ERP coordinates or a po_number are given", "missing")
    body.check_money()
    body, held = await _route(rt, who, body)
    if held is not None:
        return json(held, status_code=202)
    try:
        view, created = await _erp_delivery(
            rt, lambda uow: integrations.erp_invoice(uow, who, postings=budget.postings, invoice=body)
        )
    except integrations.Unplaced as unplaced:
        return json(await _hold(rt, who, body, unplaced.reason), status_code=202)
    return json(view, status_code=202 if view.get("unknown_po") else 201 if created else 200)


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


async def _route(rt: Runtime, who: Principal, doc: D) -> tuple[D, dict[str, Any] | None]:
    """The document with its line code, or the suspense item it waits as (committed by itself). The same
    unmatched document delivered twice at once trips on the first one's item; run again, it finds it."""
    for attempt in range(2):
        try:
            async with rt.unit_of_work() as uow:
                routed, held = await suspense.route(uow, who, doc)
            break
        except DBAPIError as exc:
            if attempt or not is_unique_violation(exc):
                raise
    assert isinstance(routed, type(doc))
    return routed, held


async def _hold(rt: Runtime, who: Principal, doc: schemas.InvoiceIn, reason: str) -> dict[str, Any]:
    """Keep an invoice the budget cannot place in the suspense queue (committed by itself); the same
    invoice delivered twice at once trips on the first one's item and, run again, updates it."""
    for attempt in range(2):
        try:
            async with rt.unit_of_work() as uow:
                return await suspense.hold(uow, who, doc, reason, await suspense.find(uow, doc))
        except DBAPIError as exc:
            if attempt or not is_unique_violation(exc):
                raise
    raise AssertionError("unreachable")


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
