"""Domain logic of the kpi service: metric definitions, series, targets and the scorecard.

No HTTP here. Series are computed from the daily rollups (UTC days) whenever the
time zone is UTC, and by a raw scan otherwise (a local day does not map onto UTC
days). Either way one SQL statement per measurement type returns
(dimension set, bucket, count, sum, min, max); filters, scopes and grouping are
applied on the (small) set of dimension sets in Python, and a derived metric is
evaluated per bucket and group from its bases' aggregates, never by averaging
daily ratios.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import networkx as nx
from sqlalchemy import Integer, and_, case, func, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnClause

from services.kpi import formula as formulas
from services.kpi.ingest import (
    EPOCH,
    MICRO,
    canonical_dims,
    dims_hash,
    from_micro,
    insert_ignore,
    join_sum,
    sum_parts,
    to_micro,
)
from services.kpi.models import (
    dimension_sets,
    measurements,
    metric_definitions,
    rollups_daily,
    rollups_monthly,
    targets,
)
from shared.bounds import MAX_DATE, MIN_DATE, check_date
from shared.db import Database, utcnow
from shared.errors import Conflict, Errors, Forbidden, Invalid, NotFound, PreconditionFailed
from shared.identity import Principal
from shared.outbox import Outbox
from shared.pagination import decode_cursor, page_of

UNITS = ("count", "currency", "percent", "duration")
DIRECTIONS = ("higher_is_better", "lower_is_better")
AGGREGATIONS = ("sum", "count", "count_distinct", "avg", "min", "max")
GRAINS = ("day", "week", "month", "quarter")
ADDITIVE = ("sum", "count")
Q6 = Decimal("0.000001")
MAX_BUCKETS = 4000


# ---------------------------------------------------------------- definitions


@dataclass
class Definition:
    id: str
    key: str
    version: int
    name: str
    description: str
    owner: str | None
    unit: str
    direction: str
    kind: str
    measurement_type: str | None
    aggregation: str | None
    distinct_on: str | None
    filter: dict[str, str]
    formula: str | None
    depends_on: list[str]
    created_at: dt.datetime
    created_by: str
    _parsed: formulas.Formula | None = field(default=None, repr=False)

    @property
    def parsed(self) -> formulas.Formula:
        if self._parsed is None:
            self._parsed = formulas.parse(self.formula or "")
        return self._parsed

    def as_dict(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k)
            for k in (
                "id",
                "key",
                "version",
                "name",
                "description",
                "owner",
                "unit",
                "direction",
                "kind",
                "measurement_type",
                "aggregation",
                "distinct_on",
                "filter",
                "formula",
                "depends_on",
                "created_at",
                "created_by",
            )
        }
        d["created_at"] = self.created_at.isoformat()
        return d


def _definition(row: Any) -> Definition:
    return Definition(
        **{
            c: getattr(row, c)
            for c in (
                "id",
                "key",
                "version",
                "name",
                "description",
                "owner",
                "unit",
                "direction",
                "kind",
                "measurement_type",
                "aggregation",
                "distinct_on",
                "filter",
                "formula",
                "depends_on",
                "created_at",
                "created_by",
            )
        }
    )


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Kind-specific rules on a definition body; every broken field reported at once."""
    errs = Errors()
    key = spec.get("key", "")
    if not formulas.valid_key(key):
        errs.add("key", "must be lower-case letters, digits and _ (start with a letter), not a Python keyword")
    out = dict(spec)
    out["filter"] = {}
    try:
        out["filter"] = canonical_dims(spec.get("filter") or {})
    except ValueError as exc:
        errs.add("filter", str(exc))
    if spec["kind"] == "base":
        if not spec.get("measurement_type") or not formulas.KEY_RE.match(spec["measurement_type"]):
            errs.add("measurement_type", "a base metric needs a measurement type (lower-case letters, digits, _)")
        if not spec.get("aggregation"):
            errs.add("aggregation", f"a base metric needs one of: {', '.join(AGGREGATIONS)}")
        if spec.get("aggregation") == "count_distinct" and not spec.get("distinct_on"):
            errs.add("distinct_on", "count_distinct needs the dimension whose distinct values are counted")
        elif spec.get("distinct_on") and not formulas.KEY_RE.match(spec["distinct_on"]):
            errs.add("distinct_on", "must be a dimension name (lower-case letters, digits and _)")
        if spec.get("formula"):
            errs.add("formula", 'a base metric has no formula (use kind "derived")')
        out["formula"], out["depends_on"] = None, []
    else:
        for f in ("measurement_type", "aggregation", "distinct_on"):
            if spec.get(f):
                errs.add(f, "a derived metric has no " + f.replace("_", " "))
        if spec.get("filter"):
            errs.add("filter", "a derived metric takes its filters from its base metrics")
        if not spec.get("formula"):
            errs.add("formula", 'a derived metric needs a formula such as "spend / leads"')
        else:
            try:
                parsed = formulas.parse(spec["formula"])
                out["formula"], out["depends_on"] = parsed.source, sorted(parsed.references)
            except Invalid as exc:
                errs.items.extend(exc.errors)
    errs.raise_if_any()
    return out


async def latest_definitions(s: AsyncSession) -> dict[str, Definition]:
    defs: dict[str, Definition] = {}
    for row in await s.execute(select(metric_definitions).order_by(metric_definitions.c.version)):
        defs[row.key] = _definition(row)
    return defs


async def get_definition(s: AsyncSession, key: str, version: int | None = None) -> Definition:
    md = metric_definitions.c
    q = select(metric_definitions).where(md.key == key)
    q = q.where(md.version == version) if version is not None else q.order_by(md.version.desc()).limit(1)
    row = (await s.execute(q)).first()
    if row is None:
        what = f"metric {key!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"There is no {what}.")
    return _definition(row)


async def list_definitions(s: AsyncSession, limit: int, cursor: str | None) -> tuple[list[Definition], str | None]:
    after = decode_cursor(cursor)
    defs = sorted((await latest_definitions(s)).values(), key=lambda d: d.key)
    if after:
        defs = [d for d in defs if d.key > str(after[0])]
    return page_of(defs[: limit + 1], limit, lambda d: (d.key,))


async def list_versions(s: AsyncSession, key: str) -> list[Definition]:
    md = metric_definitions.c
    rows = (await s.execute(select(metric_definitions).where(md.key == key).order_by(md.version))).all()
    if not rows:
        raise NotFound(f"There is no metric {key!r}.")
    return [_definition(r) for r in rows]


def _check_graph(key: str, refs: Sequence[str], defs: dict[str, Definition]) -> None:
    unknown = sorted(r for r in refs if r not in defs and r != key)
    if unknown:
        raise Invalid.on("formula", f"unknown metric(s): {', '.join(unknown)}", "unknown_reference")
    graph = nx.DiGraph()
    for d in defs.values():
        if d.key != key:
            graph.add_edges_from((d.key, r) for r in d.depends_on)
    graph.add_edges_from((key, r) for r in refs)
    try:
        cycle = nx.find_cycle(graph, source=key)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join([e[0] for e in cycle] + [cycle[-1][1]])
    raise Invalid.on("formula", f"would create a cycle: {path}", "cycle")


async def create_definition(s: AsyncSession, spec: dict[str, Any], principal: Principal) -> Definition:
    spec = check_spec(spec)
    defs = await latest_definitions(s)
    if spec["key"] in defs:
        raise Conflict(f"Metric {spec['key']!r} exists; PUT /v1/metrics/{spec['key']} creates a new version.")
    _check_graph(spec["key"], spec["depends_on"], defs)
    return await _insert_version(s, spec, 1, principal.subject)


async def update_definition(
    s: AsyncSession,
    key: str,
    spec: dict[str, Any],
    principal: Principal,
    if_match: int | None,
) -> Definition:
    if spec.get("key") not in (None, key):
        raise Invalid.on("key", f"does not match the path ({key!r})")
    spec = check_spec({**spec, "key": key})
    defs = await latest_definitions(s)
    current = defs.get(key)
    if current is None:
        raise NotFound(f"There is no metric {key!r}; POST /v1/metrics creates it.")
    if if_match is not None and if_match != current.version:
        raise PreconditionFailed(f"Metric {key!r} is at version {current.version}, not {if_match}.")
    _check_graph(key, spec["depends_on"], defs)
    return await _insert_version(s, spec, current.version + 1, principal.subject)


async def _insert_version(s: AsyncSession, spec: dict[str, Any], version: int, by: str) -> Definition:
    row = {
        "id": str(uuid.uuid4()),
        "key": spec["key"],
        "version": version,
        "name": spec["name"],
        "description": spec.get("description") or "",
        "owner": spec.get("owner"),
        "unit": spec["unit"],
        "direction": spec["direction"],
        "kind": spec["kind"],
        "measurement_type": spec.get("measurement_type"),
        "aggregation": spec.get("aggregation"),
        "distinct_on": spec.get("distinct_on"),
        "filter": spec["filter"],
        "formula": spec.get("formula"),
        "depends_on": spec["depends_on"],
        "created_at": utcnow(),
        "created_by": by,
    }
    await s.execute(metric_definitions.insert().values(**row))
    return Definition(**row)


def _base(key: str, name: str, mtype: str, unit: str, direction: str, agg: str = "sum", desc: str = "") -> dict:
    return {
        "key": key,
        "name": name,
        "kind": "base",
        "measurement_type": mtype,
        "aggregation": agg,
        "unit": unit,
        "direction": direction,
        "description": desc,
    }


def _derived(key: str, name: str, f: str, unit: str, direction: str, desc: str = "") -> dict:
    return {
        "key": key,
        "name": name,
        "kind": "derived",
        "formula": f,
        "unit": unit,
        "direction": direction,
        "description": desc,
    }


H, L = "higher_is_better", "lower_is_better"
CATALOG: list[dict[str, Any]] = [
    _base("spend", "Spend", "spend", "currency", L, desc="Actual spend posted in the budget ledger."),
    _base("leads", "Leads", "leads", "count", H, desc="New leads from the CRM (lead.created)."),
    _base("mqls", "Marketing-qualified leads", "mqls", "count", H),
    _base("sqls", "Sales-qualified leads", "sqls", "count", H),
    _base("opportunities", "Opportunities", "opportunities", "count", H),
    _base("won_deals", "Won deals", "won_deals", "count", H),
    _base("revenue", "Revenue", "revenue", "currency", H, desc="Amount of won opportunities."),
    _base(
        "budget_allocated",
        "Budget allocated",
        "budget_allocated",
        "currency",
        H,
        desc="Measurement type budget_allocated; no event feeds it yet (post it through /v1/measurements).",
    ),
    _base(
        "approval_cycle_time",
        "Approval cycle time",
        "approval_cycle_time_hours",
        "duration",
        L,
        "avg",
        desc="Average business hours from start to finish of approval workflows.",
    ),
    _base("workflows_completed", "Workflows completed", "workflows_completed", "count", H),
    _base("workflows_sla_met", "Workflows within SLA", "workflows_sla_met", "count", H),
    _base("sla_breaches", "SLA breaches", "sla_breaches", "count", L),
    _derived("cpl", "Cost per lead", "spend / leads", "currency", L),
    _derived("cac", "Customer acquisition cost", "spend / won_deals", "currency", L),
    _derived("roi", "Return on investment", "(revenue - spend) / spend", "percent", H, "A fraction: 0.25 is 25 %."),
    _derived("roas", "Return on ad spend", "revenue / spend", "percent", H, "A fraction: 3 is 300 %."),
    _derived("lead_to_mql_rate", "Lead to MQL rate", "mqls / leads", "percent", H),
    _derived("mql_to_sql_rate", "MQL to SQL rate", "sqls / mqls", "percent", H),
    _derived("sql_to_opportunity_rate", "SQL to opportunity rate", "opportunities / sqls", "percent", H),
    _derived("win_rate", "Opportunity win rate", "won_deals / opportunities", "percent", H),
    _derived("sla_attainment", "SLA attainment", "workflows_sla_met / workflows_completed", "percent", H),
    _derived("budget_utilization", "Budget utilization", "spend / budget_allocated", "percent", H),
]


async def seed_catalog(db: Database) -> int:
    """Insert version 1 of every catalog metric that is missing; safe to run from every replica."""
    rows = []
    now = utcnow()
    for spec in CATALOG:
        spec = check_spec({**spec, "owner": "mops"})
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "key": spec["key"],
                "version": 1,
                "name": spec["name"],
                "description": spec.get("description") or "",
                "owner": "mops",
                "unit": spec["unit"],
                "direction": spec["direction"],
                "kind": spec["kind"],
                "measurement_type": spec.get("measurement_type"),
                "aggregation": spec.get("aggregation"),
                "distinct_on": None,
                "filter": {},
                "formula": spec.get("formula"),
                "depends_on": spec["depends_on"],
                "created_at": now,
                "created_by": "system:catalog",
            }
        )
    count = select(func.count()).select_from(metric_definitions)
    async with db.transaction() as s:
        before = await s.scalar(count)
        await s.execute(insert_ignore(s, metric_definitions, ["key", "version"]), rows)
        return int(await s.scalar(count) or 0) - int(before or 0)


# ---------------------------------------------------------------- periods and buckets


@dataclass(frozen=True)
class Window:
    """[start, end] in local dates, cut into buckets; `starts[i]` labels bucket i."""

    start: dt.date
    end: dt.date
    grain: str
    tz: str
    starts: list[dt.date]

    @property
    def utc(self) -> bool:
        return self.tz in ("UTC", "Etc/UTC")

    def instant(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), ZoneInfo(self.tz)).astimezone(dt.UTC)


def grain_start(d: dt.date, grain: str) -> dt.date:
    if grain == "day":
        return d
    if grain == "week":
        return d - dt.timedelta(days=d.weekday())
    if grain == "month":
        return d.replace(day=1)
    if grain == "quarter":
        return d.replace(month=(d.month - 1) // 3 * 3 + 1, day=1)
    raise Invalid.on("query.grain", f"must be one of {', '.join(GRAINS)}")


def next_start(d: dt.date, grain: str) -> dt.date:
    if grain == "day":
        return d + dt.timedelta(days=1)
    if grain == "week":
        return d + dt.timedelta(days=7)
    months = 1 if grain == "month" else 3
    m = d.month - 1 + months
    return dt.date(d.year + m // 12, m % 12 + 1, 1)


def window(start: dt.date, end: dt.date, grain: str, tz: str = "UTC") -> Window:
    errs = Errors()
    if grain not in GRAINS and grain != "period":
        errs.add("query.grain", f"must be one of {', '.join(GRAINS)}")
    for name, day in (("query.from", start), ("query.to", end)):
        try:
            check_date(day)
        except ValueError as exc:
            errs.add(name, str(exc))
    if start > end:
        errs.add("query.from", f"{start} is after to ({end})")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        errs.add("query.tz", f"{tz!r} is not an IANA time zone such as Europe/Berlin")
    errs.raise_if_any()
    if grain == "period":
        return Window(start, end, grain, tz, [start])
    starts = [grain_start(start, grain)]
    while True:
        n = next_start(starts[-1], grain)
        if n > end:
            break
        starts.append(n)
        if len(starts) > MAX_BUCKETS:
            raise Invalid.on("query.grain", f"more than {MAX_BUCKETS} buckets; use a coarser grain")
    return Window(start, end, grain, tz, starts)


PERIOD_RE = re.compile(r"([0-9]{4})(?:-(Q[1-4]|[0-9]{2}))?")  # ASCII digits, matched whole (fullmatch)


def parse_period(period: str, field_name: str = "period") -> tuple[dt.date, dt.date]:
    """ "2027", "2027-Q1" or "2027-03" -> first and last day; years within shared.bounds (1900-2999)."""
    m = PERIOD_RE.fullmatch(period or "")
    if not m:
        raise Invalid.on(field_name, f"{period!r} is not a period like 2027, 2027-Q1 or 2027-03")
    year, part = int(m.group(1)), m.group(2)
    if not MIN_DATE.year <= year <= MAX_DATE.year:
        raise Invalid.on(field_name, f"{period!r}: the year must lie between {MIN_DATE.year} and {MAX_DATE.year}")
    if part is None:
        return dt.date(year, 1, 1), dt.date(year, 12, 31)
    if part.startswith("Q"):
        first = dt.date(year, (int(part[1]) - 1) * 3 + 1, 1)
        return first, next_start(first, "quarter") - dt.timedelta(days=1)
    month = int(part)
    if not 1 <= month <= 12:
        raise Invalid.on(field_name, f"{period!r} has no month {month}")
    first = dt.date(year, month, 1)
    return first, next_start(first, "month") - dt.timedelta(days=1)


def period_label(start: dt.date, grain: str) -> str | None:
    if grain == "month":
        return f"{start.year}-{start.month:02d}"
    if grain == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return None


def parse_filter(values: Sequence[str] | None, field_name: str = "query.filter") -> dict[str, set[str]]:
    """`region:EMEA,channel:search` (repeatable); several values of one dimension are OR'ed."""
    out: dict[str, set[str]] = {}
    for raw in values or ():
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            dim, sep, value = part.partition(":")
            if not sep or not formulas.KEY_RE.match(dim.strip()) or not value.strip():
                raise Invalid.on(field_name, f"{part!r} is not dimension:value (e.g. region:EMEA)")
            out.setdefault(dim.strip(), set()).add(value.strip())
    return out


def parse_group_by(values: Sequence[str] | None, field_name: str = "query.group_by") -> list[str]:
    keys: list[str] = []
    for raw in values or ():
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            if not formulas.KEY_RE.match(part):
                raise Invalid.on(field_name, f"{part!r} is not a dimension name")
            if part not in keys:
                keys.append(part)
    if len(keys) > 5:
        raise Invalid.on(field_name, "at most 5 dimensions")
    return keys


# ---------------------------------------------------------------- aggregation


def _bucket_case(col: Any, bounds: Sequence[Any], offset: int = 0) -> Any:
    """Index of the bucket `col` falls in, as a balanced CASE tree (log2(n) comparisons per row)."""
    if not bounds:
        return literal_column(str(offset), Integer)
    mid = len(bounds) // 2
    return case(
        (col < bounds[mid], _bucket_case(col, bounds[:mid], offset)),
        else_=_bucket_case(col, bounds[mid + 1 :], offset + mid + 1),
    )


def _day(d: dt.date) -> int:
    return (d - EPOCH).days


def _month(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


Row = tuple[Any, ...]  # group values..., bucket index, count, sum, min, max


def _grouping(*exprs: Any) -> list[Any]:
    # A constant bucket (one bucket only) must not appear in GROUP BY: SQLite reads a
    # bare integer there as a column position.
    return [e for e in exprs if not (isinstance(e, ColumnClause) and e.is_literal and e.name.isdigit())]


def dimension(dialect: str, name: str) -> Any:
    """A dimension's value from dimension_sets.dims as SQL (JSON text on SQLite, JSONB on PostgreSQL).

    `name` is a validated dimension key (lower-case letters, digits, _), so it is inlined:
    the same expression text then appears in SELECT and GROUP BY, as PostgreSQL requires.
    """
    if not formulas.KEY_RE.match(name):
        raise Invalid.on("dimension", f"{name!r} is not a dimension name")
    if dialect == "postgresql":
        return literal_column(f"(dimension_sets.dims ->> '{name}')")
    return literal_column(f"json_extract(dimension_sets.dims, '$.{name}')")


async def fetch_cells(
    s: AsyncSession,
    mtype: str,
    w: Window,
    read_from: str,
    keys: Sequence[str],
    where: dict[str, set[str]],
) -> list[Row]:
    """(values of `keys`..., bucket index, count, sum, min, max) for one measurement type over a window.

    Grouping by dimension and filtering happen in SQL, joined to dimension_sets; several
    rows may share a (group, bucket) and the caller adds them up. The sums are exact however
    many rows they add up (rollup sums are bounded, but a year of them, or many dimension
    sets, pass 64 bits): see `sum_parts`.
    """
    dialect = s.bind.dialect.name
    dims = [dimension(dialect, k) for k in keys]
    dim_conds = [dimension(dialect, k).in_(sorted(vs)) for k, vs in sorted(where.items())]

    async def run(table: Any, bucket: Any, conds: list[Any], rollup: bool) -> list[Row]:
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
            .where(c.type == mtype, *conds, *dim_conds)
            .group_by(*_grouping(*dims, bucket))
        )
        if dialect == "postgresql":
            return [tuple(row) for row in await s.execute(q)]
        # SQLite: (..., count, high sum, low sum, min, max) -> (..., count, sum, min, max)
        return [(*row[: n + 2], join_sum(row[n + 2], row[n + 3]), *row[n + 4 :]) for row in await s.execute(q)]

    n = len(keys)
    if read_from == "raw":
        m = measurements.c
        t0, t1 = w.instant(w.start), w.instant(w.end + dt.timedelta(days=1))
        bucket = _bucket_case(m.time, [w.instant(b) for b in w.starts[1:]])
        return await run(measurements, bucket, [m.time >= t0, m.time < t1], rollup=False)
    rows: list[Row] = []
    day_ranges = [(w.start, w.end + dt.timedelta(days=1))]
    if w.grain in ("month", "quarter", "period"):
        # Whole UTC months inside the window come from the monthly rollups, the ragged edges from daily ones.
        first_full = w.start if w.start.day == 1 else next_start(w.start, "month")
        end_full = (w.end + dt.timedelta(days=1)).replace(day=1)
        if first_full < end_full:
            day_ranges = [(w.start, first_full), (end_full, w.end + dt.timedelta(days=1))]
            base = _month(w.starts[0])
            width = {"month": 1, "quarter": 3, "period": 10**6}[w.grain]
            r = rollups_monthly.c
            found = await run(
                rollups_monthly, r.month, [r.month >= _month(first_full), r.month < _month(end_full)], rollup=True
            )
            rows.extend((*x[:n], (x[n] - base) // width, *x[n + 1 :]) for x in found)
    r = rollups_daily.c
    ranges = [(_day(a), _day(b)) for a, b in day_ranges if a < b]
    if not ranges:
        return rows
    in_window = or_(*(and_(r.day >= a, r.day < b) for a, b in ranges))
    if w.grain == "day":
        day0 = _day(w.starts[0])
        found = await run(rollups_daily, r.day, [in_window], rollup=True)
        rows.extend((*x[:n], x[n] - day0, *x[n + 1 :]) for x in found)
        return rows
    if w.grain == "week":
        bucket = (r.day - _day(w.starts[0])).self_group().op("/")(literal_column("7", Integer))
    else:
        bucket = _bucket_case(r.day, [_day(b) for b in w.starts[1:]])
    rows.extend(await run(rollups_daily, bucket, [in_window], rollup=True))
    return rows


def _merge_filters(*filters: dict[str, set[str]]) -> dict[str, set[str]] | None:
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
class _Acc:
    count: int = 0
    sum: int = 0
    min: int | None = None
    max: int | None = None
    distinct: set[str] = field(default_factory=set)

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
        return from_micro(self.min if agg == "min" else self.max)  # type: ignore[arg-type]


def empty_value(d: Definition) -> Decimal | None:
    return Decimal(0) if d.aggregation in ("sum", "count", "count_distinct") else None


@dataclass
class Plan:
    """A metric and every definition it depends on, resolved once."""

    metric: Definition
    defs: dict[str, Definition]

    @property
    def bases(self) -> list[Definition]:
        return [d for d in self.defs.values() if d.kind == "base"]


async def resolve(s: AsyncSession, key: str, version: int | None = None) -> Plan:
    """The metric (pinned version or latest) and its dependencies as they stood when it was defined."""
    metric = await get_definition(s, key, version)
    rows = (await s.execute(select(metric_definitions).order_by(metric_definitions.c.version))).all()
    as_of: dict[str, Definition] = {}
    for row in rows:
        if version is None or row.created_at <= metric.created_at:
            as_of[row.key] = _definition(row)
    as_of[key] = metric
    defs: dict[str, Definition] = {}
    stack = [key]
    while stack:
        k = stack.pop()
        if k in defs:
            continue
        d = as_of.get(k)
        if d is None:
            raise Invalid.on("metric", f"{key!r} depends on {k!r}, which does not exist")
        defs[k] = d
        stack.extend(d.depends_on)
    return Plan(metric, defs)


@dataclass
class Grid:
    """Values of every metric in a plan per (group, bucket)."""

    groups: list[tuple[str | None, ...]]
    cells: dict[tuple[tuple[str | None, ...], int], dict[str, Decimal | None]]


async def compute(
    s: AsyncSession,
    plan: Plan,
    w: Window,
    group_by: list[str],
    flt: dict[str, set[str]],
    principal: Principal | None,
    read_from: str = "auto",
) -> tuple[Grid, str]:
    """Aggregate every base of the plan per group and bucket, then evaluate the derived metrics."""
    if read_from == "auto":
        read_from = "rollup" if w.utc else "raw"
    if read_from == "rollup" and not w.utc:
        raise Invalid.on("query.read_from", "rollups are by UTC day; a local time zone needs read_from=raw")
    scope = scope_filter(principal)
    fetched: dict[Any, list[Row]] = {}
    accs: dict[str, dict[tuple[tuple[str | None, ...], int], _Acc]] = {}
    groups: dict[tuple[str | None, ...], None] = {}
    n = len(group_by)
    for b in plan.bases:
        acc = accs.setdefault(b.key, {})
        where = _merge_filters(flt, {k: {v} for k, v in b.filter.items()}, scope)
        if where is None:
            continue
        distinct = b.aggregation == "count_distinct"
        keys = [*group_by, b.distinct_on] if distinct else list(group_by)
        cache_key = (b.measurement_type, tuple(keys), tuple(sorted((k, tuple(sorted(v))) for k, v in where.items())))
        if cache_key not in fetched:
            fetched[cache_key] = await fetch_cells(s, b.measurement_type, w, read_from, keys, where)  # type: ignore[arg-type]
        for row in fetched[cache_key]:
            g = row[:n]
            bucket, c, sm, mn, mx = row[-5:]
            if not c:  # an aggregate without GROUP BY over no rows
                continue
            groups[g] = None
            a = acc.get((g, bucket))
            if a is None:
                a = acc[(g, bucket)] = _Acc()
            a.add(int(c), int(sm), int(mn), int(mx))
            if distinct and row[n] is not None:
                a.distinct.add(row[n])
    group_list = sorted(groups, key=lambda g: tuple("" if v is None else v for v in g))
    if not group_by and not group_list:
        group_list = [()]
    order = _topological(plan)
    cells: dict[tuple[tuple[str | None, ...], int], dict[str, Decimal | None]] = {}
    with decimal.localcontext(prec=40):
        for g in group_list:
            for i in range(len(w.starts)):
                env: dict[str, Decimal | None] = {}
                for d in order:
                    if d.kind == "base":
                        a = accs[d.key].get((g, i))
                        env[d.key] = a.value(d) if a is not None else empty_value(d)
                    else:
                        env[d.key] = d.parsed.evaluate(env)
                cells[(g, i)] = env
    return Grid(group_list, cells), read_from


def _topological(plan: Plan) -> list[Definition]:
    graph = nx.DiGraph()
    graph.add_nodes_from(plan.defs)
    for d in plan.defs.values():
        graph.add_edges_from((r, d.key) for r in d.depends_on)
    return [plan.defs[k] for k in nx.lexicographical_topological_sort(graph)]


def fmt(value: Decimal | None, unit: str) -> str | None:
    """Decimal string for the API: at most 6 decimals (banker's rounding), currency with at least 2."""
    if value is None or not value.is_finite() or abs(value) >= formulas.MAX_RESULT:
        return None  # undefined, or too large to be exact (see formula.MAX_RESULT)
    with decimal.localcontext(prec=60):
        q = value.quantize(Q6, rounding=ROUND_HALF_EVEN)
    if q == 0:
        q = Decimal(0)
    text = format(q.normalize(), "f")
    if unit == "currency":
        whole, _, frac = text.partition(".")
        text = f"{whole}.{frac.ljust(2, '0')}"
    return text


# ---------------------------------------------------------------- series


async def series(
    s: AsyncSession,
    key: str,
    *,
    start: dt.date,
    end: dt.date,
    grain: str,
    group_by: list[str],
    flt: dict[str, set[str]],
    tz: str,
    principal: Principal | None,
    version: int | None = None,
    read_from: str = "auto",
) -> dict[str, Any]:
    w = window(start, end, grain, tz)
    plan = await resolve(s, key, version)
    grid, used = await compute(s, plan, w, group_by, flt, principal, read_from)
    m = plan.metric
    goals = await _targets_by_label(s, key, flt, w) if not group_by else {}
    out = []
    for g in grid.groups:
        points = []
        for i, b in enumerate(w.starts):
            value = grid.cells[(g, i)][key]
            point: dict[str, Any] = {"bucket": b.isoformat(), "value": fmt(value, m.unit)}
            goal = goals.get(period_label(b, grain) or "")
            if goal is not None:
                point.update(_versus(value, goal, m))
            points.append(point)
        out.append({"group": dict(zip(group_by, g, strict=True)), "points": points})
    return {
        "metric": key,
        "version": m.version,
        "unit": m.unit,
        "grain": grain,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "tz": tz,
        "read_from": used,
        "series": out,
    }


def _versus(actual: Decimal | None, target: Decimal, m: Definition) -> dict[str, Any]:
    variance = None if actual is None else actual - target
    if actual is None:
        attainment = None
    elif m.direction == "higher_is_better":
        attainment = None if target == 0 else actual / target
    else:
        attainment = None if actual == 0 else target / actual
    return {"target": fmt(target, m.unit), "variance": fmt(variance, m.unit), "attainment": fmt(attainment, "percent")}


async def _targets_by_label(s: AsyncSession, key: str, flt: dict[str, set[str]], w: Window) -> dict[str, Decimal]:
    if w.grain not in ("month", "quarter"):
        return {}
    single = {k: next(iter(v)) for k, v in flt.items() if len(v) == 1}
    if len(single) != len(flt):
        return {}
    t = targets.c
    rows = await s.execute(select(t.period, t.value).where(t.metric == key, t.filter_hash == dims_hash(single)))
    return {p: from_micro(v) for p, v in rows}


# ---------------------------------------------------------------- targets and scorecard


def _target_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "metric": row.metric,
        "period": row.period,
        "filter": row.filter,
        "value": format(from_micro(row.value).normalize(), "f"),
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "at_risk_published_at": row.at_risk_published_at.isoformat() if row.at_risk_published_at else None,
    }


async def create_target(s: AsyncSession, body: dict[str, Any], principal: Principal) -> dict[str, Any]:
    errs = Errors()
    try:
        flt = canonical_dims(body.get("filter") or {})
    except ValueError as exc:
        errs.add("filter", str(exc))
        flt = {}
    try:
        value = to_micro(body["value"])
    except ValueError as exc:
        errs.add("value", str(exc))
        value = 0
    try:
        parse_period(body["period"])
    except Invalid as exc:
        errs.items.extend(exc.errors)
    errs.raise_if_any()
    await get_definition(s, body["metric"])
    if not principal.may_see(flt):
        scopes = ", ".join(sorted(principal.scopes))
        raise Forbidden(f"Your scopes ({scopes}) do not cover a target on {flt or 'everything'}.")
    t = targets.c
    h = dims_hash(flt)
    exists = await s.scalar(
        select(t.id).where(t.metric == body["metric"], t.period == body["period"], t.filter_hash == h)
    )
    if exists:
        raise Conflict(f"A target for {body['metric']} in {body['period']} with this filter exists ({exists}).")
    row = {
        "id": str(uuid.uuid4()),
        "metric": body["metric"],
        "period": body["period"],
        "filter": flt,
        "filter_hash": h,
        "value": value,
        "version": 1,
        "created_at": utcnow(),
        "created_by": principal.subject,
        "at_risk_published_at": None,
    }
    await s.execute(targets.insert().values(**row))
    return _target_dict(SimpleNamespace(**row))


async def get_target(s: AsyncSession, target_id: str, principal: Principal) -> dict[str, Any]:
    row = (await s.execute(select(targets).where(targets.c.id == target_id))).first()
    if row is None or not principal.may_see(row.filter):
        raise NotFound(f"There is no target {target_id!r}.")
    return _target_dict(row)


async def list_targets(
    s: AsyncSession,
    principal: Principal,
    *,
    metric: str | None,
    period: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    t = targets.c
    q = select(targets).order_by(t.id).limit(limit * 4 + 1)
    if metric:
        q = q.where(t.metric == metric)
    if period:
        q = q.where(t.period == period)
    after = decode_cursor(cursor)
    if after:
        q = q.where(t.id > str(after[0]))
    items: list[Any] = []
    while True:
        rows = (await s.execute(q)).all()
        items.extend(r for r in rows if principal.may_see(r.filter))
        if len(items) > limit or len(rows) <= limit * 4:
            break
        q = q.where(t.id > rows[-1].id)
    page, nxt = page_of(items[: limit + 1], limit, lambda r: (r.id,))
    return [_target_dict(r) for r in page], nxt


def _elapsed(start: dt.date, end: dt.date, now: dt.datetime) -> float:
    t0 = dt.datetime.combine(start, dt.time(), dt.UTC)
    t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return min(1.0, max(0.0, (now - t0) / (t1 - t0)))


def project(plan: Plan, env: dict[str, Decimal | None], elapsed: float) -> Decimal | None:
    """Linear pacing: additive bases scaled to the whole period, ratios and averages re-evaluated."""
    rounded = round(elapsed, 9)
    if rounded <= 0:  # (a period that began less than a nanoth of its length ago rounds to 0)
        return None
    factor = Decimal(1) / Decimal(str(rounded))
    projected: dict[str, Decimal | None] = {}
    with decimal.localcontext(prec=40):
        for d in _topological(plan):
            if d.kind == "base":
                v = env.get(d.key)
                projected[d.key] = v * factor if v is not None and d.aggregation in ADDITIVE else v
            else:
                projected[d.key] = d.parsed.evaluate(projected)
    return projected[plan.metric.key]


def is_at_risk(direction: str, projected: Decimal | None, target: Decimal) -> bool:
    if projected is None:
        return False
    return projected < target if direction == "higher_is_better" else projected > target


async def scorecard(
    s: AsyncSession,
    keys: list[str],
    period: str,
    flt: dict[str, set[str]],
    principal: Principal | None,
    now: dt.datetime,
) -> dict[str, Any]:
    start, end = parse_period(period, "query.period")
    w = window(start, end, "period")
    elapsed = _elapsed(start, end, now)
    single = {k: next(iter(v)) for k, v in flt.items() if len(v) == 1}
    t = targets.c
    items = []
    for key in keys:
        plan = await resolve(s, key)
        grid, _ = await compute(s, plan, w, [], flt, principal)
        env = grid.cells[((), 0)]
        actual = env[key]
        m = plan.metric
        row = None
        if len(single) == len(flt):
            row = (
                await s.execute(
                    select(targets).where(t.metric == key, t.period == period, t.filter_hash == dims_hash(single))
                )
            ).first()
        projected = project(plan, env, elapsed)
        item: dict[str, Any] = {
            "metric": key,
            "name": m.name,
            "unit": m.unit,
            "direction": m.direction,
            "actual": fmt(actual, m.unit),
            "target": None,
            "variance": None,
            "attainment": None,
            "projected": fmt(projected, m.unit),
            "at_risk": False,
            "target_id": None,
        }
        if row is not None:
            goal = from_micro(row.value)
            item.update(_versus(actual, goal, m))
            item["target_id"] = row.id
            item["at_risk"] = elapsed < 1 and is_at_risk(m.direction, projected, goal)
        items.append(item)
    return {
        "period": period,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "elapsed": round(elapsed, 4),
        "items": items,
    }


async def evaluate_targets(
    db: Database,
    outbox: Outbox,
    now: dt.datetime,
    min_elapsed: float = 0.1,
) -> list[str]:
    """Publish kpi.target.at_risk once per target whose linear projection misses it; returns their ids."""
    t = targets.c
    async with db.transaction(readonly=True) as s:
        rows = (await s.execute(select(targets).where(t.at_risk_published_at.is_(None)))).all()
    published: list[str] = []
    for row in rows:
        try:
            start, end = parse_period(row.period)
        except Invalid:
            continue  # stored before periods were bounded (e.g. "9999"): no verdict, and the other targets' run goes on
        elapsed = _elapsed(start, end, now)
        if not (min_elapsed <= elapsed < 1):
            continue
        async with db.transaction(readonly=True) as s:
            plan = await resolve(s, row.metric)
            flt = {k: {v} for k, v in row.filter.items()}
            grid, _ = await compute(s, plan, window(start, end, "period"), [], flt, None)
        env = grid.cells[((), 0)]
        projected = project(plan, env, elapsed)
        goal = from_micro(row.value)
        if not is_at_risk(plan.metric.direction, projected, goal):
            continue
        m = plan.metric
        async with db.transaction() as s:
            claimed = await s.execute(
                update(targets).where(t.id == row.id, t.at_risk_published_at.is_(None)).values(at_risk_published_at=now)
            )
            if claimed.rowcount != 1:
                continue  # another replica published it
            await outbox.add(
                s,
                "kpi.target.at_risk",
                row.id,
                {
                    "target_id": row.id,
                    "metric": row.metric,
                    "period": row.period,
                    "filter": row.filter,
                    "actual": fmt(env[row.metric], m.unit),
                    "target": fmt(goal, m.unit),
                    "projected": fmt(projected, m.unit),
                    "direction": m.direction,
                    "elapsed": round(elapsed, 4),
                },
            )
        published.append(row.id)
    return published
