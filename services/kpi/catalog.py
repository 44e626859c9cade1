"""The seeded catalogue of metrics: version 1 of each, the catalogue's later versions, and
`seed_catalog`, which writes them once (from any replica) without touching what someone changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from services.kpi.definitions import _row, check_spec, latest_definitions
from services.kpi.models import metric_definitions
from shared.db import insert_ignore, utcnow
from shared.uow import UnitOfWork


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
