"""Targets, the scorecard and kpi.target.at_risk (published once per target, over real NATS)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.kpi import periods, targets
from tests.conftest import eventually

pytestmark = pytest.mark.db

FEB_14 = dt.datetime(2027, 2, 14, 12, tzinfo=dt.UTC)  # about half of 2027-Q1
MAR_20 = dt.datetime(2027, 3, 20, 12, tzinfo=dt.UTC)


async def feed(client, n_leads: int, spend: str, region: str = "EMEA") -> None:
    items = [
        {"type": "leads", "value": "1", "time": f"2027-01-{1 + i % 28:02d}T10:00:00Z", "dimensions": {"region": region}}
        for i in range(n_leads)
    ]
    items.append({"type": "spend", "value": spend, "time": "2027-01-10T10:00:00Z", "dimensions": {"region": region}})
    r = await client.post("/v1/measurements", json={"items": items})
    assert r.json()["accepted"] == len(items)


async def test_targets_validate_and_refuse_duplicates(kpi):
    ok = await kpi.client.post("/v1/targets", json={"metric": "cpl", "period": "2027-Q1", "value": "40.00"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["value"] == "40" and ok.json()["filter"] == {}
    dup = await kpi.client.post("/v1/targets", json={"metric": "cpl", "period": "2027-Q1", "value": "41"})
    assert dup.status_code == 409
    bad = await kpi.client.post("/v1/targets", json={"metric": "cpl", "period": "2027-Q5", "value": "1"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "period"
    missing = await kpi.client.post("/v1/targets", json={"metric": "nope", "period": "2027-Q1", "value": "1"})
    assert missing.status_code == 404
    float_value = await kpi.client.post("/v1/targets", json={"metric": "cpl", "period": "2027-03", "value": 1.5})
    assert float_value.status_code == 422
    async with kpi.as_("ann", "analyst") as analyst:
        r = await analyst.post("/v1/targets", json={"metric": "cpl", "period": "2027-03", "value": "1"})
        assert r.status_code == 403
    async with kpi.as_("eve", "mops", scopes=("region:EMEA",)) as eve:
        outside = await eve.post("/v1/targets", json={"metric": "leads", "period": "2027", "value": "1"})
        assert outside.status_code == 403
        inside = await eve.post(
            "/v1/targets", json={"metric": "leads", "period": "2027", "value": "1", "filter": {"region": "EMEA"}}
        )
        assert inside.status_code == 201
        listed = (await eve.get("/v1/targets")).json()["items"]
        assert [t["id"] for t in listed] == [inside.json()["id"]]  # the global cpl target is not hers
    everything = (await kpi.client.get("/v1/targets", params={"limit": 1})).json()
    assert len(everything["items"]) == 1 and everything["next_cursor"]


async def test_scorecard_shows_actual_target_variance_attainment_and_projection(kpi):
    await feed(kpi.client, n_leads=40, spend="1000.00")
    for body in (
        {"metric": "cpl", "period": "2027-Q1", "value": "20"},
        {"metric": "leads", "period": "2027-Q1", "value": "100"},
    ):
        assert (await kpi.client.post("/v1/targets", json=body)).status_code == 201
    async with kpi.runtime.unit_of_work(readonly=True) as uow:
        card = await targets.scorecard(uow, None, keys=["cpl", "leads", "roi"], period="2027-Q1", flt={}, now=FEB_14)
    by = {i["metric"]: i for i in card["items"]}
    assert by["cpl"]["actual"] == "25.00" and by["cpl"]["target"] == "20.00"
    assert by["cpl"]["variance"] == "5.00" and by["cpl"]["attainment"] == "0.8"  # lower is better: 20 / 25
    assert by["cpl"]["projected"] == "25.00"  # a ratio paces like its bases: unchanged
    assert by["leads"]["attainment"] == "0.4"
    assert by["leads"]["projected"] == "80.898876"  # 40 leads in 44.5 of the quarter's 90 days
    assert by["leads"]["at_risk"] is True and by["cpl"]["at_risk"] is True
    assert by["roi"]["actual"] == "-1" and by["roi"]["target"] is None  # no revenue yet; no target
    r = await kpi.client.get("/v1/scorecard", params={"metrics": "cpl,roi", "period": "2027-Q1"})
    assert r.status_code == 200 and [i["metric"] for i in r.json()["items"]] == ["cpl", "roi"]
    assert (await kpi.client.get("/v1/scorecard", params={"metrics": "cpl", "period": "Q1"})).status_code == 422
    assert (await kpi.client.get("/v1/scorecard", params={"metrics": "nope", "period": "2027"})).status_code == 404
    series = (
        await kpi.client.get(
            "/v1/metrics/cpl/series", params={"from": "2027-01-01", "to": "2027-03-31", "grain": "quarter"}
        )
    ).json()
    assert series["series"][0]["points"][0] == {
        "bucket": "2027-01-01",
        "value": "25.00",
        "target": "20.00",
        "variance": "5.00",
        "attainment": "0.8",
    }


def test_projection_paces_additive_bases_linearly():
    assert periods.elapsed(dt.date(2027, 1, 1), dt.date(2027, 3, 31), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == 0
    assert targets.is_at_risk("higher_is_better", None, 1) is False


async def test_at_risk_is_published_once_per_target_over_nats(kpi_nats):
    kpi = kpi_nats
    await feed(kpi.client, n_leads=10, spend="500.00")
    await feed(kpi.client, n_leads=1, spend="1.00", region="NA")
    risky = (
        await kpi.client.post(
            "/v1/targets", json={"metric": "leads", "period": "2027-Q1", "value": "100", "filter": {"region": "EMEA"}}
        )
    ).json()
    fine = (
        await kpi.client.post(
            "/v1/targets", json={"metric": "leads", "period": "2027-Q1", "value": "2", "filter": {"region": "NA"}}
        )
    ).json()  # 1 by mid-Q1: on pace
    future = (
        await kpi.client.post("/v1/targets", json={"metric": "leads", "period": "2027-Q3", "value": "1000"})
    ).json()
    rt = kpi.runtime
    first = await targets.evaluate_targets(rt.unit_of_work, now=FEB_14)
    again = await asyncio.gather(*(targets.evaluate_targets(rt.unit_of_work, now=FEB_14) for _ in range(3)))
    assert first == [risky["id"]] and again == [[], [], []]
    await eventually(lambda: rt.bus.connected)
    sub = await rt.bus.js.pull_subscribe(
        "kpi.target.at_risk", stream="KPI", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )

    async def mine() -> list[dict]:
        try:
            msgs = await sub.fetch(100, timeout=1)
        except Exception:  # noqa: BLE001 - nothing yet
            return []
        found = [json.loads(m.data) for m in msgs]
        return [e for e in found if e["data"]["target_id"] in (risky["id"], fine["id"], future["id"])]

    events = await eventually(mine, timeout=15)
    await asyncio.sleep(0.5)
    events += await mine()
    assert len(events) == 1
    data = events[0]["data"]
    assert data["metric"] == "leads" and data["period"] == "2027-Q1" and data["target"] == "100"
    assert data["actual"] == "10" and float(data["projected"]) < 100  # noqa: PLR2004
    t = (await kpi.client.get(f"/v1/targets/{risky['id']}")).json()
    assert t["at_risk_published_at"] is not None


async def test_a_target_on_a_suppliers_on_time_rate_is_reached_from_workflows_deliverables(kpi):
    """workflow.deliverable.approved, through the consumer's own handler, makes each supplier's on-time
    rate a governed metric: a target on it per supplier is scored and flagged when missed."""
    from services.kpi.handlers import handlers
    from services.workflow.events import DELIVERABLE_APPROVED, WorkflowDeliverable
    from shared.events import new_event

    approved = handlers(kpi.runtime)[DELIVERABLE_APPROVED.subject]
    done = [("s-acme", True), ("s-acme", False), ("s-acme", True), ("s-bolt", True), ("s-bolt", True)]
    for i, (supplier, on_time) in enumerate(done):
        data = WorkflowDeliverable(
            deliverable_id=f"d{i}",
            request_id="r1",
            request_number="REQ-2027-000001",
            name=f"Asset {i}",
            team=None,
            owner=None,
            supplier_id=supplier,
            sla_kind="underpinning_contract",
            due_at="2027-03-10T16:00:00+00:00",
            status="done",
            rework_rounds=0,
            actor="rita",
            reason=None,
            link=None,
            on_time=on_time,
            lateness_business_hours=0.0 if on_time else 4.0,
        ).model_dump(mode="json")
        env = dataclasses.replace(
            new_event(DELIVERABLE_APPROVED.subject, "workflow", f"d{i}", data), time=f"2027-03-{11 + i}T10:00:00+00:00"
        )
        async with kpi.runtime.unit_of_work() as uow:
            await approved(uow, env)
    ids = {}
    for supplier in ("s-acme", "s-bolt"):
        body = {
            "metric": "deliverable_on_time_rate",
            "period": "2027-03",
            "value": "0.9",
            "filter": {"supplier": supplier},
        }
        r = await kpi.client.post("/v1/targets", json=body)
        assert r.status_code == 201, r.text
        ids[supplier] = r.json()["id"]
    cards = {}
    for supplier in ("s-acme", "s-bolt"):
        async with kpi.runtime.unit_of_work(readonly=True) as uow:
            card = await targets.scorecard(
                uow, None, keys=["deliverable_on_time_rate"], period="2027-03", flt={"supplier": {supplier}}, now=MAR_20
            )
        cards[supplier] = card["items"][0]
    acme, bolt = cards["s-acme"], cards["s-bolt"]
    assert acme["actual"] == "0.666667" and acme["target"] == "0.9" and acme["at_risk"] is True  # 2 of 3 on time
    assert bolt["actual"] == "1" and bolt["target"] == "0.9" and bolt["at_risk"] is False  # 2 of 2
    r = await kpi.client.get(
        "/v1/scorecard",
        params={"metrics": "deliverable_on_time_rate", "period": "2027-03", "filter": "supplier:s-acme"},
    )
    assert r.status_code == 200 and r.json()["items"][0]["actual"] == "0.666667", r.text
    assert await targets.evaluate_targets(kpi.runtime.unit_of_work, now=MAR_20) == [ids["s-acme"]]
