"""Data out: series, scorecard and attribution as CSV, with the metric's version in a header."""

from __future__ import annotations

import csv
import io

import pytest

from services.kpi import export

pytestmark = pytest.mark.db


def table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def feed(client) -> None:
    items = [
        {"type": "leads", "value": "10", "time": "2027-01-10T10:00:00Z", "dimensions": {"channel": "search"}},
        {"type": "leads", "value": "4", "time": "2027-02-10T10:00:00Z", "dimensions": {"channel": "search"}},
        {"type": "spend", "value": "-50.5", "time": "2027-02-10T10:00:00Z", "dimensions": {"channel": "search"}},
        {"type": "leads", "value": "2", "time": "2027-02-11T10:00:00Z", "dimensions": {"channel": "=HYPERLINK(1)"}},
    ]
    r = await client.post("/v1/measurements", json={"items": items})
    assert r.json()["accepted"] == len(items), r.text


async def test_series_as_csv_matches_the_json_answer(kpi):
    await feed(kpi.client)
    params = {"from": "2027-01-01", "to": "2027-02-28", "group_by": "channel", "compare": "previous_period"}
    as_json = (await kpi.client.get("/v1/metrics/leads/series", params=params)).json()
    r = await kpi.client.get("/v1/metrics/leads/series", params={**params, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-metric"] == "leads" and r.headers["x-metric-version"] == "1"
    assert 'filename="leads-v1-month.csv"' in r.headers["content-disposition"]
    rows = table(r.text)
    assert list(rows[0]) == [
        "channel",
        "bucket",
        "period",
        "value",
        "target",
        "variance",
        "attainment",
        "previous_period_bucket",
        "previous_period_value",
        "previous_period_change",
        "previous_period_percent_change",
        "metric",
        "version",
    ]
    assert {(r["metric"], r["version"]) for r in rows} == {("leads", "1")}  # the version is in the file too
    want = [
        (s["group"]["channel"], p["bucket"], p["value"], p["compare"]["previous_period"]["percent_change"] or "")
        for s in as_json["series"]
        for p in s["points"]
    ]
    got = [(r["channel"], r["bucket"], r["value"], r["previous_period_percent_change"]) for r in rows]
    assert got == [("'" + c if c.startswith("=") else c, b, v, pc) for c, b, v, pc in want]
    assert ("'=HYPERLINK(1)", "2027-02-01", "2", "") in got  # no formula; a zero base has no percent change
    assert ("search", "2027-02-01", "4", "-0.6") in got
    by_accept = await kpi.client.get("/v1/metrics/leads/series", params=params, headers={"Accept": "text/csv"})
    assert by_accept.text == r.text
    spend = await kpi.client.get("/v1/metrics/spend/series", params={**params, "format": "csv"})
    assert "-50.50" in spend.text and "'-50.50" not in spend.text  # decimals are never escaped
    refused = await kpi.client.get("/v1/metrics/leads/series", params={**params, "format": "xlsx"})
    assert refused.status_code == 422 and "format" in refused.text


async def test_a_pinned_version_is_the_one_in_the_header(kpi):
    await feed(kpi.client)
    spec = {"name": "Leads", "kind": "base", "measurement_type": "leads", "aggregation": "count", "unit": "count"}
    put = await kpi.client.put("/v1/metrics/leads", json={**spec, "direction": "higher_is_better"})
    assert put.status_code == 200, put.text
    params = {"from": "2027-01-01", "to": "2027-01-31", "format": "csv"}
    latest = await kpi.client.get("/v1/metrics/leads/series", params=params)
    pinned = await kpi.client.get("/v1/metrics/leads/series", params={**params, "version": 1})
    assert latest.headers["x-metric-version"] == "2" and table(latest.text)[0]["value"] == "1"  # a count
    assert pinned.headers["x-metric-version"] == "1" and table(pinned.text)[0]["value"] == "10"  # the sum
    assert table(latest.text)[0]["version"] == "2" and table(pinned.text)[0]["version"] == "1"


async def test_scorecard_as_csv_names_each_metric_version(kpi):
    await feed(kpi.client)
    params = {"metrics": "leads,cpl", "period": "2027-02", "compare": "last_year,previous_period"}
    as_json = (await kpi.client.get("/v1/scorecard", params=params)).json()
    r = await kpi.client.get("/v1/scorecard", params=params, headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["x-metric-versions"] == "leads=1,cpl=1"
    rows = table(r.text)
    assert [(x["metric"], x["version"], x["actual"]) for x in rows] == [
        (i["metric"], str(i["version"]), i["actual"]) for i in as_json["items"]
    ]
    assert rows[0]["previous_period_period"] == "2027-01" and rows[0]["previous_period_value"] == "10"
    assert rows[0]["last_year_period"] == "2026-02" and rows[0]["at_risk"] == "false"


async def test_attribution_as_csv_has_every_models_credit(kpi):
    tp = [{"journey_id": "j1", "time": "2027-03-01T10:00:00Z", "channel": "social", "campaign": "spring"}]
    tp.append({"journey_id": "j1", "time": "2027-03-05T10:00:00Z", "channel": "search", "campaign": "spring"})
    assert (await kpi.client.post("/v1/touchpoints", json={"items": tp})).status_code == 201
    conv = {"items": [{"journey_id": "j1", "time": "2027-03-10T10:00:00Z", "value": "900.00"}]}
    assert (await kpi.client.post("/v1/conversions", json=conv)).status_code == 201
    params = {"model": "first_touch", "from": "2027-03-01", "to": "2027-03-31"}
    as_json = (await kpi.client.get("/v1/attribution", params=params)).json()
    r = await kpi.client.get("/v1/attribution", params={**params, "format": "csv"})
    assert r.status_code == 200 and r.headers["x-attribution-model"] == "first_touch"
    rows = table(r.text)
    assert [(x["channel"], x["credit"], x["min"], x["max"], x["linear"]) for x in rows] == [
        (c["channel"], c["credit"], c["min"], c["max"], c["by_model"]["linear"]) for c in as_json["credits"]
    ]
    assert rows[0]["channel"] == "social" and rows[0]["credit"] == "900.00" and rows[0]["position_based"] == "450.00"


async def test_the_openapi_document_offers_csv_and_parquet(kpi):
    doc = (await kpi.client.get("/openapi.json")).json()
    routes = [("/v1/metrics/{key}/series", "get"), ("/v1/scorecard", "get"), ("/v1/attribution", "get")]
    for path, method in [*routes, ("/v1/query", "post")]:
        content = doc["paths"][path][method]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/csv", "application/vnd.apache.parquet"}, path
        assert "$ref" in str(content["application/json"])  # the JSON schema is still there


def test_csv_is_rendered_in_chunks_and_quoted():
    rows = [[i, "a,b", None] for i in range(export.CHUNK_ROWS * 2 + 1)]
    chunks = list(export.render(["n", "text", "empty"], rows))
    assert len(chunks) == 3
    parsed = list(csv.reader(io.StringIO("".join(chunks))))
    assert parsed[0] == ["n", "text", "empty"] and parsed[1] == ["0", "a,b", ""] and len(parsed) == len(rows) + 1
    assert [export.safe(x) for x in ("@SUM(1)", "+1", "ok", None, "")] == ["'@SUM(1)", "'+1", "ok", None, ""]
