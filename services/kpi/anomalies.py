"""Anomalies: each chosen metric's day against a seasonal, robust baseline.

The baseline of day D is the metric's value on the same weekday of the `weeks` weeks before
(weekday effects: a Monday is compared with Mondays), per group when a dimension is chosen. Its
centre is the median and its spread the median absolute deviation (MAD) scaled by 1.4826 (the
standard deviation for normal data, but an outlier week moves neither). The expected range is
median +- threshold x spread, the spread floored at 5 % of the median's size (or 1 when the median
is 0), so a flat history does not flag every small change. A day outside it is an anomaly: stored
once per metric, group and day (a unique key), published as `kpi.anomaly.detected` in the same
transaction through the outbox; a dismissed one stays dismissed when the check runs again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from statistics import median
from typing import Any

from sqlalchemy import CursorResult, select, update

from services.kpi.compute import compute, resolve
from services.kpi.events import ANOMALY_DETECTED, KpiAnomalyDetected
from services.kpi.models import anomalies
from services.kpi.periods import window
from services.kpi.values import dims_hash, fmt
from shared.db import insert_ignore, utcnow
from shared.errors import Invalid, NotFound
from shared.identity import Principal
from shared.uow import UnitOfWork

MAD_SCALE = Decimal("1.4826")
MIN_BASELINE = 4  # same-weekday values needed before a day is judged
FLOOR = Decimal("0.05")


@dataclass(frozen=True)
class Settings:
    """Which metrics the daily check watches and how (PITCREW_KPI_ANOMALY_*; docs/kpi.md#anomalies)."""

    metrics: tuple[str, ...] = ()
    group_by: str | None = None
    weeks: int = 8
    threshold: Decimal = Decimal("3.5")


@dataclass(frozen=True)
class Range:
    expected: Decimal
    low: Decimal
    high: Decimal


def expected_range(history: Sequence[Decimal], threshold: Decimal) -> Range:
    """Median +- threshold x max(1.4826 MAD, 5 % of |median| or 1) of the baseline values."""
    centre = Decimal(median(history))
    mad = Decimal(median(abs(x - centre) for x in history))
    spread = max(MAD_SCALE * mad, FLOOR * abs(centre) if centre else Decimal(1))
    return Range(centre, centre - threshold * spread, centre + threshold * spread)


def judge(observed: Decimal, history: Sequence[Decimal], threshold: Decimal) -> tuple[Range, str] | None:
    """(the range, above|below) when `observed` falls outside the baseline's range; None inside it or too
    little history."""
    if len(history) < MIN_BASELINE:
        return None
    r = expected_range(history, threshold)
    if observed > r.high:
        return r, "above"
    if observed < r.low:
        return r, "below"
    return None


async def _metric_days(
    uow: UnitOfWork, key: str, day: dt.date, cfg: Settings
) -> list[tuple[dict[str, str], Decimal, list[Decimal]]]:
    """Per group: the day's value and the same weekday's values over the baseline weeks (nulls left out)."""
    plan = await resolve(uow, key)
    start = day - dt.timedelta(days=7 * cfg.weeks)
    w = window(start, day, "day")
    group_by = [cfg.group_by] if cfg.group_by else []
    grid, _ = await compute(uow, None, plan=plan, w=w, group_by=group_by, flt={})
    index = {b: i for i, b in enumerate(w.starts)}
    out = []
    for g in grid.groups:
        observed = grid.cells[(g, index[day])][key]
        if observed is None or any(v is None for v in g):
            continue
        past = [grid.cells[(g, index[day - dt.timedelta(days=7 * k)])][key] for k in range(1, cfg.weeks + 1)]
        dims = {k: str(v) for k, v in zip(group_by, g, strict=True)}
        out.append((dims, observed, [v for v in past if v is not None]))
    return out


async def check_day(uow: UnitOfWork, *, day: dt.date, cfg: Settings) -> list[str]:
    """Judge `day` for every watched metric; store and publish the new anomalies; their ids."""
    found = []
    for key in cfg.metrics:
        metric = (await resolve(uow, key)).metric
        unit = metric.unit
        for dims, observed, history in await _metric_days(uow, key, day, cfg):
            verdict = judge(observed, history, cfg.threshold)
            if verdict is None:
                continue
            r, direction = verdict
            text = {k: fmt(v, unit) or "0" for k, v in (("expected", r.expected), ("low", r.low), ("high", r.high))}
            row: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "metric": key,
                "group_hash": dims_hash(dims),
                "dims": dims,
                "day": day,
                "observed": fmt(observed, unit) or "0",
                **text,
                "direction": direction,
                "status": "open",
                "detected_at": utcnow(),
            }
            stored = await uow.execute(insert_ignore(uow.dialect, anomalies, ["metric", "group_hash", "day"]), row)
            if not isinstance(stored, CursorResult) or stored.rowcount != 1:
                continue  # found before: published then (and perhaps dismissed since)
            event = KpiAnomalyDetected(
                anomaly_id=row["id"],
                group=dims,
                day=day.isoformat(),
                baseline_days=len(history),
                owner=metric.owner,
                **_event_fields(row),
            )
            await uow.publish(ANOMALY_DETECTED, row["id"], event)
            found.append(row["id"])
    return found


def _event_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("metric", "observed", "expected", "low", "high", "direction")}


def _out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "metric": row.metric,
        "group": row.dims,
        "day": row.day.isoformat(),
        "observed": row.observed,
        "expected": row.expected,
        "low": row.low,
        "high": row.high,
        "direction": row.direction,
        "status": row.status,
        "detected_at": row.detected_at.isoformat().replace("+00:00", "Z"),
        "dismissed_at": row.dismissed_at.isoformat().replace("+00:00", "Z") if row.dismissed_at else None,
        "dismissed_by": row.dismissed_by,
        "note": row.note,
    }


async def list_anomalies(
    uow: UnitOfWork, who: Principal, *, metric: str | None, status: str, since: dt.date | None, limit: int
) -> list[dict[str, Any]]:
    """Newest day first; only the groups within the caller's scopes (an ungrouped one needs no scopes)."""
    a = anomalies.c
    q = select(anomalies).order_by(a.day.desc(), a.metric, a.id)
    if metric is not None:
        q = q.where(a.metric == metric)
    if status != "all":
        q = q.where(a.status == status)
    if since is not None:
        q = q.where(a.day >= since)
    out = []
    for row in (await uow.execute(q)).all():
        if who.may_see(row.dims):
            out.append(_out(row))
            if len(out) == limit:
                break
    return out


async def dismiss(uow: UnitOfWork, who: Principal, *, anomaly_id: str, note: str | None) -> dict[str, Any]:
    """Mark a false alarm; it stays dismissed (the check never publishes that metric, group and day again)."""
    a = anomalies.c
    row = (await uow.execute(select(anomalies).where(a.id == anomaly_id))).first()
    if row is None or not who.may_see(row.dims):
        raise NotFound(f"No anomaly {anomaly_id!r}.")
    if row.status == "dismissed":
        return _out(row)
    if note is not None and len(note) > 2000:
        raise Invalid.on("note", "at most 2,000 characters")
    now = utcnow()
    values: dict[str, Any] = {"status": "dismissed", "dismissed_at": now, "dismissed_by": who.subject, "note": note}
    await uow.execute(update(anomalies).where(a.id == anomaly_id).values(**values))
    after = {**values, "dismissed_at": now.isoformat()}
    await uow.audit("anomaly", anomaly_id, action="dismiss", before={"status": row.status}, after=after)
    return _out((await uow.execute(select(anomalies).where(a.id == anomaly_id))).one())
