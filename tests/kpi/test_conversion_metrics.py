"""Conversion metrics: a cohort rate per bucket of a series (and a scorecard's period), equal to a brute-force
count over random journeys; the catalogue's funnel rates became conversions (version 2), the same-month ratios
stay under their own names; bad definitions and queries are 422 naming the field."""

from __future__ import annotations

import datetime as dt
import math
import os
import random
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from services.kpi import catalog, cohorts, definitions
from services.kpi.models import lifecycle_facts, metric_definitions
from services.kpi.values import fmt
from shared.identity import Principal

T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
CHANNELS = ["search", "email", "social"]
MONTHS = [dt.datetime(2027, m, 1, tzinfo=dt.UTC) for m in range(1, 6)]  # January to April, and May's start


def brute(journeys, start, end, window_days, keep=lambda dims: True):
    """By hand: (entered, converted, median seconds, p90 seconds) of the entities whose A lies in [start, end)."""
    entered, took = 0, []
    for j in journeys:
        a, b = j["a"], j["b"]
        if a is None or not start <= a < end or not keep(j["dims"]):
            continue
        entered += 1
        if b is not None and dt.timedelta(0) <= b - a <= dt.timedelta(days=window_days):
            took.append((b - a).total_seconds())
    took.sort()
    rank = (lambda p: took[math.ceil(p * len(took)) - 1]) if took else (lambda p: None)
    return entered, len(took), rank(0.5), rank(0.9)


journey = st.fixed_dictionaries(
    {
        "a": st.none() | st.integers(-10 * 24, 130 * 24).map(lambda h: T0 + dt.timedelta(hours=h, seconds=h % 7)),
        "b": st.none() | st.integers(-50, 400).map(lambda h: T0 + dt.timedelta(hours=h * 9)),
        "dims": st.sampled_from([{}, {"channel": "search"}, {"channel": "email", "region": "EMEA"}]),
    }
)
FROM = dt.date(2027, 1, 1)
WINDOWS = {"cohort_1d": 1, "cohort_7d": 7, "cohort_30d": 30}


def _local_edges(points, tz: str, to: dt.date) -> list[dt.datetime]:
    zone = ZoneInfo(tz)
    starts = [dt.date.fromisoformat(p["bucket"]) for p in points] + [to + dt.timedelta(days=1)]
    starts[0] = max(starts[0], FROM)  # the first bucket is labelled by its grain's start, counted from `from`
    return [dt.datetime.combine(d, dt.time(), zone).astimezone(dt.UTC) for d in starts]


@pytest.mark.db
@settings(
    max_examples=int(os.environ.get("KPI_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    journeys=st.lists(journey, max_size=40),
    metric=st.sampled_from(sorted(WINDOWS)),
    grain=st.sampled_from(["month", "week", "quarter"]),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/Los_Angeles"]),
    by_channel=st.booleans(),
)
async def test_a_conversion_series_equals_a_brute_force_count_over_random_journeys(
    kpi, journeys, metric, grain, tz, by_channel
):
    """Random journeys through the API (the database counts, buckets and filters; Python tallies), each example
    on an emptied lifecycle table, against a count by hand over each bucket's local edges."""
    async with kpi.runtime.unit_of_work() as uow:
        await uow.execute(delete(lifecycle_facts))
        if not await uow.scalar(
            select(func.count()).select_from(metric_definitions).where(metric_definitions.c.key == metric)
        ):
            spec = {**MQL_RATE, "key": metric, "window_days": WINDOWS[metric]}
            await definitions.create_definition(uow, ADMIN, spec=spec)
    await _post(kpi.client, journeys)
    to = dt.date(2027, 4, 30)
    params = {"from": "2027-01-01", "to": to.isoformat(), "grain": grain, "tz": tz}
    if by_channel:
        params["group_by"] = "channel"
    r = await kpi.client.get(f"/v1/metrics/{metric}/series", params=params)
    assert r.status_code == 200, r.text
    seen = 0
    for s in r.json()["series"]:
        keep = (lambda d, g=s["group"]: d.get("channel") == g.get("channel")) if by_channel else (lambda d: True)
        edges = _local_edges(s["points"], tz, to)
        for i, p in enumerate(s["points"]):
            entered, converted, median, p90 = brute(journeys, edges[i], edges[i + 1], WINDOWS[metric], keep)
            assert (p["cohort"]["entered"], p["cohort"]["converted"]) == (entered, converted), (i, p)
            assert (p["cohort"]["median_days"], p["cohort"]["p90_days"]) == (_days(median), _days(p90))
            assert p["value"] == (fmt(Decimal(converted) / entered, "percent") if entered else None)
            seen += entered
    edges = _local_edges([{"bucket": "2027-01-01"}], tz, to)
    assert seen == brute(journeys, edges[0], edges[-1], 1)[0]  # every entity entered once, in one bucket


def _random_journeys(seed: int, n: int = 400) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        a = T0 + dt.timedelta(days=rnd.randint(-20, 140), minutes=rnd.randint(0, 1439)) if rnd.random() < 0.9 else None
        b = None
        if rnd.random() < 0.6:
            b = (a or T0) + dt.timedelta(hours=rnd.randint(-80, 24 * 50))
        dims = {"channel": rnd.choice(CHANNELS), "region": rnd.choice(["EMEA", "AMER"])}
        out.append({"a": a, "b": b, "dims": dims})
    return out


async def _post(client, journeys, a="lead", b="mql"):
    items = []
    for n, j in enumerate(journeys):
        for stage, t in ((a, j["a"]), (b, j["b"])):
            if t is not None:
                items.append({"entity_id": f"E{n}", "stage": stage, "time": t.isoformat(), "dimensions": j["dims"]})
    if not items:
        return
    r = await client.post("/v1/lifecycle", json={"items": items})
    assert r.status_code == 200 and r.json()["accepted"] == len(items), r.text


def _days(seconds):
    return cohorts._days(seconds)


ADMIN = Principal(subject="dana", roles=frozenset({"admin"}), scopes=frozenset())
MQL_RATE = {
    "key": "mql_cohort_21",
    "name": "Lead to MQL within 21 days",
    "kind": "conversion",
    "from_stage": "lead",
    "to_stage": "mql",
    "window_days": 21,
    "unit": "percent",
    "direction": "higher_is_better",
}


@pytest.mark.db
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_conversion_metrics_series_equals_a_brute_force_count_over_random_journeys(kpi, seed):
    journeys = _random_journeys(seed)
    await _post(kpi.client, journeys)
    r = await kpi.client.post("/v1/metrics", json=MQL_RATE)
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["from_stage"], r.json()["window_days"]) == ("conversion", "lead", 21)
    params = {"from": "2027-01-01", "to": "2027-04-30", "grain": "month", "group_by": "channel"}
    body = (await kpi.client.get("/v1/metrics/mql_cohort_21/series", params=params)).json()
    assert (body["read_from"], body["version"], body["unit"]) == ("lifecycle", 1, "percent")
    assert [s["group"]["channel"] for s in body["series"]] == sorted(CHANNELS)
    checked = 0
    for s in body["series"]:
        ch = s["group"]["channel"]
        for i, p in enumerate(s["points"]):
            entered, converted, median, p90 = brute(
                journeys, MONTHS[i], MONTHS[i + 1], 21, lambda d, ch=ch: d["channel"] == ch
            )
            assert p["cohort"]["entered"] == entered and p["cohort"]["converted"] == converted
            assert (p["cohort"]["median_days"], p["cohort"]["p90_days"]) == (_days(median), _days(p90))
            assert p["value"] == (fmt(Decimal(converted) / entered, "percent") if entered else None)
            assert p["cohort"]["complete"] is (MONTHS[i + 1] + dt.timedelta(days=21) <= dt.datetime.now(dt.UTC))
            checked += entered
    assert checked == sum(1 for j in journeys if j["a"] is not None and MONTHS[0] <= j["a"] < MONTHS[4])
    # Ungrouped, filtered to a region, by week: the same count with the week's edges.
    weekly = {"from": "2027-02-01", "to": "2027-02-28", "grain": "week", "filter": "region:EMEA"}
    (only,) = (await kpi.client.get("/v1/metrics/mql_cohort_21/series", params=weekly)).json()["series"]
    for p in only["points"]:
        start = dt.datetime.fromisoformat(p["bucket"]).replace(tzinfo=dt.UTC)
        want = brute(journeys, start, start + dt.timedelta(days=7), 21, lambda d: d["region"] == "EMEA")
        assert (p["cohort"]["entered"], p["cohort"]["converted"]) == want[:2]
    # The scorecard's actual for a quarter is the quarter's cohort; comparisons pair it with last quarter's.
    card = (
        await kpi.client.get(
            "/v1/scorecard", params={"metrics": "mql_cohort_21", "period": "2027-Q1", "compare": "previous_period"}
        )
    ).json()
    (item,) = card["items"]
    entered, converted, median, _ = brute(journeys, MONTHS[0], MONTHS[3], 21)
    assert item["actual"] == fmt(Decimal(converted) / entered, "percent")
    assert (item["cohort"]["entered"], item["cohort"]["median_days"]) == (entered, _days(median))
    before, conv_before, _, _ = brute(journeys, T0 - dt.timedelta(days=92), T0, 21)
    assert item["compare"]["previous_period"]["value"] == (
        fmt(Decimal(conv_before) / before, "percent") if before else None
    )


@pytest.mark.db
async def test_a_recent_cohort_is_not_complete_and_a_bucket_without_entrants_is_null(kpi):
    today = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await kpi.client.post(
        "/v1/lifecycle",
        json={"items": [{"entity_id": "N1", "stage": "lead", "time": (today - dt.timedelta(days=1)).isoformat()}]},
    )
    await kpi.client.post("/v1/metrics", json=MQL_RATE)
    start = (today - dt.timedelta(days=40)).date()
    params = {"from": start.isoformat(), "to": today.date().isoformat(), "grain": "day"}
    (s,) = (await kpi.client.get("/v1/metrics/mql_cohort_21/series", params=params)).json()["series"]
    yesterday = next(p for p in s["points"] if p["bucket"] == (today - dt.timedelta(days=1)).date().isoformat())
    assert yesterday["cohort"] == {
        "entered": 1,
        "converted": 0,
        "median_days": None,
        "p90_days": None,
        "complete": False,
    }
    assert yesterday["value"] == "0"
    first = s["points"][0]
    assert first["value"] is None and first["cohort"]["entered"] == 0 and first["cohort"]["complete"] is True


@pytest.mark.db
async def test_the_catalogue_rates_are_cohort_conversions_and_the_same_month_ratios_keep_their_names(kpi):
    versions = (await kpi.client.get("/v1/metrics/lead_to_mql_rate/versions")).json()["items"]
    assert [(v["version"], v["kind"]) for v in versions] == [(1, "derived"), (2, "conversion")]
    assert versions[0]["formula"] == "mqls / leads"
    assert (versions[1]["from_stage"], versions[1]["to_stage"], versions[1]["window_days"]) == ("lead", "mql", 30)
    for key, a, b in [
        ("mql_to_sql_rate", "mql", "sql"),
        ("sql_to_opportunity_rate", "sql", "opportunity"),
        ("win_rate", "opportunity", "won"),
    ]:
        m = (await kpi.client.get(f"/v1/metrics/{key}")).json()
        assert (m["version"], m["kind"], m["from_stage"], m["to_stage"]) == (2, "conversion", a, b)
    ratio = (await kpi.client.get("/v1/metrics/lead_to_mql_ratio_same_month")).json()
    assert (ratio["kind"], ratio["formula"], ratio["version"]) == ("derived", "mqls / leads", 1)
    # The ratio counts measurements of the month; the conversion counts the month's leads that became MQLs.
    await kpi.client.post(
        "/v1/measurements",
        json={
            "items": [
                {"type": "leads", "value": "4", "time": "2027-03-03T10:00:00Z"},
                {"type": "mqls", "value": "3", "time": "2027-03-20T10:00:00Z"},
            ]
        },
    )
    facts = [{"entity_id": f"L{n}", "stage": "lead", "time": "2027-03-02T10:00:00Z"} for n in range(4)]
    facts.append({"entity_id": "L0", "stage": "mql", "time": "2027-03-12T10:00:00Z"})
    await kpi.client.post("/v1/lifecycle", json={"items": facts})
    params = {"from": "2027-03-01", "to": "2027-03-31", "grain": "month"}
    same = (await kpi.client.get("/v1/metrics/lead_to_mql_ratio_same_month/series", params=params)).json()
    cohort = (await kpi.client.get("/v1/metrics/lead_to_mql_rate/series", params=params)).json()
    pinned = (await kpi.client.get("/v1/metrics/lead_to_mql_rate/series", params={**params, "version": 1})).json()
    assert same["series"][0]["points"][0]["value"] == "0.75" == pinned["series"][0]["points"][0]["value"]
    assert cohort["series"][0]["points"][0]["value"] == "0.25" and cohort["version"] == 2
    assert "cohort" not in same["series"][0]["points"][0]


@pytest.mark.db
async def test_an_existing_catalogue_is_upgraded_once_and_only_where_nobody_changed_or_uses_the_rate(
    kpi_db, monkeypatch
):
    from tests.kpi.conftest import start_kpi

    async for k in start_kpi(kpi_db, "nats://127.0.0.1:1", nats_enabled=False, seed_catalog=False):
        with monkeypatch.context() as before:  # the catalogue as the previous release seeded it
            before.setattr(catalog, "CATALOG_VERSIONS", [])
            async with k.runtime.unit_of_work() as uow:
                assert await catalog.seed_catalog(uow) == len(catalog.CATALOG)
        ours = {"name": "MQL to SQL", "kind": "derived", "formula": "sqls / (mqls + 1)", "unit": "percent"}
        r = await k.client.put("/v1/metrics/mql_to_sql_rate", json={**ours, "direction": "higher_is_better"})
        assert r.status_code == 200 and r.json()["version"] == 2
        uses = {
            "key": "pipeline_index",
            "name": "Pipeline index",
            "kind": "derived",
            "formula": "sql_to_opportunity_rate * 100",
            "unit": "count",
            "direction": "higher_is_better",
        }
        assert (await k.client.post("/v1/metrics", json=uses)).status_code == 201
        async with k.runtime.unit_of_work() as uow:  # this release's start-up
            assert await catalog.seed_catalog(uow) == 2  # lead_to_mql_rate and win_rate
        async with k.runtime.unit_of_work() as uow:  # another replica, or the next start-up
            assert await catalog.seed_catalog(uow) == 0
        got = {key: (await k.client.get(f"/v1/metrics/{key}")).json() for key in ("lead_to_mql_rate", "win_rate")}
        assert all((m["version"], m["kind"]) == (2, "conversion") for m in got.values())
        mine = (await k.client.get("/v1/metrics/mql_to_sql_rate")).json()
        assert (mine["version"], mine["formula"], mine["created_by"]) == (2, "sqls / (mqls + 1)", "dana")
        used = (await k.client.get("/v1/metrics/sql_to_opportunity_rate")).json()
        assert (used["version"], used["kind"]) == (1, "derived")


@pytest.mark.db
@pytest.mark.parametrize(
    "change, field",
    [
        ({"from_stage": "prospect"}, "from_stage"),
        ({"to_stage": "lead"}, "to_stage"),
        ({"window_days": 0}, "window_days"),
        ({"window_days": 3651}, "window_days"),
        ({"unit": "count"}, "unit"),
        ({"formula": "leads / mqls"}, "formula"),
        ({"measurement_type": "leads"}, "measurement_type"),
        ({"kind": "base", "measurement_type": "leads", "aggregation": "sum", "unit": "count"}, "from_stage"),
    ],
)
async def test_a_bad_conversion_definition_is_422_naming_the_field_and_writes_nothing(kpi, change, field):
    r = await kpi.client.post("/v1/metrics", json={**MQL_RATE, **change})
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]] or f"body.{field}" in [
        e["field"] for e in r.json()["errors"]
    ], r.text
    assert (await kpi.client.get("/v1/metrics/mql_cohort_21")).status_code == 404


@pytest.mark.db
async def test_formulas_cannot_use_a_conversion_and_a_used_metric_cannot_become_one(kpi):
    await kpi.client.post("/v1/metrics", json=MQL_RATE)
    bad = {"key": "x", "name": "X", "kind": "derived", "formula": "mql_cohort_21 * 2", "unit": "percent"}
    r = await kpi.client.post("/v1/metrics", json={**bad, "direction": "higher_is_better"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "formula", r.text
    r = await kpi.client.put("/v1/metrics/leads", json={**MQL_RATE, "key": None})  # cpl's formula uses leads
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind", r.text
    assert (await kpi.client.get("/v1/metrics/leads")).json()["version"] == 1


@pytest.mark.db
async def test_queries_a_conversion_metric_cannot_answer_are_422_and_scopes_narrow_the_cohort(kpi):
    journeys = _random_journeys(7, 200)
    await _post(kpi.client, journeys)
    await kpi.client.post("/v1/metrics", json=MQL_RATE)
    base = {"from": "2027-01-01", "to": "2027-03-31", "grain": "quarter"}
    for bad, field in [
        ({"cumulative": "year_to_date"}, "query.cumulative"),
        ({"read_from": "rollup"}, "query.read_from"),
    ]:
        r = await kpi.client.get("/v1/metrics/mql_cohort_21/series", params={**base, **bad})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    async with kpi.as_("eve", "analyst", scopes=("region:EMEA",)) as emea:
        (s,) = (await emea.get("/v1/metrics/mql_cohort_21/series", params=base)).json()["series"]
    want = brute(journeys, MONTHS[0], MONTHS[3], 21, lambda d: d["region"] == "EMEA")
    assert (s["points"][0]["cohort"]["entered"], s["points"][0]["cohort"]["converted"]) == want[:2]
    q = {
        "metrics": ["mql_cohort_21", "leads"],
        "dimensions": ["channel"],
        "grain": "quarter",
        "time_range": {"from": "2027-01-01", "to": "2027-03-31"},
    }
    answer = (await kpi.client.post("/v1/query", json=q)).json()
    assert answer["read_from"] == {"mql_cohort_21": "lifecycle", "leads": "rollup"}
    for row in answer["rows"]:
        entered, converted, _, _ = brute(
            journeys, MONTHS[0], MONTHS[3], 21, lambda d, c=row["channel"]: d["channel"] == c
        )
        assert row["mql_cohort_21"] == fmt(Decimal(converted) / entered, "percent")


@pytest.mark.db
async def test_a_series_past_the_entity_limit_is_422_naming_from(kpi_db):
    from tests.kpi.conftest import start_kpi

    async for k in start_kpi(kpi_db, "nats://127.0.0.1:1", nats_enabled=False, cohort_max_entities=5):
        await _post(k.client, _random_journeys(4, 30))
        await k.client.post("/v1/metrics", json=MQL_RATE)
        r = await k.client.get("/v1/metrics/mql_cohort_21/series", params={"from": "2027-01-01", "to": "2027-04-30"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.from", r.text


@pytest.mark.db
async def test_the_csv_of_a_conversion_series_and_scorecard_carries_the_cohort_columns(kpi):
    import csv
    import io

    journeys = _random_journeys(5, 120)
    await _post(kpi.client, journeys)
    await kpi.client.post("/v1/metrics", json=MQL_RATE)
    params = {"from": "2027-01-01", "to": "2027-03-31", "grain": "month", "format": "csv"}
    r = await kpi.client.get("/v1/metrics/mql_cohort_21/series", params=params)
    assert r.headers["x-metric-version"] == "1"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    for i, row in enumerate(rows):
        entered, converted, median, _ = brute(journeys, MONTHS[i], MONTHS[i + 1], 21)
        assert (int(row["entered"]), int(row["converted"]), row["median_days"]) == (entered, converted, _days(median))
    card = await kpi.client.get(
        "/v1/scorecard", params={"metrics": "mql_cohort_21,leads", "period": "2027-Q1", "format": "csv"}
    )
    by_metric = {row["metric"]: row for row in csv.DictReader(io.StringIO(card.text))}
    assert int(by_metric["mql_cohort_21"]["entered"]) == brute(journeys, MONTHS[0], MONTHS[3], 21)[0]
    assert by_metric["leads"]["entered"] == ""
    import pyarrow as pa
    import pyarrow.parquet as pq

    r = await kpi.client.get("/v1/metrics/mql_cohort_21/series", params={**params, "format": "parquet"})
    f = pq.ParquetFile(io.BytesIO(r.content))
    assert f.schema_arrow.field("entered").type == pa.int64() and f.schema_arrow.field("complete").type == pa.bool_()
    got = [(x["entered"], x["converted"]) for x in f.read().to_pylist()]
    assert got == [(int(row["entered"]), int(row["converted"])) for row in rows]
