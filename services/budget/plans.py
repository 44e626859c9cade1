"""Plans: a fiscal year's budget in one currency, with its overspend policy, from draft to active to
closed, and the months closed for new entries. A plan's fiscal year starts in any month
(`fiscal_year_start`) and its overspend check judges a month, a fiscal quarter or the fiscal year
(`control_period`); both are fixed once the plan is active. Plans hold no dimensions: creating or changing one
needs a principal no scope narrows."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from services.budget import events
from services.budget.models import balances, closed_periods, entries, lines, plan_versions, plans, version_amounts
from services.budget.periods import check_period, periods_of
from shared.db import utcnow
from shared.errors import Conflict, FieldError, Invalid, NotFound, PreconditionFailed
from shared.identity import Principal, ensure_unscoped
from shared.money import fmt, to_minor
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork


@dataclass(frozen=True)
class Plan:
    """A plan row; a posting also notes whether its period was found closed with the line, and whether
    the plan came from the posting cache (`guarded`: the writer checks it is still current)."""

    id: str
    name: str
    fiscal_year: int
    currency: str
    status: str
    overspend_policy: str
    approval_threshold_minor: int | None
    version: int
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    fiscal_year_start: int = 1
    control_period: str = "month"
    checked_period: str | None = None
    checked_period_closed: bool = False
    guarded: bool = False


def plan_view(p: Plan) -> dict[str, Any]:
    """A plan as the API shows it (`schemas.PlanOut`)."""
    return {
        "id": p.id,
        "name": p.name,
        "fiscal_year": p.fiscal_year,
        "fiscal_year_start": p.fiscal_year_start,
        "control_period": p.control_period,
        "currency": p.currency,
        "status": p.status,
        "overspend_policy": p.overspend_policy,
        "approval_threshold": None
        if p.approval_threshold_minor is None
        else fmt(p.approval_threshold_minor, p.currency),
        "periods": periods_of(p.fiscal_year, p.fiscal_year_start),
        "version": p.version,
        "created_by": p.created_by,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


async def get_plan(uow: UnitOfWork, plan_id: str, *, lock: bool = False) -> Plan:
    q = select(plans).where(plans.c.id == plan_id)
    if lock:
        q = q.with_for_update()
    row = (await uow.execute(q)).first()
    if row is None:
        raise NotFound(f"No plan {plan_id}.")
    return Plan(**row._mapping)


def _threshold(value: Decimal | None, currency: str) -> int | None:
    if value is None:
        return None
    if value < 0:
        raise Invalid.on("approval_threshold", "must not be negative")
    return to_minor(value, currency, "approval_threshold")


async def create_plan(
    uow: UnitOfWork,
    who: Principal,
    *,
    name: str,
    fiscal_year: int,
    currency: str,
    overspend_policy: str,
    approval_threshold: Decimal | None,
    fiscal_year_start: int = 1,
    control_period: str = "month",
) -> dict[str, Any]:
    ensure_unscoped(who, "Creating a plan")
    threshold = _threshold(approval_threshold, currency)
    now = utcnow()
    plan_id = str(uuid.uuid4())
    await uow.execute(
        insert(plans).values(
            id=plan_id,
            name=name,
            fiscal_year=fiscal_year,
            currency=currency,
            status="draft",
            overspend_policy=overspend_policy,
            approval_threshold_minor=threshold,
            fiscal_year_start=fiscal_year_start,
            control_period=control_period,
            version=1,
            created_by=who.subject,
            created_at=now,
            updated_at=now,
        )
    )
    plan = await get_plan(uow, plan_id)
    await uow.audit("plan", plan_id, action="budget.plan.created", after=plan_view(plan))
    return plan_view(plan)


async def list_plans(
    uow: UnitOfWork, *, limit: int, cursor: str | None, status: str | None, fiscal_year: int | None
) -> tuple[list[dict[str, Any]], str | None]:
    q = select(plans).order_by(plans.c.id).limit(limit + 1)
    after = decode_cursor(cursor)
    if after:
        q = q.where(plans.c.id > str(after[0]))
    if status:
        q = q.where(plans.c.status == status)
    if fiscal_year:
        q = q.where(plans.c.fiscal_year == fiscal_year)
    rows, nxt = page_of(list((await uow.execute(q)).all()), limit, lambda r: (r.id,))
    return [plan_view(Plan(**r._mapping)) for r in rows], nxt


async def update_plan(
    uow: UnitOfWork, who: Principal, *, plan_id: str, expected_version: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change a plan's name, policy or approval threshold, and while it is a draft its fiscal year start
    and control period (If-Match: the version it was read at)."""
    ensure_unscoped(who, "Changing a plan")
    p = await get_plan(uow, plan_id, lock=True)
    if p.version != expected_version:
        raise PreconditionFailed(
            f"Plan {plan_id} is at version {p.version}, not {expected_version}; fetch it again and retry.",
            current_version=p.version,
        )
    if p.status == "closed":
        raise Conflict(f"Plan {p.name!r} is closed and can no longer be changed.")
    values: dict[str, Any] = {k: changes[k] for k in ("name", "overspend_policy") if k in changes}
    calendar = {k: changes[k] for k in ("fiscal_year_start", "control_period") if changes.get(k) is not None}
    if calendar:
        if p.status != "draft":
            field = next(iter(calendar))
            raise Conflict(
                f"Plan {p.name!r} is {p.status}; {field} can only change while the plan is a draft.",
                errors=[FieldError(field, "fixed once the plan is active", "locked")],
            )
        values.update(calendar)
        if calendar.get("fiscal_year_start", p.fiscal_year_start) != p.fiscal_year_start:
            if await uow.scalar(select(entries.c.id).where(entries.c.plan_id == p.id).limit(1)):
                raise Conflict(
                    f"Plan {p.name!r} has allocations in its months; fiscal_year_start can no longer move.",
                    errors=[FieldError("fiscal_year_start", "the draft holds allocations", "locked")],
                )
            await _move_months(uow, p, calendar["fiscal_year_start"])
    if "approval_threshold" in changes:
        values["approval_threshold_minor"] = _threshold(changes["approval_threshold"], p.currency)
    values.update(version=p.version + 1, updated_at=utcnow())
    await uow.execute(update(plans).where(plans.c.id == plan_id).values(**values))
    after = plan_view(await get_plan(uow, plan_id))
    await uow.audit("plan", plan_id, action="budget.plan.updated", before=plan_view(p), after=after)
    return after


async def _move_months(uow: UnitOfWork, p: Plan, start: int) -> None:
    """A draft's lines get the balance rows of the new fiscal year's months (only while it holds no
    allocations), and months closed outside it are forgotten."""
    months = periods_of(p.fiscal_year, start)
    await uow.execute(delete(balances).where(balances.c.plan_id == p.id))
    await uow.execute(
        delete(closed_periods).where(closed_periods.c.plan_id == p.id, closed_periods.c.period.not_in(months))
    )
    ids = list((await uow.execute(select(lines.c.id).where(lines.c.plan_id == p.id))).scalars())
    zero = dict.fromkeys(("allocated", "committed", "pending", "spent"), 0)
    own = {f"own_{k}": 0 for k in zero}
    rows = [dict(line_id=i, period=m, plan_id=p.id, **zero, **own) for i in ids for m in months]
    if rows:
        await uow.execute(insert(balances), rows)


async def lock_budget(
    uow: UnitOfWork, who: Principal, p: Plan, *, amounts: dict[tuple[str, str], int], source: str, name: str
) -> str:
    """Record `amounts` ((line id, month) -> own minor units) as the plan's budget: a version of kind
    `budget`, `locked` (it never changes); the budget it replaces, if any, becomes `superseded`."""
    q = select(plan_versions.c.id).where(
        plan_versions.c.plan_id == p.id, plan_versions.c.kind == "budget", plan_versions.c.status == "locked"
    )
    before = await uow.scalar(q)
    if before is not None:
        await uow.execute(update(plan_versions).where(plan_versions.c.id == before).values(status="superseded"))
    seq = await uow.scalar(
        select(func.coalesce(func.max(plan_versions.c.seq), 0)).where(plan_versions.c.plan_id == p.id)
    )
    vid, now = str(uuid.uuid4()), utcnow()
    row = dict(
        id=vid,
        plan_id=p.id,
        seq=int(seq or 0) + 1,
        kind="budget",
        name=name,
        as_of=None,
        source=source,
        status="locked",
        created_by=who.subject,
        created_at=now,
    )
    await uow.execute(insert(plan_versions).values(**row))
    kept = [dict(version_id=vid, line_id=k[0], period=k[1], amount_minor=v) for k, v in sorted(amounts.items()) if v]
    if kept:
        await uow.execute(insert(version_amounts), kept)
    after = {**row, "created_at": None, "replaces": before, "total": sum(amounts.values())}
    await uow.audit("plan_version", vid, action="budget.version.locked", after=after)
    return vid


async def allocated(uow: UnitOfWork, plan_id: str) -> dict[tuple[str, str], int]:
    """Each line's own allocated money per month, as the ledger has it now."""
    q = select(balances.c.line_id, balances.c.period, balances.c.own_allocated).where(balances.c.plan_id == plan_id)
    return {(r.line_id, r.period): int(r.own_allocated) for r in (await uow.execute(q)).all()}


async def activate_plan(uow: UnitOfWork, who: Principal, *, plan_id: str) -> dict[str, Any]:
    """Draft -> active: the allocations the draft holds are recorded as its budget and locked (later
    allocations change the ledger's working figures, not the budget)."""
    ensure_unscoped(who, "Activating a plan")
    p = await get_plan(uow, plan_id, lock=True)
    if p.status != "draft":
        raise Conflict(f"Plan {p.name!r} is {p.status}; only a draft plan can be activated.")
    await uow.execute(
        update(plans).where(plans.c.id == plan_id).values(status="active", version=p.version + 1, updated_at=utcnow())
    )
    await lock_budget(uow, who, p, amounts=await allocated(uow, p.id), source="activation", name="Budget at activation")
    data = events.BudgetPlanActivated(plan_id=plan_id, name=p.name, fiscal_year=p.fiscal_year, currency=p.currency)
    await uow.publish(events.PLAN_ACTIVATED, plan_id, data)
    return plan_view(await get_plan(uow, plan_id))


async def close_plan(uow: UnitOfWork, who: Principal, *, plan_id: str) -> dict[str, Any]:
    ensure_unscoped(who, "Closing a plan")
    p = await get_plan(uow, plan_id, lock=True)
    if p.status != "active":
        raise Conflict(f"Plan {p.name!r} is {p.status}; only an active plan can be closed.")
    await uow.execute(
        update(plans).where(plans.c.id == plan_id).values(status="closed", version=p.version + 1, updated_at=utcnow())
    )
    after = plan_view(await get_plan(uow, plan_id))
    await uow.audit("plan", plan_id, action="budget.plan.closed", before=plan_view(p), after=after)
    return after


async def close_period(uow: UnitOfWork, who: Principal, *, plan_id: str, period: str) -> dict[str, Any]:
    """Close a month of the plan for new entries (closing it again answers as the first time)."""
    ensure_unscoped(who, "Closing a month")
    p = await get_plan(uow, plan_id, lock=True)
    check_period(p, period, "path.period")
    row = (
        await uow.execute(
            select(closed_periods).where(closed_periods.c.plan_id == plan_id, closed_periods.c.period == period)
        )
    ).first()
    if row is None:
        values = dict(plan_id=plan_id, period=period, closed_by=who.subject, closed_at=utcnow())
        await uow.execute(insert(closed_periods).values(**values))
        await uow.audit("plan", plan_id, action="budget.period.closed", after={"period": period})
    else:
        values = dict(row._mapping)
    return {**values, "status": "closed"}


async def closed_periods_of(uow: UnitOfWork, plan_id: str) -> list[str]:
    q = select(closed_periods.c.period).where(closed_periods.c.plan_id == plan_id).order_by(closed_periods.c.period)
    return list((await uow.execute(q)).scalars())
