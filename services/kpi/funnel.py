"""Conversion metrics: a cohort rate per bucket of a series, computed by the cohort code (cohorts.py).

A metric of kind "conversion" (from_stage A, to_stage B, window_days) has, in each bucket, the share
of the entities whose A fact lies in the bucket that reached B within the window after it; each cell
also has the counts and the median and p90 days it took. The bucket is the cohort's: when the entity
entered, not when it converted, so a recent bucket's rate still grows while its windows run
(`complete` says whether every window of the bucket has ended). Group-by and filters apply to the A
fact's dimensions, the caller's scopes too, as for `/v1/cohorts`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.kpi.cohorts import CohortLimits, Group, Stats, group_order, narrowed, read, scope_of, tally
from services.kpi.definitions import Definition
from services.kpi.periods import Window
from shared.db import utcnow
from shared.identity import Principal
from shared.uow import UnitOfWork
from shared.work import Budget, run_bounded


@dataclass
class Cohorts:
    """A conversion metric's cells over a window: groups in order, the rate and the details per (group, bucket)."""

    groups: list[Group]
    values: dict[tuple[Group, int], Decimal | None]
    details: dict[tuple[Group, int], dict[str, Any]]


def edges(w: Window) -> list[dt.datetime]:
    """The window's start, its later buckets' starts and its end (the day after its last) as UTC instants: the
    first bucket is labelled by its grain's start (a Monday, a month's first) but begins at the window's."""
    inner = [w.instant(b) for b in w.starts[1:]]
    return [w.instant(w.start), *inner, w.instant(w.end + dt.timedelta(days=1))]


async def compute(
    uow: UnitOfWork,
    who: Principal | None,
    *,
    metric: Definition,
    w: Window,
    group_by: list[str],
    flt: dict[str, set[str]],
    limits: CohortLimits,
    field: str = "query.from",
) -> Cohorts:
    """Every bucket's cohort (counted by the database, tallied in a worker thread, `limits` bound both)."""
    bounds = edges(w)
    window_days = metric.window_days or 90
    own = {k: {v} for k, v in metric.filter.items()}  # the definition's own filter narrows the caller's
    found = await read(
        uow,
        from_stage=metric.from_stage or "",
        to_stage=metric.to_stage or "",
        edges=bounds,
        window_days=window_days,
        group_by=group_by,
        where=narrowed(flt, own, scope_of(who)),
        limits=limits,
        field=field,
    )
    budget = Budget(limits.seconds, what="conversion metric", hint="shorten from/to")
    cells: dict[tuple[Group, int], Stats] = await run_bounded(tally, found, window_days, budget=budget, service="kpi")
    groups = sorted({g for g, _ in cells}, key=group_order)
    if not group_by and not groups:
        groups = [()]
    now = utcnow()
    window = dt.timedelta(days=window_days)
    values: dict[tuple[Group, int], Decimal | None] = {}
    details: dict[tuple[Group, int], dict[str, Any]] = {}
    empty = Stats(0, 0, None, None)
    for g in groups:
        for i in range(len(w.starts)):
            s = cells.get((g, i), empty)
            values[(g, i)] = s.rate
            details[(g, i)] = {**s.details(), "complete": bounds[i + 1] + window <= now}
    return Cohorts(groups, values, details)
