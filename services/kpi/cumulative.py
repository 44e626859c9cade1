"""Cumulative series: each bucket's value over a window ending with the bucket's last day.

To-date kinds (month, quarter, year, fiscal year to date) run from the start of the period the
bucket's last day lies in; `trailing` covers the last N days up to it. The bases are read per
day (rollups or a raw scan, as any series) and added up exactly (`Acc.merge`), so a ratio is the
ratio of running sums and a count of distinct values counts each value once, never a sum of
daily ratios or counts. The adding up runs off the event loop (`shared.work.run_bounded`), its
size checked before it starts and its time bounded by SECONDS.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from services.kpi.compute import Acc, Grid, Group, Plan, aggregates, evaluate
from services.kpi.definitions import Definition
from services.kpi.periods import Window, grain_start, next_start, window
from shared.bounds import MIN_DATE
from shared.errors import Invalid
from shared.identity import Principal
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

KINDS = ("month_to_date", "quarter_to_date", "year_to_date", "fiscal_year_to_date", "trailing")
MAX_TRAILING_DAYS = 366
MAX_STEPS = 2_000_000  # day aggregates added up per answer (buckets x trailing days x groups x bases)
SECONDS = 20.0  # under the gateway's 30 s upstream timeout, like attribution


def anchor(day: dt.date, kind: str, trailing_days: int, fiscal_start: int = 1) -> dt.date:
    """The first day of the cumulative window that ends with `day`."""
    if kind == "trailing":
        return day - dt.timedelta(days=trailing_days - 1)
    grain = {"month_to_date": "month", "quarter_to_date": "quarter", "fiscal_year_to_date": "fiscal_year"}
    if kind == "year_to_date":
        return dt.date(day.year, 1, 1)
    return grain_start(day, grain[kind], fiscal_start)


def bucket_ends(w: Window) -> list[dt.date]:
    """Each bucket's last day, the window's last day for the last bucket (a "period" window: one bucket)."""
    if w.grain == "period":
        return [w.end]
    ends = [next_start(s, w.grain) - dt.timedelta(days=1) for s in w.starts]
    return [min(e, w.end) for e in ends]


async def grid(
    uow: UnitOfWork,
    who: Principal | None,
    *,
    plan: Plan,
    w: Window,
    group_by: list[str],
    flt: dict[str, set[str]],
    read_from: str,
    kind: str,
    trailing_days: int,
    caller: Disconnectable | None = None,
) -> tuple[Grid, str]:
    """The cumulative value of every metric of the plan per group and bucket of `w`."""
    ends = bucket_ends(w)
    anchors = [anchor(e, kind, trailing_days, w.fiscal_start) for e in ends]
    try:  # (no measurement lies before MIN_DATE: a window reaching back further starts there)
        days = window(max(anchors[0], MIN_DATE), w.end, "day", w.tz, w.fiscal_start)
    except Invalid:
        raise Invalid.on("query.cumulative", "the days it reads (from the first window start) pass 4,000") from None
    accs, groups, used = await aggregates(uow, who, plan=plan, w=days, group_by=group_by, flt=flt, read_from=read_from)
    spans = [(max(0, (a - days.start).days), (e - days.start).days) for a, e in zip(anchors, ends, strict=True)]
    steps = sum(last - first + 1 for first, last in spans) * len(groups) * max(1, len(accs))
    if kind == "trailing" and steps > MAX_STEPS:
        raise Invalid.on("query.trailing_days", f"{steps:,} day aggregates to add up (at most {MAX_STEPS:,}); narrow")
    budget = Budget(SECONDS, what="cumulative series", hint="narrow from/to, trailing_days or group_by")
    cells = await run_bounded(_cells, plan.order(), accs, groups, spans, kind, budget=budget, caller=caller)
    return Grid(groups, cells), used


def _cells(
    budget: Budget,
    order: list[Definition],
    accs: dict[str, dict[tuple[Group, int], Acc]],
    groups: list[Group],
    spans: list[tuple[int, int]],
    kind: str,
) -> dict[tuple[Group, int], dict[str, Decimal | None]]:
    cells: dict[tuple[Group, int], dict[str, Decimal | None]] = {}
    for g in groups:
        running: dict[str, list[Acc]] = {k: _windows(acc, g, spans, kind) for k, acc in accs.items()}
        budget.check()
        for i in range(len(spans)):
            cells[(g, i)] = evaluate(order, {k: r[i] for k, r in running.items()})
    return cells


def _windows(acc: dict[tuple[Group, int], Acc], g: Group, spans: list[tuple[int, int]], kind: str) -> list[Acc]:
    """One base's aggregate over each span of days (to-date spans share a start: one pass suffices)."""
    out: list[Acc] = []
    if kind != "trailing":
        total, started, day = Acc(), None, 0
        for first, last in spans:
            if first != started:
                total, started, day = Acc(), first, first
            for d in range(day, last + 1):
                if (g, d) in acc:
                    total.merge(acc[(g, d)])
            day = last + 1
            snapshot = Acc()
            snapshot.merge(total)
            out.append(snapshot)
        return out
    for first, last in spans:
        span = Acc()
        for d in range(first, last + 1):
            if (g, d) in acc:
                span.merge(acc[(g, d)])
        out.append(span)
    return out
