"""A journey's path view: its touchpoints and every model's credit of each, adding up to the conversion,
equal to what attribution counts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.kpi import attribution

pytestmark = pytest.mark.db

TPS = [
    {"journey_id": "j1", "time": "2027-03-01T10:00:00Z", "channel": "social", "campaign": "spring"},
    {"journey_id": "j1", "time": "2027-03-05T10:00:00Z", "channel": "email"},
    {"journey_id": "j1", "time": "2027-03-09T10:00:00Z", "channel": "search"},
    {"journey_id": "j1", "time": "2027-03-30T10:00:00Z", "channel": "events"},  # after every conversion
]
CONVS = [
    {"journey_id": "j1", "time": "2027-03-10T10:00:00Z", "value": "1000.00", "dimensions": {"region": "EMEA"}},
    {"journey_id": "j1", "time": "2027-03-01T09:00:00Z", "value": "10.00", "dimensions": {"region": "NA"}},
]


async def test_each_models_credits_add_up_and_match_attribution(kpi):
    assert (await kpi.client.post("/v1/touchpoints", json={"items": TPS})).status_code == 201
    assert (await kpi.client.post("/v1/conversions", json={"items": CONVS})).status_code == 201
    r = await kpi.client.get("/v1/journeys/j1")
    assert r.status_code == 200, r.text
    early, late = r.json()["conversions"]
    assert early["unattributed"] and early["touchpoints"] == [] and early["time"] == "2027-03-01T09:00:00Z"
    assert [t["channel"] for t in late["touchpoints"]] == ["social", "email", "search"]
    assert late["touchpoints"][0]["campaign"] == "spring"
    for m in attribution.MODELS:
        assert sum(Decimal(t["credit"][m]) for t in late["touchpoints"]) == Decimal("1000.00")
    assert [t["credit"]["linear"] for t in late["touchpoints"]] == ["333.34", "333.33", "333.33"]
    assert [t["credit"]["position_based"] for t in late["touchpoints"]] == ["400.00", "200.00", "400.00"]
    whole = (await kpi.client.get("/v1/attribution", params={"from": "2027-03-10", "to": "2027-03-10"})).json()
    by_channel = {c["channel"]: c["by_model"] for c in whole["credits"]}
    for t in late["touchpoints"]:
        assert by_channel[t["channel"]] == t["credit"]
    async with kpi.as_("eve", "analyst", scopes=("region:EMEA",)) as emea:
        (only,) = (await emea.get("/v1/journeys/j1")).json()["conversions"]
        assert only["value"] == "1000.00"
    async with kpi.as_("nora", "analyst", scopes=("region:APAC",)) as apac:
        assert (await apac.get("/v1/journeys/j1")).status_code == 404
    short = (await kpi.client.get("/v1/journeys/j1", params={"lookback_days": 3})).json()["conversions"][1]
    assert [t["channel"] for t in short["touchpoints"]] == ["search"]
    missing = await kpi.client.get("/v1/journeys/nobody")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    bad = await kpi.client.get("/v1/journeys/j1", params={"lookback_days": 0})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.lookback_days"


async def test_a_path_view_past_its_row_limit_is_422_naming_lookback_days(kpi, monkeypatch):
    from services.kpi import pathview

    assert (await kpi.client.post("/v1/touchpoints", json={"items": TPS})).status_code == 201
    assert (await kpi.client.post("/v1/conversions", json={"items": CONVS[:1]})).status_code == 201
    monkeypatch.setattr(pathview, "MAX_PATH_ROWS", 2)
    r = await kpi.client.get("/v1/journeys/j1")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.lookback_days"
    assert (await kpi.client.get("/v1/journeys/j1", params={"lookback_days": 3})).status_code == 200
