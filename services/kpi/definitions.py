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
from sqlalchemy import select

from services.kpi import formula as formulas
from services.kpi.events import Direction
from services.kpi.lifecycle import STAGES
from services.kpi.models import metric_definitions
from services.kpi.values import canonical_dims
from shared.db import utcnow
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
    "base_metric",
    "cumulative",
)
CUMULATIVE_WINDOWS = ("month_to_date", "quarter_to_date", "year_to_date", "fiscal_year_to_date", "trailing")
MAX_TRAILING_DAYS = 366


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
    base_metric: str | None = None
    cumulative: str | None = None
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


def _check_cumulative(spec: dict[str, Any], out: dict[str, Any], errs: Errors) -> None:
    for f in ("measurement_type", "aggregation", "distinct_on", "formula", "from_stage", "to_stage"):
        if spec.get(f):
            errs.add(f, "a cumulative metric has no " + f.replace("_", " ") + " (it runs base_metric over a window)")
    if spec.get("filter"):
        errs.add("filter", "a cumulative metric takes its filters from its base metric")
    base = spec.get("base_metric")
    if not base or not formulas.valid_key(base):
        errs.add("base_metric", "a cumulative metric needs the key of the metric it adds up")
    window = spec.get("cumulative")
    if window not in CUMULATIVE_WINDOWS:
        errs.add("cumulative", f"a cumulative metric needs one of: {', '.join(CUMULATIVE_WINDOWS)}")
    days = spec.get("window_days")
    if window == "trailing":
        if days is None or not 1 <= days <= MAX_TRAILING_DAYS:
            errs.add("window_days", f"a trailing window needs 1 to {MAX_TRAILING_DAYS} days")
    elif days is not None:
        errs.add("window_days", "only a trailing window (or a conversion metric) has window days")
    out["formula"], out["depends_on"] = None, [base] if base else []


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
    if spec["kind"] not in ("conversion", "cumulative"):
        for f in ("from_stage", "to_stage", "window_days"):
            if spec.get(f) is not None:
                errs.add(f, 'only a conversion metric (kind "conversion") has ' + f.replace("_", " "))
        out["from_stage"] = out["to_stage"] = out["window_days"] = None
    if spec["kind"] != "cumulative":
        for f in ("base_metric", "cumulative"):
            if spec.get(f) is not None:
                errs.add(f, 'only a cumulative metric (kind "cumulative") has ' + f.replace("_", " "))
        out["base_metric"] = out["cumulative"] = None
    if spec["kind"] == "base":
        _check_base(spec, errs)
        out["formula"], out["depends_on"] = None, []
    elif spec["kind"] == "conversion":
        _check_conversion(spec, out, errs)
    elif spec["kind"] == "cumulative":
        _check_cumulative(spec, out, errs)
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
    if kind == "cumulative":
        _check_base_metric(key, refs, defs)
    unknown = sorted(r for r in refs if r not in defs and r != key)
    if unknown:
        raise Invalid.on("formula", f"unknown metric(s): {', '.join(unknown)}", "unknown_reference")
    running = sorted(r for r in refs if r in defs and defs[r].kind == "cumulative" and kind != "cumulative")
    if running:
        raise Invalid.on(
            "formula",
            f"{', '.join(running)}: a cumulative metric is a running total over a window, which a formula cannot "
            "combine with per-bucket values; run the formula's metric cumulatively instead",
            "cumulative_reference",
        )
    cohorts = sorted(r for r in refs if r in defs and defs[r].kind == "conversion")
    if cohorts:
        raise Invalid.on(
            "formula",
            f"{', '.join(cohorts)}: a conversion metric is a cohort rate, which a formula cannot combine "
            "(its buckets count entities by when they entered, not measurements)",
            "conversion_reference",
        )
    users = sorted(d.key for d in defs.values() if key in d.depends_on and d.key != key)
    if kind in ("conversion", "cumulative") and users:
        raise Invalid.on(
            "kind", f"{', '.join(users)} use {key} in a formula; a {kind} metric cannot be used there", "in_use"
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


def _check_base_metric(key: str, refs: Sequence[str], defs: dict[str, Definition]) -> None:
    """A cumulative metric's base: an existing base or derived metric (not itself, a cohort or a running total)."""
    for base in refs:
        found = defs.get(base)
        if base == key:
            raise Invalid.on("base_metric", "a cumulative metric cannot add itself up", "cycle")
        if found is None:
            raise Invalid.on("base_metric", f"no metric {base!r}", "unknown_reference")
        if found.kind in ("conversion", "cumulative"):
            raise Invalid.on(
                "base_metric",
                f"{base} is a {found.kind} metric: only a base or derived metric can be run over a window",
                f"{found.kind}_reference",
            )


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
        "base_metric": spec.get("base_metric"),
        "cumulative": spec.get("cumulative"),
    }


async def _insert_version(uow: UnitOfWork, spec: dict[str, Any], version: int, by: str) -> Definition:
    row = _row(spec, version, by, utcnow())
    await uow.execute(metric_definitions.insert().values(**row))
    return Definition(**row)
