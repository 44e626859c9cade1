"""Anomalies: a robust, same-weekday baseline; published once per metric, group and day over real NATS;
dismissals remembered."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.kpi import anomalies
from tests.conftest import eventually
from tests.kpi.conftest import start_kpi

D = Decimal


def test_one_outlier_week_moves_neither_the_centre_nor_the_spread_much():
    calm = [D(100), D(104), D(98), D(101), D(99), D(103), D(97), D(102)]
    spiky = [*calm[:-1], D(5000)]
    a, b = anomalies.expected_range(calm, D("3.5")), anomalies.expected_range(spiky, D("3.5"))
    assert abs(a.expected - b.expected) <= 2 and b.high < 120
    assert anomalies.judge(D(150), spiky, D("3.5"))[1] == "above"
    assert anomalies.judge(D(60), spiky, D("3.5"))[1] == "below"
    assert anomalies.judge(D(101), spiky, D("3.5")) is None
    assert anomalies.judge(D(1000), calm[:3], D("3.5")) is None  # too little history to judge


def test_a_flat_history_does_not_flag_a_small_change():
    flat = [D(200)] * 8
    assert anomalies.judge(D(205), flat, D("3.5")) is None  # the spread's floor: 5 % of 200
    assert anomalies.judge(D(300), flat, D("3.5")) is not None
    zeros = [D(0)] * 8
    assert anomalies.judge(D(2), zeros, D("3.5")) is None and anomalies.judge(D(4), zeros, D("3.5")) is not None


@settings(max_examples=200, deadline=None, database=None)
@given(history=st.lists(st.integers(-(10**6), 10**6).map(D), min_size=4, max_size=12), k=st.integers(1, 6))
def test_the_range_holds_the_median_and_widens_with_the_threshold(history, k):
    r = anomalies.expected_range(history, D(k))
    wider = anomalies.expected_range(history, D(k + 1))
    assert r.low <= r.expected <= r.high and wider.low < r.low and wider.high > r.high
    assert anomalies.judge(r.expected, history, D(k)) is None


DAY = dt.date(2027, 3, 29)  # a Monday


async def _feed(client) -> None:
    """Eight weeks of leads per region, Mondays 20 (+-2) a region, other days 5; on DAY 60 in EMEA."""
    items = []
    start = DAY - dt.timedelta(days=7 * 8)
    for n in range((DAY - start).days + 1):
        day = start + dt.timedelta(days=n)
        for region in ("EMEA", "NA"):
            count = 5 if day.weekday() else 20 + (n % 3) - 1
            if day == DAY and region == "EMEA":
                count = 60
            items.append(
                {
                    "type": "leads",
                    "value": str(count),
                    "time": f"{day.isoformat()}T10:00:00Z",
                    "dimensions": {"region": region},
                    "external_id": f"{day}:{region}",
                }
            )
    assert (await client.post("/v1/measurements", json={"items": items})).json()["accepted"] == len(items)


@pytest.fixture()
async def watching(kpi_db, nats_url):
    """The service over NATS, watching leads per region (the periodic check off: the test runs it)."""
    overrides = {"anomaly_metrics": "leads", "anomaly_group_by": "region", "anomaly_check_seconds": 0}
    async for kpi in start_kpi(kpi_db, nats_url, **overrides):
        yield kpi


@pytest.mark.db
async def test_a_spike_is_published_once_listed_and_a_dismissal_is_remembered(watching):
    kpi = watching
    await _feed(kpi.client)
    r = await kpi.client.post("/v1/anomalies/check", json={"day": DAY.isoformat()})
    assert r.status_code == 200, r.text
    (found,) = r.json()["detected"]
    again = await asyncio.gather(
        *(kpi.client.post("/v1/anomalies/check", json={"day": DAY.isoformat()}) for _ in range(3))
    )
    assert [a.json()["detected"] for a in again] == [[], [], []]
    # A normal Monday (a week earlier) and a weekday are within their ranges: Mondays are compared with Mondays.
    for quiet in (DAY - dt.timedelta(days=7), DAY - dt.timedelta(days=1)):
        assert (await kpi.client.post("/v1/anomalies/check", json={"day": quiet.isoformat()})).json() == {
            "detected": []
        }
    (item,) = (await kpi.client.get("/v1/anomalies")).json()["items"]
    assert (item["id"], item["metric"], item["group"], item["day"]) == (
        found,
        "leads",
        {"region": "EMEA"},
        "2027-03-29",
    )
    assert item["observed"] == "60" and item["direction"] == "above" and D(item["high"]) < 60
    assert D(item["low"]) <= D(item["expected"]) <= D(item["high"]) and item["status"] == "open"
    rt = kpi.runtime
    await eventually(lambda: rt.bus.connected)
    sub = await rt.bus.js.pull_subscribe(
        "kpi.anomaly.detected", stream="KPI", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )

    async def mine() -> list[dict]:
        try:
            return [json.loads(m.data) for m in await sub.fetch(100, timeout=1)]
        except Exception:  # noqa: BLE001 - nothing yet
            return []

    events = await eventually(mine, timeout=15)
    await asyncio.sleep(0.5)
    events += await mine()
    assert [e["data"]["anomaly_id"] for e in events] == [found]
    assert events[0]["data"]["observed"] == "60" and events[0]["data"]["baseline_days"] == 8
    async with kpi.as_("nora", "analyst", scopes=("region:NA",)) as na:
        assert (await na.get("/v1/anomalies")).json()["items"] == []  # EMEA's is outside the scope
    async with kpi.as_("ann", "analyst") as analyst:
        assert (await analyst.post(f"/v1/anomalies/{found}/dismiss", json={})).status_code == 403
    r = await kpi.client.post(f"/v1/anomalies/{found}/dismiss", json={"note": "a webinar, planned"})
    assert r.status_code == 200 and r.json()["status"] == "dismissed" and r.json()["note"] == "a webinar, planned"
    assert (await kpi.client.post("/v1/anomalies/check", json={"day": DAY.isoformat()})).json()["detected"] == []
    assert (await kpi.client.get("/v1/anomalies")).json()["items"] == []
    (kept,) = (await kpi.client.get("/v1/anomalies", params={"status": "dismissed"})).json()["items"]
    assert kept["dismissed_by"] == "dana"
    missing = await kpi.client.post("/v1/anomalies/nope/dismiss", json={})
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    bad = await kpi.client.post(f"/v1/anomalies/{found}/dismiss", json={"note": "x" * 2001})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "note"
