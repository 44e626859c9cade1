"""Scopes on the KPI service's write paths.

Measurements, conversions and targets carry dimensions and are judged row by row (see
test_measurements and test_targets). Definitions, rollup rebuilds, target checks and touchpoints
carry none: they reach every region's figures, so a principal narrowed by a scope may not make them.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.db

SPEND = {
    "key": "emea_spend",
    "name": "EMEA spend",
    "kind": "base",
    "measurement_type": "spend",
    "aggregation": "sum",
    "unit": "currency",
    "direction": "lower_is_better",
}


async def state(kpi) -> list:
    c = kpi.client
    return [
        (await c.get("/v1/metrics", params={"limit": 500})).json(),
        (await c.get("/v1/attribution", params={"from": "2027-01-01", "to": "2027-12-31"})).json(),
    ]


async def test_writes_that_reach_every_scope_are_refused_to_a_scoped_principal(kpi):
    before = await state(kpi)
    async with kpi.as_("eve", "mops", scopes=("region:EMEA",)) as eve:
        for method, path, body in (
            ("POST", "/v1/metrics", SPEND),
            ("PUT", "/v1/metrics/spend", {**SPEND, "key": "spend", "name": "Renamed"}),
            ("POST", "/v1/targets/evaluate", None),
            (
                "POST",
                "/v1/touchpoints",
                {"items": [{"journey_id": "apac-j", "time": "2027-03-01T10:00:00Z", "channel": "social"}]},
            ),
        ):
            r = await eve.request(method, path, json=body, headers={"If-Match": '"1"'})
            assert r.status_code == 403, (path, r.text)
            assert "scope" in r.json()["detail"]
    async with kpi.as_("root", "admin", scopes=("region:EMEA",)) as scoped_admin:
        r = await scoped_admin.post("/v1/rollups/rebuild", json={})
        assert r.status_code == 403 and "scope" in r.json()["detail"]
    async with kpi.as_("erp", "partner", scopes=("region:EMEA",)) as partner:
        r = await partner.post(
            "/v1/touchpoints",
            json={"items": [{"journey_id": "j", "time": "2027-03-01T10:00:00Z", "channel": "social"}]},
        )
        assert r.status_code == 403
        # A conversion carries dimensions: outside the scope it is named and nothing is written.
        r = await partner.post(
            "/v1/conversions",
            json={
                "items": [
                    {
                        "journey_id": "j",
                        "time": "2027-03-02T10:00:00Z",
                        "value": "10.00",
                        "dimensions": {"region": "APAC"},
                    },
                    {"journey_id": "j", "time": "2027-03-02T10:00:00Z", "value": "10.00"},
                ]
            },
        )
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == [
            "items.0.dimensions",
            "items.1.dimensions",
        ]
    assert await state(kpi) == before
    # Unscoped, the same definition works.
    async with kpi.as_("mo", "mops") as mo:
        assert (await mo.post("/v1/metrics", json=SPEND)).status_code == 201
