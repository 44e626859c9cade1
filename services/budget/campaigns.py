"""Campaigns: what marketing spends on (name, dates, owner, planned cost, status), funded by budget
lines of one plan. A commitment or an actual may name a campaign funded by its line (or an ancestor
of it); its entries then carry the campaign, so a campaign's committed and spent money are sums of
the ledger, and `budget.actual.posted` carries it to the KPI service (cost per lead, ROI)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select

from services.budget import events, planning_schemas
from services.budget.lines import ancestors, get_line
from services.budget.models import campaign_activities, campaigns, entries
from services.budget.plans import Plan, get_plan
from shared.db import utcnow
from shared.errors import Conflict, FieldError, Invalid, NotFound
from shared.identity import Principal
from shared.money import fmt, to_minor
from shared.uow import UnitOfWork


def campaign_view(c: Any, p: Plan, figures: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """A campaign as the API shows it (`planning_schemas.CampaignOut`), with its committed and spent money."""
    committed, spent = figures
    cur = p.currency
    return {
        "id": c.id,
        "plan_id": c.plan_id,
        "code": c.code,
        "name": c.name,
        "starts_on": c.starts_on.isoformat(),
        "ends_on": c.ends_on.isoformat(),
        "owner": c.owner,
        "status": c.status,
        "line_ids": list(c.line_ids),
        "currency": cur,
        "planned_cost": fmt(c.planned_cost_minor, cur),
        "committed": fmt(committed, cur),
        "spent": fmt(spent, cur),
        "remaining": fmt(c.planned_cost_minor - committed - spent, cur),
        "created_by": c.created_by,
        "created_at": c.created_at,
    }


async def create_campaign(uow: UnitOfWork, who: Principal, *, body: planning_schemas.CampaignIn) -> dict[str, Any]:
    try:
        p = await get_plan(uow, body.plan_id)
    except NotFound as exc:  # a body field: a 422 naming it, as for line_ids
        raise Invalid.on("plan_id", f"no plan {body.plan_id!r}", "not_found") from exc
    if body.ends_on < body.starts_on:
        raise Invalid.on("ends_on", f"is before starts_on {body.starts_on.isoformat()}")
    if body.currency != p.currency:
        raise Invalid.on("currency", f"must be the plan currency {p.currency}")
    for i, line_id in enumerate(body.line_ids):
        ln = await get_line(uow, who, line_id, f"line_ids[{i}]")  # within the caller's scopes
        if ln.plan_id != p.id:
            raise Invalid.on(f"line_ids[{i}]", f"line {ln.code!r} is in another plan")
    exists = await uow.scalar(select(campaigns.c.id).where(campaigns.c.plan_id == p.id, campaigns.c.code == body.code))
    if exists:
        raise Conflict(
            f"Plan {p.name!r} has a campaign coded {body.code!r} already.",
            errors=[FieldError("code", "already used in this plan", "duplicate")],
        )
    cid = str(uuid.uuid4())
    row = dict(
        id=cid,
        plan_id=p.id,
        code=body.code,
        name=body.name,
        starts_on=body.starts_on,
        ends_on=body.ends_on,
        owner=body.owner,
        status=body.status,
        planned_cost_minor=to_minor(body.planned_cost, p.currency, "planned_cost"),
        line_ids=list(dict.fromkeys(body.line_ids)),
        created_by=who.subject,
        created_at=utcnow(),
    )
    await uow.execute(insert(campaigns).values(**row))
    await uow.audit("campaign", cid, action="budget.campaign.created", after={"code": body.code, "plan_id": p.id})
    created = await get_campaign(uow, who, campaign_id=cid)
    await uow.publish(
        events.CAMPAIGN_CREATED,
        cid,
        events.BudgetCampaign(
            campaign_id=cid,
            plan_id=p.id,
            plan_name=p.name,
            code=body.code,
            name=body.name,
            starts_on=body.starts_on.isoformat(),
            ends_on=body.ends_on.isoformat(),
            status=body.status,
            owner=body.owner,
            planned_cost=created["planned_cost"],
            currency=p.currency,
        ),
        correlation_id=who.request_id,
    )
    return created


async def _row(uow: UnitOfWork, campaign_id: str) -> Any:
    return (await uow.execute(select(campaigns).where(campaigns.c.id == campaign_id))).first()


async def _figures(uow: UnitOfWork, campaign_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Committed (with what waits for approval) and spent per campaign, summed from the ledger."""
    if not campaign_ids:
        return {}
    e = entries.c
    q = (
        select(e.campaign_id, func.sum(e.d_committed + e.d_pending).label("c"), func.sum(e.d_spent).label("s"))
        .where(e.campaign_id.in_(campaign_ids))
        .group_by(e.campaign_id)
    )
    return {r.campaign_id: (int(r._mapping["c"] or 0), int(r._mapping["s"] or 0)) for r in (await uow.execute(q)).all()}


async def get_campaign(uow: UnitOfWork, who: Principal, *, campaign_id: str) -> dict[str, Any]:
    c = await _row(uow, campaign_id)
    if c is None:
        raise NotFound(f"No campaign {campaign_id}.")
    p = await get_plan(uow, c.plan_id)
    return campaign_view(c, p, (await _figures(uow, [c.id])).get(c.id, (0, 0)))


async def list_campaigns(
    uow: UnitOfWork, who: Principal, *, plan_id: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    q = select(campaigns).order_by(campaigns.c.starts_on, campaigns.c.code, campaigns.c.id).limit(limit)
    if plan_id is not None:
        q = q.where(campaigns.c.plan_id == plan_id)
    if status is not None:
        q = q.where(campaigns.c.status == status)
    rows = (await uow.execute(q)).all()
    figures = await _figures(uow, [r.id for r in rows])
    plans_by_id: dict[str, Plan] = {}
    out = []
    for r in rows:
        if r.plan_id not in plans_by_id:
            plans_by_id[r.plan_id] = await get_plan(uow, r.plan_id)
        out.append(campaign_view(r, plans_by_id[r.plan_id], figures.get(r.id, (0, 0))))
    return out


async def referenced(uow: UnitOfWork, p: Plan, ln: Any, campaign_id: str | None) -> Any:
    """The campaign a commitment or actual on `ln` names, checked: same plan, funded by the line or an
    ancestor of it, not cancelled. None when none is named."""
    if campaign_id is None:
        return None
    c = await _row(uow, campaign_id)
    if c is None or c.plan_id != p.id:
        raise Invalid.on("campaign_id", f"no campaign {campaign_id!r} in plan {p.name!r}", "not_found")
    if c.line_ids and not set(ancestors(ln.path)) & set(c.line_ids):
        raise Invalid.on("campaign_id", f"campaign {c.code!r} is not funded by line {ln.code!r}")
    if c.status == "cancelled":
        raise Conflict(f"Campaign {c.code!r} is cancelled; nothing more can be booked on it.")
    return c


async def code_of(uow: UnitOfWork, campaign_id: str | None) -> str | None:
    if campaign_id is None:
        return None
    code: str | None = await uow.scalar(select(campaigns.c.code).where(campaigns.c.id == campaign_id))
    return code


def activity_view(a: Any, currency: str) -> dict[str, Any]:
    """An activity as the API shows it (`planning_schemas.ActivityOut`)."""
    return {
        "id": a.id,
        "campaign_id": a.campaign_id,
        "name": a.name,
        "starts_on": a.starts_on.isoformat(),
        "ends_on": a.ends_on.isoformat(),
        "planned_cost": fmt(a.planned_cost_minor, currency),
        "currency": currency,
        "created_by": a.created_by,
        "created_at": a.created_at,
    }


async def add_activity(
    uow: UnitOfWork, who: Principal, *, campaign_id: str, body: planning_schemas.ActivityIn
) -> dict[str, Any]:
    """An activity inside the campaign's dates, in the plan currency."""
    c = await _row(uow, campaign_id)
    if c is None:
        raise NotFound(f"No campaign {campaign_id}.")
    p = await get_plan(uow, c.plan_id)
    if body.currency != p.currency:
        raise Invalid.on("currency", f"must be the plan currency {p.currency}")
    if body.ends_on < body.starts_on:
        raise Invalid.on("ends_on", f"is before starts_on {body.starts_on.isoformat()}")
    if body.starts_on < c.starts_on or body.ends_on > c.ends_on:
        raise Invalid.on(
            "starts_on" if body.starts_on < c.starts_on else "ends_on",
            f"is outside campaign {c.code!r} ({c.starts_on.isoformat()} to {c.ends_on.isoformat()})",
        )
    aid = str(uuid.uuid4())
    row = dict(
        id=aid,
        campaign_id=c.id,
        name=body.name,
        starts_on=body.starts_on,
        ends_on=body.ends_on,
        planned_cost_minor=to_minor(body.planned_cost, p.currency, "planned_cost"),
        created_by=who.subject,
        created_at=utcnow(),
    )
    await uow.execute(insert(campaign_activities).values(**row))
    await uow.audit("campaign", c.id, action="budget.campaign.activity_added", after={"activity_id": aid})
    a = (await uow.execute(select(campaign_activities).where(campaign_activities.c.id == aid))).one()
    return activity_view(a, p.currency)


async def list_activities(uow: UnitOfWork, *, campaign_id: str) -> dict[str, Any]:
    c = await _row(uow, campaign_id)
    if c is None:
        raise NotFound(f"No campaign {campaign_id}.")
    p = await get_plan(uow, c.plan_id)
    q = (
        select(campaign_activities)
        .where(campaign_activities.c.campaign_id == c.id)
        .order_by(campaign_activities.c.starts_on, campaign_activities.c.id)
    )
    rows = (await uow.execute(q)).all()
    planned = sum(a.planned_cost_minor for a in rows)
    return {
        "items": [activity_view(a, p.currency) for a in rows],
        "planned_cost": fmt(planned, p.currency),
        "unplanned": fmt(c.planned_cost_minor - planned, p.currency),
    }
