"""The KPI service's boundaries are typed: every answer documented, the event contract served, and every
value in the API's one decimal grammar."""

from __future__ import annotations

import pytest

from services.kpi import events, handlers

pytestmark = pytest.mark.db


async def test_every_operation_documents_its_answer_and_its_problems(kpi):
    doc = (await kpi.client.get("/openapi.json")).json()
    ours = [
        (path, method, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if path.startswith("/v1/") and "operations" not in op.get("tags", [])
    ]
    assert len(ours) == 25  # issue 23 added lifecycle, cohorts, query, journeys and three anomaly routes
    for path, method, op in ours:
        responses = op["responses"]
        ok = [status for status in responses if status.startswith("2")]
        assert len(ok) == 1, (path, method)
        schema = responses[ok[0]]["content"]["application/json"]["schema"]
        assert "$ref" in schema, (path, method)  # a model, not `{}`
        for status in ("401", "403", "422", "500"):
            assert "application/problem+json" in responses[status]["content"], (path, method, status)
    by_path = {(path, method): op for path, method, op in ours}
    assert {"404", "412"} <= set(by_path["/v1/metrics/{key}", "put"]["responses"])
    assert {"404", "409"} <= set(by_path["/v1/targets", "post"]["responses"])
    series = doc["components"]["schemas"]["SeriesOut"]["properties"]
    assert {"from", "to", "read_from", "series"} <= set(series)


async def test_the_service_serves_its_part_of_the_asyncapi_document(kpi):
    part = (await kpi.client.get("/asyncapi.json")).json()
    assert part["service"] == "kpi"
    assert "kpi.target.at_risk" in part["channels"]
    data = part["components"]["schemas"]["KpiTargetAtRisk"]
    assert {"target_id", "metric", "period", "filter", "projected", "elapsed"} <= set(data["required"])
    consumed = {c.subject for c in events.CATALOGUE.consumes}
    assert set(handlers.handlers(kpi.runtime)) == consumed  # every handler is in the contract, and only those


ITEM = {"type": "spend", "time": "2027-03-04T10:00:00Z", "source": "grammar"}


@pytest.mark.parametrize("value", ["1e3", "+5", ".5", "5.", " 5", "1_000", "\u0663", "NaN", 5, 5.5, True])
async def test_a_measurement_value_outside_the_decimal_grammar_is_a_rejected_item_naming_the_value(kpi, value):
    r = await kpi.client.post("/v1/measurements", json={"items": [{**ITEM, "value": "5.00"}, {**ITEM, "value": value}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1 and [x["index"] for x in body["rejected"]] == [1]
    assert body["rejected"][0]["reason"].startswith("value "), body


async def test_a_csv_value_outside_the_grammar_is_rejected_too(kpi):
    csv = "type,value,time\nspend,1e3,2027-03-04T10:00:00Z\nspend,1000.00,2027-03-04T10:00:00Z\n"
    r = await kpi.client.post("/v1/measurements/import", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert "'1e3' is not a decimal string" in r.json()["rejected"][0]["reason"]


@pytest.mark.parametrize("value", ["1e3", "+5", ".5", 5, 5.5])
async def test_money_in_targets_and_conversions_is_a_422_naming_the_field(kpi, value):
    target = await kpi.client.post("/v1/targets", json={"metric": "cpl", "period": "2027-03", "value": value})
    assert target.status_code == 422 and [e["field"] for e in target.json()["errors"]] == ["value"], target.text
    conv = {"journey_id": "j", "time": "2027-03-10T10:00:00Z", "value": value}
    r = await kpi.client.post("/v1/conversions", json={"items": [conv]})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["items.0.value"], r.text


async def test_a_point_without_a_target_carries_no_target_keys(kpi):
    r = await kpi.client.get("/v1/metrics/spend/series", params={"from": "2027-01-01", "to": "2027-01-31"})
    assert r.status_code == 200, r.text
    assert r.json()["series"][0]["points"] == [{"bucket": "2027-01-01", "value": "0.00"}]
