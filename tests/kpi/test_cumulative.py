"""Cumulative series (to date, trailing N days) against running sums of the plain day series."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.kpi import series
from services.kpi.models import measurements, rollups_daily, rollups_monthly

pytestmark = pytest.mark.db

START, END = dt.date(2027, 1, 1), dt.date(2027, 4, 30)
DAYS = (END - START).days + 1
item = st.tuples(
    st.sampled_from(["leads", "spend"]),
    st.integers(0, DAYS - 1),
    st.integers(1, 500),
    st.sampled_from(["search", "social"]),
)


async def day_series(uow, key: str, **kw) -> dict[tuple, Decimal | None]:
    got = await series.series(
        uow, None, key=key, start=START, end=END, grain="day", group_by=["channel"], flt={}, tz="UTC", **kw
    )
    return {
        (s["group"]["channel"], p["bucket"]): None if p["value"] is None else Decimal(p["value"])
        for s in got["series"]
        for p in s["points"]
    }


async def load(kpi, items) -> None:
    rt = kpi.runtime
    async with rt.unit_of_work() as uow:
        for table in (measurements, rollups_daily, rollups_monthly):
            await uow.execute(table.delete())
    rows = [
        {
            "type": t,
            "value": f"{v}.25" if t == "spend" else str(v),
            "time": f"{START + dt.timedelta(days=d)}T12:00:00Z",
            "dimensions": {"channel": ch},
        }
        for t, d, v, ch in items
    ]
    if rows:
        result = await rt.domain.ingestor.ingest(rt.db, None, items=rows, default_source="test")
        assert result.accepted == len(rows)


def since(day: dt.date, kind: str, n: int) -> dt.date:
    return {
        "month_to_date": day.replace(day=1),
        "quarter_to_date": day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1),
        "year_to_date": day.replace(month=1, day=1),
        "trailing": day - dt.timedelta(days=n - 1),
    }[kind]


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    items=st.lists(item, max_size=40),
    kind=st.sampled_from(["month_to_date", "quarter_to_date", "year_to_date", "trailing"]),
    n=st.integers(1, 45),
)
async def test_cumulative_series_equal_running_sums_of_the_base_series(kpi, items, kind, n):
    await load(kpi, items)
    async with kpi.runtime.unit_of_work(readonly=True) as uow:
        base = {k: await day_series(uow, k) for k in ("leads", "spend")}
        run = {k: await day_series(uow, k, cumulative=kind, trailing_days=n) for k in ("leads", "spend", "cpl")}
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    for ch in {c for r in run.values() for c, _ in r}:
        for day in days:
            span = [d for d in days if since(day, kind, n) <= d <= day]
            sums = {k: sum((base[k].get((ch, d.isoformat()), 0) for d in span), Decimal(0)) for k in base}
            # a group without any of a metric's measurements is not in its series (as any series)
            assert run["leads"].get((ch, day.isoformat()), 0) == sums["leads"], (ch, day)
            assert run["spend"].get((ch, day.isoformat()), 0) == sums["spend"], (ch, day)
            cpl = None if sums["leads"] == 0 else (sums["spend"] / sums["leads"]).quantize(Decimal("0.000001"))
            got = run["cpl"].get((ch, day.isoformat()))
            assert got == cpl, (ch, day, kind)  # the ratio of running sums, never a sum of daily ratios


async def test_coarser_buckets_show_the_value_at_their_last_day(kpi):
    await load(kpi, [("leads", 0, 5, "search"), ("leads", 40, 7, "search"), ("leads", 100, 11, "search")])
    params = {"from": "2027-01-15", "to": "2027-04-20", "grain": "month", "cumulative": "year_to_date"}
    r = await kpi.client.get("/v1/metrics/leads/series", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cumulative"] == "year_to_date" and "trailing_days" not in body
    # January 1 lies before from: a year to date still counts it; April's point is its value on April 20
    assert [p["value"] for p in body["series"][0]["points"]] == ["5", "12", "12", "23"]
    trailing = await kpi.client.get(
        "/v1/metrics/leads/series",
        params={**params, "cumulative": "trailing", "trailing_days": 30, "compare": "previous_period"},
    )
    points = trailing.json()["series"][0]["points"]
    assert trailing.json()["trailing_days"] == 30
    as_csv = await kpi.client.get(
        "/v1/metrics/leads/series", params={**params, "cumulative": "trailing", "trailing_days": 30, "format": "csv"}
    )
    assert as_csv.headers["x-cumulative"] == "trailing 30 days" and as_csv.text.splitlines()[2].endswith(
        ",7,,,,leads,1"
    )
    # the 30 days to Jan 31 (from Jan 2), to Feb 28 (Feb 10), to Mar 31, to Apr 20 (the window's end; Apr 11)
    assert [p["value"] for p in points] == ["0", "7", "0", "11"]
    assert points[2]["compare"]["previous_period"] == {  # March's 30 days against February's
        "bucket": "2027-02-01",
        "value": "7",
        "change": "-7",
        "percent_change": "-1",
    }


async def test_cumulative_parameters_are_checked(kpi):
    base = {"from": "2027-01-01", "to": "2027-01-31"}
    for params, field in (
        ({"cumulative": "week_to_date"}, "query.cumulative"),
        ({"cumulative": "trailing", "trailing_days": 0}, "query.trailing_days"),
        ({"cumulative": "trailing", "trailing_days": 367}, "query.trailing_days"),
    ):
        r = await kpi.client.get("/v1/metrics/leads/series", params={**base, **params})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    # 3,000 day buckets x 366 days x 2 bases (spend, leads): more additions than MAX_STEPS
    wide = {"from": "2020-01-01", "to": "2028-03-18", "grain": "day", "cumulative": "trailing", "trailing_days": 366}
    r = await kpi.client.get("/v1/metrics/cpl/series", params=wide)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.trailing_days", r.text
    # 3,999 day buckets are allowed, but a year to date from 2020-12-31 reads 364 more days
    many = {"from": "2020-12-31", "to": "2031-12-12", "grain": "day", "cumulative": "year_to_date"}
    r = await kpi.client.get("/v1/metrics/leads/series", params=many)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.cumulative", r.text
