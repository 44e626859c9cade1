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

from services.kpi.bootstrap import Interval, intervals
from services.kpi.models import conversions, touchpoints
from services.kpi.values import fmt, from_micro
from shared.bounds import check_date
from shared.errors import Errors, FieldError, Invalid, TooMuchWork
from shared.identity import Principal
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
GROUP_BY = ("channel", "campaign")
UNATTRIBUTED = "(unattributed)"
NO_CAMPAIGN = "(no campaign)"


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
    max_resamples: int = 10_000  # bootstrap resamples per request
    max_bootstrap_steps: int = 300_000_000  # resamples x journeys (numpy: about 2 s per 10**8 here)


def check_query(
    model: str,
    start: dt.date,
    end: dt.date,
    half_life_days: float,
    *,
    group_by: str = "channel",
    ci: float | None = None,
    resamples: int = 1000,
    limits: Limits | None = None,
) -> None:
    errs = Errors()
    if model not in MODELS:
        errs.add("query.model", f"must be one of {', '.join(MODELS)}")
    if group_by not in GROUP_BY:
        errs.add("query.group_by", f"must be one of {', '.join(GROUP_BY)}")
    if ci is not None and not 0 < ci < 1:
        errs.add("query.ci", "must lie strictly between 0 and 1 (e.g. 0.95)")
    most = (limits or Limits()).max_resamples
    if not 1 <= resamples <= most:
        errs.add("query.resamples", f"must be 1 to {most:,}")
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
                select(tp.id, tp.journey_id, tp.time, tp.channel, tp.campaign)
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


@dataclass
class Credits:
    """Every model's credit per group in micro-units, the total value, and, for one model, each journey's."""

    by_model: dict[str, dict[str, int]]
    total: int
    per_journey: list[dict[str, int]]


def _group_of(r: Any, group_by: str) -> str:
    return str(r.channel) if group_by == "channel" else (r.campaign or NO_CAMPAIGN)


def credit_by_group(
    budget: Budget, journeys: Journeys, half_life_days: float, lookback_days: int, group_by: str, model: str
) -> Credits:
    """Every model's credit per channel or campaign, and `model`'s per journey: pure, run off the event loop."""
    lookback = dt.timedelta(days=lookback_days)
    credit: dict[str, dict[str, int]] = {m: defaultdict(int) for m in MODELS}
    mine: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
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
            mine[conv.journey_id][UNATTRIBUTED] += conv.value
            continue
        step = split_step(conv.value)
        path_times = [r.time for r in path]
        groups = [_group_of(r, group_by) for r in path]
        for m in MODELS:
            parts = split(conv.value // step, int_weights(m, path_times, half_life_days))
            for g, part in zip(groups, parts, strict=True):
                credit[m][g] += part * step
                if m == model:
                    mine[conv.journey_id][g] += part * step
    return Credits(credit, total, [dict(mine[j]) for j in sorted(mine)])


@dataclass(frozen=True)
class Bootstrap:
    """What a confidence interval asks for (`ci` None: no interval)."""

    ci: float | None = None
    resamples: int = 1000
    seed: int = 0


def compute(
    budget: Budget,
    journeys: Journeys,
    half_life_days: float,
    lookback_days: int,
    group_by: str,
    model: str,
    boot: Bootstrap,
    limits: Limits,
) -> tuple[Credits, dict[str, Interval]]:
    """The credits and, when asked, each group's bootstrap interval (a 422 naming resamples past the limit)."""
    credits = credit_by_group(budget, journeys, half_life_days, lookback_days, group_by, model)
    if boot.ci is None:
        return credits, {}
    groups = sorted({g for m in MODELS for g in credits.by_model[m]})
    need = boot.resamples * len(credits.per_journey)
    if need > limits.max_bootstrap_steps:
        raise TooMuchWork(
            f"A bootstrap of {boot.resamples:,} resamples over {len(credits.per_journey):,} journeys needs "
            f"{need:,} steps, over the limit of {limits.max_bootstrap_steps:,}; ask for fewer resamples or "
            "narrow from/to.",
            errors=[FieldError("query.resamples", "too many resamples for these journeys", "too_much_work")],
        )
    found = intervals(budget, credits.per_journey, groups, resamples=boot.resamples, ci=boot.ci, seed=boot.seed)
    return credits, found


async def report(
    journeys: Journeys,
    model: str,
    start: dt.date,
    end: dt.date,
    *,
    half_life_days: float,
    lookback_days: int,
    limits: Limits,
    group_by: str = "channel",
    boot: Bootstrap = Bootstrap(),
    caller: Disconnectable | None = None,
    service: str = "kpi",
) -> dict[str, Any]:
    """Credit per channel (or campaign) under `model`, every model's figure, the range across them and,
    with `boot.ci`, a bootstrap confidence interval.

    The computation runs in a worker thread, bounded by `limits` (a 422 beyond them), and stops
    when the caller leaves; call it after the read transaction has ended."""
    budget = Budget(
        limits.seconds, max_steps=limits.max_steps, what="attribution", hint="narrow from/to or lookback_days"
    )
    args = (journeys, half_life_days, lookback_days, group_by, model, boot, limits)
    credits, found = await run_bounded(compute, *args, budget=budget, caller=caller, service=service)
    credit = credits.by_model
    items = []
    for g in sorted({g for m in MODELS for g in credit[m]}):
        per_model = {m: credit[m].get(g, 0) for m in MODELS}
        item: dict[str, Any] = {
            group_by: g,
            "credit": fmt(from_micro(per_model[model]), "currency"),
            "min": fmt(from_micro(min(per_model.values())), "currency"),
            "max": fmt(from_micro(max(per_model.values())), "currency"),
            "by_model": {m: fmt(from_micro(v), "currency") for m, v in per_model.items()},
        }
        if g in found:
            low, high = found[g].low, found[g].high
            item["interval"] = {"low": fmt(from_micro(low), "currency"), "high": fmt(from_micro(high), "currency")}
        items.append(item)
    items.sort(key=lambda x: (-credit[model].get(str(x[group_by]), 0), str(x[group_by])))
    answer: dict[str, Any] = {
        "model": model,
        "group_by": group_by,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "half_life_days": half_life_days,
        "lookback_days": lookback_days,
        "conversions": len(journeys.conversions),
        "credits": items,
        "total": fmt(from_micro(credits.total), "currency"),
    }
    if boot.ci is not None:
        answer.update(ci=boot.ci, resamples=boot.resamples, seed=boot.seed, journeys=len(credits.per_journey))
    return answer
