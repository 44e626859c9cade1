"""Routes of the ERP mapping (rules from ERP coordinates to budget lines, and a dry run of them) and
of the suspense queue of ERP documents no rule matched."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from services.budget import erp_mapping, erp_schemas, schemas, suspense
from services.budget.api import ERP, PLANNERS, Limit, json
from services.budget.container import Budget, domain
from shared.app import Runtime, get_runtime
from shared.http import JsonRoute, parse_if_match
from shared.identity import Principal, current_principal, require_roles
from shared.openapi import problems

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)], route_class=JsonRoute)


@router.post(
    "/erp/mapping", status_code=201, tags=["erp"], response_model=erp_schemas.MappingRuleOut, responses=problems()
)
async def create_rule(
    body: erp_schemas.MappingRuleIn,
    request: Request,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """A mapping rule; it applies to documents that arrive from now on (and to assignments)."""
    return await rt.idempotent(request, who, lambda uow: erp_mapping.create_rule(uow, who, **dict(body)))


@router.get("/erp/mapping", tags=["erp"], response_model=erp_schemas.MappingRulePage, responses=problems())
async def list_rules(
    who: Principal = Depends(require_roles(*PLANNERS, *ERP)), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        return json({"items": await erp_mapping.list_rules(uow)})


@router.get("/erp/mapping/{rule_id}", tags=["erp"], response_model=erp_schemas.MappingRuleOut, responses=problems(404))
async def get_rule(
    rule_id: str, who: Principal = Depends(require_roles(*PLANNERS, *ERP)), rt: Runtime = Depends(get_runtime)
) -> Response:
    """A rule, with its version as the ETag (send it as If-Match to change the rule)."""
    async with rt.unit_of_work(readonly=True) as uow:
        view = erp_mapping.rule_view(await erp_mapping.get_rule(uow, rule_id=rule_id))
    return json(view, view["version"])


@router.put(
    "/erp/mapping/{rule_id}",
    tags=["erp"],
    response_model=erp_schemas.MappingRuleOut,
    responses=problems(404, 412, 428),
)
async def update_rule(
    rule_id: str,
    body: erp_schemas.MappingRuleIn,
    if_match: str | None = Header(None),
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Replace a rule (its priority, conditions, line code, description); If-Match: the version read
    (428 without it, 412 when the rule changed since)."""
    expected = parse_if_match(if_match, required=True, what="mapping rule")
    assert expected is not None
    async with rt.unit_of_work() as uow:
        view = await erp_mapping.update_rule(uow, who, rule_id=rule_id, expected_version=expected, **dict(body))
    return json(view, view["version"])


@router.delete(
    "/erp/mapping/{rule_id}", tags=["erp"], response_model=erp_schemas.MappingRuleOut, responses=problems(404)
)
async def delete_rule(
    rule_id: str, who: Principal = Depends(require_roles(*PLANNERS)), rt: Runtime = Depends(get_runtime)
) -> Response:
    """Remove a rule; answers the rule as it was."""
    async with rt.unit_of_work() as uow:
        return json(await erp_mapping.delete_rule(uow, who, rule_id=rule_id))


@router.post("/erp/mapping/test", tags=["erp"], response_model=erp_schemas.MappingTestOut, responses=problems())
async def test_mapping(
    body: erp_schemas.MappingTestIn,
    who: Principal = Depends(require_roles(*PLANNERS, *ERP)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """Which line a document with these coordinates would hit, and why; nothing is posted."""
    coordinates = {k: getattr(body, k) for k in schemas.ERP_COORDINATES}
    async with rt.unit_of_work(readonly=True) as uow:
        return json(await erp_mapping.test(uow, who, coordinates=coordinates, fiscal_year=body.fiscal_year))


@router.get("/erp/suspense", tags=["erp"], response_model=erp_schemas.SuspensePage, responses=problems())
async def list_suspense(
    status: Literal["waiting", "posted"] | None = None,
    limit: int = Limit,
    who: Principal = Depends(require_roles(*PLANNERS, *ERP)),
    rt: Runtime = Depends(get_runtime),
) -> Response:
    """ERP documents that matched no mapping rule, the newest first."""
    async with rt.unit_of_work(readonly=True) as uow:
        return json({"items": await suspense.list_items(uow, status=status, limit=limit)})


@router.post(
    "/erp/suspense/{suspense_id}/assign",
    tags=["erp"],
    response_model=erp_schemas.SuspenseOut,
    responses=problems(404, 409),
)
async def assign_suspense(
    suspense_id: str,
    body: erp_schemas.SuspenseAssignIn,
    who: Principal = Depends(require_roles(*PLANNERS)),
    rt: Runtime = Depends(get_runtime),
    budget: Budget = Depends(domain),
) -> Response:
    """Post a waiting document to `budget_line` (absent: to the line the rules map it to now), once;
    409 when it was posted already, or when the budget refuses it (it keeps waiting)."""
    async with rt.unit_of_work() as uow:
        view = await suspense.assign(
            uow, who, postings=budget.postings, suspense_id=suspense_id, budget_line=body.budget_line
        )
    return json(view)
