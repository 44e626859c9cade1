"""Governed metric definitions: versioned, base (an aggregation of a measurement type) or derived
(a formula over other metrics), never cyclic, and the catalog seeded at start-up.

A change is a new version; the latest version is the current one, and a series can be pinned to
an older one (it then reads its dependencies as they stood when it was defined).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from sqlalchemy import func, select

from services.kpi import formula as formulas
from services.kpi.events import Direction
from services.kpi.models import metric_definitions
from services.kpi.values import canonical_dims
from shared.db import insert_ignore, utcnow
from shared.errors import Conflict, Errors, Invalid, NotFound, PreconditionFailed
from shared.identity import Principal
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

UNITS = ("count", "currency", "percent", "duration")
DIRECTIONS = ("higher_is_better", "lower_is_better")
AGGREGATIONS = ("sum", "count", "count_distinct", "avg", "min", "max")
FIELDS = (
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


@dataclass
class Definition:
    id: str
    key: str
    version: int
    name: str
    description: str
    owner: str | None
    unit: str
    direction: Direction
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
        d = {k: getattr(self, k) for k in FIELDS}
        d["created_at"] = self.created_at.isoformat()
        return d


def _definition(row: Any) -> Definition:
    return Definition(**{c: getattr(row, c) for c in FIELDS})


def _check_base(spec: dict[str, Any], errs: Errors) -> None:
    mtype, agg, distinct = spec.get("measurement_type"), spec.get("aggregation"), spec.get("distinct_on")
    if not mtype or not formulas.KEY_RE.match(mtype):
        errs.add("measurement_type", "a base metric needs a measurement type (lower-case letters, digits, _)")
    if not agg:
        errs.add("aggregation", f"a base metric needs one of: {', '.join(AGGREGATIONS)}")
    if agg == "count_distinct" and not distinct:
        errs.add("distinct_on", "count_distinct needs the dimension whose distinct values are counted")
    elif distinct and not formulas.KEY_RE.match(distinct):
        errs.add("distinct_on", "must be a dimension name (lower-case letters, digits and _)")
    if spec.get("formula"):
        errs.add("formula", 'a base metric has no formula (use kind "derived")')


def _check_derived(spec: dict[str, Any], out: dict[str, Any], errs: Errors) -> None:
    for f in ("measurement_type", "aggregation", "distinct_on"):
        if spec.get(f):
            errs.add(f, "a derived metric has no " + f.replace("_", " "))
    if spec.get("filter"):
        errs.add("filter", "a derived metric takes its filters from its base metrics")
    if not spec.get("formula"):
        errs.add("formula", 'a derived metric needs a formula such as "spend / leads"')
        return
    try:
        parsed = formulas.parse(spec["formula"])
        out["formula"], out["depends_on"] = parsed.source, sorted(parsed.references)
    except Invalid as exc:
        errs.items.extend(exc.errors)


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Kind-specific rules on a definition body; every broken field reported at once."""
    errs = Errors()
    if not formulas.valid_key(spec.get("key", "")):
        errs.add("key", "must be lower-case letters, digits and _ (start with a letter), not a Python keyword")
    out = dict(spec)
    out["filter"] = {}
    try:
        out["filter"] = canonical_dims(spec.get("filter") or {})
    except ValueError as exc:
        errs.add("filter", str(exc))
    if spec["kind"] == "base":
        _check_base(spec, errs)
        out["formula"], out["depends_on"] = None, []
    else:
        _check_derived(spec, out, errs)
    errs.raise_if_any()
    return out


async def latest_definitions(uow: UnitOfWork) -> dict[str, Definition]:
    defs: dict[str, Definition] = {}
    for row in await uow.execute(select(metric_definitions).order_by(metric_definitions.c.version)):
        defs[row.key] = _definition(row)
    return defs


async def all_versions(uow: UnitOfWork) -> list[Definition]:
    """Every version of every metric, oldest version first."""
    rows = await uow.execute(select(metric_definitions).order_by(metric_definitions.c.version))
    return [_definition(r) for r in rows]


async def get_definition(uow: UnitOfWork, key: str, version: int | None = None) -> Definition:
    md = metric_definitions.c
    q = select(metric_definitions).where(md.key == key)
    q = q.where(md.version == version) if version is not None else q.order_by(md.version.desc()).limit(1)
    row = (await uow.execute(q)).first()
    if row is None:
        what = f"metric {key!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"There is no {what}.")
    return _definition(row)


async def list_definitions(uow: UnitOfWork, *, limit: int, cursor: str | None) -> tuple[list[Definition], str | None]:
    after = decode_cursor(cursor)
    defs = sorted((await latest_definitions(uow)).values(), key=lambda d: d.key)
    if after:
        defs = [d for d in defs if d.key > str(after[0])]
    return page_of(defs[: limit + 1], limit, lambda d: (d.key,))


async def list_versions(uow: UnitOfWork, key: str) -> list[Definition]:
    md = metric_definitions.c
    rows = (await uow.execute(select(metric_definitions).where(md.key == key).order_by(md.version))).all()
    if not rows:
        raise NotFound(f"There is no metric {key!r}.")
    return [_definition(r) for r in rows]


def _check_graph(key: str, refs: Sequence[str], defs: dict[str, Definition]) -> None:
    unknown = sorted(r for r in refs if r not in defs and r != key)
    if unknown:
        raise Invalid.on("formula", f"unknown metric(s): {', '.join(unknown)}", "unknown_reference")
    graph: nx.DiGraph[str] = nx.DiGraph()
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


async def create_definition(uow: UnitOfWork, who: Principal, *, spec: dict[str, Any]) -> Definition:
    spec = check_spec(spec)
    defs = await latest_definitions(uow)
    if spec["key"] in defs:
        raise Conflict(f"Metric {spec['key']!r} exists; PUT /v1/metrics/{spec['key']} creates a new version.")
    _check_graph(spec["key"], spec["depends_on"], defs)
    return await _insert_version(uow, spec, 1, who.subject)


async def update_definition(
    uow: UnitOfWork, who: Principal, *, key: str, spec: dict[str, Any], if_match: int | None
) -> Definition:
    if spec.get("key") not in (None, key):
        raise Invalid.on("key", f"does not match the path ({key!r})")
    spec = check_spec({**spec, "key": key})
    defs = await latest_definitions(uow)
    current = defs.get(key)
    if current is None:
        raise NotFound(f"There is no metric {key!r}; POST /v1/metrics creates it.")
    if if_match is not None and if_match != current.version:
        raise PreconditionFailed(f"Metric {key!r} is at version {current.version}, not {if_match}.")
    _check_graph(key, spec["depends_on"], defs)
    return await _insert_version(uow, spec, current.version + 1, who.subject)


def _row(spec: dict[str, Any], version: int, by: str, at: dt.datetime) -> dict[str, Any]:
    return {
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
        "created_at": at,
        "created_by": by,
    }


async def _insert_version(uow: UnitOfWork, spec: dict[str, Any], version: int, by: str) -> Definition:
    row = _row(spec, version, by, utcnow())
    await uow.execute(metric_definitions.insert().values(**row))
    return Definition(**row)


def _base(
    key: str, name: str, mtype: str, unit: str, direction: str, agg: str = "sum", desc: str = ""
) -> dict[str, Any]:
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


def _derived(key: str, name: str, f: str, unit: str, direction: str, desc: str = "") -> dict[str, Any]:
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
    _base(
        "stack_savings",
        "Stack savings",
        "stack_savings",
        "currency",
        H,
        desc="What cancellations and cheaper renewals save per year, from the month they start (registry).",
    ),
    _base("deliverables_done", "Deliverables done", "deliverables_done", "count", H),
    _base("deliverables_on_time", "Deliverables on time", "deliverables_on_time", "count", H),
    _base(
        "deliverable_rework_rounds",
        "Deliverable rework rounds",
        "deliverable_rework_rounds",
        "count",
        L,
        desc="Deliveries sent back before approval, per done deliverable (sum; divide by deliverables_done).",
    ),
    _base(
        "deliverable_lateness",
        "Deliverable lateness",
        "deliverable_lateness_hours",
        "duration",
        L,
        "avg",
        desc="Average business hours from the due time to the last delivery (0 when on time).",
    ),
    _derived("cpl", "Cost per lead", "spend / leads", "currency", L),
    _derived("cac", "Customer acquisition cost", "spend / won_deals", "currency", L),
    _derived("roi", "Return on investment", "(revenue - spend) / spend", "percent", H, "A fraction: 0.25 is 25 %."),
    _derived("roas", "Return on ad spend", "revenue / spend", "percent", H, "A fraction: 3 is 300 %."),
    _derived("lead_to_mql_rate", "Lead to MQL rate", "mqls / leads", "percent", H),
    _derived("mql_to_sql_rate", "MQL to SQL rate", "sqls / mqls", "percent", H),
    _derived("sql_to_opportunity_rate", "SQL to opportunity rate", "opportunities / sqls", "percent", H),
    _derived("win_rate", "Opportunity win rate", "won_deals / opportunities", "percent", H),
    _derived(
        "deliverable_on_time_rate",
        "Deliverable on-time rate",
        "deliverables_on_time / deliverables_done",
        "percent",
        H,
        "Group by supplier or team for each one's rate (workflow's deliverables, at approval).",
    ),
    _derived("sla_attainment", "SLA attainment", "workflows_sla_met / workflows_completed", "percent", H),
    _derived("budget_utilization", "Budget utilization", "spend / budget_allocated", "percent", H),
]


async def seed_catalog(uow: UnitOfWork) -> int:
    """Insert version 1 of every catalog metric that is missing; safe to run from every replica."""
    now = utcnow()
    rows = [_row(check_spec({**spec, "owner": "mops"}), 1, "system:catalog", now) for spec in CATALOG]
    count = select(func.count()).select_from(metric_definitions)
    before = await uow.scalar(count)
    await uow.execute(insert_ignore(uow.dialect, metric_definitions, ["key", "version"]), rows)
    return int(await uow.scalar(count) or 0) - int(before or 0)
