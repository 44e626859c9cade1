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
import uuid
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.kpi.ingest import canonical_dims, from_micro, to_micro
from services.kpi.metrics import fmt
from services.kpi.models import conversions, touchpoints
from shared.bounds import check_date
from shared.db import utcnow
from shared.errors import Errors, Invalid
from shared.identity import Principal

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


def split(value: int, shares: Sequence[Fraction]) -> list[int]:
    """Integer parts of `value` in proportion to `shares`, summing to `value` exactly."""
    total = sum(shares)
    if total == 0:
        raise ValueError("shares must not all be zero")
    exact = [value * w / total for w in shares]
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


async def add_touchpoints(s: AsyncSession, items: list[dict[str, Any]]) -> int:
    now = utcnow()
    await s.execute(insert(touchpoints), [
        {"id": str(uuid.uuid4()), "journey_id": i["journey_id"], "time": i["time"], "channel": i["channel"],
         "campaign": i.get("campaign"), "created_at": now}
        for i in items
    ])
    return len(items)


async def add_conversions(s: AsyncSession, items: list[dict[str, Any]], principal: Principal) -> int:
    errs = Errors()
    rows = []
    now = utcnow()
    for n, i in enumerate(items):
        try:
            value = to_micro(i["value"])
            if value < 0:
                raise ValueError("value must not be negative")
            dims = canonical_dims(i.get("dimensions"))
        except ValueError as exc:
            errs.add(f"items.{n}", str(exc))
            continue
        if not principal.may_see(dims):
            errs.add(f"items.{n}.dimensions", f"outside your scopes ({', '.join(sorted(principal.scopes))})",
                     "forbidden")
        rows.append({"id": str(uuid.uuid4()), "journey_id": i["journey_id"], "time": i["time"], "value": value,
                     "dimensions": dims, "created_at": now})
    errs.raise_if_any()
    await s.execute(insert(conversions), rows)
    return len(rows)


async def attribute(
    s: AsyncSession, model: str, start: dt.date, end: dt.date, *, half_life_days: float = 7.0,
    lookback_days: int = 90, principal: Principal | None = None,
) -> dict[str, Any]:
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
    t0 = dt.datetime.combine(start, dt.time(), dt.UTC)
    t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    c = conversions.c
    convs = [
        r for r in (await s.execute(
            select(c.id, c.journey_id, c.time, c.value, c.dimensions).where(c.time >= t0, c.time < t1)
        )).all()
        if principal is None or principal.may_see(r.dimensions)
    ]
    journeys = sorted({r.journey_id for r in convs})
    tp = touchpoints.c
    lookback = dt.timedelta(days=lookback_days)
    by_journey: dict[str, list[Any]] = defaultdict(list)
    for i in range(0, len(journeys), 900):
        rows = await s.execute(
            select(tp.id, tp.journey_id, tp.time, tp.channel)
            .where(tp.journey_id.in_(journeys[i : i + 900]), tp.time >= t0 - lookback, tp.time < t1)
        )
        for r in rows:
            by_journey[r.journey_id].append(r)
    credit: dict[str, dict[str, int]] = {m: defaultdict(int) for m in MODELS}
    total = 0
    for conv in sorted(convs, key=lambda r: (r.time, r.id)):
        total += conv.value
        path = sorted(
            (r for r in by_journey.get(conv.journey_id, ()) if conv.time - lookback <= r.time <= conv.time),
            key=lambda r: (r.time, r.id),
        )
        if not path:
            for m in MODELS:
                credit[m][UNATTRIBUTED] += conv.value
            continue
        step = split_step(conv.value)
        for m in MODELS:
            parts = split(conv.value // step, weights(m, [r.time for r in path], conv.time, half_life_days))
            for r, part in zip(path, parts, strict=True):
                credit[m][r.channel] += part * step
    channels = sorted({ch for m in MODELS for ch in credit[m]})
    items = []
    for ch in channels:
        per_model = {m: credit[m].get(ch, 0) for m in MODELS}
        items.append({
            "channel": ch, "credit": fmt(from_micro(per_model[model]), "currency"),
            "min": fmt(from_micro(min(per_model.values())), "currency"),
            "max": fmt(from_micro(max(per_model.values())), "currency"),
            "by_model": {m: fmt(from_micro(v), "currency") for m, v in per_model.items()},
        })
    items.sort(key=lambda x: (-credit[model].get(x["channel"], 0), x["channel"]))
    return {
        "model": model, "from": start.isoformat(), "to": end.isoformat(), "half_life_days": half_life_days,
        "lookback_days": lookback_days, "conversions": len(convs), "credits": items,
        "total": fmt(from_micro(total), "currency"),
    }
