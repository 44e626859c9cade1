"""Comparisons (previous period, same period last year) and fiscal time in series and scorecard."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from services.kpi import targets
from services.kpi.settings import Settings
from tests.kpi.conftest import start_kpi

pytestmark = pytest.mark.db


async def feed(client, counts: dict[str, int], region: str = "EMEA", mtype: str = "leads") -> None:
    items = [
        {"type": mtype, "value": "1", "time": f"{day}T10:00:00Z", "dimensions": {"region": region}}
        for day, n in counts.items()
        for _ in range(n)
    ]
    r = await client.post("/v1/measurements", json={"items": items})
    assert r.status_code == 200 and r.json()["accepted"] == len(items), r.text


def points(body: dict) -> list[dict]:
    assert len(body["series"]) == 1
    return body["series"][0]["points"]


async def test_series_compare_with_the_previous_bucket_and_last_year(kpi):
    await feed(kpi.client, {"2026-01-20": 8, "2026-12-05": 20, "2027-01-10": 30})
    await feed(kpi.client, {"2026-12-05": 100, "2027-01-10": 100}, region="NA")
    params = {
        "from": "2027-01-01",
        "to": "2027-02-28",
        "grain": "month",
        "filter": "region:EMEA",
        "compare": "previous_period,last_year",
    }
    r = await kpi.client.get("/v1/metrics/leads/series", params=params)
    assert r.status_code == 200, r.text
    jan, feb = points(r.json())
    assert jan["value"] == "30" and jan["compare"]["previous_period"] == {
        "bucket": "2026-12-01",
        "value": "20",
        "change": "10",
        "percent_change": "0.5",
    }
    last_year = {"bucket": "2026-01-01", "value": "8", "change": "22", "percent_change": "2.75"}
    assert jan["compare"]["last_year"] == last_year
    assert feb["compare"]["previous_period"] == {
        "bucket": "2027-01-01",
        "value": "30",
        "change": "-30",
        "percent_change": "-1",
    }
    assert feb["compare"]["last_year"] == {"bucket": "2026-02-01", "value": "0", "change": "0", "percent_change": None}
    plain = await kpi.client.get("/v1/metrics/leads/series", params={**params, "compare": []})
    assert "compare" not in points(plain.json())[0]
    bad = await kpi.client.get("/v1/metrics/leads/series", params={**params, "compare": "yesterday"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.compare"


async def test_a_partial_edge_bucket_compares_with_the_same_part_of_the_earlier_one(kpi):
    await feed(kpi.client, {"2027-01-05": 1, "2027-01-20": 2, "2027-02-10": 4, "2027-02-20": 8})
    params = {"from": "2027-02-15", "to": "2027-02-28", "grain": "month", "compare": "previous_period"}
    (feb,) = points((await kpi.client.get("/v1/metrics/leads/series", params=params)).json())
    # February 15-28 against January 15-28 (the window moved back one month): 8 against 2
    assert feb["value"] == "8" and feb["compare"]["previous_period"]["value"] == "2"


async def test_groups_absent_from_the_earlier_period_compare_with_nothing(kpi):
    await feed(kpi.client, {"2027-02-03": 3})
    await feed(kpi.client, {"2027-01-03": 5}, region="NA")
    params = {"from": "2027-02-01", "to": "2027-02-28", "group_by": "region", "compare": "previous_period"}
    r = (await kpi.client.get("/v1/metrics/cpl/series", params=params)).json()
    by = {s["group"]["region"]: s["points"][0] for s in r["series"]}
    assert by["EMEA"]["compare"]["previous_period"] == {
        "bucket": "2027-01-01",
        "value": None,  # no spend and no leads in January: CPL undefined
        "change": None,
        "percent_change": None,
    }
    assert "NA" not in by  # only groups of the asked window are answered


async def test_a_scoped_reader_compares_only_inside_the_scope(kpi):
    await feed(kpi.client, {"2026-12-05": 2, "2027-01-10": 3})
    await feed(kpi.client, {"2026-12-05": 50, "2027-01-10": 70}, region="NA")
    async with kpi.as_("eve", "analyst", scopes=("region:EMEA",)) as eve:
        params = {"from": "2027-01-01", "to": "2027-01-31", "compare": "previous_period"}
        (jan,) = points((await eve.get("/v1/metrics/leads/series", params=params)).json())
        assert jan["value"] == "3" and jan["compare"]["previous_period"]["value"] == "2"
        card = (await eve.get("/v1/scorecard", params={"metrics": "leads", "period": "2027-01", **params})).json()
        assert card["items"][0]["compare"]["previous_period"]["value"] == "2"


async def test_scorecard_compares_whole_periods_and_a_running_one_to_date(kpi):
    await feed(kpi.client, {"2026-01-10": 10, "2026-02-20": 10, "2026-10-10": 40, "2026-11-20": 40, "2027-01-15": 30})
    r = await kpi.client.get(
        "/v1/scorecard", params={"metrics": "leads,cpl", "period": "2027-Q1", "compare": "previous_period,last_year"}
    )
    assert r.status_code == 200, r.text
    leads, cpl = r.json()["items"]
    assert leads["version"] == 1
    assert leads["compare"]["previous_period"] == {
        "period": "2026-Q4",
        "from": "2026-10-01",
        "to": "2026-12-31",
        "value": "80",
        "change": "-50",
        "percent_change": "-0.625",
    }
    assert leads["compare"]["last_year"]["period"] == "2026-Q1" and leads["compare"]["last_year"]["value"] == "20"
    assert cpl["compare"]["last_year"]["percent_change"] is None  # last year CPL was 0 (no spend / 20 leads)
    plain = (await kpi.client.get("/v1/scorecard", params={"metrics": "leads", "period": "2027-Q1"})).json()
    assert "compare" not in plain["items"][0]
    # On 2027-01-31 the quarter has run 31 days: days 1-31 of each earlier quarter are counted, and only 2027's first 31
    async with kpi.runtime.unit_of_work(readonly=True) as uow:
        now = dt.datetime(2027, 1, 31, 12, tzinfo=dt.UTC)
        card = await targets.scorecard(
            uow, None, keys=["leads"], period="2027-Q1", flt={}, now=now, compare=["previous_period", "last_year"]
        )
    cmp = card["items"][0]["compare"]
    assert cmp["previous_period"]["to"] == "2026-10-31" and cmp["previous_period"]["value"] == "40"
    assert cmp["last_year"]["to"] == "2026-01-31" and cmp["last_year"]["value"] == "10"
    assert cmp["last_year"]["change"] == "20" and cmp["last_year"]["percent_change"] == "2"


async def test_fiscal_grains_and_periods_follow_the_configured_start(kpi_db):
    async for k in start_kpi(kpi_db, "nats://127.0.0.1:1", nats_enabled=False, fiscal_year_start=4):
        await feed(k.client, {"2026-03-31": 1, "2026-04-01": 2, "2026-07-01": 4, "2027-01-05": 8, "2027-04-02": 16})
        r = await k.client.get(
            "/v1/metrics/leads/series",
            params={"from": "2026-04-01", "to": "2027-03-31", "grain": "fiscal_quarter", "compare": "last_year"},
        )
        assert r.status_code == 200, r.text
        got = [(p["bucket"], p["period"], p["value"]) for p in points(r.json())]
        assert got == [
            ("2026-04-01", "FY2027-Q1", "2"),
            ("2026-07-01", "FY2027-Q2", "4"),
            ("2026-10-01", "FY2027-Q3", "0"),
            ("2027-01-01", "FY2027-Q4", "8"),
        ]
        assert points(r.json())[3]["compare"]["last_year"]["bucket"] == "2026-01-01"
        assert points(r.json())[3]["compare"]["last_year"]["value"] == "1"
        years = await k.client.get(
            "/v1/metrics/leads/series", params={"from": "2026-01-01", "to": "2027-12-31", "grain": "fiscal_year"}
        )
        got = [(p["bucket"], p["period"], p["value"]) for p in points(years.json())]
        assert got == [("2025-04-01", "FY2026", "1"), ("2026-04-01", "FY2027", "14"), ("2027-04-01", "FY2028", "16")]
        target = await k.client.post("/v1/targets", json={"metric": "leads", "period": "FY2027-Q4", "value": "10"})
        assert target.status_code == 201, target.text
        card = await k.client.get(
            "/v1/scorecard", params={"metrics": "leads", "period": "FY2027-Q4", "compare": "previous_period"}
        )
        body = card.json()
        assert (body["from"], body["to"]) == ("2027-01-01", "2027-03-31")
        item = body["items"][0]
        assert item["actual"] == "8" and item["target"] == "10" and item["target_id"] == target.json()["id"]
        assert item["compare"]["previous_period"]["period"] == "FY2027-Q3"
        bad = await k.client.get("/v1/scorecard", params={"metrics": "leads", "period": "FY2027-03"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.period"


async def test_comparisons_reaching_before_1900_count_nothing_there(kpi):
    await feed(kpi.client, {"1900-01-01": 1, "1900-01-02": 2})
    card = await kpi.client.get("/v1/scorecard", params={"metrics": "leads", "period": "1900", "compare": "last_year"})
    assert card.status_code == 200, card.text
    assert card.json()["items"][0]["compare"]["last_year"]["period"] == "1899"
    assert card.json()["items"][0]["compare"]["last_year"]["value"] == "0"  # not 1900-01-01's lead
    params = {"from": "1900-01-01", "to": "1900-01-31", "compare": "last_year", "cumulative": "trailing"}
    r = await kpi.client.get("/v1/metrics/leads/series", params=params)
    assert r.status_code == 200, r.text
    assert points(r.json())[0]["value"] == "3" and points(r.json())[0]["compare"]["last_year"]["value"] == "0"


def test_the_fiscal_year_start_is_a_month():
    assert Settings(fiscal_year_start=7).fiscal_year_start == 7
    with pytest.raises(ValidationError):
        Settings(fiscal_year_start=13)
