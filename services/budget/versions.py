"""Plan versions: the budget, forecasts and scenarios.

The **budget** is a locked version (kind `budget`) recorded when the plan is activated: each line's own
allocated money per month as the draft held it. Allocations posted later change the ledger (the
working figures, `allocated`), not the budget; only an admin promoting a scenario replaces it (the
old one `superseded`, both kept). A **forecast** holds, per line and month, the actuals up to its `as_of` month
and the expected amounts for the months after it (copied from the latest forecast, or the budget,
then edited). A **scenario** is a copy of the budget (or of another version) whose amounts change
freely. Either is compared in the variance report; a scenario is promoted to become the new
forecast, or, by an admin, the budget: the differences are posted as allocation entries (checked:
a reduction cannot take money that is committed or spent). Amounts are plan-currency minor units.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, insert, select, update

from services.budget import events, planning_schemas
from services.budget.lines import get_line
from services.budget.models import balances, lines, plan_versions, version_amounts
from services.budget.periods import check_period, periods_of
from services.budget.plans import Plan, get_plan, lock_budget
from services.budget.postings import Leg, Money, Postings, entry_event, postable
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.identity import Principal, ensure_unscoped
from shared.money import fmt, to_minor
from shared.uow import UnitOfWork

Amounts = dict[tuple[str, str], int]  # (line id, period) -> minor units
LEDGER = {"allocated": "own_allocated", "actual": "own_spent", "committed": "own_committed"}


def version_view(v: Any, currency: str, total: int) -> dict[str, Any]:
    """A version as the API shows it (`planning_schemas.VersionOut`)."""
    return {
        **{c: getattr(v, c) for c in plan_versions.c.keys()},
        "currency": currency,
        "total": fmt(total, currency),
    }


async def ledger(uow: UnitOfWork, plan_id: str, figure: str) -> Amounts:
    """A figure of the ledger (`budget`, `actual`, `committed`) per line and month."""
    col = balances.c[LEDGER[figure]].label("v")
    q = select(balances.c.line_id, balances.c.period, col).where(balances.c.plan_id == plan_id)
    return {(r.line_id, r.period): int(r._mapping["v"]) for r in (await uow.execute(q)).all()}


async def amounts_of(uow: UnitOfWork, version_id: str) -> Amounts:
    q = select(version_amounts).where(version_amounts.c.version_id == version_id)
    return {(r.line_id, r.period): r.amount_minor for r in (await uow.execute(q)).all()}


async def get_row(uow: UnitOfWork, plan_id: str, version_id: str, *, lock: bool = False) -> Any:
    q = select(plan_versions).where(plan_versions.c.id == version_id, plan_versions.c.plan_id == plan_id)
    row = (await uow.execute(q.with_for_update() if lock else q)).first()
    if row is None:
        raise NotFound(f"No version {version_id} of plan {plan_id}.")
    return row


async def latest(uow: UnitOfWork, plan_id: str, kind: str) -> Any:
    q = (
        select(plan_versions)
        .where(plan_versions.c.plan_id == plan_id, plan_versions.c.kind == kind)
        .order_by(plan_versions.c.seq.desc())
        .limit(1)
    )
    return (await uow.execute(q)).first()


async def budget_of(uow: UnitOfWork, p: Plan) -> Amounts:
    """The plan's budget: the locked version recorded at activation (or the scenario an admin promoted
    since); a draft's (or a plan activated before budgets were recorded) is the ledger's allocations."""
    v = await latest(uow, p.id, "budget")
    return await ledger(uow, p.id, "allocated") if v is None else await amounts_of(uow, v.id)


async def figures_of(uow: UnitOfWork, p: Plan, token: str, field_name: str = "source") -> tuple[str, Amounts]:
    """The figures a token names: budget (locked), allocated (the ledger's working allocations), actual,
    committed, forecast:latest, scenario:latest, or (budget:|forecast:|scenario:)<version id>; with the
    label the variance report shows."""
    if token == "budget":
        return token, await budget_of(uow, p)
    if token in LEDGER:
        return token, await ledger(uow, p.id, token)
    kind, _, ref = token.rpartition(":")
    if kind not in ("", "budget", "forecast", "scenario"):
        raise Invalid.on(
            field_name, f"{token!r} is not budget, allocated, actual, committed, forecast:latest or a version id"
        )
    if ref == "latest" and kind:
        v = await latest(uow, p.id, kind)
        if v is None:
            raise Invalid.on(field_name, f"plan {p.name!r} has no {kind} yet", "not_found")
    else:
        q = select(plan_versions).where(plan_versions.c.id == ref, plan_versions.c.plan_id == p.id)
        v = (await uow.execute(q)).first()
        if v is None or (kind and v.kind != kind):
            raise Invalid.on(field_name, f"plan {p.name!r} has no version {token!r}", "not_found")
    return f"{v.kind}:{v.seq}", await amounts_of(uow, v.id)


def default_as_of(p: Plan, today: dt.date) -> str | None:
    """The last month of the plan that has begun: actuals are taken up to it."""
    month = f"{today.year}-{today.month:02d}"
    done = [m for m in periods_of(p.fiscal_year, p.fiscal_year_start) if m <= month]
    return done[-1] if done else None


async def create_version(
    uow: UnitOfWork,
    who: Principal,
    *,
    plan_id: str,
    body: planning_schemas.VersionIn,
    today: dt.date | None = None,
) -> dict[str, Any]:
    ensure_unscoped(who, "Creating a plan version")
    p = await get_plan(uow, plan_id)
    as_of = None
    if body.kind == "forecast":
        as_of = check_period(p, body.as_of, "as_of") if body.as_of else default_as_of(p, today or utcnow().date())
    if body.kind == "scenario" and body.as_of is not None:
        raise Invalid.on("as_of", "only a forecast takes actuals up to a month")
    source = body.source or ("forecast:latest" if body.kind == "forecast" else "budget")
    if source == "forecast:latest" and body.source is None and await latest(uow, p.id, "forecast") is None:
        source = "budget"
    _, base = await figures_of(uow, p, source)
    if as_of is not None:
        actual = await ledger(uow, p.id, "actual")
        base = {k: v for k, v in base.items() if k[1] > as_of}
        base.update({k: v for k, v in actual.items() if k[1] <= as_of})
    seq = int(
        await uow.scalar(select(func.coalesce(func.max(plan_versions.c.seq), 0)).where(plan_versions.c.plan_id == p.id))
    )
    vid = str(uuid.uuid4())
    row = dict(
        id=vid,
        plan_id=p.id,
        seq=seq + 1,
        kind=body.kind,
        name=body.name,
        as_of=as_of,
        source=source,
        status="open",
        created_by=who.subject,
        created_at=utcnow(),
    )
    await uow.execute(insert(plan_versions).values(**row))
    await _write(uow, vid, base)
    if body.amounts:
        await _set(uow, p, await get_row(uow, p.id, vid), body.amounts)
    await uow.audit("plan_version", vid, action="budget.version.created", after={**row, "created_at": None})
    return await get_version(uow, who, plan_id=p.id, version_id=vid)


async def _write(uow: UnitOfWork, vid: str, amounts: Amounts) -> None:
    rows = [dict(version_id=vid, line_id=k[0], period=k[1], amount_minor=v) for k, v in sorted(amounts.items())]
    if rows:
        await uow.execute(insert(version_amounts), rows)


async def _set(uow: UnitOfWork, p: Plan, v: Any, items: list[planning_schemas.VersionAmountIn]) -> None:
    """Set the given (line, month) amounts of an open version (one write per item, after every check)."""
    if v.kind == "budget":
        raise Conflict(f"Version {v.seq} of plan {p.name!r} is a budget; it is locked and never changes.")
    if v.status != "open":
        raise Conflict(f"Version {v.seq} of plan {p.name!r} was promoted; it can no longer change.")
    checked: Amounts = {}
    for i, item in enumerate(items):
        at = f"amounts[{i}]"
        ln = await get_line(uow, None, item.line_id, f"{at}.line_id")
        if ln.plan_id != p.id:
            raise Invalid.on(f"{at}.line_id", f"line {ln.code!r} is in another plan")
        period = check_period(p, item.period, f"{at}.period")
        if v.as_of is not None and period <= v.as_of:
            raise Invalid.on(f"{at}.period", f"{period} is a month of actuals in this forecast (as of {v.as_of})")
        if item.currency != p.currency:
            raise Invalid.on(f"{at}.currency", f"must be the plan currency {p.currency}")
        checked[(ln.id, period)] = to_minor(item.amount, p.currency, f"{at}.amount")
    for (line_id, period), minor in checked.items():
        key = (
            version_amounts.c.version_id == v.id,
            version_amounts.c.line_id == line_id,
            version_amounts.c.period == period,
        )
        done = await uow.execute(update(version_amounts).where(*key).values(amount_minor=minor))
        if not done.rowcount:  # type: ignore[attr-defined]
            await _write(uow, v.id, {(line_id, period): minor})


async def set_amounts(
    uow: UnitOfWork, who: Principal, *, plan_id: str, version_id: str, items: list[planning_schemas.VersionAmountIn]
) -> dict[str, Any]:
    ensure_unscoped(who, "Changing a plan version")
    p = await get_plan(uow, plan_id)
    v = await get_row(uow, plan_id, version_id, lock=True)
    await _set(uow, p, v, items)
    await uow.audit("plan_version", version_id, action="budget.version.changed", after={"items": len(items)})
    return await get_version(uow, who, plan_id=plan_id, version_id=version_id)


async def get_version(uow: UnitOfWork, who: Principal, *, plan_id: str, version_id: str) -> dict[str, Any]:
    """A version with its amounts on the lines the caller may see."""
    p = await get_plan(uow, plan_id)
    v = await get_row(uow, plan_id, version_id)
    q = (
        select(version_amounts, lines.c.code, lines.c.dimensions)
        .join(lines, lines.c.id == version_amounts.c.line_id)
        .where(version_amounts.c.version_id == version_id)
        .order_by(lines.c.code, version_amounts.c.period)
    )
    items = [r for r in (await uow.execute(q)).all() if who.may_see(r.dimensions)]
    view = version_view(v, p.currency, sum(r.amount_minor for r in items))
    view["amounts"] = [
        {"line_id": r.line_id, "line_code": r.code, "period": r.period, "amount": fmt(r.amount_minor, p.currency)}
        for r in items
    ]
    return view


async def list_versions(uow: UnitOfWork, *, plan_id: str) -> list[dict[str, Any]]:
    p = await get_plan(uow, plan_id)
    totals = (
        select(version_amounts.c.version_id, func.sum(version_amounts.c.amount_minor).label("t"))
        .group_by(version_amounts.c.version_id)
        .subquery()
    )
    q = (
        select(plan_versions, totals.c.t)
        .outerjoin(totals, totals.c.version_id == plan_versions.c.id)
        .where(plan_versions.c.plan_id == p.id)
        .order_by(plan_versions.c.seq)
    )
    return [version_view(r, p.currency, int(r._mapping["t"] or 0)) for r in (await uow.execute(q)).all()]


async def promote(
    uow: UnitOfWork, who: Principal, *, postings: Postings, plan_id: str, version_id: str, to: str
) -> dict[str, Any]:
    """A scenario becomes the new forecast (a copy, the latest), or by an admin the budget."""
    ensure_unscoped(who, "Promoting a plan version")
    p = await get_plan(uow, plan_id)
    v = await get_row(uow, plan_id, version_id, lock=True)
    if v.kind == "budget":
        raise Conflict(f"Version {v.seq} of plan {p.name!r} is a budget already; promote a scenario.")
    if v.status != "open":
        raise Conflict(f"Version {v.seq} of plan {p.name!r} was promoted already (to {v.promoted_to}).")
    if v.kind != "scenario" and to == "forecast":
        raise Conflict(f"Version {v.seq} is a forecast already; promote a scenario.")
    amounts = await amounts_of(uow, v.id)
    made = None
    if to == "forecast":
        body = planning_schemas.VersionIn(kind="forecast", name=f"{v.name} (promoted)", source=v.id)
        made = (await create_version(uow, who, plan_id=p.id, body=body))["id"]
        await uow.execute(update(plan_versions).where(plan_versions.c.id == made).values(as_of=None))
    else:
        if "admin" not in who.roles:
            raise Forbidden("Only an admin may make a version the budget.")
        await _post_budget(uow, who, postings, p, amounts)
        made = await lock_budget(uow, who, p, amounts=amounts, source=v.id, name=f"{v.name} (promoted)")
    await uow.execute(
        update(plan_versions)
        .where(plan_versions.c.id == v.id)
        .values(
            status="promoted", promoted_to=to, promoted_version_id=made, promoted_by=who.subject, promoted_at=utcnow()
        )
    )
    await uow.audit("plan_version", v.id, action="budget.version.promoted", after={"to": to, "forecast": made})
    return await get_version(uow, who, plan_id=p.id, version_id=v.id)


async def _post_budget(uow: UnitOfWork, who: Principal, postings: Postings, p: Plan, amounts: Amounts) -> None:
    """Allocation entries (up or down) that make each line's own allocation the version's amount."""
    budget = await ledger(uow, p.id, "allocated")
    rows = {r.id: r for r in (await uow.execute(select(lines).where(lines.c.plan_id == p.id))).all()}
    legs = []
    for (line_id, period), minor in sorted(amounts.items()):
        diff = minor - budget.get((line_id, period), 0)
        if diff:
            on = await postable(uow, p, period, None)
            m = Money(abs(diff), p.currency, abs(diff), "1")
            legs.append(
                Leg(rows[line_id], period, "allocation", abs(diff), (diff, 0, 0, 0), m, on, memo="promoted version")
            )
    if not legs:
        return
    # Checked whatever the policy: a budget cut cannot take away money already committed or spent.
    await postings.write(uow, who, p, legs, check=True)
    for leg in legs:
        data = entry_event(leg, p)
        if leg.deltas[0] < 0:
            data = data.model_copy(update={"amount": fmt(leg.deltas[0], p.currency)})
        await uow.publish(events.ALLOCATION_POSTED, leg.id, data)
