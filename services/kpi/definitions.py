"""Governed metric definitions: versioned, base (an aggregation of a measurement type), derived
(a formula over other metrics, never cyclic) or conversion (a cohort rate over CRM lifecycle facts),
and the catalog seeded at start-up.

A change is a new version; the latest version is the current one, and a series can be pinned to
an older one (it then reads its dependencies as they stood when it was defined). The catalog itself
changes the same way: `CATALOG_VERSIONS` are later versions of catalog metrics, added at start-up
only where the metric is still at the catalog's earlier version (nobody changed it since) and no
other metric's formula uses it.
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
from services.kpi.lifecycle import STAGES
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
MAX_WINDOW_DAYS = 3650
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
    "from_stage",
    "to_stage",
    "window_days",
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
    from_stage: str | None = None
    to_stage: str | None = None
    window_days: int | None = None
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


def _check_conversion(spec: dict[str, Any], out: dict[str, Any], errs: Errors) -> None:
    for f in ("measurement_type", "aggregation", "distinct_on", "formula"):
        if spec.get(f):
            errs.add(f, "a conversion metric has no " + f.replace("_", " ") + " (it counts lifecycle facts)")
    a, b = spec.get("from_stage"), spec.get("to_stage")
    for name, stage in (("from_stage", a), ("to_stage", b)):
        if stage not in STAGES:
            errs.add(name, f"a conversion metric needs one of: {', '.join(STAGES)}")
    if a is not None and a == b:
        errs.add("to_stage", "must differ from from_stage")
    window = spec.get("window_days")
    if window is None:
        out["window_days"] = 90
    elif not 1 <= window <= MAX_WINDOW_DAYS:
        errs.add("window_days", f"must be 1 to {MAX_WINDOW_DAYS} days")
    if spec.get("unit") != "percent":
        errs.add("unit", 'a conversion metric is a rate: its unit is "percent" (0.25 is 25 %)')
    out["formula"], out["depends_on"] = None, []


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
    if spec["kind"] != "conversion":
        for f in ("from_stage", "to_stage", "window_days"):
            if spec.get(f) is not None:
                errs.add(f, 'only a conversion metric (kind "conversion") has ' + f.replace("_", " "))
        out["from_stage"] = out["to_stage"] = out["window_days"] = None
    if spec["kind"] == "base":
        _check_base(spec, errs)
        out["formula"], out["depends_on"] = None, []
    elif spec["kind"] == "conversion":
        _check_conversion(spec, out, errs)
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


def _check_graph(key: str, refs: Sequence[str], defs: dict[str, Definition], kind: str = "derived") -> None:
    unknown = sorted(r for r in refs if r not in defs and r != key)
    if unknown:
        raise Invalid.on("formula", f"unknown metric(s): {', '.join(unknown)}", "unknown_reference")
    cohorts = sorted(r for r in refs if r in defs and defs[r].kind == "conversion")
    if cohorts:
        raise Invalid.on(
            "formula",
            f"{', '.join(cohorts)}: a conversion metric is a cohort rate, which a formula cannot combine "
            "(its buckets count entities by when they entered, not measurements)",
            "conversion_reference",
        )
    users = sorted(d.key for d in defs.values() if key in d.depends_on and d.key != key)
    if kind == "conversion" and users:
        raise Invalid.on(
            "kind", f"{', '.join(users)} use {key} in a formula; a conversion metric cannot be used there", "in_use"
        )
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
    _check_graph(spec["key"], spec["depends_on"], defs, spec["kind"])
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
    _check_graph(key, spec["depends_on"], defs, spec["kind"])
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
        "from_stage": spec.get("from_stage"),
        "to_stage": spec.get("to_stage"),
        "window_days": spec.get("window_days"),
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


def _conversion(key: str, name: str, a: str, b: str, window_days: int, desc: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": name,
        "kind": "conversion",
        "from_stage": a,
        "to_stage": b,
        "window_days": window_days,
        "unit": "percent",
        "direction": "higher_is_better",
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
SAME_MONTH = (
    "The {b} of a bucket over its {a} (measurements): not a conversion rate, as the two counts are of "
    "different entities; the cohort rate is the conversion metric of the funnel."
)
COHORT = (
    "Cohort conversion: of the entities that reached {a} in a bucket, the share that reached {b} within "
    "{days} days (CRM lifecycle facts); each point also gives entered, converted, median and p90 days. "
    "Version 1 was the same-month ratio, now {ratio}."
)
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
    # Version 1 of the funnel rates: same-month ratios. Version 2 (CATALOG_VERSIONS) makes them cohort
    # conversions; the ratios stay under their own names (*_ratio_same_month).
    _derived("lead_to_mql_rate", "Lead to MQL rate", "mqls / leads", "percent", H),
    _derived("mql_to_sql_rate", "MQL to SQL rate", "sqls / mqls", "percent", H),
    _derived("sql_to_opportunity_rate", "SQL to opportunity rate", "opportunities / sqls", "percent", H),
    _derived("win_rate", "Opportunity win rate", "won_deals / opportunities", "percent", H),
    _derived(
        "lead_to_mql_ratio_same_month",
        "Lead to MQL ratio (same month)",
        "mqls / leads",
        "percent",
        H,
        SAME_MONTH.format(b="MQLs", a="leads"),
    ),
    _derived(
        "mql_to_sql_ratio_same_month",
        "MQL to SQL ratio (same month)",
        "sqls / mqls",
        "percent",
        H,
        SAME_MONTH.format(b="SQLs", a="MQLs"),
    ),
    _derived(
        "sql_to_opportunity_ratio_same_month",
        "SQL to opportunity ratio (same month)",
        "opportunities / sqls",
        "percent",
        H,
        SAME_MONTH.format(b="opportunities", a="SQLs"),
    ),
    _derived(
        "win_ratio_same_month",
        "Opportunity win ratio (same month)",
        "won_deals / opportunities",
        "percent",
        H,
        SAME_MONTH.format(b="won deals", a="opportunities"),
    ),
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


def _cohort_version(key: str, name: str, a: str, b: str, days: int, ratio: str) -> tuple[int, dict[str, Any]]:
    return 2, _conversion(key, name, a, b, days, COHORT.format(a=a, b=b, days=days, ratio=ratio))


# Later versions of catalog metrics: (version, spec), applied in order by seed_catalog.
CATALOG_VERSIONS: list[tuple[int, dict[str, Any]]] = [
    _cohort_version("lead_to_mql_rate", "Lead to MQL rate", "lead", "mql", 30, "lead_to_mql_ratio_same_month"),
    _cohort_version("mql_to_sql_rate", "MQL to SQL rate", "mql", "sql", 30, "mql_to_sql_ratio_same_month"),
    _cohort_version(
        "sql_to_opportunity_rate",
        "SQL to opportunity rate",
        "sql",
        "opportunity",
        60,
        "sql_to_opportunity_ratio_same_month",
    ),
    _cohort_version("win_rate", "Opportunity win rate", "opportunity", "won", 180, "win_ratio_same_month"),
]
CATALOG_BY = "system:catalog"


async def seed_catalog(uow: UnitOfWork) -> int:
    """Insert version 1 of every catalog metric that is missing, then the catalog's later versions of
    metrics nobody has changed since; safe to run from every replica (the (key, version) key decides)."""
    now = utcnow()
    rows = [_row(check_spec({**spec, "owner": "mops"}), 1, CATALOG_BY, now) for spec in CATALOG]
    count = select(func.count()).select_from(metric_definitions)
    before = await uow.scalar(count)
    await uow.execute(insert_ignore(uow.dialect, metric_definitions, ["key", "version"]), rows)
    latest = await latest_definitions(uow)
    later = []
    for version, spec in CATALOG_VERSIONS:
        current = latest.get(spec["key"])
        if current is None or current.version != version - 1 or current.created_by != CATALOG_BY:
            continue  # already upgraded, or changed by someone: theirs stays the current version
        if any(spec["key"] in d.depends_on for d in latest.values()):
            continue  # a formula uses it; a conversion metric cannot be used there (_check_graph)
        later.append(_row(check_spec({**spec, "owner": "mops"}), version, CATALOG_BY, now))
    if later:
        await uow.execute(insert_ignore(uow.dialect, metric_definitions, ["key", "version"]), later)
    return int(await uow.scalar(count) or 0) - int(before or 0)
