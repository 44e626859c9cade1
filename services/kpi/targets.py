"""Targets, the scorecard and the at-risk check.

A target is a metric's value for a period ("2027-Q1") and a filter (one value per dimension).
Pacing is linear: additive bases (sums, counts) are scaled to the whole period, ratios and
averages re-evaluated from the scaled bases. The at-risk check publishes `kpi.target.at_risk`
once per target, claimed by a conditional update so replicas never publish it twice.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from services.kpi import definitions
from services.kpi.cohorts import CohortLimits
from services.kpi.comparisons import change
from services.kpi.compute import ADDITIVE, Plan, compute, empty_cell, resolve
from services.kpi.events import TARGET_AT_RISK, KpiTargetAtRisk
from services.kpi.models import targets
from services.kpi.periods import Period, elapsed, named_period, parse_period, window
from services.kpi.series import single_values, versus
from services.kpi.values import canonical_dims, dims_hash, fmt, from_micro, to_micro
from shared.bounds import MIN_DATE
from shared.db import utcnow
from shared.errors import Conflict, Errors, Forbidden, Invalid, NotFound
from shared.identity import Principal
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

Units = Callable[..., AbstractAsyncContextManager[UnitOfWork]]  # Runtime.unit_of_work


def _target_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "metric": row.metric,
        "period": row.period,
        "filter": row.filter,
        "value": format(from_micro(row.value).normalize(), "f"),
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "at_risk_published_at": row.at_risk_published_at.isoformat() if row.at_risk_published_at else None,
        "basis": _basis(row),
    }


def _basis(row: Any) -> dict[str, str] | None:
    if getattr(row, "basis", None) is None:
        return None
    return {
        "kind": "last_year",
        "period": row.basis,
        "value": format(from_micro(row.basis_value).normalize(), "f"),
        "change": row.change,
    }


def _checked(body: dict[str, Any], fiscal_start: int) -> tuple[dict[str, str], int]:
    """The target's filter and value in micro-units; every broken field reported at once."""
    errs = Errors()
    flt: dict[str, str] = {}
    value = 0
    try:
        flt = canonical_dims(body.get("filter") or {})
    except ValueError as exc:
        errs.add("filter", str(exc))
    if (body.get("value") is None) == (body.get("change_vs_last_year") is None):
        errs.add("value", "give either value or change_vs_last_year")
    elif body.get("value") is not None:
        try:
            value = to_micro(body["value"])
        except ValueError as exc:
            errs.add("value", str(exc))
    elif not Decimal(str(body["change_vs_last_year"])) > -1:
        errs.add("change_vs_last_year", "must be more than -1 (-0.25 is a quarter less than last year)")
    try:
        parse_period(body["period"], fiscal_start=fiscal_start)
    except Invalid as exc:
        errs.items.extend(exc.errors)
    errs.raise_if_any()
    return flt, value


async def create_target(
    uow: UnitOfWork, who: Principal, *, body: dict[str, Any], fiscal_start: int = 1
) -> dict[str, Any]:
    flt, value = _checked(body, fiscal_start)
    await definitions.get_definition(uow, body["metric"])
    if not who.may_see(flt):
        scopes = ", ".join(sorted(who.scopes))
        raise Forbidden(f"Your scopes ({scopes}) do not cover a target on {flt or 'everything'}.")
    t = targets.c
    h = dims_hash(flt)
    exists = await uow.scalar(
        select(t.id).where(t.metric == body["metric"], t.period == body["period"], t.filter_hash == h)
    )
    if exists:
        raise Conflict(f"A target for {body['metric']} in {body['period']} with this filter exists ({exists}).")
    basis: dict[str, Any] = {"basis": None, "basis_value": None, "change": None}
    if body.get("change_vs_last_year") is not None:
        value, basis = await _against_last_year(uow, who, body, flt, fiscal_start)
    row = {
        "id": str(uuid.uuid4()),
        "metric": body["metric"],
        "period": body["period"],
        "filter": flt,
        "filter_hash": h,
        "value": value,
        "version": 1,
        "created_at": utcnow(),
        "created_by": who.subject,
        "at_risk_published_at": None,
        **basis,
    }
    await uow.execute(targets.insert().values(**row))
    return _target_dict(_Record(row))


async def _against_last_year(
    uow: UnitOfWork, who: Principal, body: dict[str, Any], flt: dict[str, str], fiscal_start: int
) -> tuple[int, dict[str, Any]]:
    """The target's value: the same period last year (its filter, the caller's scopes) times 1 + change."""
    plan = await resolve(uow, body["metric"])
    last = named_period(body["period"], "period", fiscal_start).shifted("last_year")
    then = None
    if last.last >= MIN_DATE:
        env = await _env(uow, who, plan, max(last.first, MIN_DATE), last.last, {k: {v} for k, v in flt.items()})
        then = env[plan.metric.key]
    if not then:  # undefined, or 0: no change of it means anything
        raise Invalid.on("change_vs_last_year", f"{body['metric']} is {then} in {last.label}: nothing to change from")
    change_by = Decimal(str(body["change_vs_last_year"]))
    goal = (then * (1 + change_by)).quantize(Decimal("0.000001"), rounding=decimal.ROUND_HALF_EVEN)
    try:
        value = to_micro(goal)
    except ValueError as exc:
        raise Invalid.on("change_vs_last_year", str(exc)) from None
    basis = {
        "basis": last.label,
        "basis_value": to_micro(then.quantize(Decimal("0.000001"))),
        "change": str(change_by),
    }
    return value, basis


class _Record:
    """A row dict read like a result row (row.id)."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)


async def get_target(uow: UnitOfWork, who: Principal, *, target_id: str) -> dict[str, Any]:
    row = (await uow.execute(select(targets).where(targets.c.id == target_id))).first()
    if row is None or not who.may_see(row.filter):
        raise NotFound(f"There is no target {target_id!r}.")
    return _target_dict(row)


async def list_targets(
    uow: UnitOfWork, who: Principal, *, metric: str | None, period: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    t = targets.c
    q = select(targets).order_by(t.id).limit(limit * 4 + 1)
    if metric:
        q = q.where(t.metric == metric)
    if period:
        q = q.where(t.period == period)
    after = decode_cursor(cursor)
    if after:
        q = q.where(t.id > str(after[0]))
    items: list[Any] = []
    while True:
        rows = (await uow.execute(q)).all()
        items.extend(r for r in rows if who.may_see(r.filter))
        if len(items) > limit or len(rows) <= limit * 4:
            break
        q = q.where(t.id > rows[-1].id)
    page, nxt = page_of(items[: limit + 1], limit, lambda r: (r.id,))
    return [_target_dict(r) for r in page], nxt


def project(plan: Plan, env: dict[str, Decimal | None], fraction: float) -> Decimal | None:
    """Linear pacing: additive bases scaled to the whole period, ratios and averages re-evaluated."""
    if plan.metric.kind == "conversion":  # a rate of the cohorts so far: nothing to scale
        return env.get(plan.metric.key) if fraction > 0 else None
    rounded = round(fraction, 9)
    if rounded <= 0:  # (a period that began less than a nanoth of its length ago rounds to 0)
        return None
    factor = Decimal(1) / Decimal(str(rounded))
    projected: dict[str, Decimal | None] = {}
    with decimal.localcontext(prec=40):
        for d in plan.order():
            if d.kind == "base":
                v = env.get(d.key)
                projected[d.key] = v * factor if v is not None and d.aggregation in ADDITIVE else v
            else:
                projected[d.key] = d.parsed.evaluate(projected)
    return projected[plan.metric.key]


def is_at_risk(direction: str, projected: Decimal | None, target: Decimal) -> bool:
    if projected is None:
        return False
    return projected < target if direction == "higher_is_better" else projected > target


async def _period_cell(
    uow: UnitOfWork,
    who: Principal | None,
    plan: Plan,
    start: dt.date,
    end: dt.date,
    flt: dict[str, set[str]],
    limits: CohortLimits | None = None,
) -> tuple[dict[str, Decimal | None], dict[str, Any] | None]:
    """The plan's values over start..end as one bucket, and a conversion metric's cohort details (else None)."""
    w = window(start, end, "period")
    grid, _ = await compute(uow, who, plan=plan, w=w, group_by=[], flt=flt, cohort_limits=limits)
    return grid.cells[((), 0)], grid.details.get(((), 0))


async def _env(
    uow: UnitOfWork,
    who: Principal | None,
    plan: Plan,
    start: dt.date,
    end: dt.date,
    flt: dict[str, set[str]],
    limits: CohortLimits | None = None,
) -> dict[str, Decimal | None]:
    return (await _period_cell(uow, who, plan, start, end, flt, limits))[0]


async def _compared(
    uow: UnitOfWork,
    who: Principal | None,
    plan: Plan,
    p: Period,
    c: str,
    flt: dict[str, set[str]],
    today: dt.date,
    limits: CohortLimits | None = None,
) -> dict[str, Any]:
    """The earlier period's value and the change. While `p` runs, both sides count the same number of
    days from their first (days 1..n against days 1..n), so a half-finished quarter is not compared
    with a whole one."""
    q = p.shifted(c)
    key, end, current_end = plan.metric.key, q.last, p.last
    if p.first <= today <= p.last:
        current_end = today
        end = min(q.last, q.first + (today - p.first))
    current = (await _env(uow, who, plan, p.first, current_end, flt, limits))[key]
    # (no measurement lies before MIN_DATE: an earlier period reaching back further is read from there)
    if end < MIN_DATE:
        then = empty_cell(plan)[key]
    else:
        then = (await _env(uow, who, plan, max(q.first, MIN_DATE), end, flt, limits))[key]
    span = {"period": q.label, "from": q.first.isoformat(), "to": end.isoformat()}
    return {**span, **change(current, then, plan.metric.unit)}


async def _card_item(
    uow: UnitOfWork,
    who: Principal | None,
    key: str,
    p: Period,
    flt: dict[str, set[str]],
    now: dt.datetime,
    compare: list[str],
    limits: CohortLimits | None = None,
) -> dict[str, Any]:
    fraction = elapsed(p.first, p.last, now)
    plan = await resolve(uow, key)
    env, cohort = await _period_cell(uow, who, plan, p.first, p.last, flt, limits)
    actual = env[key]
    m = plan.metric
    single = single_values(flt)
    row = None
    if single is not None:
        t = targets.c
        q = select(targets).where(t.metric == key, t.period == p.label, t.filter_hash == dims_hash(single))
        row = (await uow.execute(q)).first()
    projected = project(plan, env, fraction)
    item: dict[str, Any] = {
        "metric": key,
        "name": m.name,
        "version": m.version,
        "unit": m.unit,
        "direction": m.direction,
        "actual": fmt(actual, m.unit),
        "target": None,
        "variance": None,
        "attainment": None,
        "projected": fmt(projected, m.unit),
        "at_risk": False,
        "target_id": None,
    }
    if cohort is not None:
        item["cohort"] = cohort
    if row is not None:
        goal = from_micro(row.value)
        item.update(versus(actual, goal, m))
        item["target_id"] = row.id
        item["at_risk"] = fraction < 1 and is_at_risk(m.direction, projected, goal)
    if compare:
        item["compare"] = {}
    for c in compare:
        item["compare"][c] = await _compared(uow, who, plan, p, c, flt, now.date(), limits)
    return item


async def scorecard(
    uow: UnitOfWork,
    who: Principal | None,
    *,
    keys: list[str],
    period: str,
    flt: dict[str, set[str]],
    now: dt.datetime,
    fiscal_start: int = 1,
    compare: list[str] | None = None,
    cohort_limits: CohortLimits | None = None,
) -> dict[str, Any]:
    """Each metric's actual, target, variance, attainment and projection for one period, and comparisons
    (a conversion metric's actual is the rate of the cohort that entered in the period, with its `cohort`)."""
    p = named_period(period, "query.period", fiscal_start)
    fraction = elapsed(p.first, p.last, now)
    items = [await _card_item(uow, who, key, p, flt, now, compare or [], cohort_limits) for key in keys]
    return {
        "period": period,
        "from": p.first.isoformat(),
        "to": p.last.isoformat(),
        "elapsed": round(fraction, 4),
        "items": items,
    }


async def _verdict(
    units: Units, row: Any, now: dt.datetime, min_elapsed: float, fiscal_start: int
) -> KpiTargetAtRisk | None:
    """The at-risk event of one unpublished target, or None when it is on track (or too early to say)."""
    try:
        start, end = parse_period(row.period, fiscal_start=fiscal_start)
    except Invalid:
        return None  # stored before periods were bounded (e.g. "9999"): no verdict, and the others go on
    fraction = elapsed(start, end, now)
    if not (min_elapsed <= fraction < 1):
        return None
    async with units(readonly=True) as uow:
        plan = await resolve(uow, row.metric)
        flt = {k: {v} for k, v in row.filter.items()}
        grid, _ = await compute(uow, None, plan=plan, w=window(start, end, "period"), group_by=[], flt=flt)
    env = grid.cells[((), 0)]
    projected = project(plan, env, fraction)
    goal = from_micro(row.value)
    m = plan.metric
    if not is_at_risk(m.direction, projected, goal):
        return None
    return KpiTargetAtRisk(
        target_id=row.id,
        metric=row.metric,
        period=row.period,
        filter=row.filter,
        actual=fmt(env[row.metric], m.unit),
        target=fmt(goal, m.unit),
        projected=fmt(projected, m.unit),
        direction=m.direction,
        elapsed=round(fraction, 4),
    )


async def evaluate_targets(
    units: Units, *, now: dt.datetime, min_elapsed: float = 0.1, fiscal_start: int = 1
) -> list[str]:
    """Publish kpi.target.at_risk once per target whose linear projection misses it; returns their ids.

    `units` opens a unit of work (`Runtime.unit_of_work`): each target is judged in its own read
    and claimed in its own write, so one slow metric holds no lock over the others.
    """
    t = targets.c
    async with units(readonly=True) as uow:
        rows = (await uow.execute(select(targets).where(t.at_risk_published_at.is_(None)))).all()
    published: list[str] = []
    for row in rows:
        event = await _verdict(units, row, now, min_elapsed, fiscal_start)
        if event is None:
            continue
        async with units() as uow:
            claimed = await uow.execute(
                update(targets).where(t.id == row.id, t.at_risk_published_at.is_(None)).values(at_risk_published_at=now)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                continue  # another replica published it
            await uow.publish(TARGET_AT_RISK, row.id, event)
        published.append(row.id)
    return published
