"""Computing a metric over a window: its plan, the cells SQL returns, and the values per group and bucket.

Cells come from the daily and monthly rollups (UTC days) whenever the time zone is UTC, and
from a raw scan otherwise (a local day does not map onto UTC days). Either way one SQL
statement per measurement type returns (group values..., bucket, count, sum, min, max);
filters, scopes and grouping happen in SQL joined to dimension_sets, and a derived metric is
evaluated per bucket and group from its bases' aggregates, never by averaging daily ratios.
A conversion metric (a cohort rate over lifecycle facts, funnel.py) reads no measurements: its
grid comes from the cohort code, with each cell's counts and times in `Grid.details`.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import networkx as nx
from sqlalchemy import Integer, Table, and_, case, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnClause

from services.kpi import definitions, formula, funnel
from services.kpi.cohorts import CohortLimits
from services.kpi.definitions import Definition
from services.kpi.models import dimension_sets, measurements, rollups_daily, rollups_monthly
from services.kpi.periods import MONTHS, Window, next_start
from services.kpi.rollups import join_sum, sum_parts
from services.kpi.values import MICRO, day_of, from_micro, month_of
from shared.errors import Invalid
from shared.identity import Principal
from shared.uow import UnitOfWork

ADDITIVE = ("sum", "count")
Cell = tuple[Any, ...]  # group values..., bucket index, count, sum, min, max
Group = tuple[str | None, ...]


def _bucket_case(col: Any, bounds: Sequence[Any], offset: int = 0) -> Any:
    """Index of the bucket `col` falls in, as a balanced CASE tree (log2(n) comparisons per row)."""
    if not bounds:
        return literal_column(str(offset), Integer)
    mid = len(bounds) // 2
    return case(
        (col < bounds[mid], _bucket_case(col, bounds[:mid], offset)),
        else_=_bucket_case(col, bounds[mid + 1 :], offset + mid + 1),
    )


def _grouping(*exprs: Any) -> list[Any]:
    # A constant bucket (one bucket only) must not appear in GROUP BY: SQLite reads a
    # bare integer there as a column position.
    return [e for e in exprs if not (isinstance(e, ColumnClause) and e.is_literal and e.name.isdigit())]


def dimension(dialect: str, name: str) -> Any:
    """A dimension's value from dimension_sets.dims as SQL (JSON text on SQLite, JSONB on PostgreSQL).

    `name` is a validated dimension key (lower-case letters, digits, _), so it is inlined:
    the same expression text then appears in SELECT and GROUP BY, as PostgreSQL requires.
    """
    if not formula.KEY_RE.match(name):
        raise Invalid.on("dimension", f"{name!r} is not a dimension name")
    if dialect == "postgresql":
        return literal_column(f"(dimension_sets.dims ->> '{name}')")
    return literal_column(f"json_extract(dimension_sets.dims, '$.{name}')")


@dataclass
class _Query:
    """One measurement type's cells over a window: its grouping keys and dimension filters as SQL."""

    uow: UnitOfWork
    mtype: str
    keys: Sequence[str]
    where: dict[str, set[str]]

    async def run(self, table: Table, bucket: Any, conds: list[Any], rollup: bool) -> list[Cell]:
        dialect = self.uow.dialect
        dims = [dimension(dialect, k) for k in self.keys]
        dim_conds = [dimension(dialect, k).in_(sorted(vs)) for k, vs in sorted(self.where.items())]
        c = table.c
        aggs = (
            [func.sum(c["count"]), *sum_parts(dialect, c["sum"]), func.min(c["min"]), func.max(c["max"])]
            if rollup
            else [func.count(), *sum_parts(dialect, c.value), func.min(c.value), func.max(c.value)]
        )
        source = table.join(dimension_sets, dimension_sets.c.id == c.dimset_id) if dims or dim_conds else table
        q = (
            select(*dims, bucket, *aggs)
            .select_from(source)
            .where(c.type == self.mtype, *conds, *dim_conds)
            .group_by(*_grouping(*dims, bucket))
        )
        if dialect == "postgresql":
            return [tuple(row) for row in await self.uow.execute(q)]
        n = len(self.keys)  # SQLite: (..., count, high sum, low sum, min, max) -> (..., count, sum, min, max)
        return [(*row[: n + 2], join_sum(row[n + 2], row[n + 3]), *row[n + 4 :]) for row in await self.uow.execute(q)]


async def fetch_cells(
    uow: UnitOfWork, mtype: str, w: Window, read_from: str, keys: Sequence[str], where: dict[str, set[str]]
) -> list[Cell]:
    """(values of `keys`..., bucket index, count, sum, min, max) for one measurement type over a window.

    Several cells may share a (group, bucket) and the caller adds them up. The sums are exact
    however many rows they add up (rollup sums are bounded, but a year of them, or many dimension
    sets, pass 64 bits): see `rollups.sum_parts`.
    """
    query = _Query(uow, mtype, keys, where)
    if read_from == "raw":
        m = measurements.c
        t0, t1 = w.instant(w.start), w.instant(w.end + dt.timedelta(days=1))
        bucket = _bucket_case(m.time, [w.instant(b) for b in w.starts[1:]])
        return await query.run(measurements, bucket, [m.time >= t0, m.time < t1], rollup=False)
    return await _from_rollups(query, w)


async def _from_rollups(query: _Query, w: Window) -> list[Cell]:
    """Whole UTC months inside the window from the monthly rollups, the rest (or all) from the daily ones."""
    n = len(query.keys)
    rows: list[Cell] = []
    day_ranges = [(w.start, w.end + dt.timedelta(days=1))]
    if w.grain in MONTHS or w.grain == "period":
        first_full = w.start if w.start.day == 1 else next_start(w.start, "month")
        end_full = (w.end + dt.timedelta(days=1)).replace(day=1)
        if first_full < end_full:
            day_ranges = [(w.start, first_full), (end_full, w.end + dt.timedelta(days=1))]
            base = month_of(w.starts[0])
            width = MONTHS.get(w.grain, 10**6)  # months per bucket ("period": one bucket)
            r = rollups_monthly.c
            conds = [r.month >= month_of(first_full), r.month < month_of(end_full)]
            found = await query.run(rollups_monthly, r.month, conds, rollup=True)
            rows.extend((*x[:n], (x[n] - base) // width, *x[n + 1 :]) for x in found)
    d = rollups_daily.c
    ranges = [(day_of(a), day_of(b)) for a, b in day_ranges if a < b]
    if not ranges:
        return rows
    in_window = or_(*(and_(d.day >= a, d.day < b) for a, b in ranges))
    if w.grain == "day":
        day0 = day_of(w.starts[0])
        found = await query.run(rollups_daily, d.day, [in_window], rollup=True)
        rows.extend((*x[:n], x[n] - day0, *x[n + 1 :]) for x in found)
        return rows
    if w.grain == "week":
        bucket = (d.day - day_of(w.starts[0])).self_group().op("/")(literal_column("7", Integer))
    else:
        bucket = _bucket_case(d.day, [day_of(b) for b in w.starts[1:]])
    rows.extend(await query.run(rollups_daily, bucket, [in_window], rollup=True))
    return rows


def merge_filters(*filters: dict[str, set[str]]) -> dict[str, set[str]] | None:
    """All filters at once (per dimension the allowed values intersect); None when nothing can match."""
    out: dict[str, set[str]] = {}
    for f in filters:
        for k, vs in f.items():
            out[k] = out[k] & set(vs) if k in out else set(vs)
            if not out[k]:
                return None
    return out


def scope_filter(principal: Principal | None) -> dict[str, set[str]]:
    """A principal's scopes as a forced filter: region:EMEA sees only rows whose region is EMEA."""
    if principal is None:
        return {}
    dims = {sc.partition(":")[0] for sc in principal.scopes if ":" in sc}
    return {d: set(principal.scope_values(d) or ()) for d in dims}


@dataclass
class Acc:
    """A base metric's aggregate in one (group, bucket), added up from its cells."""

    count: int = 0
    sum: int = 0
    min: int | None = None
    max: int | None = None
    distinct: set[str] = field(default_factory=set)

    def merge(self, other: Acc) -> None:
        """Add another bucket's aggregate (cumulative windows are made of day aggregates)."""
        if other.count and other.min is not None and other.max is not None:
            self.add(other.count, other.sum, other.min, other.max)
        self.distinct |= other.distinct

    def add(self, c: int, sm: int, mn: int, mx: int) -> None:
        self.count += c
        self.sum += sm
        self.min = mn if self.min is None or mn < self.min else self.min
        self.max = mx if self.max is None or mx > self.max else self.max

    def value(self, d: Definition) -> Decimal | None:
        agg = d.aggregation
        if agg == "sum":
            return from_micro(self.sum)
        if agg == "count":
            return Decimal(self.count)
        if agg == "count_distinct":
            return Decimal(len(self.distinct))
        if self.count == 0:
            return None
        if agg == "avg":
            return Decimal(self.sum) / Decimal(self.count) / MICRO
        extreme = self.min if agg == "min" else self.max
        return None if extreme is None else from_micro(extreme)


def empty_value(d: Definition) -> Decimal | None:
    """A base metric's value where no measurement is: 0 for sums and counts, undefined otherwise."""
    return Decimal(0) if d.aggregation in ("sum", "count", "count_distinct") else None


@dataclass
class Plan:
    """A metric and every definition it depends on, resolved once."""

    metric: Definition
    defs: dict[str, Definition]

    @property
    def bases(self) -> list[Definition]:
        return [d for d in self.defs.values() if d.kind == "base"]

    def order(self) -> list[Definition]:
        """The definitions, each after those it depends on (ties by key, so the order is stable)."""
        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(self.defs)
        for d in self.defs.values():
            graph.add_edges_from((r, d.key) for r in d.depends_on)
        return [self.defs[k] for k in nx.lexicographical_topological_sort(graph)]


async def resolve(uow: UnitOfWork, key: str, version: int | None = None) -> Plan:
    """The metric (pinned version or latest) and its dependencies as they stood when it was defined."""
    metric = await definitions.get_definition(uow, key, version)
    as_of: dict[str, Definition] = {}
    for d in await definitions.all_versions(uow):
        if version is None or d.created_at <= metric.created_at:
            as_of[d.key] = d
    as_of[key] = metric
    defs: dict[str, Definition] = {}
    stack = [key]
    while stack:
        k = stack.pop()
        if k in defs:
            continue
        found = as_of.get(k)
        if found is None:
            raise Invalid.on("metric", f"{key!r} depends on {k!r}, which does not exist")
        defs[k] = found
        stack.extend(found.depends_on)
    return Plan(metric, defs)


@dataclass
class Grid:
    """Values of every metric in a plan per (group, bucket)."""

    groups: list[Group]
    cells: dict[tuple[Group, int], dict[str, Decimal | None]]
    # A conversion metric's cohort per cell: entered, converted, median_days, p90_days, complete.
    details: dict[tuple[Group, int], dict[str, Any]] = field(default_factory=dict)


async def _accumulate(
    uow: UnitOfWork,
    plan: Plan,
    w: Window,
    read_from: str,
    group_by: list[str],
    flt: dict[str, set[str]],
    scope: dict[str, set[str]],
) -> tuple[dict[str, dict[tuple[Group, int], Acc]], dict[Group, None]]:
    """Every base's aggregates per (group, bucket), and the groups seen (one query per distinct read)."""
    fetched: dict[Any, list[Cell]] = {}
    accs: dict[str, dict[tuple[Group, int], Acc]] = {}
    groups: dict[Group, None] = {}
    n = len(group_by)
    for b in plan.bases:
        acc = accs.setdefault(b.key, {})
        where = merge_filters(flt, {k: {v} for k, v in b.filter.items()}, scope)
        if where is None or b.measurement_type is None:
            continue
        distinct = b.aggregation == "count_distinct"
        keys = [*group_by, b.distinct_on] if distinct and b.distinct_on else list(group_by)
        cache_key = (b.measurement_type, tuple(keys), tuple(sorted((k, tuple(sorted(v))) for k, v in where.items())))
        if cache_key not in fetched:
            fetched[cache_key] = await fetch_cells(uow, b.measurement_type, w, read_from, keys, where)
        for row in fetched[cache_key]:
            g = row[:n]
            bucket, c, sm, mn, mx = row[-5:]
            if not c:  # an aggregate without GROUP BY over no rows
                continue
            groups[g] = None
            a = acc.get((g, bucket))
            if a is None:
                a = acc[(g, bucket)] = Acc()
            a.add(int(c), int(sm), int(mn), int(mx))
            if distinct and row[n] is not None:
                a.distinct.add(row[n])
    return accs, groups


def empty_cell(plan: Plan) -> dict[str, Decimal | None]:
    """The plan's values where no measurement is (a group absent from a comparison window)."""
    env: dict[str, Decimal | None] = {}
    with decimal.localcontext(prec=40):
        for d in plan.order():
            if d.kind == "conversion":  # a cohort of no one: its rate is undefined
                env[d.key] = None
            else:
                env[d.key] = empty_value(d) if d.kind == "base" else d.parsed.evaluate(env)
    return env


async def aggregates(
    uow: UnitOfWork,
    who: Principal | None,
    *,
    plan: Plan,
    w: Window,
    group_by: list[str],
    flt: dict[str, set[str]],
    read_from: str = "auto",
) -> tuple[dict[str, dict[tuple[Group, int], Acc]], list[Group], str]:
    """Every base's aggregates per (group, bucket), the groups in order, and where they were read from."""
    if read_from == "auto":
        read_from = "rollup" if w.utc else "raw"
    if read_from == "rollup" and not w.utc:
        raise Invalid.on("query.read_from", "rollups are by UTC day; a local time zone needs read_from=raw")
    accs, groups = await _accumulate(uow, plan, w, read_from, group_by, flt, scope_filter(who))
    group_list = sorted(groups, key=lambda g: tuple("" if v is None else v for v in g))
    if not group_by and not group_list:
        group_list = [()]
    return accs, group_list, read_from


def evaluate(order: list[Definition], found: dict[str, Acc | None]) -> dict[str, Decimal | None]:
    """Every metric of a plan (in dependency `order`) from its bases' aggregates (None: nothing measured)."""
    env: dict[str, Decimal | None] = {}
    with decimal.localcontext(prec=40):
        for d in order:
            if d.kind == "base":
                a = found.get(d.key)
                env[d.key] = a.value(d) if a is not None else empty_value(d)
            elif d.kind == "conversion":
                env[d.key] = None  # not an aggregate of measurements (computed by `compute` from cohorts)
            else:
                env[d.key] = d.parsed.evaluate(env)
    return env


async def compute(
    uow: UnitOfWork,
    who: Principal | None,
    *,
    plan: Plan,
    w: Window,
    group_by: list[str],
    flt: dict[str, set[str]],
    read_from: str = "auto",
    cohort_limits: CohortLimits | None = None,
) -> tuple[Grid, str]:
    """Aggregate every base of the plan per group and bucket, then evaluate the derived metrics (a
    conversion metric: its cohorts per bucket, read from the lifecycle facts)."""
    if plan.metric.kind == "conversion":
        if read_from not in ("auto", "lifecycle"):
            raise Invalid.on("query.read_from", "a conversion metric is read from lifecycle facts: leave it auto")
        found = await funnel.compute(
            uow, who, metric=plan.metric, w=w, group_by=group_by, flt=flt, limits=cohort_limits or CohortLimits()
        )
        key = plan.metric.key
        values = {cell: {key: v} for cell, v in found.values.items()}
        return Grid(found.groups, values, found.details), "lifecycle"
    accs, group_list, read_from = await aggregates(
        uow, who, plan=plan, w=w, group_by=group_by, flt=flt, read_from=read_from
    )
    order = plan.order()
    cells: dict[tuple[Group, int], dict[str, Decimal | None]] = {}
    for g in group_list:
        for i in range(len(w.starts)):
            cells[(g, i)] = evaluate(order, {k: acc.get((g, i)) for k, acc in accs.items()})
    return Grid(group_list, cells), read_from
