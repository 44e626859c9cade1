"""A metric's series: its value per bucket and group over a window, beside its targets where they apply.

Targets are shown on month, quarter and fiscal buckets of an ungrouped series whose filter names
one value per dimension, the filter a target is set for. Comparisons compute the same series over
the window moved back one bucket or one year (`periods.shift`) and pair buckets by their shifted
start, so partial buckets at the window's edges compare with the same part of the earlier bucket.
A conversion metric's points are cohorts (funnel.py): each also carries `cohort` (entered, converted,
median and p90 days, complete); they are not cumulative.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services.kpi import cumulative
from services.kpi.cohorts import CohortLimits
from services.kpi.comparisons import change
from services.kpi.compute import Grid, Plan, compute, empty_cell, resolve
from services.kpi.definitions import Definition
from services.kpi.models import targets
from services.kpi.periods import MONTHS, Window, period_label, shift, window
from services.kpi.values import dims_hash, fmt, from_micro
from shared.bounds import MIN_DATE
from shared.errors import Invalid
from shared.identity import Principal
from shared.uow import UnitOfWork


def versus(actual: Decimal | None, target: Decimal, m: Definition) -> dict[str, Any]:
    """Target, variance and attainment of `actual` (attainment is inverted when lower is better)."""
    variance = None if actual is None else actual - target
    if actual is None:
        attainment = None
    elif m.direction == "higher_is_better":
        attainment = None if target == 0 else actual / target
    else:
        attainment = None if actual == 0 else target / actual
    return {"target": fmt(target, m.unit), "variance": fmt(variance, m.unit), "attainment": fmt(attainment, "percent")}


def single_values(flt: dict[str, set[str]]) -> dict[str, str] | None:
    """The filter as one value per dimension (a target's filter), or None when one names several."""
    single = {k: next(iter(v)) for k, v in flt.items() if len(v) == 1}
    return single if len(single) == len(flt) else None


async def _targets_by_label(uow: UnitOfWork, key: str, flt: dict[str, set[str]], w: Window) -> dict[str, Decimal]:
    single = single_values(flt)
    if w.grain not in MONTHS or single is None:
        return {}
    t = targets.c
    rows = await uow.execute(select(t.period, t.value).where(t.metric == key, t.filter_hash == dims_hash(single)))
    return {r.period: from_micro(r.value) for r in rows}


@dataclass(frozen=True)
class Query:
    """What is asked of every window (the series' own and its comparisons')."""

    plan: Plan
    group_by: list[str]
    flt: dict[str, set[str]]
    cumulative: str | None
    trailing_days: int
    cohort_limits: CohortLimits | None = None

    async def grid(self, uow: UnitOfWork, who: Principal | None, w: Window, read_from: str) -> tuple[Grid, str]:
        if self.cumulative is None:
            return await compute(
                uow,
                who,
                plan=self.plan,
                w=w,
                group_by=self.group_by,
                flt=self.flt,
                read_from=read_from,
                cohort_limits=self.cohort_limits,
            )
        return await cumulative.grid(
            uow,
            who,
            plan=self.plan,
            w=w,
            group_by=self.group_by,
            flt=self.flt,
            read_from=read_from,
            kind=self.cumulative,
            trailing_days=self.trailing_days,
        )


async def _earlier(
    uow: UnitOfWork, who: Principal | None, q: Query, w: Window, compare: str, rf: str
) -> tuple[Window, Grid | None]:
    """The series over the window moved back (None when it lies wholly before the first day data may have)."""
    start, end = shift(w.start, w.grain, compare), shift(w.end, w.grain, compare)
    if end < MIN_DATE:
        return w, None
    earlier = window(max(start, MIN_DATE), end, w.grain, w.tz, w.fiscal_start)
    grid, _ = await q.grid(uow, who, earlier, rf)
    return earlier, grid


async def series(
    uow: UnitOfWork,
    who: Principal | None,
    *,
    key: str,
    start: dt.date,
    end: dt.date,
    grain: str,
    group_by: list[str],
    flt: dict[str, set[str]],
    tz: str,
    version: int | None = None,
    read_from: str = "auto",
    fiscal_start: int = 1,
    compare: list[str] | None = None,
    cumulative: str | None = None,
    trailing_days: int = 90,
    cohort_limits: CohortLimits | None = None,
) -> dict[str, Any]:
    w = window(start, end, grain, tz, fiscal_start)
    plan = await resolve(uow, key, version)
    if cumulative is not None and plan.metric.kind == "conversion":
        raise Invalid.on(
            "query.cumulative", f"{key} is a conversion metric: its buckets are cohorts, not running totals"
        )
    q = Query(plan, group_by, flt, cumulative, trailing_days, cohort_limits)
    grid, used = await q.grid(uow, who, w, read_from)
    m = plan.metric
    goals = await _targets_by_label(uow, key, flt, w) if not group_by and cumulative is None else {}
    earlier = {}
    for c in compare or ():
        ew, egrid = await _earlier(uow, who, q, w, c, used)
        earlier[c] = ({s: j for j, s in enumerate(ew.starts)}, egrid)
    empty = empty_cell(plan)
    fiscal = grain.startswith("fiscal")
    out = []
    for g in grid.groups:
        points = []
        for i, b in enumerate(w.starts):
            value = grid.cells[(g, i)][key]
            point: dict[str, Any] = {"bucket": b.isoformat(), "value": fmt(value, m.unit)}
            if grid.details:
                point["cohort"] = grid.details[(g, i)]
            label = period_label(b, grain, fiscal_start)
            if fiscal:
                point["period"] = label
            goal = goals.get(label or "")
            if goal is not None:
                point.update(versus(value, goal, m))
            if earlier:
                point["compare"] = {}
            for c, (index, egrid) in earlier.items():
                then = shift(b, grain, c)
                j = index.get(then)
                cell = egrid.cells.get((g, j), empty) if egrid is not None and j is not None else empty
                point["compare"][c] = {"bucket": then.isoformat(), **change(value, cell[key], m.unit)}
            points.append(point)
        out.append({"group": dict(zip(group_by, g, strict=True)), "points": points})
    return {
        "metric": key,
        "version": m.version,
        "unit": m.unit,
        "grain": grain,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "tz": tz,
        "read_from": used,
        **({"cumulative": cumulative} if cumulative else {}),
        **({"trailing_days": trailing_days} if cumulative == "trailing" else {}),
        "series": out,
    }
