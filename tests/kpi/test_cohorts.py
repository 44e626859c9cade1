"""Cohort conversions equal a brute-force count over random journeys; bounds and bad input are 4xx."""

from __future__ import annotations

import datetime as dt
import math
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.kpi import cohorts
from shared.work import Budget

T0 = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)


ALL = object()


def brute(journeys, start, end, window_days, group=ALL):
    """Count by hand: entities whose A lies in [start, end), converted when 0 <= B - A <= window."""
    entered = converted = 0
    took = []
    for j in journeys:
        a, b, dims = j["a"], j["b"], j["dims"]
        if a is None or not start <= a < end or (group is not ALL and dims.get("channel") != group):
            continue
        entered += 1
        if b is not None and dt.timedelta(0) <= b - a <= dt.timedelta(days=window_days):
            converted += 1
            took.append((b - a).total_seconds())
    took.sort()
    rank = (lambda p: took[math.ceil(p * len(took)) - 1]) if took else (lambda p: None)
    return entered, converted, rank(0.5), rank(0.9)


journey = st.fixed_dictionaries(
    {
        "a": st.none() | st.integers(-20, 60).map(lambda d: T0 + dt.timedelta(days=d, hours=d % 7)),
        "b": st.none() | st.integers(-30, 200).map(lambda h: T0 + dt.timedelta(hours=h * 11)),
        "dims": st.sampled_from([{}, {"channel": "search"}, {"channel": "email"}]),
    }
)


@settings(max_examples=200, deadline=None, database=None)
@given(journeys=st.lists(journey, max_size=60), window=st.integers(1, 120))
def test_the_tally_equals_a_brute_force_count(journeys, window):
    """The pure part: given the entered counts and the candidates the database returns (B at or after A,
    within the window plus a day), the exact window test and the percentiles."""
    start, end = T0, T0 + dt.timedelta(days=31)
    counts: dict = {}
    rows = []
    for j in journeys:
        a, b, channel = j["a"], j["b"], j["dims"].get("channel")
        if a is None or not start <= a < end:
            continue
        counts[((channel,), 0)] = counts.get(((channel,), 0), 0) + 1
        if b is not None and a <= b <= a + dt.timedelta(days=window + 1):
            rows.append((channel, 0, a, b))
    found = cohorts.tally(Budget(60), cohorts.Read(1, counts, rows), window)
    assert set(found) == set(counts)
    for ((channel,), _), s in found.items():
        entered, converted, median, p90 = brute(journeys, start, end, window, channel)
        assert (s.entered, s.converted, s.median_seconds, s.p90_seconds) == (entered, converted, median, p90)
        assert s.rate == Decimal(converted) / entered


def test_percentile_is_nearest_rank():
    assert cohorts.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert cohorts.percentile([1.0, 2.0, 3.0, 4.0], 0.9) == 4.0
    assert cohorts.percentile([], 0.5) is None


def _facts(journeys):
    items = []
    for n, j in enumerate(journeys):
        for stage, t in (("mql", j["a"]), ("sql", j["b"])):
            if t is not None:
                items.append({"entity_id": f"E{n}", "stage": stage, "time": t.isoformat(), "dimensions": j["dims"]})
    return items


@pytest.mark.db
async def test_the_endpoint_equals_a_brute_force_count_over_random_journeys(kpi):
    rnd = random.Random(23)
    journeys = []
    for _ in range(600):
        a = T0 + dt.timedelta(days=rnd.randint(-40, 70), minutes=rnd.randint(0, 1439)) if rnd.random() < 0.9 else None
        b = None
        if rnd.random() < 0.6:
            base = a or T0
            b = base + dt.timedelta(hours=rnd.randint(-100, 24 * 100))
        journeys.append({"a": a, "b": b, "dims": {"channel": rnd.choice(["search", "email", "social"])}})
    items = _facts(journeys)
    r = await kpi.client.post("/v1/lifecycle", json={"items": items})
    assert r.json() == {"accepted": len(items), "duplicates": 0}
    params = {"from_stage": "mql", "to_stage": "sql", "period": "2027-Q1", "window_days": 30}
    body = (await kpi.client.get("/v1/cohorts", params=params)).json()
    start, end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 4, 1, tzinfo=dt.UTC)
    entered, converted, median, p90 = brute(journeys, start, end, 30)
    (item,) = body["items"]
    assert (item["entered"], item["converted"]) == (entered, converted) and converted > 50
    assert (item["median_days"], item["p90_days"]) == (cohorts._days(median), cohorts._days(p90))
    assert (body["from"], body["to"]) == ("2027-01-01", "2027-03-31")
    grouped = (await kpi.client.get("/v1/cohorts", params={**params, "group_by": "channel"})).json()["items"]
    assert [g["group"]["channel"] for g in grouped] == ["email", "search", "social"]
    for g in grouped:
        assert (g["entered"], g["converted"]) == brute(journeys, start, end, 30, g["group"]["channel"])[:2]


@pytest.mark.db
async def test_scopes_bad_input_and_limits(kpi_db):
    from tests.kpi.conftest import start_kpi

    async for k in start_kpi(kpi_db, "nats://127.0.0.1:1", nats_enabled=False, cohort_max_entities=3):
        facts = [
            {"entity_id": f"E{n}", "stage": "lead", "time": "2027-03-02T00:00:00Z", "dimensions": {"region": region}}
            for n, region in enumerate(["EMEA", "EMEA", "AMER"])
        ]
        facts.append({"entity_id": "E0", "stage": "won", "time": "2027-03-09T00:00:00Z", "dimensions": {}})
        assert (await k.client.post("/v1/lifecycle", json={"items": facts})).status_code == 200
        params = {"from_stage": "lead", "to_stage": "won", "period": "2027-03"}
        async with k.as_("eve", "analyst", scopes=("region:EMEA",)) as emea:
            (item,) = (await emea.get("/v1/cohorts", params=params)).json()["items"]
        assert (item["entered"], item["converted"], item["median_days"]) == (2, 1, "7.00")
        for bad, field in [
            ({"from_stage": "prospect"}, "query.from_stage"),
            ({"to_stage": "lead"}, "query.to_stage"),
            ({"window_days": 0}, "query.window_days"),
            ({"period": "March"}, "query.period"),
        ]:
            r = await k.client.get("/v1/cohorts", params={**params, **bad})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
        facts = [{**facts[0], "entity_id": "E9"}]
        await k.client.post("/v1/lifecycle", json={"items": facts})
        r = await k.client.get("/v1/cohorts", params=params)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.period"
