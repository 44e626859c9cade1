"""Attribution: every model's credits add up to the conversion value exactly; min/max across models."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.kpi import attribution

T = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)


@settings(max_examples=300, deadline=None, database=None)
@given(
    value=st.integers(0, 10**15),
    offsets=st.lists(st.integers(0, 90 * 86400), min_size=1, max_size=30),
    model=st.sampled_from(attribution.MODELS),
    half_life=st.floats(0.01, 365),
)
def test_every_models_credits_add_up_to_the_conversion_value_exactly(value, offsets, model, half_life):
    times = sorted(T - dt.timedelta(seconds=o) for o in offsets)
    w = attribution.weights(model, times, T, half_life)
    assert len(w) == len(times) and all(x >= 0 for x in w) and sum(w) > 0
    parts = attribution.split(value, w)
    assert sum(parts) == value
    total = sum(w)
    assert all(abs(Fraction(p) - value * x / total) < 1 for p, x in zip(parts, w, strict=True))


def test_position_based_is_40_20_40_and_split_is_deterministic():
    w = attribution.weights("position_based", [T] * 4, T, 7)
    assert w == [Fraction(2, 5), Fraction(1, 10), Fraction(1, 10), Fraction(2, 5)]
    assert attribution.split(100, [Fraction(1, 3)] * 3) == [34, 33, 33]  # the remainder goes to the earliest


@pytest.mark.db
async def test_attribution_endpoint_credits_channels_with_the_range_across_models(kpi):
    tps = [
        {"journey_id": "j1", "time": "2027-03-01T10:00:00Z", "channel": "social", "campaign": "spring"},
        {"journey_id": "j1", "time": "2027-03-05T10:00:00Z", "channel": "email"},
        {"journey_id": "j1", "time": "2027-03-09T10:00:00Z", "channel": "search"},
        {"journey_id": "j1", "time": "2027-03-30T10:00:00Z", "channel": "events"},  # after the conversion
        {"journey_id": "j2", "time": "2027-03-02T10:00:00Z", "channel": "search"},
    ]
    convs = [
        {"journey_id": "j1", "time": "2027-03-10T10:00:00Z", "value": "1000.00"},
        {"journey_id": "j2", "time": "2027-03-03T10:00:00Z", "value": "0.01"},
        {"journey_id": "j3", "time": "2027-03-04T10:00:00Z", "value": "50.00"},  # no touchpoints
        {"journey_id": "j1", "time": "2027-05-10T10:00:00Z", "value": "999.00"},  # outside the range
    ]
    assert (await kpi.client.post("/v1/touchpoints", json={"items": tps})).status_code == 201
    assert (await kpi.client.post("/v1/conversions", json={"items": convs})).json() == {"accepted": 4}
    params = {"from": "2027-03-01", "to": "2027-03-31"}
    results = {}
    for model in attribution.MODELS:
        r = await kpi.client.get("/v1/attribution", params={**params, "model": model})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == "1050.01" and body["conversions"] == 3
        assert sum(Decimal(c["credit"]) for c in body["credits"]) == Decimal("1050.01")
        results[model] = {c["channel"]: c for c in body["credits"]}
    first, last = results["first_touch"], results["last_touch"]
    assert first["social"]["credit"] == "1000.00" and last["search"]["credit"] == "1000.01"
    assert results["linear"]["email"]["credit"] == "333.33" and results["linear"]["social"]["credit"] == "333.34"
    assert results["position_based"]["email"]["credit"] == "200.00"
    assert results["linear"]["(unattributed)"]["credit"] == "50.00"
    assert "events" not in results["linear"]
    social = results["linear"]["social"]
    assert (social["min"], social["max"]) == ("0.00", "1000.00")
    assert results["time_decay"]["search"]["credit"] > results["time_decay"]["email"]["credit"]
    bad = await kpi.client.get("/v1/attribution", params={**params, "model": "magic"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.model"
    backwards = await kpi.client.get("/v1/attribution", params={"from": "2027-04-01", "to": "2027-03-01"})
    assert backwards.status_code == 422
    float_value = await kpi.client.post("/v1/conversions", json={"items": [{**convs[0], "value": 1.5}]})
    assert float_value.status_code == 422
    async with kpi.as_("ann", "analyst") as analyst:
        assert (await analyst.post("/v1/touchpoints", json={"items": tps})).status_code == 403
