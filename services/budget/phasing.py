"""Phasing: spreading an annual amount over the twelve months of a fiscal year, evenly, by weights or
by last year's actual seasonality. Pure integer arithmetic in minor units: the months always add up
to the annual amount exactly (largest remainder: each month gets the floor of its share, and the
minor units left over go one each to the months with the largest remainders, earliest first)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services.budget import schemas
from services.budget.lines import get_line
from services.budget.models import balances, lines, plans
from services.budget.periods import fiscal_index, periods_of
from services.budget.plans import get_plan
from shared.errors import Invalid
from shared.identity import Principal
from shared.money import fmt, to_minor
from shared.uow import UnitOfWork


def spread(total: int, weights: Sequence[int | Decimal], field_name: str = "weights") -> list[int]:
    """`total` minor units split in proportion to `weights` (non-negative, not all zero); exact sum.
    A negative total is spread as its magnitude, then negated."""
    if any(not Decimal(w).is_finite() or Decimal(w).adjusted() > 15 for w in weights):
        raise Invalid.on(field_name, "must be finite numbers below 10^15")
    if any(w < 0 for w in weights):
        raise Invalid.on(field_name, "must not be negative")
    if not any(weights):
        raise Invalid.on(field_name, "must not all be zero")
    if total < 0:
        return [-m for m in spread(-total, weights, field_name)]
    # Exact rationals: scale Decimal weights to integers.
    places = max((-int(Decimal(w).as_tuple().exponent) for w in weights), default=0)
    if places > 12:
        raise Invalid.on(field_name, "must have at most 12 decimals")
    scale = 10 ** max(places, 0)
    ints = [int(Decimal(w) * scale) for w in weights]
    whole = sum(ints)
    shares = [divmod(total * w, whole) for w in ints]
    months = [q for q, _ in shares]
    left = total - sum(months)
    order = sorted(range(len(ints)), key=lambda i: (-shares[i][1], i))
    for i in order[:left]:
        months[i] += 1
    return months


def even(total: int, months: int = 12) -> list[int]:
    return spread(total, [1] * months)


def seasonality(total: int, last_year: Sequence[int]) -> list[int]:
    """In proportion to last year's actual spend per month (a month below zero counts as nothing); a
    year without spend has no seasonality (422 naming `line_id`)."""
    weights = [max(v, 0) for v in last_year]
    if not any(weights):
        raise Invalid.on("line_id", "had no actual spend last year to take a seasonality from", "no_history")
    return spread(total, weights)


async def phase(uow: UnitOfWork, who: Principal, body: schemas.PhasingIn) -> dict[str, Any]:
    """The annual amount spread over twelve months (the line's plan's months when a line is given)."""
    total = to_minor(body.amount, body.currency, "amount")
    months: list[str | None] = [None] * 12
    last_year = None
    if body.line_id is not None:
        ln = await get_line(uow, who, body.line_id)
        p = await get_plan(uow, ln.plan_id)
        if p.currency != body.currency:
            raise Invalid.on("currency", f"must be the plan currency {p.currency}")
        months = list(periods_of(p.fiscal_year, p.fiscal_year_start))
        if body.method == "seasonality":
            last_year = await _last_year(uow, p.fiscal_year - 1, ln.code)
    if body.method == "weights":
        if body.weights is None:
            raise Invalid.on("weights", "twelve weights are required for method weights", "missing")
        split = spread(total, body.weights)
    elif body.method == "seasonality":
        if last_year is None:
            raise Invalid.on("line_id", "is required for method seasonality", "missing")
        split = seasonality(total, last_year)
    else:
        split = even(total)
    return {
        "amount": fmt(total, body.currency),
        "currency": body.currency,
        "method": body.method,
        "months": [{"index": i + 1, "period": months[i], "amount": fmt(m, body.currency)} for i, m in enumerate(split)],
    }


async def _last_year(uow: UnitOfWork, fiscal_year: int, code: str) -> list[int]:
    """The actual spend per fiscal month (1st to 12th) of the lines coded `code` in last year's plans."""
    q = (
        select(balances.c.period, balances.c.own_spent, plans.c.fiscal_year_start)
        .join(lines, lines.c.id == balances.c.line_id)
        .join(plans, plans.c.id == lines.c.plan_id)
        .where(plans.c.fiscal_year == fiscal_year, plans.c.status != "draft", lines.c.code == code)
    )
    out = [0] * 12
    for r in (await uow.execute(q)).all():
        out[fiscal_index(r.period, r.fiscal_year_start)] += int(r.own_spent)
    return out
