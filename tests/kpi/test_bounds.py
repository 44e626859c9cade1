"""Input at the ends of what dates, integers and decimals hold: a 422 (or a rejected item) naming the
field, never a 500, and nothing stored that a later read would fail on. Found by fuzzing."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from fractions import Fraction

import pytest
from sqlalchemy import func, select

from services.kpi import attribution, formula, values
from services.kpi.models import (
    conversions,
    measurements,
    metric_definitions,
    rollups_daily,
    rollups_monthly,
    targets,
    touchpoints,
)
from shared.db import utcnow

pytestmark = pytest.mark.db

EARLY = "0001-01-01T00:00:00+01:00"  # a day within Python's dates whose UTC instant is not
LATE = "9999-12-31T23:59:59-01:00"


async def count(kpi, table) -> int:
    async with kpi.runtime.transaction(readonly=True) as s:
        return int(await s.scalar(select(func.count()).select_from(table)))


def fields(r) -> list[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in r.json()["errors"]]


async def test_measurement_times_beyond_the_bounds_are_rejected_items_in_json_and_csv(kpi):
    items = [
        {"type": "fz_leads", "value": "5", "time": t}
        for t in (EARLY, LATE, "1899-12-31T23:59:59Z", "3000-01-01T00:00:00Z", "0001-01-01T00:00:00Z")
    ]
    r = await kpi.client.post("/v1/measurements", json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 0 and [x["index"] for x in body["rejected"]] == [0, 1, 2, 3, 4]
    assert all(x["reason"].startswith("time ") and "1900-01-01 and 2999-12-31" in x["reason"] for x in body["rejected"])
    keyed = await kpi.client.post("/v1/measurements", json={"items": items[:2]}, headers={"Idempotency-Key": "k1"})
    assert keyed.status_code == 200 and keyed.json()["accepted"] == 0
    csv = f"type,value,time\nfz_leads,5,{EARLY}\nfz_leads,5,{LATE}\n"
    r = await kpi.client.post("/v1/measurements/import", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 0 and [x["index"] for x in r.json()["rejected"]] == [0, 1]
    for table in (measurements, rollups_daily, rollups_monthly):
        assert await count(kpi, table) == 0
    # the ends of the range themselves are taken, in any offset
    edges = [
        {"type": "fz_leads", "value": "1", "time": t}
        for t in ("1900-01-01T00:00:00+14:00", "2999-12-31T23:59:59-12:00", "1900-01-01T00:00:00Z")
    ]
    assert (await kpi.client.post("/v1/measurements", json={"items": edges})).json()["accepted"] == 3
    for t in (EARLY, LATE):
        with pytest.raises(ValueError, match="must lie between"):
            values.parse_time(t)


async def test_touchpoint_conversion_and_quality_times_beyond_the_bounds_are_422(kpi):
    tp = {"journey_id": "j1", "time": EARLY, "channel": "social"}
    assert fields(await kpi.client.post("/v1/touchpoints", json={"items": [tp]})) == ["items.0.time"]
    conv = {"journey_id": "j1", "time": LATE, "value": "10"}
    ok = {**conv, "time": "2027-03-01T00:00:00Z"}
    assert fields(await kpi.client.post("/v1/conversions", json={"items": [ok, conv]})) == ["items.1.time"]
    assert await count(kpi, touchpoints) == 0 and await count(kpi, conversions) == 0
    assert fields(await kpi.client.get("/v1/quality", params={"since": EARLY})) == ["query.since"]
    assert (await kpi.client.get("/v1/quality", params={"since": "1900-01-01T00:00:00Z"})).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"from": "9999-12-31", "to": "9999-12-31", "grain": "day"},
        {"from": "9999-12-31", "to": "9999-12-31", "grain": "week"},
        {"from": "9999-01-01", "to": "9999-12-31", "grain": "month"},
        {"from": "0001-01-01", "to": "0001-01-31", "tz": "Asia/Tokyo", "read_from": "raw"},
    ],
)
async def test_series_dates_beyond_the_bounds_are_422(kpi, params):
    assert set(fields(await kpi.client.get("/v1/metrics/leads/series", params=params))) == {"query.from", "query.to"}


async def test_series_at_the_ends_of_the_range_answer(kpi):
    for params in (
        {"from": "2999-12-01", "to": "2999-12-31", "grain": "quarter"},
        {"from": "1900-01-01", "to": "1900-01-31", "grain": "week", "tz": "Asia/Tokyo"},
        {"from": "2999-12-31", "to": "2999-12-31", "grain": "day", "read_from": "raw"},
    ):
        r = await kpi.client.get("/v1/metrics/cpl/series", params=params)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "period", ["0000", "9999", "9999-Q4", "9999-12", "1899-12", "3000", "\uff12\uff10\uff12\uff17", "2027\n"]
)
async def test_target_and_scorecard_periods_beyond_the_bounds_are_422(kpi, period):
    r = await kpi.client.post("/v1/targets", json={"metric": "leads", "period": period, "value": "1"})
    assert fields(r) == ["period"]
    assert await count(kpi, targets) == 0
    r = await kpi.client.get("/v1/scorecard", params={"metrics": "leads", "period": period})
    assert fields(r) == ["query.period"]


async def test_the_last_period_in_range_works_and_a_stored_out_of_range_one_does_not_stop_the_check(kpi):
    r = await kpi.client.post("/v1/targets", json={"metric": "leads", "period": "2999-Q4", "value": "1"})
    assert r.status_code == 201, r.text
    assert (await kpi.client.get("/v1/scorecard", params={"metrics": "leads", "period": "2999"})).status_code == 200
    async with kpi.runtime.transaction() as s:  # a target stored before periods were bounded
        await s.execute(
            targets.insert().values(
                id=str(uuid.uuid4()),
                metric="leads",
                period="9999",
                filter={},
                filter_hash=values.dims_hash({}),
                value=1,
                version=1,
                created_at=utcnow(),
                created_by="old",
                at_risk_published_at=None,
            )
        )
    r = await kpi.client.post("/v1/targets/evaluate")
    assert r.status_code == 200 and r.json() == {"published": []}


def derived(key: str, source: str) -> dict:
    return {
        "key": key,
        "name": key,
        "kind": "derived",
        "formula": source,
        "unit": "count",
        "direction": "higher_is_better",
    }


@pytest.mark.parametrize(
    "source",
    [
        "1" + "0" * 100 + " * leads",
        " * ".join(["1" + "0" * 59] * 30) + " * leads",
        "-" * 1999 + "1",
        "(" * 999 + "1" + ")" * 999,
        "-(" * 26 + "leads" + ")" * 26,
    ],
)
async def test_formulas_with_huge_constants_or_deep_nesting_are_422_and_not_stored(kpi, source):
    r = await kpi.client.post("/v1/metrics", json=derived("fz_metric", source))
    assert fields(r) == ["formula"]
    assert r.json()["errors"][0]["code"] == "syntax"
    assert (await kpi.client.get("/v1/metrics/fz_metric")).status_code == 404
    async with kpi.runtime.transaction(readonly=True) as s:
        stored = await s.scalar(
            select(func.count()).select_from(metric_definitions).where(metric_definitions.c.key == "fz_metric")
        )
    assert stored == 0


async def test_results_too_large_to_be_exact_are_null_and_long_chains_evaluate(kpi):
    big = " * ".join(["9" * 20] * 3) + " * leads"  # constants within the limit, a product beyond 10^40
    chain = "+".join(["1"] * 1000)  # a tree 1,000 deep: evaluated without recursion
    for key, source in (("fz_big", big), ("fz_chain", chain)):
        assert (await kpi.client.post("/v1/metrics", json=derived(key, source))).status_code == 201
    item = {"type": "leads", "value": "1", "time": "2027-03-04T10:00:00Z"}
    assert (await kpi.client.post("/v1/measurements", json={"items": [item]})).json()["accepted"] == 1
    params = {"from": "2027-03-01", "to": "2027-03-31"}
    r = await kpi.client.get("/v1/metrics/fz_big/series", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["series"][0]["points"][0]["value"] is None
    r = await kpi.client.get("/v1/scorecard", params={"metrics": "fz_big,fz_chain", "period": "2027-03"})
    assert r.status_code == 200, r.text
    assert [(i["actual"], i["projected"]) for i in r.json()["items"]][0] == (None, None)
    assert r.json()["items"][1]["actual"] == "1000"
    assert values.fmt(Decimal(10) ** 60, "currency") is None
    assert values.fmt(Decimal("1e39"), "count") == "1" + "0" * 39
    assert formula.parse("9" * 20).evaluate({}) == Decimal("9" * 20)


async def test_a_distinct_on_that_is_no_dimension_name_is_422(kpi):
    body = {
        "key": "fz_distinct",
        "name": "x",
        "kind": "base",
        "measurement_type": "leads",
        "aggregation": "count_distinct",
        "distinct_on": "Bad-Name",
        "unit": "count",
        "direction": "higher_is_better",
    }
    assert fields(await kpi.client.post("/v1/metrics", json=body)) == ["distinct_on"]
    assert (await kpi.client.get("/v1/metrics/fz_distinct")).status_code == 404


async def test_a_tiny_half_life_is_422_and_time_decay_weights_never_all_vanish(kpi):
    tps = [
        {"journey_id": "j1", "time": f"2027-03-0{d}T10:00:00Z", "channel": ch}
        for d, ch in ((1, "social"), (5, "search"))
    ]
    assert (await kpi.client.post("/v1/touchpoints", json={"items": tps})).status_code == 201
    conv = {"journey_id": "j1", "time": "2027-03-09T10:00:00Z", "value": "100.00"}
    assert (await kpi.client.post("/v1/conversions", json={"items": [conv]})).status_code == 201
    params = {"model": "time_decay", "from": "2027-03-01", "to": "2027-03-31"}
    r = await kpi.client.get("/v1/attribution", params={**params, "half_life_days": "1e-10"})
    assert fields(r) == ["query.half_life_days"]
    r = await kpi.client.get("/v1/attribution", params={**params, "half_life_days": "0.01", "lookback_days": 3650})
    assert r.status_code == 200, r.text
    assert {c["channel"]: c["credit"] for c in r.json()["credits"]} == {"search": "100.00", "social": "0.00"}
    t = dt.datetime(2027, 3, 9, tzinfo=dt.UTC)
    w = attribution.weights("time_decay", [t - dt.timedelta(days=3650), t - dt.timedelta(days=3649)], t, 0.01)
    assert w[-1] == 1 and sum(w) > 0 and attribution.split(100, w) == [0, 100]
    assert attribution.weights("time_decay", [t - dt.timedelta(days=2), t - dt.timedelta(days=1)], t, 1) == [
        Fraction(1, 2),
        Fraction(1),
    ]


@pytest.mark.parametrize("dates", [("9999-12-01", "9999-12-31"), ("0001-01-01", "0001-01-10")])
async def test_attribution_dates_beyond_the_bounds_are_422(kpi, dates):
    r = await kpi.client.get("/v1/attribution", params={"from": dates[0], "to": dates[1]})
    assert set(fields(r)) == {"query.from", "query.to"}


async def test_rebuild_dates_and_type_lists_beyond_the_bounds_are_422_and_change_nothing(kpi):
    item = {"type": "leads", "value": "1", "time": "2027-03-04T10:00:00Z"}
    assert (await kpi.client.post("/v1/measurements", json={"items": [item]})).json()["accepted"] == 1
    assert fields(await kpi.client.post("/v1/rollups/rebuild", json={"to": "9999-12-31"})) == ["to"]
    assert fields(await kpi.client.post("/v1/rollups/rebuild", json={"from": "0001-01-01"})) == ["from"]
    assert fields(await kpi.client.post("/v1/rollups/rebuild", json={"types": ["x"] * 100_000})) == ["types"]
    assert await count(kpi, rollups_daily) == 1 and await count(kpi, rollups_monthly) == 1
    r = await kpi.client.post("/v1/rollups/rebuild", json={"types": ["leads"] * 1000, "to": "2999-12-31"})
    assert r.status_code == 200 and r.json() == {"rollup_rows": 1}


@pytest.mark.parametrize("version", [2**63, 2**31, -1, 0])
async def test_versions_beyond_an_integer_column_are_422(kpi, version):
    r = await kpi.client.get("/v1/metrics/cpl", params={"version": version})
    assert fields(r) == ["query.version"]
    r = await kpi.client.get(
        "/v1/metrics/cpl/series", params={"version": version, "from": "2027-03-01", "to": "2027-03-31"}
    )
    assert fields(r) == ["query.version"]
    assert (await kpi.client.get("/v1/metrics/cpl", params={"version": 2**31 - 1})).status_code == 404
