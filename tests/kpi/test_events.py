"""Events from the other services arrive over real NATS and move the metrics."""

from __future__ import annotations

import pytest

from services.kpi.models import measurements
from shared.events import new_event
from tests.conftest import eventually

pytestmark = pytest.mark.db


async def value(kpi, key: str, **params) -> str | None:
    r = await kpi.client.get(
        f"/v1/metrics/{key}/series", params={"from": "2027-03-01", "to": "2027-03-31", "grain": "month", **params}
    )
    series = r.json()["series"]
    return series[0]["points"][0]["value"] if series else None


def actual_posted(entry_id: str, amount: str, campaign_code: str | None = None) -> object:
    return new_event(
        "budget.actual.posted",
        "budget",
        entry_id,
        {
            "entry_id": entry_id,
            "plan_id": "p1",
            "line_id": "l1",
            "line_code": "EMEA-SEARCH",
            "period": "2027-03",
            "date": "2027-03-04T10:00:00+00:00",
            "amount": amount,
            "currency": "EUR",
            "original_amount": amount,
            "original_currency": "EUR",
            "commitment_id": None,
            "external_ref": "INV-77",
            "vendor": "Acme",
            "dimensions": {"region": "EMEA", "channel": "search", "campaign": "spring", "cost_center": None},
            **({"campaign_id": f"c-{campaign_code}", "campaign_code": campaign_code} if campaign_code else {}),
        },
    )


async def test_spend_from_the_budget_service_shows_up_in_cost_per_lead(kpi_nats):
    kpi = kpi_nats
    leads = [
        {
            "type": "leads",
            "value": "1",
            "time": f"2027-03-0{d}T09:00:00Z",
            "source": "crm",
            "external_id": f"lead:{d}",
            "dimensions": {"channel": "search", "region": "EMEA"},
        }
        for d in range(1, 5)
    ]
    assert (await kpi.client.post("/v1/measurements", json={"items": leads})).json()["accepted"] == 4
    assert await value(kpi, "cpl") == "0.00"
    await eventually(lambda: kpi.runtime.bus.connected)
    js = kpi.runtime.bus.js
    env = actual_posted("e-1", "1200.00")
    await js.publish(env.type, env.to_json().encode(), headers={"Nats-Msg-Id": env.id})

    async def cpl_is(expected: str) -> bool:
        return await value(kpi, "cpl") == expected

    await eventually(lambda: cpl_is("300.00"), timeout=20)
    assert await value(kpi, "spend", group_by="line_code") == "1200.00"
    # A redelivery (same event) and a repeat of the same ledger entry under a new event id: no double count.
    await js.publish(env.type, env.to_json().encode())
    again = actual_posted("e-1", "1200.00")
    await js.publish(again.type, again.to_json().encode(), headers={"Nats-Msg-Id": again.id})
    second = actual_posted("e-2", "300.00")
    await js.publish(second.type, second.to_json().encode(), headers={"Nats-Msg-Id": second.id})
    await eventually(lambda: cpl_is("375.00"), timeout=20)
    async with kpi.as_("eve", "marketer", scopes=("region:NA",)) as eve:
        r = await eve.get("/v1/metrics/spend/series", params={"from": "2027-03-01", "to": "2027-03-31"})
        assert r.json()["series"][0]["points"][0]["value"] == "0.00"


async def test_spend_on_a_budget_campaign_gives_cost_per_lead_per_campaign(kpi_nats):
    kpi = kpi_nats
    leads = [
        {
            "type": "leads",
            "value": "1",
            "time": f"2027-03-0{d}T09:00:00Z",
            "source": "crm",
            "external_id": f"lead:{d}",
            "dimensions": {"channel": "search", "region": "EMEA", "campaign": "SPRING-27" if d < 4 else "spring"},
        }
        for d in range(1, 6)
    ]
    assert (await kpi.client.post("/v1/measurements", json={"items": leads})).json()["accepted"] == 5
    await eventually(lambda: kpi.runtime.bus.connected)
    js = kpi.runtime.bus.js
    for env in (actual_posted("e-c1", "900.00", "SPRING-27"), actual_posted("e-c2", "200.00")):
        await js.publish(env.type, env.to_json().encode(), headers={"Nats-Msg-Id": env.id})

    async def by_campaign() -> dict[str, str]:
        r = await kpi.client.get(
            "/v1/metrics/cpl/series",
            params={"from": "2027-03-01", "to": "2027-03-31", "grain": "month", "group_by": "campaign"},
        )
        return {s["group"]["campaign"]: s["points"][0]["value"] for s in r.json()["series"]}

    # The entry on the campaign counts for the campaign (not the line's own "spring"); the other for the line's.
    await eventually(lambda: _equal(by_campaign(), {"SPRING-27": "300.00", "spring": "100.00"}), timeout=20)


async def _equal(got, expected) -> bool:
    return await got == expected


async def test_finished_workflows_and_breaches_become_sla_metrics(kpi_nats):
    kpi = kpi_nats
    await eventually(lambda: kpi.runtime.bus.connected)
    js = kpi.runtime.bus.js
    for i, (verb, met, hours) in enumerate(
        [("approved", True, 4.5), ("rejected", False, 10), ("approved", True, 3.3333333333)]
    ):
        env = new_event(
            f"workflow.instance.{verb}",
            "workflow",
            f"i{i}",
            {
                "instance_id": f"i{i}",
                "definition_key": "budget-approval",
                "definition_version": 1,
                "subject": {"type": "commitment", "id": "c", "service": "budget"},
                "context": {"region": "EMEA"},
                "requester": "dana",
                "status": verb,
                "finished_at": "2027-03-10T10:00:00+00:00",
                "cycle_time_business_hours": hours,
                "cycle_time_hours": hours * 2,
                "sla_met": met,
            },
        )
        await js.publish(env.type, env.to_json().encode(), headers={"Nats-Msg-Id": env.id})
    breach = new_event(
        "workflow.sla.breached",
        "workflow",
        "t1",
        {
            "task_id": "t1",
            "instance_id": "i1",
            "definition_key": "budget-approval",
            "stage": "Regional approval",
            "due_at": "2027-03-09T17:00:00+00:00",
            "escalation": {},
            "context": {"region": "EMEA"},
            "subject": {"type": "commitment", "id": "c", "service": "budget"},
        },
    )
    await js.publish(breach.type, breach.to_json().encode(), headers={"Nats-Msg-Id": breach.id})

    async def settled() -> bool:
        return await value(kpi, "sla_breaches") == "1" and await value(kpi, "workflows_completed") == "3"

    await eventually(settled, timeout=20)
    assert await value(kpi, "sla_attainment") == "0.666667"
    assert await value(kpi, "approval_cycle_time") == "5.944444"  # (4.5 + 10 + 3.333333) / 3
    by_outcome = (
        await kpi.client.get(
            "/v1/metrics/workflows_completed/series",
            params={"from": "2027-03-01", "to": "2027-03-31", "group_by": "outcome"},
        )
    ).json()["series"]
    assert {s["group"]["outcome"]: s["points"][0]["value"] for s in by_outcome} == {"approved": "2", "rejected": "1"}
    async with kpi.runtime.transaction(readonly=True) as s:
        from sqlalchemy import func, select

        assert await s.scalar(select(func.count()).select_from(measurements)) == 10  # noqa: PLR2004


async def test_approved_deliverables_make_each_suppliers_on_time_rate_a_metric(kpi_nats):
    import dataclasses

    from services.workflow.events import WorkflowDeliverable

    kpi = kpi_nats
    await eventually(lambda: kpi.runtime.bus.connected)
    js = kpi.runtime.bus.js
    done = [("s-acme", True, 0.0, 0), ("s-acme", False, 6.5, 2), ("s-acme", True, 0.0, 1), ("s-bolt", False, 3.5, 0)]
    for i, (supplier, on_time, late, rework) in enumerate(done):
        data = WorkflowDeliverable(
            deliverable_id=f"d{i}",
            request_id="r1",
            request_number="REQ-2027-000001",
            name=f"Asset {i}",
            team=None,
            owner=None,
            supplier_id=supplier,
            sla_kind="underpinning_contract",
            due_at="2027-03-10T17:00:00+00:00",
            status="done",
            rework_rounds=rework,
            actor="rita",
            reason=None,
            link="https://drive.example/x",
            on_time=on_time,
            lateness_business_hours=late,
        ).model_dump(mode="json")
        env = dataclasses.replace(
            new_event("workflow.deliverable.approved", "workflow", f"d{i}", data), time="2027-03-12T10:00:00+00:00"
        )
        for _ in range(2):  # a redelivery counts once
            await js.publish(env.type, env.to_json().encode(), headers={"Nats-Msg-Id": f"{env.id}-{_}"})

    await eventually(lambda: _equals(value(kpi, "deliverables_done"), "4"), timeout=20)
    rates = (
        await kpi.client.get(
            "/v1/metrics/deliverable_on_time_rate/series",
            params={"from": "2027-03-01", "to": "2027-03-31", "grain": "month", "group_by": "supplier"},
        )
    ).json()["series"]
    assert {s["group"]["supplier"]: s["points"][0]["value"] for s in rates} == {"s-acme": "0.666667", "s-bolt": "0"}
    assert await value(kpi, "deliverable_lateness") == "2.5"  # (0 + 6.5 + 0 + 3.5) / 4
    assert await value(kpi, "deliverable_rework_rounds") == "3"


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected
