"""Multi-touch attribution that admits its uncertainty.

Every model's credits for a conversion add up to the conversion's value
exactly: weights are exact fractions, values are integer micro-units split in
cents (or in the value's own finer unit) and the remainder left by flooring goes,
one unit at a time, to the touchpoints
with the largest fractional parts (ties: the earlier touchpoint). The answer
always carries, per channel, the lowest and highest credit across all models.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import select

from services.kpi.models import conversions, touchpoints
from services.kpi.values import fmt, from_micro
from shared.bounds import check_date
from shared.errors import Errors, FieldError, Invalid, TooMuchWork
from shared.identity import Principal
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
UNATTRIBUTED = "(unattributed)"


def weights(model: str, times: Sequence[dt.datetime], at: dt.datetime, half_life_days: float) -> list[Fraction]:
    """Each touchpoint's share of one conversion (touchpoints in time order)."""
    n = len(times)
    if n == 0:
        return []
    if model == "first_touch":
        return [Fraction(1 if i == 0 else 0) for i in range(n)]
    if model == "last_touch":
        return [Fraction(1 if i == n - 1 else 0) for i in range(n)]
    if model == "linear":
        return [Fraction(1, n)] * n
    if model == "position_based":
        if n == 1:
            return [Fraction(1)]
        if n == 2:
            return [Fraction(1, 2)] * 2
        middle = Fraction(1, 5) / (n - 2)
        return [Fraction(2, 5)] + [middle] * (n - 2) + [Fraction(2, 5)]
    if model == "time_decay":
        # Fraction(float) is exact, so the same inputs always give the same split. Ages count from the
        # latest touchpoint (the shares are the same): it weighs 1, so the weights never all underflow to 0.
        latest = max(times)
        return [Fraction(2.0 ** (-((latest - t).total_seconds() / 86400.0) / half_life_days)) for t in times]
    raise Invalid.on("query.model", f"must be one of {', '.join(MODELS)}")


def int_weights(model: str, times: Sequence[dt.datetime], half_life_days: float) -> list[int]:
    """`weights` scaled to integers with exactly the same ratios: the fast path, no Fraction arithmetic.

    Summing thousands of Fractions with unrelated power-of-two denominators costs minutes on a long
    journey; integers over one common denominator give the same split in milliseconds."""
    n = len(times)
    if n == 0:
        return []
    if model == "first_touch":
        return [1] + [0] * (n - 1)
    if model == "last_touch":
        return [0] * (n - 1) + [1]
    if model == "linear":
        return [1] * n
    if model == "position_based":
        if n <= 2:
            return [1] * n
        return [2 * (n - 2)] + [1] * (n - 2) + [2 * (n - 2)]
    if model == "time_decay":
        latest = max(times)
        ratios = [
            (2.0 ** (-((latest - t).total_seconds() / 86400.0) / half_life_days)).as_integer_ratio() for t in times
        ]
        common = max(d for _, d in ratios)  # every denominator is a power of two, so each divides the largest
        return [num * (common // d) for num, d in ratios]
    raise Invalid.on("query.model", f"must be one of {', '.join(MODELS)}")


def split(value: int, shares: Sequence[Fraction] | Sequence[int]) -> list[int]:
    """Integer parts of `value` in proportion to `shares`, summing to `value` exactly.

    The remainder left by flooring goes one unit at a time to the largest fractional parts
    (ties: the earlier share)."""
    total = sum(shares)
    if total == 0:
        raise ValueError("shares must not all be zero")
    if all(isinstance(w, int) for w in shares):
        scaled = [value * w for w in shares]
        parts = [x // total for x in scaled]
        rest = value - sum(parts)
        if rest:
            rems = [x - q * total for x, q in zip(scaled, parts, strict=True)]
            # A stable sort keeps the earlier share first among equal remainders, reversed or not.
            for i in sorted(range(len(rems)), key=rems.__getitem__, reverse=True)[:rest]:
                parts[i] += 1
        return parts
    exact = [Fraction(value) * w / total for w in shares]
    parts = [q.numerator // q.denominator for q in exact]
    rest = value - sum(parts)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:rest]:
        parts[i] += 1
    return parts


def split_step(value: int) -> int:
    """The unit credits are split in, in micro-units: cents, or finer when the value itself is finer."""
    for step in (10_000, 1_000, 100, 10):
        if value % step == 0:
            return step
    return 1


@dataclass(frozen=True)
class Limits:
    """What one attribution request may load and compute (documented in docs/kpi.md)."""

    max_conversions: int = 200_000
    max_touchpoints: int = 500_000
    max_steps: int = 20_000_000  # touchpoints on paths x models
    seconds: float = 20.0


def check_query(model: str, start: dt.date, end: dt.date, half_life_days: float) -> None:
    errs = Errors()
    if model not in MODELS:
        errs.add("query.model", f"must be one of {', '.join(MODELS)}")
    for name, day in (("query.from", start), ("query.to", end)):
        try:
            check_date(day)
        except ValueError as exc:
            errs.add(name, str(exc))
    if start > end:
        errs.add("query.from", f"{start} is after to ({end})")
    if not half_life_days > 0:
        errs.add("query.half_life_days", "must be positive")
    errs.raise_if_any()


@dataclass
class Journeys:
    """What attribution computes on: conversions in the range and each journey's touchpoints in time order."""

    conversions: list[Any]
    paths: dict[str, list[Any]]
    times: dict[str, list[dt.datetime]]


async def load(
    uow: UnitOfWork,
    who: Principal | None,
    *,
    start: dt.date,
    end: dt.date,
    lookback_days: int,
    limits: Limits,
) -> Journeys:
    """Read the conversions and touchpoints, refusing (422) past the limits before holding them all."""
    t0 = dt.datetime.combine(start, dt.time(), dt.UTC)
    t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    c = conversions.c
    rows = (
        await uow.execute(
            select(c.id, c.journey_id, c.time, c.value, c.dimensions)
            .where(c.time >= t0, c.time < t1)
            .limit(limits.max_conversions + 1)
        )
    ).all()
    if len(rows) > limits.max_conversions:
        raise TooMuchWork(
            f"More than {limits.max_conversions:,} conversions between {start} and {end}, the limit for one "
            "attribution request; narrow from/to.",
            errors=[FieldError("query.from", "the range holds too many conversions; narrow it", "too_much_work")],
        )
    convs = [r for r in rows if who is None or who.may_see(r.dimensions)]
    journeys = sorted({r.journey_id for r in convs})
    paths = await _paths(uow, journeys, start, end, dt.timedelta(days=lookback_days), limits)
    times = {j: [r.time for r in path] for j, path in paths.items()}
    return Journeys(sorted(convs, key=lambda r: (r.time, r.id)), paths, times)


async def _paths(
    uow: UnitOfWork, journeys: list[str], start: dt.date, end: dt.date, lookback: dt.timedelta, limits: Limits
) -> dict[str, list[Any]]:
    """Each journey's touchpoints in the range and its look-back, in time order; TooMuchWork past the limit."""
    since = dt.datetime.combine(start, dt.time(), dt.UTC) - lookback
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    tp = touchpoints.c
    paths: dict[str, list[Any]] = defaultdict(list)
    loaded = 0
    for i in range(0, len(journeys), 900):
        chunk = (
            await uow.execute(
                select(tp.id, tp.journey_id, tp.time, tp.channel)
                .where(tp.journey_id.in_(journeys[i : i + 900]), tp.time >= since, tp.time < until)
                .limit(limits.max_touchpoints + 1 - loaded)
            )
        ).all()
        loaded += len(chunk)
        if loaded > limits.max_touchpoints:
            raise TooMuchWork(
                f"The conversions between {start} and {end} have more than {limits.max_touchpoints:,} "
                "touchpoints in their look-back windows, the limit for one attribution request; narrow from/to "
                "or lookback_days.",
                errors=[
                    FieldError(
                        "query.lookback_days", "too many touchpoints to attribute; narrow the range", "too_much_work"
                    )
                ],
            )
        for r in chunk:
            paths[r.journey_id].append(r)
    for path in paths.values():
        path.sort(key=lambda r: (r.time, r.id))
    return paths


def credit_by_channel(
    budget: Budget, journeys: Journeys, half_life_days: float, lookback_days: int
) -> tuple[dict[str, dict[str, int]], int]:
    """Every model's credit per channel in micro-units, and the total value: pure, run off the event loop."""
    lookback = dt.timedelta(days=lookback_days)
    credit: dict[str, dict[str, int]] = {m: defaultdict(int) for m in MODELS}
    total = 0
    for conv in journeys.conversions:
        total += conv.value
        ordered = journeys.paths.get(conv.journey_id, [])
        times = journeys.times.get(conv.journey_id, [])
        path = ordered[bisect_left(times, conv.time - lookback) : bisect_right(times, conv.time)]
        budget.charge(max(1, len(path)) * len(MODELS))
        if not path:
            for m in MODELS:
                credit[m][UNATTRIBUTED] += conv.value
            continue
        step = split_step(conv.value)
        path_times = [r.time for r in path]
        for m in MODELS:
            parts = split(conv.value // step, int_weights(m, path_times, half_life_days))
            for r, part in zip(path, parts, strict=True):
                credit[m][r.channel] += part * step
    return credit, total


async def report(
    journeys: Journeys,
    model: str,
    start: dt.date,
    end: dt.date,
    *,
    half_life_days: float,
    lookback_days: int,
    limits: Limits,
    caller: Disconnectable | None = None,
    service: str = "kpi",
) -> dict[str, Any]:
    """Credit per channel under `model`, with every model's figure and the range across them.

    The computation runs in a worker thread, bounded by `limits` (a 422 beyond them), and stops
    when the caller leaves; call it after the read transaction has ended."""
    budget = Budget(
        limits.seconds, max_steps=limits.max_steps, what="attribution", hint="narrow from/to or lookback_days"
    )
    credit, total = await run_bounded(
        credit_by_channel, journeys, half_life_days, lookback_days, budget=budget, caller=caller, service=service
    )
    channels = sorted({ch for m in MODELS for ch in credit[m]})
    items = []
    for ch in channels:
        per_model = {m: credit[m].get(ch, 0) for m in MODELS}
        items.append(
            {
                "channel": ch,
                "credit": fmt(from_micro(per_model[model]), "currency"),
                "min": fmt(from_micro(min(per_model.values())), "currency"),
                "max": fmt(from_micro(max(per_model.values())), "currency"),
                "by_model": {m: fmt(from_micro(v), "currency") for m, v in per_model.items()},
            }
        )
    items.sort(key=lambda x: (-credit[model].get(str(x["channel"]), 0), str(x["channel"])))
    return {
        "model": model,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "half_life_days": half_life_days,
        "lookback_days": lookback_days,
        "conversions": len(journeys.conversions),
        "credits": items,
        "total": fmt(from_micro(total), "currency"),
    }
