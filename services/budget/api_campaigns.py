"""Routes of campaigns: what marketing spends on, funded by budget lines, with their money."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.budget import campaigns, planning_schemas
from services.budget.api import PLANNERS, Limit, json
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)


@router.post(
    "/campaigns",
    status_code=201,
    tags=["campaigns"],
    response_model=planning_schemas.CampaignOut,
    responses=problems(409),
)
async def create_campaign(
    body: planning_schemas.CampaignIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """A campaign of a plan, funded by some of its lines (commitments and actuals on them may name it)."""
    return await rt.idempotent(request, who, lambda uow: campaigns.create_campaign(uow, who, body=body))


@router.get("/campaigns", tags=["campaigns"], response_model=planning_schemas.CampaignPage, responses=problems())
async def list_campaigns(
    plan_id: str | None = None,
    status: Literal["planned", "active", "completed", "cancelled"] | None = None,
    limit: int = Limit,
    who: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        items = await campaigns.list_campaigns(uow, who, plan_id=plan_id, status=status, limit=limit)
    return json({"items": items})


@router.get(
    "/campaigns/{campaign_id}", tags=["campaigns"], response_model=planning_schemas.CampaignOut, responses=problems(404)
)
async def get_campaign(
    campaign_id: str, who: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> Response:
    """A campaign with its planned cost, committed and spent money, and what remains."""
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await campaigns.get_campaign(uow, who, campaign_id=campaign_id))


@router.post(
    "/campaigns/{campaign_id}/activities",
    status_code=201,
    tags=["campaigns"],
    response_model=planning_schemas.ActivityOut,
    responses=problems(404),
)
async def add_activity(
    campaign_id: str,
    body: planning_schemas.ActivityIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """An activity within the campaign (inside its dates), with its planned cost."""
    return await rt.idempotent(
        request, who, lambda uow: campaigns.add_activity(uow, who, campaign_id=campaign_id, body=body)
    )


@router.get(
    "/campaigns/{campaign_id}/activities",
    tags=["campaigns"],
    response_model=planning_schemas.ActivityPage,
    responses=problems(404),
)
async def list_activities(campaign_id: str, rt: Runtime = Depends(get_runtime)) -> Response:
    """The campaign's activities by start date, their planned cost together and what is not yet planned."""
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await campaigns.list_activities(uow, campaign_id=campaign_id))
