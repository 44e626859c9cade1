"""The variance report: a plan's versions side by side (the budget, forecasts, scenarios, the actuals),
per line or dimension value and month, fiscal quarter or fiscal year (the plan's, as `fiscal_year_start`
places them), with a total per group and in all, and each figure's variance against the first one compared,
absolute and in per cent. Integers in minor units until the answer's decimal strings; a percentage
is a Decimal rounded half-even to two places, and none when the base is zero."""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import select

from services.budget.lines import DIMENSIONS
from services.budget.models import lines
from services.budget.periods import fiscal_quarter, period_range, periods_of
from services.budget.plans import Plan, get_plan
from services.budget.versions import figures_of
from shared.errors import Invalid
from shared.identity import Principal
from shared.money import fmt
from shared.uow import UnitOfWork

CENT = Decimal("0.01")
MAX_COMPARED = 4
INTERVALS = ("month", "fiscal_quarter", "fiscal_year")


def bucket(p: Plan, period: str, interval: str) -> str:
    """The month, fiscal quarter ("FY2027-Q1") or fiscal year ("FY2027") a period is reported in."""
    if interval == "fiscal_quarter":
        return fiscal_quarter(p, period)
    if interval == "fiscal_year":
        return f"FY{p.fiscal_year}"
    return period


def months_of(p: Plan, interval: str, start: str, end: str) -> dict[str, list[str]]:
    """Each bucket of the range and its months within `start`..`end`."""
    out: dict[str, list[str]] = defaultdict(list)
    for month in periods_of(p.fiscal_year, p.fiscal_year_start):
        if start <= month <= end:
            out[bucket(p, month, interval)].append(month)
    return dict(out)


def percent(base: int, other: int) -> Decimal | None:
    """(other - base) / base in per cent, two places; None when there is no base to compare with."""
    if base == 0:
        return None
    return (Decimal(other - base) * 100 / Decimal(base)).quantize(CENT, rounding=ROUND_HALF_EVEN)


def variances(figures: dict[str, int], labels: list[str], currency: str) -> list[dict[str, Any]]:
    """Each figure after the first against the first: absolute (a money string) and per cent."""
    base = figures[labels[0]]
    out = []
    for label in labels[1:]:
        pct = percent(base, figures[label])
        out.append(
            {
                "of": label,
                "against": labels[0],
                "absolute": fmt(figures[label] - base, currency),
                "percent": None if pct is None else str(pct),
            }
        )
    return out


def _row(figures: dict[str, int], labels: list[str], currency: str) -> dict[str, Any]:
    return {
        "figures": {label: fmt(figures[label], currency) for label in labels},
        "variances": variances(figures, labels, currency),
    }


async def report(
    uow: UnitOfWork,
    who: Principal,
    *,
    plan_id: str,
    compare: str,
    group_by: str | None,
    start: str | None,
    end: str | None,
    interval: str = "month",
) -> dict[str, Any]:
    p = await get_plan(uow, plan_id)
    if interval not in INTERVALS:
        raise Invalid.on("query.period", f"must be one of {', '.join(INTERVALS)}")
    start, end = period_range(p, start, end)
    tokens = [t.strip() for t in compare.split(",") if t.strip()]
    if not 2 <= len(tokens) <= MAX_COMPARED or len(set(tokens)) != len(tokens):
        raise Invalid.on(
            "query.compare", f"name 2 to {MAX_COMPARED} different figures, e.g. budget,forecast:latest,actual"
        )
    if group_by not in (None, "line", *DIMENSIONS):
        raise Invalid.on("query.group_by", f"must be line or one of {', '.join(DIMENSIONS)}")
    labels, sets = [], []
    for token in tokens:
        label, amounts = await figures_of(uow, p, token, "query.compare")
        labels.append(label)
        sets.append(amounts)
    visible = {r.id: r for r in (await uow.execute(select(lines).where(lines.c.plan_id == p.id))).all()}
    visible = {k: r for k, r in visible.items() if who.may_see(r.dimensions)}

    def group_of(line_id: str) -> str | None:
        ln = visible[line_id]
        return ln.code if group_by in (None, "line") else (ln.dimensions or {}).get(group_by)

    cells: dict[tuple[str | None, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(labels, 0))
    for label, amounts in zip(labels, sets, strict=True):
        for (line_id, period), minor in amounts.items():
            if line_id in visible and start <= period <= end:
                cells[(group_of(line_id), bucket(p, period, interval))][label] += minor
    shaped = _shape(p.id, p.currency, start, end, labels, group_by or "line", cells, months_of(p, interval, start, end))
    return {**shaped, "period": interval}


def _shape(
    plan_id: str,
    currency: str,
    start: str,
    end: str,
    labels: list[str],
    group_by: str,
    cells: dict[tuple[str | None, str], dict[str, int]],
    months: dict[str, list[str]],
) -> dict[str, Any]:
    groups: dict[str | None, list[tuple[str, dict[str, int]]]] = defaultdict(list)
    for (group, period), figs in sorted(cells.items(), key=lambda kv: (kv[0][0] is None, str(kv[0][0]), kv[0][1])):
        groups[group].append((period, figs))
    total = dict.fromkeys(labels, 0)
    items = []
    for group, periods in groups.items():
        sub = dict.fromkeys(labels, 0)
        for _, figs in periods:
            for label in labels:
                sub[label] += figs[label]
                total[label] += figs[label]
        items.append(
            {
                "group": group,
                "periods": [
                    {"period": period, "months": months[period], **_row(figs, labels, currency)}
                    for period, figs in periods
                ],
                "total": _row(sub, labels, currency),
            }
        )
    return {
        "plan_id": plan_id,
        "currency": currency,
        "from": start,
        "to": end,
        "compare": labels,
        "group_by": group_by,
        "items": items,
        "total": _row(total, labels, currency),
    }
