"""Cohort conversions: of the entities that reached stage A in a period, how many reached stage B within
a window, and how long it took (median and 90th percentile).

Counted by the database where it can: one GROUP BY query counts the entities that entered per group and
bucket (the buckets of a series, or the one of a period) and refuses past `CohortLimits.max_entities`;
a second query returns only the candidates for a conversion (the A facts whose entity's B fact lies
at or after A and at most window_days + 1 days later), each with its group, bucket and both times.
The exact test, B in [A's time, A's time + window_days], and the percentiles run in a worker thread
(`shared.work.run_bounded`, `tally`) so the event loop stays free; a B before A (a stage skipped back)
does not count. Percentiles are nearest-rank: the smallest duration with at least p of the converted at
or below it. Dimensions (grouped by, filtered on, scoped by) are the A fact's, read by the database
(`json_extract` on SQLite, `->>` on PostgreSQL); a caller scoped `region:EMEA` sees the entities whose
A fact has region EMEA, as `Principal.may_see` would judge them.

A conversion metric (definitions, kind "conversion"; funnel.py) is the same count per bucket of a series.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Integer, and_, case, func, literal_column, select

from services.kpi.formula import KEY_RE
from services.kpi.lifecycle import STAGES
from services.kpi.models import lifecycle_facts
from services.kpi.periods import named_period
from shared.errors import Errors, FieldError, Invalid, TooMuchWork
from shared.identity import Principal
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

DAY = 86400.0
Group = tuple[str | None, ...]
Key = tuple[Group, int]  # (group values, bucket index)


@dataclass(frozen=True)
class CohortLimits:
    """What one cohort request may hold and spend (docs/kpi.md#cohorts)."""

    max_entities: int = 1_000_000
    seconds: float = 20.0


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


def scope_of(who: Principal | None) -> dict[str, set[str]]:
    """A principal's scopes as the values each scoped dimension must have (never empty: may_see refuses it)."""
    if who is None:
        return {}
    return {d: {v for v in values if v} for d, values in who.scoped_dimensions.items()}


def narrowed(*filters: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """All filters at once: per dimension the allowed values intersect."""
    out: dict[str, set[str]] = {}
    for f in filters:
        for k, vs in f.items():
            out[k] = out[k] & set(vs) if k in out else set(vs)
    return out


def _dimension(dialect: str, name: str) -> Any:
    """One dimension of the A fact (alias `a`) as SQL: the value only, no JSON document to decode.
    The same text in SELECT and GROUP BY, as PostgreSQL requires."""
    if not KEY_RE.match(name):
        raise Invalid.on("query.group_by", f"{name!r} is not a dimension name")
    if dialect == "postgresql":
        return literal_column(f"(a.dimensions ->> '{name}')")
    return literal_column(f"json_extract(a.dimensions, '$.{name}')")


def _later(dialect: str, days: int) -> Any:
    """A's time plus `days` (a loose bound: SQLite's datetime() drops the fraction of a second)."""
    if dialect == "postgresql":
        return literal_column(f"(a.time + interval '{int(days)} days')")
    return literal_column(f"datetime(a.time, '+{int(days)} days')")


def _bucket_case(col: Any, bounds: Sequence[Any], offset: int = 0) -> Any:
    """Index of the bucket `col` falls in, as a balanced CASE tree (log2(n) comparisons per row)."""
    if not bounds:
        return literal_column(str(offset), Integer)
    mid = len(bounds) // 2
    return case(
        (col < bounds[mid], _bucket_case(col, bounds[:mid], offset)),
        else_=_bucket_case(col, bounds[mid + 1 :], offset + mid + 1),
    )


@dataclass
class Read:
    """What the database answered: entities entered per (group, bucket), and the conversion candidates as
    rows (group values..., bucket, A's time, B's time)."""

    width: int  # the number of group values in a row
    counts: dict[Key, int]
    candidates: Sequence[Any]


async def read(
    uow: UnitOfWork,
    *,
    from_stage: str,
    to_stage: str,
    edges: Sequence[dt.datetime],
    window_days: int,
    group_by: Sequence[str],
    where: Mapping[str, set[str]],
    limits: CohortLimits,
    field: str = "query.period",
) -> Read:
    """Count the cohorts of the buckets edges[0]..edges[1], ..., edges[-2]..edges[-1] (UTC instants) and fetch
    their conversion candidates (a 422 naming `field` past `limits.max_entities`)."""
    a, b = lifecycle_facts.alias("a"), lifecycle_facts.alias("b")
    dialect = uow.dialect
    dims = [_dimension(dialect, k) for k in group_by]
    conds = [a.c.stage == from_stage, a.c.time >= edges[0], a.c.time < edges[-1]]
    conds += [_dimension(dialect, k).in_(sorted(vs)) for k, vs in sorted(where.items())]
    inner = list(edges[1:-1])
    bucket = _bucket_case(a.c.time, inner)
    grouping = [*dims, bucket] if inner else dims  # a constant bucket is no GROUP BY term (SQLite: a position)
    counted = select(*dims, bucket, func.count()).select_from(a).where(*conds)
    if grouping:
        counted = counted.group_by(*grouping)
    n = len(dims)
    counts: dict[Key, int] = {}
    for row in await uow.execute(counted):
        if row[n + 1]:
            counts[(tuple(row[:n]), int(row[n]))] = int(row[n + 1])
    if sum(counts.values()) > limits.max_entities:
        raise TooMuchWork(
            f"More than {limits.max_entities:,} entities reached {from_stage} in the period, the limit for one "
            "cohort request; name a shorter period.",
            errors=[FieldError(field, "the cohort holds too many entities; shorten it", "too_much_work")],
        )
    joined = a.join(b, and_(b.c.entity_id == a.c.entity_id, b.c.stage == to_stage))
    candidates = select(*dims, bucket, a.c.time, b.c.time).select_from(joined)
    candidates = candidates.where(*conds, b.c.time >= a.c.time, b.c.time <= _later(dialect, window_days + 1))
    return Read(n, counts, (await uow.execute(candidates)).all())


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


def tally(budget: Budget, found: Read, window_days: int) -> dict[Key, Stats]:
    """Per (group, bucket): entered, converted (B within [A, A + window_days], exactly) and the percentiles
    of the time it took (pure; runs off the event loop)."""
    window = window_days * DAY
    n = found.width
    durations: dict[Key, list[float]] = defaultdict(list)
    for i, row in enumerate(found.candidates):
        if i % 20_000 == 0:
            budget.check()
        took = (row[n + 2] - row[n + 1]).total_seconds()
        if 0 <= took <= window:
            durations[(tuple(row[:n]), int(row[n]))].append(took)
    return {key: stats(count, durations.get(key, [])) for key, count in found.counts.items()}


def group_order(g: Group) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, v or "") for v in g)


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
    """The cohort's answer: read in a transaction, tallied in a worker thread after it has ended."""
    check_query(from_stage, to_stage, window_days)
    p = named_period(period, "query.period", fiscal_start)
    edges = [dt.datetime.combine(d, dt.time(), dt.UTC) for d in (p.first, p.last + dt.timedelta(days=1))]
    async with uow_factory(readonly=True) as uow:
        found = await read(
            uow,
            from_stage=from_stage,
            to_stage=to_stage,
            edges=edges,
            window_days=window_days,
            group_by=group_by,
            where=scope_of(who),
            limits=limits,
        )
    budget = Budget(limits.seconds, what="cohort", hint="name a shorter period")
    cells = await run_bounded(tally, found, window_days, budget=budget, caller=caller, service="kpi")
    items = []
    for (g, _), s in sorted(cells.items(), key=lambda kv: group_order(kv[0][0])):
        rate = Decimal(s.converted) / Decimal(s.entered)
        items.append(
            {
                "group": dict(zip(group_by, g, strict=True)),
                "entered": s.entered,
                "converted": s.converted,
                "rate": str(rate.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)),
                "median_days": _days(s.median_seconds),
                "p90_days": _days(s.p90_seconds),
            }
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
