"""Routes of the KPI service's funnel and analysis: CRM lifecycle facts and cohort conversions.

Thin as api.py's: parse, authorize, call the domain (lifecycle.py, cohorts.py), shape the answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.kpi import lifecycle, schemas
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)

feeders = require_roles("mops", "partner")


@router.post("/lifecycle", response_model=schemas.LifecycleOut, responses=problems(409))
async def post_lifecycle(
    body: schemas.LifecycleIn, request: Request, p: Principal = Depends(feeders), rt: Runtime = Depends(get_runtime)
) -> Response:
    """Up to 10,000 CRM lifecycle facts (the CRM webhook sends them); an entity's repeat of a stage is a duplicate."""

    async def action(uow: UnitOfWork) -> dict[str, Any]:
        return await lifecycle.add_facts(uow, p, items=[i.model_dump() for i in body.items])

    return await rt.idempotent(request, p, action, status_code=200)
