"""A target set as a change against the same period last year: its value computed, its basis kept."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.db


async def _leads(client, n: int, month: str, region: str) -> None:
    items = [
        {
            "type": "leads",
            "value": "1",
            "time": f"{month}-{d + 1:02d}T10:00:00Z",
            "dimensions": {"region": region},
            "external_id": f"{month}:{region}:{d}",
        }
        for d in range(n)
    ]
    assert (await client.post("/v1/measurements", json={"items": items})).json()["accepted"] == n


async def test_a_target_of_plus_twenty_percent_on_last_year(kpi):
    await _leads(kpi.client, 10, "2026-02", "EMEA")
    await _leads(kpi.client, 4, "2026-03", "NA")
    body = {"metric": "leads", "period": "2027-Q1", "change_vs_last_year": "0.20", "filter": {"region": "EMEA"}}
    r = await kpi.client.post("/v1/targets", json=body)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["value"] == "12" and made["basis"] == {
        "kind": "last_year",
        "period": "2026-Q1",
        "value": "10",
        "change": "0.20",
    }
    assert (await kpi.client.get(f"/v1/targets/{made['id']}")).json() == made
    whole = (await kpi.client.post("/v1/targets", json={**body, "filter": None, "change_vs_last_year": "-0.5"})).json()
    assert whole["value"] == "7" and whole["basis"]["value"] == "14"
    plain = (await kpi.client.post("/v1/targets", json={"metric": "leads", "period": "2027-03", "value": "5"})).json()
    assert plain["basis"] is None


@pytest.mark.parametrize(
    "change, field",
    [
        ({"value": "5", "change_vs_last_year": "0.1"}, "value"),
        ({}, "value"),
        ({"change_vs_last_year": "-1"}, "change_vs_last_year"),
        ({"change_vs_last_year": "0.1", "period": "2027-Q2"}, "change_vs_last_year"),  # no data in 2026-Q2
        ({"change_vs_last_year": 0.1}, "change_vs_last_year"),  # a float, never
    ],
)
async def test_a_target_needs_one_of_value_and_change_and_a_last_year(kpi, change, field):
    await _leads(kpi.client, 3, "2026-01", "EMEA")
    r = await kpi.client.post("/v1/targets", json={"metric": "leads", "period": "2027-Q1", **change})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field, r.json()
