"""A metric's series: its value per bucket and group over a window, beside its targets where they apply.

Targets are shown on month and quarter buckets of an ungrouped series whose filter names one
value per dimension, the filter a target is set for.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services.kpi.compute import compute, resolve
from services.kpi.definitions import Definition
from services.kpi.models import targets
from services.kpi.periods import Window, period_label, window
from services.kpi.values import dims_hash, fmt, from_micro
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
    if w.grain not in ("month", "quarter") or single is None:
        return {}
    t = targets.c
    rows = await uow.execute(select(t.period, t.value).where(t.metric == key, t.filter_hash == dims_hash(single)))
    return {r.period: from_micro(r.value) for r in rows}


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
) -> dict[str, Any]:
    w = window(start, end, grain, tz)
    plan = await resolve(uow, key, version)
    grid, used = await compute(uow, who, plan=plan, w=w, group_by=group_by, flt=flt, read_from=read_from)
    m = plan.metric
    goals = await _targets_by_label(uow, key, flt, w) if not group_by else {}
    out = []
    for g in grid.groups:
        points = []
        for i, b in enumerate(w.starts):
            value = grid.cells[(g, i)][key]
            point: dict[str, Any] = {"bucket": b.isoformat(), "value": fmt(value, m.unit)}
            goal = goals.get(period_label(b, grain) or "")
            if goal is not None:
                point.update(versus(value, goal, m))
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
        "series": out,
    }
