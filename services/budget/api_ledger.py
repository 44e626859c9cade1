"""Routes that post to the ledger: allocations, transfers, commitments (and their decisions), actuals, reversals.

The roles and helpers are api.py's; see its docstring.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.budget import (
    actuals,
    allocations,
    commitments,
    reversals,
    schemas,
)
from services.budget.api import APPROVERS, PLANNERS, SPENDERS, json
from services.budget.container import Budget, domain
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)


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
