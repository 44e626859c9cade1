"""The semantic query (`POST /v1/query`): metrics by dimensions and time for BI tools and notebooks.

Each metric is computed as its series is (services/kpi/series.py: from the rollups where it can,
the caller's scopes applied, the same definitions and versions), then the series are joined into one
table: a row per bucket and group, a column per dimension and per metric. Ordering and the limit
apply to the joined rows. Field errors name the body's fields (`metrics.1`, `time_range.from`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.kpi import series
from services.kpi.cohorts import CohortLimits
from shared.errors import FieldError, Invalid, NotFound
from shared.identity import Principal
from shared.uow import UnitOfWork

# The series' query-parameter names as the query body's fields.
FIELDS = {"query.from": "time_range.from", "query.to": "time_range.to", "query.grain": "grain"}


def _renamed(exc: Invalid, metric_field: str) -> Invalid:
    errors = [FieldError(FIELDS.get(e.field, metric_field), e.message, e.code) for e in exc.errors]
    return Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def _check(body: dict[str, Any]) -> None:
    if body["time_range"]["from_"] > body["time_range"]["to"]:
        raise Invalid.on("time_range.from", "is after time_range.to")
    if len(set(body["metrics"])) != len(body["metrics"]):
        raise Invalid.on("metrics", "names a metric twice")
    known = {"bucket", *body["dimensions"], *body["metrics"]}
    for n, o in enumerate(body["order"]):
        if o["by"] not in known:
            raise Invalid.on(f"order.{n}.by", f"{o['by']!r} is not bucket, a dimension or a metric of the query")


async def _series(
    uow: UnitOfWork, who: Principal, body: dict[str, Any], n: int, fiscal_start: int, limits: CohortLimits | None
) -> dict[str, Any]:
    key = body["metrics"][n]
    try:
        return await series.series(
            uow,
            who,
            key=key,
            start=body["time_range"]["from_"],
            end=body["time_range"]["to"],
            grain="period" if body["grain"] == "all" else body["grain"],
            group_by=list(body["dimensions"]),
            flt={k: set(v) for k, v in body["filters"].items()},
            tz="UTC",
            fiscal_start=fiscal_start,
            cohort_limits=limits,
        )
    except NotFound:
        raise Invalid.on(f"metrics.{n}", f"no metric {key!r}") from None
    except Invalid as exc:
        raise _renamed(exc, f"metrics.{n}") from None


def _sort_key(value: str | None, is_metric: bool) -> tuple[bool, Any]:
    if value is None:
        return (True, "")
    return (False, Decimal(value) if is_metric else value)


async def run(
    uow: UnitOfWork,
    who: Principal,
    body: dict[str, Any],
    *,
    fiscal_start: int,
    cohort_limits: CohortLimits | None = None,
) -> dict[str, Any]:
    """The joined table of the query's metrics (see the module's docstring)."""
    _check(body)
    dims, metrics = list(body["dimensions"]), list(body["metrics"])
    rows: dict[tuple[Any, ...], dict[str, str | None]] = {}
    columns: list[dict[str, Any]] = [{"name": "bucket", "kind": "time"}]
    columns += [{"name": d, "kind": "dimension"} for d in dims]
    read_from = {}
    for n, key in enumerate(metrics):
        answer = await _series(uow, who, body, n, fiscal_start, cohort_limits)
        columns.append({"name": key, "kind": "metric", "unit": answer["unit"], "version": answer["version"]})
        read_from[key] = answer["read_from"]
        for s in answer["series"]:
            for point in s["points"]:
                at = (point["bucket"], *(s["group"].get(d) for d in dims))
                row = rows.setdefault(at, {"bucket": point["bucket"], **{d: s["group"].get(d) for d in dims}})
                row[key] = point["value"]
    table = [{**{m: None for m in metrics}, **r} for r in rows.values()]
    table.sort(key=lambda r: (r["bucket"], *(_sort_key(r[d], False) for d in dims)))
    for o in reversed(body["order"]):  # stable sorts: the first order key ends up the primary one
        by, metric = o["by"], o["by"] in metrics
        present = [r for r in table if r[by] is not None]
        present.sort(key=lambda r: _sort_key(r[by], metric)[1], reverse=o["direction"] == "desc")
        table = present + [r for r in table if r[by] is None]  # nulls last either way
    limit = body["limit"]
    return {"columns": columns, "rows": table[:limit], "read_from": read_from, "truncated": len(table) > limit}
