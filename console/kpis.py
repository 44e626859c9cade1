"""KPIs: scorecard, a chart per metric with its definition and version, attribution drawn as the
lowest-highest range across models, and the data-quality view."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from console.api import ApiProblem
from console.formatting import decimal
from console.web import Page, signed_in

router = APIRouter()
SCORECARD = ("spend", "leads", "cpl", "revenue", "roi")  # the API takes at most five
GRAINS = ("day", "week", "month", "quarter")
DIMENSIONS = ("", "channel", "region", "campaign")
MODELS = ("linear", "first_touch", "last_touch", "time_decay", "position_based")


async def _maybe(page: Page, path: str, **params: Any) -> Any:
    """A section's figures: None (the section is left out, nothing is asked) when the policy does not
    let the person's roles read them; a part that is unavailable or refuses shows the problem, and the
    rest of the page still renders."""
    if not page.may_read(path):
        return None
    try:
        return await page.api.get(path, **params)
    except ApiProblem as problem:
        return {"problem": problem}


def _date(value: str | None, default: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else default
    except ValueError:
        return default


def bars(credits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attribution rows with the range across models scaled to 0..100 for the drawing."""
    top = max((decimal(c.get("max")) or Decimal(0) for c in credits), default=Decimal(0)) or Decimal(1)
    out = []
    for c in credits:
        low, high, mid = (decimal(c.get(k)) or Decimal(0) for k in ("min", "max", "credit"))
        out.append({**c, "x1": float(low / top * 100), "x2": float(high / top * 100), "xm": float(mid / top * 100)})
    return out


def _bucket_end(start: dt.date, grain: str) -> dt.date:
    """The first day after a bucket that starts on `start`."""
    if grain == "day":
        return start + dt.timedelta(days=1)
    if grain == "week":
        return start + dt.timedelta(days=7)
    months = 3 if grain == "quarter" else 1
    month = start.month - 1 + months
    return dt.date(start.year + month // 12, month % 12 + 1, 1)


def partial_buckets(buckets: list[str], grain: str, last: dt.date, today: dt.date) -> list[bool]:
    """Which buckets are not complete: the one holding the range's last counted day when the range
    (or today, whichever is first) ends before the bucket does, and the bucket of today (still running)."""
    counted = min(last, today)
    out = []
    for bucket in buckets:
        try:
            start = dt.date.fromisoformat(bucket)
        except ValueError:
            out.append(False)
            continue
        end = _bucket_end(start, grain)
        out.append(start <= counted < end and (end - dt.timedelta(days=1) > counted or counted == today))
    return out


ADDITIVE = ("sum", "count")  # the KPI service's additive aggregations (services/kpi/compute.py)


def projectable(definition: dict[str, Any] | None) -> bool:
    """Whether a partial bucket's value may be scaled to the whole bucket: a base metric that adds up
    (a sum or a count), as the KPI service's own pacing projection does. A ratio, an average, a distinct
    count or a derived formula is not scaled (its value so far is its own estimate)."""
    if not definition:
        return False
    return definition.get("kind") == "base" and definition.get("aggregation") in ADDITIVE


def elapsed(bucket: str, grain: str, last: dt.date, today: dt.date) -> tuple[int, int] | None:
    """(days counted, days in the bucket) of a partial bucket: the counted days run from its start to
    the range's last day or today, whichever is first, both included."""
    try:
        start = dt.date.fromisoformat(bucket)
    except ValueError:
        return None
    end = _bucket_end(start, grain)
    counted = min(last, today, end - dt.timedelta(days=1))
    if counted < start:
        return None
    return (counted - start).days + 1, (end - start).days


def projected(value: Decimal | None, days: tuple[int, int] | None) -> Decimal | None:
    """A partial bucket's value projected to the whole bucket at its pace so far:
    value x days in the bucket / days counted (so 2 000 after 4 of 31 days is 15 500)."""
    if value is None or days is None or days[0] <= 0:
        return None
    return value * days[1] / days[0]


def chart_of(
    series: dict[str, Any],
    metric: str,
    grain: str,
    last: dt.date,
    today: dt.date,
    definition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The chart's figures (uPlot draws them). A partial bucket is drawn dashed, apart: for a metric
    that adds up, at its value projected to the whole bucket (`mode` "projected"), so an early month
    is not drawn as a fall; otherwise at its value so far (`mode` "to_date"). A day is never projected."""
    points = series["series"][0]["points"] if series["series"] else []
    labels = [p["bucket"] for p in points]
    partial = partial_buckets(labels, grain, last, today)
    mode = "projected" if grain != "day" and projectable(definition) else "to_date"
    days = [elapsed(b, grain, last, today) if running else None for b, running in zip(labels, partial, strict=True)]
    out_series = []
    for s in series["series"]:
        values = [decimal(p["value"]) for p in s["points"]]
        ahead = [
            projected(v, days[i]) if mode == "projected" and partial[i] else (v if partial[i] else None)
            for i, v in enumerate(values)
        ]
        out_series.append(
            {
                "name": ", ".join(str(v) for v in s["group"].values()) or metric,
                "values": [None if v is None else float(v) for v in values],
                "projected": [None if v is None else float(v) for v in ahead],
                "projected_exact": [None if v is None else str(v.quantize(Decimal("0.01"))) for v in ahead],
            }
        )
    label = "projected" if mode == "projected" else ("so far today" if grain == "day" else f"{grain} to date")
    return {"labels": labels, "partial": partial, "mode": mode, "label": label, "days": days, "series": out_series}


@router.get("/kpis")
async def kpis(
    page: Page = Depends(signed_in),
    period: str | None = None,
    metric: str = "spend",
    start: str | None = None,
    end: str | None = None,
    grain: str = "month",
    group_by: str = "channel",
    model: str = "linear",
) -> Response:
    today = dt.date.today()
    first = _date(start, today.replace(month=1, day=1))
    last = _date(end, today)
    period = period or (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    grain = grain if grain in GRAINS else "month"
    group_by = group_by if group_by in DIMENSIONS else ""
    model = model if model in MODELS else "linear"
    catalogue = await page.api.items("/kpi/v1/metrics", limit=200)
    keys = [m["key"] for m in catalogue]
    metric = metric if metric in keys else (keys[0] if keys else "spend")
    wanted = ",".join(k for k in SCORECARD if k in keys) or ",".join(keys[:6])
    scorecard, series, definition, attribution, quality = await asyncio.gather(
        _maybe(page, "/kpi/v1/scorecard", metrics=wanted, period=period),
        _maybe(
            page,
            f"/kpi/v1/metrics/{metric}/series",
            **{"from": first.isoformat(), "to": last.isoformat()},
            grain=grain,
            group_by=group_by or None,
        ),
        _maybe(page, f"/kpi/v1/metrics/{metric}"),
        _maybe(page, "/kpi/v1/attribution", **{"from": first.isoformat(), "to": last.isoformat()}, model=model),
        _maybe(page, "/kpi/v1/quality"),
    )
    chart = (
        chart_of(series, metric, grain, last, today, definition if definition and "key" in definition else None)
        if series and "series" in series
        else None
    )
    return page.render(
        "kpis.html",
        catalogue=catalogue,
        metric=metric,
        period=period,
        start=first,
        end=last,
        grain=grain,
        group_by=group_by,
        model=model,
        grains=GRAINS,
        dimensions=DIMENSIONS,
        models=MODELS,
        scorecard=scorecard,
        series=series,
        definition=definition,
        attribution=attribution,
        bars=bars(attribution["credits"]) if attribution and "credits" in attribution else [],
        quality=quality,
        chart_json=json.dumps(chart) if chart else None,
        partial=chart["partial"] if chart else [],
        chart=chart,
        currency=page.settings.reporting_currency,
    )
