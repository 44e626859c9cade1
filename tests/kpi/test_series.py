"""Series: rollups equal the aggregation of raw data; derived metrics come from aggregated bases."""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.kpi import definitions, periods, series
from services.kpi import values as kv
from services.kpi.models import measurements, rollups_daily, rollups_monthly
from shared.identity import Principal

pytestmark = pytest.mark.db

EXTRA = [
    {
        "key": "spend_max",
        "name": "Largest spend",
        "kind": "base",
        "measurement_type": "spend",
        "aggregation": "max",
        "unit": "currency",
        "direction": "lower_is_better",
    },
    {
        "key": "spend_min",
        "name": "Smallest spend",
        "kind": "base",
        "measurement_type": "spend",
        "aggregation": "min",
        "unit": "currency",
        "direction": "lower_is_better",
    },
    {
        "key": "spend_entries",
        "name": "Spend entries",
        "kind": "base",
        "measurement_type": "spend",
        "aggregation": "count",
        "unit": "count",
        "direction": "lower_is_better",
    },
    {
        "key": "channels_with_leads",
        "name": "Channels with leads",
        "kind": "base",
        "measurement_type": "leads",
        "aggregation": "count_distinct",
        "distinct_on": "channel",
        "unit": "count",
        "direction": "higher_is_better",
    },
    {
        "key": "search_leads",
        "name": "Search leads",
        "kind": "base",
        "measurement_type": "leads",
        "aggregation": "sum",
        "filter": {"channel": "search"},
        "unit": "count",
        "direction": "higher_is_better",
    },
    {
        "key": "spend_per_search_lead",
        "name": "Spend per search lead",
        "kind": "derived",
        "formula": "(spend - 10) / search_leads * 2",
        "unit": "currency",
        "direction": "lower_is_better",
    },
]
T0 = dt.datetime(2026, 12, 20, tzinfo=dt.UTC)
SPAN = 130 * 86400

measurement = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["spend", "leads", "approval_cycle_time_hours"]),
        "value": st.one_of(
            st.integers(0, 10**6).map(lambda c: Decimal(c).scaleb(-2)),
            st.integers(-(10**9), 10**9).map(lambda c: Decimal(c).scaleb(-6)),
        ),
        "offset": st.integers(0, SPAN),
        "channel": st.sampled_from(["search", "social", None]),
        "region": st.sampled_from(["EMEA", "NA"]),
    }
)
query = st.fixed_dictionaries(
    {
        "grain": st.sampled_from(periods.GRAINS),
        "group_by": st.sampled_from([[], ["channel"], ["region"], ["region", "channel"]]),
        "filter": st.sampled_from([{}, {"region": {"EMEA"}}, {"channel": {"search", "social"}}]),
        "tz": st.sampled_from(["UTC", "UTC", "Europe/Berlin", "Asia/Kolkata"]),
        "start": st.integers(0, 120),
        "days": st.integers(0, 125),
    }
)


def expected(rows: list[dict], key: str, q: dict, w: periods.Window) -> list[dict]:
    """The answer computed the slow, obvious way from the raw measurements."""
    tz = ZoneInfo(q["tz"])
    defs = {
        "spend": ("spend", "sum", None),
        "leads": ("leads", "sum", None),
        "approval_cycle_time": ("approval_cycle_time_hours", "avg", None),
        "spend_max": ("spend", "max", None),
        "spend_min": ("spend", "min", None),
        "spend_entries": ("spend", "count", None),
        "channels_with_leads": ("leads", "count_distinct", None),
        "search_leads": ("leads", "sum", "search"),
    }
    derived = {
        "cpl": (["spend", "leads"], lambda v: None if v["leads"] == 0 else v["spend"] / v["leads"]),
        "spend_per_search_lead": (
            ["spend", "search_leads"],
            lambda v: None if v["search_leads"] == 0 else (v["spend"] - 10) / v["search_leads"] * 2,
        ),
    }
    bases = derived[key][0] if key in derived else [key]
    cells: dict = {}
    groups = set()
    for r in rows:
        local = (T0 + dt.timedelta(seconds=r["offset"])).astimezone(tz).date()
        if not (w.start <= local <= w.end):
            continue
        dims = {k: r[k] for k in ("channel", "region") if r[k] is not None}
        if any(dims.get(k) not in vs for k, vs in q["filter"].items()):
            continue
        bucket = periods.grain_start(local, q["grain"])
        g = tuple(dims.get(k) for k in q["group_by"])
        for b in bases:
            mtype, _, only = defs[b]
            if r["type"] != mtype or (only and dims.get("channel") != only):
                continue
            groups.add(g)
            cells.setdefault((b, g, bucket), []).append((r["value"], dims.get("channel")))
    unit = {
        "spend": "currency",
        "cpl": "currency",
        "approval_cycle_time": "duration",
        "spend_max": "currency",
        "spend_min": "currency",
        "spend_per_search_lead": "currency",
    }.get(key, "count")

    def base_value(b: str, g: tuple, bucket: dt.date) -> Decimal | None:
        agg = defs[b][1]
        vals = cells.get((b, g, bucket), [])
        if agg == "sum":
            return sum((v for v, _ in vals), Decimal(0))
        if agg == "count":
            return Decimal(len(vals))
        if agg == "count_distinct":
            return Decimal(len({c for _, c in vals if c is not None}))
        if not vals:
            return None
        if agg == "avg":
            return sum(v for v, _ in vals) / len(vals)
        return (max if agg == "max" else min)(v for v, _ in vals)

    if not q["group_by"] and not groups:
        groups = {()}
    out = []
    with decimal.localcontext(prec=40):
        for g in sorted(groups, key=lambda g: tuple("" if v is None else v for v in g)):
            points = []
            for bucket in w.starts:
                values = {b: base_value(b, g, bucket) for b in bases}
                value = derived[key][1](values) if key in derived else values[key]
                point = {"bucket": bucket.isoformat(), "value": kv.fmt(value, unit)}
                if q["grain"].startswith("fiscal"):  # fiscal buckets are named (FY2027-Q1)
                    point["period"] = periods.period_label(bucket, q["grain"])
                points.append(point)
            out.append({"group": dict(zip(q["group_by"], g, strict=True)), "points": points})
    return out


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(measurement, max_size=60),
    q=query,
    key=st.sampled_from(
        [
            "spend",
            "cpl",
            "approval_cycle_time",
            "spend_max",
            "spend_min",
            "spend_entries",
            "channels_with_leads",
            "spend_per_search_lead",
        ]
    ),
)
async def test_series_from_rollups_equal_aggregation_of_raw_data(kpi, rows, q, key):
    rt = kpi.runtime
    admin = Principal("t", frozenset({"admin"}))
    async with rt.unit_of_work() as uow:
        for table in (measurements, rollups_daily, rollups_monthly):
            await uow.execute(table.delete())
        defs = await definitions.latest_definitions(uow)
        for spec in EXTRA:
            if spec["key"] not in defs:
                await definitions.create_definition(
                    uow,
                    admin,
                    spec={
                        "description": "",
                        "owner": None,
                        "measurement_type": None,
                        "aggregation": None,
                        "distinct_on": None,
                        "filter": None,
                        "formula": None,
                        **spec,
                    },
                )
    items = [
        {
            "type": r["type"],
            "value": str(r["value"]),
            "time": (T0 + dt.timedelta(seconds=r["offset"])).isoformat(),
            "dimensions": {k: r[k] for k in ("channel", "region") if r[k] is not None},
        }
        for r in rows
    ]
    ing = rt.domain.ingestor
    for lo in range(0, len(items), 25):  # several batches: rollup rows are upserted, not just inserted
        result = await ing.ingest(rt.db, None, items=items[lo : lo + 25], default_source="test")
        assert result.accepted == len(items[lo : lo + 25]), result.rejected
    start = (T0 + dt.timedelta(days=q["start"])).date()
    end = start + dt.timedelta(days=q["days"])
    w = periods.window(start, end, q["grain"], q["tz"])
    want = expected(rows, key, q, w)
    for read_from in ("auto", "raw"):
        async with rt.unit_of_work(readonly=True) as uow:
            got = await series.series(
                uow,
                None,
                key=key,
                start=start,
                end=end,
                grain=q["grain"],
                group_by=q["group_by"],
                flt=q["filter"],
                tz=q["tz"],
                read_from=read_from,
            )
        assert got["series"] == want, (read_from, got["read_from"])
        assert got["read_from"] == ("rollup" if q["tz"] == "UTC" and read_from == "auto" else "raw")


async def test_cpl_for_a_month_is_that_months_spend_over_its_leads_not_an_average_of_daily_ratios(kpi):
    items = [
        {"type": "spend", "value": "100", "time": "2027-03-01T12:00:00Z"},
        {"type": "leads", "value": "1", "time": "2027-03-01T12:00:00Z"},
        {"type": "spend", "value": "100", "time": "2027-03-02T12:00:00Z"},
        {"type": "leads", "value": "9", "time": "2027-03-02T12:00:00Z"},
    ]
    await kpi.client.post("/v1/measurements", json={"items": items})
    month = (await kpi.client.get("/v1/metrics/cpl/series", params={"from": "2027-03-01", "to": "2027-03-31"})).json()
    # 200 / 10, not the average of the daily ratios (100 + 11.11) / 2
    assert month["series"][0]["points"] == [{"bucket": "2027-03-01", "value": "20.00"}]
    days = (
        await kpi.client.get(
            "/v1/metrics/cpl/series", params={"from": "2027-03-01", "to": "2027-03-03", "grain": "day"}
        )
    ).json()
    assert [p["value"] for p in days["series"][0]["points"]] == ["100.00", "11.111111", None]


async def test_late_data_lands_in_its_own_bucket_and_time_zones_move_bucket_edges(kpi):
    await kpi.client.post(
        "/v1/measurements",
        json={
            "items": [
                {"type": "leads", "value": "1", "time": "2027-01-31T23:30:00Z"},  # Feb 1st in Berlin
                {"type": "leads", "value": "1", "time": "2026-01-15T09:00:00Z"},  # a year late
            ]
        },
    )
    p = {"from": "2027-01-01", "to": "2027-02-28", "grain": "month"}
    utc = (await kpi.client.get("/v1/metrics/leads/series", params=p)).json()
    berlin = (await kpi.client.get("/v1/metrics/leads/series", params={**p, "tz": "Europe/Berlin"})).json()
    assert [x["value"] for x in utc["series"][0]["points"]] == ["1", "0"] and utc["read_from"] == "rollup"
    assert [x["value"] for x in berlin["series"][0]["points"]] == ["0", "1"] and berlin["read_from"] == "raw"
    old = (
        await kpi.client.get(
            "/v1/metrics/leads/series", params={"from": "2026-01-01", "to": "2026-03-31", "grain": "quarter"}
        )
    ).json()
    assert old["series"][0]["points"] == [{"bucket": "2026-01-01", "value": "1"}]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"from": "2027-03-01", "to": "2027-01-01"}, 422, "query.from"),
        ({"from": "2027-01-01", "to": "2027-03-01", "grain": "hour"}, 422, "query.grain"),
        ({"from": "2027-01-01", "to": "2027-03-01", "tz": "Mars/Olympus"}, 422, "query.tz"),
        ({"from": "2027-01-01", "to": "2027-03-01", "filter": "region"}, 422, "query.filter"),
        ({"from": "2027-01-01", "to": "2027-03-01", "group_by": "Region!"}, 422, "query.group_by"),
        (
            {"from": "2027-01-01", "to": "2027-03-01", "tz": "Europe/Berlin", "read_from": "rollup"},
            422,
            "query.read_from",
        ),
        ({"from": "yesterday", "to": "2027-03-01"}, 422, "query.from"),
        ({"to": "2027-03-01"}, 422, "query.from"),
    ],
)
async def test_bad_series_queries_are_problems_naming_the_field(kpi, params, status, field):
    r = await kpi.client.get("/v1/metrics/cpl/series", params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in {e["field"] for e in r.json()["errors"]}


async def test_an_unknown_metric_is_404(kpi):
    r = await kpi.client.get("/v1/metrics/nope/series", params={"from": "2027-01-01", "to": "2027-03-01"})
    assert r.status_code == 404
