"""The semantic query: one table of metrics by dimensions and time, equal to the series it joins."""

from __future__ import annotations

import csv
import io
import random
from decimal import Decimal

import pytest

pytestmark = pytest.mark.db

CHANNELS = ["search", "email", "social"]


async def _seed(client) -> None:
    rnd = random.Random(4)
    items = []
    for n in range(300):
        month = rnd.randint(1, 4)
        dims = {"channel": rnd.choice(CHANNELS), "region": rnd.choice(["EMEA", "NA"])}
        time = f"2027-{month:02d}-{rnd.randint(1, 28):02d}T12:00:00Z"
        kind = rnd.choice(["spend", "leads"])
        value = f"{rnd.randint(1, 900)}.{rnd.randint(0, 99):02d}" if kind == "spend" else "1"
        items.append({"type": kind, "value": value, "time": time, "dimensions": dims, "external_id": f"m{n}"})
    r = await client.post("/v1/measurements", json={"items": items})
    assert r.json()["accepted"] == 300


BODY = {
    "metrics": ["spend", "leads", "cpl"],
    "dimensions": ["channel"],
    "filters": {"region": ["EMEA"]},
    "grain": "month",
    "time_range": {"from": "2027-01-01", "to": "2027-03-31"},
}


async def test_the_table_equals_the_series_it_joins(kpi):
    await _seed(kpi.client)
    r = await kpi.client.post("/v1/query", json=BODY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["name"] for c in body["columns"]] == ["bucket", "channel", "spend", "leads", "cpl"]
    assert body["columns"][4]["unit"] == "currency" and body["columns"][4]["version"] == 1
    assert body["read_from"] == {"spend": "rollup", "leads": "rollup", "cpl": "rollup"}
    assert len(body["rows"]) == 9 and body["truncated"] is False
    for key in BODY["metrics"]:
        params = {"from": "2027-01-01", "to": "2027-03-31", "group_by": "channel", "filter": "region:EMEA"}
        series = (await kpi.client.get(f"/v1/metrics/{key}/series", params=params)).json()["series"]
        want = {(p["bucket"], s["group"]["channel"]): p["value"] for s in series for p in s["points"]}
        assert {(row["bucket"], row["channel"]): row[key] for row in body["rows"]} == want
    ordered = {**BODY, "order": [{"by": "cpl", "direction": "desc"}], "limit": 4}
    top = (await kpi.client.post("/v1/query", json=ordered)).json()
    cpls = [Decimal(row["cpl"]) for row in body["rows"] if row["cpl"] is not None]
    assert [Decimal(row["cpl"]) for row in top["rows"]] == sorted(cpls, reverse=True)[:4] and top["truncated"]
    whole = (await kpi.client.post("/v1/query", json={**BODY, "grain": "all", "dimensions": []})).json()
    assert len(whole["rows"]) == 1
    assert Decimal(whole["rows"][0]["spend"]) == sum(Decimal(row["spend"] or 0) for row in body["rows"])


async def test_a_scoped_caller_reads_only_its_scope(kpi):
    await _seed(kpi.client)
    body = {**BODY, "filters": {}, "dimensions": ["region"], "grain": "all"}
    async with kpi.as_("nora", "analyst", scopes=("region:NA",)) as na:
        r = await na.post("/v1/query", json=body)
    assert r.status_code == 200, r.text
    assert [row["region"] for row in r.json()["rows"]] == ["NA"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"metrics": ["spend", "no_such_metric"]}, "metrics.1"),
        ({"metrics": ["spend", "spend"]}, "metrics"),
        ({"order": [{"by": "region"}]}, "order.0.by"),
        ({"time_range": {"from": "2027-04-01", "to": "2027-03-01"}}, "time_range.from"),
        ({"grain": "day", "time_range": {"from": "2000-01-01", "to": "2027-03-01"}}, "grain"),
        ({"grain": "hour"}, "grain"),
        ({"limit": 0}, "limit"),
        ({"dimensions": ["Channel"]}, "dimensions.0"),
    ],
)
async def test_bad_queries_are_422_naming_the_field(kpi, change, field):
    r = await kpi.client.post("/v1/query", json={**BODY, **change})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field, r.json()


async def test_the_table_as_csv_names_the_metric_versions(kpi):
    await _seed(kpi.client)
    as_json = (await kpi.client.post("/v1/query", json=BODY)).json()
    r = await kpi.client.post("/v1/query", params={"format": "csv"}, json=BODY)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-metric-versions"] == "spend=1,leads=1,cpl=1" and r.headers["x-truncated"] == "false"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows == [{k: v or "" for k, v in row.items()} for row in as_json["rows"]]
    accept = await kpi.client.post("/v1/query", json=BODY, headers={"Accept": "text/csv"})
    assert accept.text == r.text
    bad = await kpi.client.post("/v1/query", params={"format": "xlsx"}, json=BODY)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.format"
