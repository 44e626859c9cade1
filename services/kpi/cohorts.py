"""Cohort conversions: of the entities that reached stage A in a period, how many reached stage B within
a window, and how long it took (median and 90th percentile).

The cohort is read in one query (the A facts of the period, each LEFT JOINed to the same entity's B
fact), refused with a 422 past `CohortLimits.max_entities` before it is held, and summarised in a
worker thread (`shared.work.run_bounded`) so the event loop stays free. An entity converts when its
B fact lies in [A's time, A's time + window_days]; a B before A (a stage skipped back) does not count.
Percentiles are nearest-rank: the smallest duration with at least p of the converted at or below it.

A conversion metric (definitions, kind "conversion") is the same count per bucket of a series: `cells`
puts each entity in the bucket its A fact falls in (`bucket_of`, the window's edges as instants) and
answers, per group and bucket, the rate and the details (`Stats`).
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple

from sqlalchemy import and_, literal_column, select

from services.kpi.formula import KEY_RE
from services.kpi.lifecycle import STAGES
from services.kpi.models import lifecycle_facts
from services.kpi.periods import named_period
from shared.errors import Errors, FieldError, Invalid, TooMuchWork
from shared.identity import Principal
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

DAY = 86400.0


@dataclass(frozen=True)
class CohortLimits:
    """What one cohort request may hold and spend (docs/kpi.md#cohorts)."""

    max_entities: int = 1_000_000
    seconds: float = 20.0


class Entry(NamedTuple):
    """One entity of the cohort: when it reached A, its dimensions (those the request reads), and when it
    reached B (None: never). A tuple: a million of them are made per large request."""

    entered: dt.datetime
    dims: dict[str, str]
    reached: dt.datetime | None


def needed(group_by: Sequence[str], flt: Mapping[str, object], who: Principal | None) -> list[str]:
    """The dimensions a request reads from the A facts: grouped by, filtered on, scoped by."""
    scoped = list(who.scoped_dimensions) if who is not None else []
    return sorted({*group_by, *flt, *scoped})


def _dimension(dialect: str, name: str) -> Any:
    """One dimension of the A fact (alias `a`) as SQL: the value only, no JSON document to decode."""
    if not KEY_RE.match(name):
        raise Invalid.on("query.group_by", f"{name!r} is not a dimension name")
    if dialect == "postgresql":
        return literal_column(f"(a.dimensions ->> '{name}')")
    return literal_column(f"json_extract(a.dimensions, '$.{name}')")


def check_query(from_stage: str, to_stage: str, window_days: int) -> None:
    errs = Errors()
    for name, stage in (("query.from_stage", from_stage), ("query.to_stage", to_stage)):
        if stage not in STAGES:
            errs.add(name, f"must be one of {', '.join(STAGES)}")
    if from_stage == to_stage:
        errs.add("query.to_stage", "must differ from from_stage")
    if not 1 <= window_days <= 3650:
        errs.add("query.window_days", "must be 1 to 3650 days")
    errs.raise_if_any()


async def load(
    uow: UnitOfWork,
    *,
    from_stage: str,
    to_stage: str,
    first: dt.date,
    last: dt.date,
    limits: CohortLimits,
    keys: Sequence[str] | None = None,
) -> list[Entry]:
    """The entities that reached `from_stage` on the days first..last, with their `to_stage` time."""
    t0 = dt.datetime.combine(first, dt.time(), dt.UTC)
    t1 = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    return await load_span(uow, from_stage=from_stage, to_stage=to_stage, t0=t0, t1=t1, limits=limits, keys=keys)


async def load_span(
    uow: UnitOfWork,
    *,
    from_stage: str,
    to_stage: str,
    t0: dt.datetime,
    t1: dt.datetime,
    limits: CohortLimits,
    keys: Sequence[str] | None = None,
    field: str = "query.period",
) -> list[Entry]:
    """The entities that reached `from_stage` in [t0, t1), with their `to_stage` time (a 422 naming
    `field` past `limits.max_entities`). With `keys`, only those dimensions are read (each extracted by
    the database: decoding every fact's JSON was a third of a large cohort's time); without, all."""
    a, b = lifecycle_facts.alias("a"), lifecycle_facts.alias("b")
    dims = [a.c.dimensions] if keys is None else [_dimension(uow.dialect, k) for k in keys]
    rows: Sequence[Any] = (
        await uow.execute(
            select(a.c.time, b.c.time.label("reached"), *dims)
            .select_from(a.outerjoin(b, and_(b.c.entity_id == a.c.entity_id, b.c.stage == to_stage)))
            .where(a.c.stage == from_stage, a.c.time >= t0, a.c.time < t1)
            .limit(limits.max_entities + 1)
        )
    ).all()
    if len(rows) > limits.max_entities:
        raise TooMuchWork(
            f"More than {limits.max_entities:,} entities reached {from_stage} in the period, the limit for one "
            "cohort request; name a shorter period.",
            errors=[FieldError(field, "the cohort holds too many entities; shorten it", "too_much_work")],
        )
    if keys is None:
        return [Entry(r[0], r[2] or {}, r[1]) for r in rows]
    if len(keys) == 1:
        (k,) = keys
        return [Entry(r[0], {} if r[2] is None else {k: r[2]}, r[1]) for r in rows]
    return [Entry(r[0], {k: v for k, v in zip(keys, r[2:], strict=True) if v is not None}, r[1]) for r in rows]


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ascending values (None when there are none)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


def _days(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return str(Decimal(seconds / DAY).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class Stats:
    """One cohort cell: how many entered, how many converted within the window, how long it took."""

    entered: int
    converted: int
    median_seconds: float | None
    p90_seconds: float | None

    @property
    def rate(self) -> Decimal | None:
        return Decimal(self.converted) / Decimal(self.entered) if self.entered else None

    def details(self) -> dict[str, Any]:
        return {
            "entered": self.entered,
            "converted": self.converted,
            "median_days": _days(self.median_seconds),
            "p90_days": _days(self.p90_seconds),
        }


def stats(entered: int, spans: list[float]) -> Stats:
    spans.sort()
    return Stats(entered, len(spans), percentile(spans, 0.5), percentile(spans, 0.9))


def bucket_of(edges: Sequence[dt.datetime], t: dt.datetime) -> int:
    """The bucket an instant falls in, buckets starting at edges[0] < edges[1] < ... (t >= edges[0])."""
    return bisect_right(edges, t) - 1


def cells(
    budget: Budget,
    entries: Sequence[Entry],
    window_days: int,
    group_by: Sequence[str],
    flt: dict[str, set[str]],
    who: Principal | None,
    edges: Sequence[dt.datetime],
) -> dict[tuple[tuple[str | None, ...], int], Stats]:
    """Per (group, bucket): the cohort of the entities whose A fact lies in the bucket, among those whose
    A dimensions pass `flt` (a dimension's values OR'ed) and the caller's scopes (pure; off the event loop)."""
    window = window_days * DAY
    entered: dict[tuple[tuple[str | None, ...], int], int] = defaultdict(int)
    durations: dict[tuple[tuple[str | None, ...], int], list[float]] = defaultdict(list)
    for n, e in enumerate(entries):
        if n % 20_000 == 0:
            budget.check()
        if who is not None and not who.may_see(e.dims):
            continue
        if any(e.dims.get(k) not in vs for k, vs in flt.items()):
            continue
        key = (tuple(e.dims.get(g) for g in group_by), bucket_of(edges, e.entered))
        entered[key] += 1
        if e.reached is not None:
            took = (e.reached - e.entered).total_seconds()
            if 0 <= took <= window:
                durations[key].append(took)
    return {key: stats(count, durations.get(key, [])) for key, count in entered.items()}


def summarize(
    budget: Budget, entries: Sequence[Entry], window_days: int, group_by: Sequence[str], who: Principal | None
) -> list[dict[str, Any]]:
    """Per group: entered, converted, the rate, median and p90 days to convert (pure; runs off the event loop)."""
    window = window_days * DAY
    entered: dict[tuple[str | None, ...], int] = defaultdict(int)
    durations: dict[tuple[str | None, ...], list[float]] = defaultdict(list)
    for n, e in enumerate(entries):
        if n % 20_000 == 0:
            budget.check()
        if who is not None and not who.may_see(e.dims):
            continue
        key = tuple(e.dims.get(g) for g in group_by)
        entered[key] += 1
        if e.reached is not None:
            took = (e.reached - e.entered).total_seconds()
            if 0 <= took <= window:
                durations[key].append(took)
    items = []
    for key in sorted(entered, key=lambda k: tuple((v is None, v or "") for v in k)):
        spans = sorted(durations[key])
        rate = Decimal(len(spans)) / Decimal(entered[key])
        items.append(
            {
                "group": dict(zip(group_by, key, strict=True)),
                "entered": entered[key],
                "converted": len(spans),
                "rate": str(rate.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)),
                "median_days": _days(percentile(spans, 0.5)),
                "p90_days": _days(percentile(spans, 0.9)),
            }
        )
    return items


async def cohort(
    uow_factory: Any,
    who: Principal | None,
    *,
    from_stage: str,
    to_stage: str,
    period: str,
    window_days: int,
    group_by: Sequence[str],
    fiscal_start: int,
    limits: CohortLimits,
    caller: Disconnectable | None = None,
) -> dict[str, Any]:
    """The cohort's answer: read in a transaction, summarised in a worker thread after it has ended."""
    check_query(from_stage, to_stage, window_days)
    p = named_period(period, "query.period", fiscal_start)
    async with uow_factory(readonly=True) as uow:
        keys = needed(group_by, {}, who)
        entries = await load(
            uow, from_stage=from_stage, to_stage=to_stage, first=p.first, last=p.last, limits=limits, keys=keys
        )
    budget = Budget(limits.seconds, what="cohort", hint="name a shorter period")
    items = await run_bounded(
        summarize, entries, window_days, list(group_by), who, budget=budget, caller=caller, service="kpi"
    )
    return {
        "from_stage": from_stage,
        "to_stage": to_stage,
        "period": period,
        "from": p.first.isoformat(),
        "to": p.last.isoformat(),
        "window_days": window_days,
        "items": items,
    }
