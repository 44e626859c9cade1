"""A journey's path view: each conversion, the touchpoints it is credited to, and the credit every
attribution model gives each of them (GET /v1/journeys/{id}).

The split is attribution's own (`attribution.split` over `attribution.int_weights`, in cents or the
value's finer unit), so a path's credits add up to the conversion's value under every model and match
what `GET /v1/attribution` counts. A conversion outside the caller's scopes is left out; a journey
with none visible is a 404. Bounded: at most `MAX_PATH_ROWS` touchpoint rows across the conversions
(a 422 naming lookback_days beyond), computed in a worker thread.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from typing import Any

from sqlalchemy import select

from services.kpi.attribution import MODELS, split, split_step
from services.kpi.attribution import int_weights as weights_of
from services.kpi.models import conversions, touchpoints
from services.kpi.values import fmt, from_micro
from shared.errors import FieldError, NotFound, TooMuchWork
from shared.identity import Principal
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

MAX_PATH_ROWS = 20_000  # touchpoints listed across a journey's conversions
MAX_CONVERSIONS = 1_000


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _too_many() -> TooMuchWork:
    return TooMuchWork(
        f"The journey's paths hold more than {MAX_PATH_ROWS:,} touchpoints, the limit for one path view; "
        "narrow lookback_days.",
        errors=[FieldError("query.lookback_days", "too many touchpoints to show", "too_much_work")],
    )


async def load(uow: UnitOfWork, who: Principal, journey_id: str, lookback_days: int) -> tuple[list[Any], list[Any]]:
    """The journey's visible conversions and its touchpoints within their look-back, in time order."""
    c, tp = conversions.c, touchpoints.c
    convs = (
        await uow.execute(
            select(c.id, c.time, c.value, c.dimensions)
            .where(c.journey_id == journey_id)
            .order_by(c.time, c.id)
            .limit(MAX_CONVERSIONS + 1)
        )
    ).all()
    if len(convs) > MAX_CONVERSIONS:
        raise TooMuchWork(
            f"Journey {journey_id!r} has more than {MAX_CONVERSIONS:,} conversions, the limit for one path view.",
            errors=[FieldError("path.journey_id", "too many conversions to show", "too_much_work")],
        )
    convs = [r for r in convs if who.may_see(r.dimensions)]
    if not convs:
        raise NotFound(f"No journey {journey_id!r} with a conversion you may see.")
    first = min(r.time for r in convs) - dt.timedelta(days=lookback_days)
    last = max(r.time for r in convs)
    points = (
        await uow.execute(
            select(tp.id, tp.time, tp.channel, tp.campaign)
            .where(tp.journey_id == journey_id, tp.time >= first, tp.time <= last)
            .order_by(tp.time, tp.id)
            .limit(MAX_PATH_ROWS + 1)
        )
    ).all()
    if len(points) > MAX_PATH_ROWS:
        raise _too_many()
    return convs, list(points)


def paths(
    budget: Budget, convs: list[Any], points: list[Any], lookback_days: int, half_life_days: float
) -> list[dict[str, Any]]:
    """Each conversion with its credited touchpoints and every model's credit of each (pure; off the loop)."""
    times = [p.time for p in points]
    lookback = dt.timedelta(days=lookback_days)
    out, rows = [], 0
    for conv in convs:
        path = points[bisect_left(times, conv.time - lookback) : bisect_right(times, conv.time)]
        rows += len(path)
        if rows > MAX_PATH_ROWS:
            raise _too_many()
        budget.charge(max(1, len(path)) * len(MODELS))
        step = split_step(conv.value)
        credit = {m: [0] * len(path) for m in MODELS}
        if path:
            for m in MODELS:
                parts = split(conv.value // step, weights_of(m, [p.time for p in path], half_life_days))
                credit[m] = [part * step for part in parts]
        out.append(
            {
                "conversion_id": conv.id,
                "time": _iso(conv.time),
                "value": fmt(from_micro(conv.value), "currency"),
                "unattributed": not path,
                "touchpoints": [
                    {
                        "time": _iso(p.time),
                        "channel": p.channel,
                        "campaign": p.campaign,
                        "credit": {m: fmt(from_micro(credit[m][i]), "currency") for m in MODELS},
                    }
                    for i, p in enumerate(path)
                ],
            }
        )
    return out


async def view(
    uow_factory: Any,
    who: Principal,
    journey_id: str,
    *,
    lookback_days: int,
    half_life_days: float,
    seconds: float,
    caller: Disconnectable | None = None,
) -> dict[str, Any]:
    async with uow_factory(readonly=True) as uow:
        convs, points = await load(uow, who, journey_id, lookback_days)
    budget = Budget(seconds, what="journey path view", hint="narrow lookback_days")
    found = await run_bounded(
        paths, convs, points, lookback_days, half_life_days, budget=budget, caller=caller, service="kpi"
    )
    return {
        "journey_id": journey_id,
        "lookback_days": lookback_days,
        "half_life_days": half_life_days,
        "conversions": found,
    }
