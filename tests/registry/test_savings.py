"""Savings: cancellations and cheaper renewals, per year, summed per period in the report; each one
published as it happens (`registry.saving.recorded`) and recorded by the KPI service, through a real
NATS, as a `stack_savings` measurement, the same one the report lists."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from pitcrew.migrations import upgrade_async
from services.kpi.main import create_app as create_kpi
from services.kpi.settings import Settings as KpiSettings
from tests.conftest import eventually
from tests.harness import assert_problem, principal
from tests.registry.conftest import (
    ADMIN,
    ANALYST,
    client,
    make_contract,
    make_settings,
    make_tool,
    outbox_rows,
    running,
)
from tests.registry.test_reviews import own_nats  # noqa: F401 - the fixture

pytestmark = pytest.mark.db


async def test_savings_per_period_with_their_kpi_measurements(api, app):
    a, b, c, d, e = [await make_tool(api, n) for n in ("Dropped", "Smaller", "Cheaper", "Dearer", "Noticed")]
    dropped = await make_contract(api, a["id"], cost="5000.00")
    await api.post(f"/v1/contracts/{dropped['id']}/cancel", json={"reason": "unused"})
    smaller = await make_contract(api, b["id"], cost="12000.00", seats=50)
    await api.post(f"/v1/contracts/{smaller['id']}/renew", json={"cost": "9000.00", "seats": 30})
    cheaper = await make_contract(api, c["id"], cost="2000.00", seats=10)
    await api.post(f"/v1/contracts/{cheaper['id']}/renew", json={"cost": "1500.00"})
    dearer = await make_contract(api, d["id"], cost="1000.00")
    await api.post(f"/v1/contracts/{dearer['id']}/renew", json={"cost": "1100.00"})
    noticed = await make_contract(api, e["id"], cost="3000.00", end="2027-06-30")
    async with app.state.runtime.unit_of_work() as uow:  # a review decided to cancel, before the deadline
        await app.state.runtime.domain.reviews.on_outcome(
            uow,
            principal("service:workflow", "admin"),
            instance_id="i-1",
            contract_id=noticed["id"],
            kind="rejected",
            context={"term": 1},
            decided_at=dt.datetime(2027, 3, 1, tzinfo=dt.UTC),
        )
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    body = (await api.get("/v1/reports/savings", headers=ANALYST)).json()
    got = {(i["tool_name"], i["kind"], i["period"], i["annual_saving"]) for i in body["items"]}
    assert got == {
        ("Dropped", "cancellation", this_month, "5000.00"),
        ("Smaller", "seat_reduction", "2028-01", "3000.00"),
        ("Cheaper", "renegotiation", "2028-01", "500.00"),
        ("Noticed", "cancellation", "2027-07", "3000.00"),
    }
    periods = {p["period"]: (p["annual_saving"], p["cancellations"], p["reductions"]) for p in body["periods"]}
    assert periods["2028-01"] == ("3500.00", 0, 2) and periods["2027-07"] == ("3000.00", 1, 0)
    assert body["total_annual_saving"] == "11500.00"
    m = {x["external_id"]: x for x in body["measurements"]}
    assert m[f"{smaller['id']}:2:seat_reduction"] == {
        "type": "stack_savings",
        "value": "3000.00",
        "time": "2028-01-01T00:00:00+00:00",
        "dimensions": {"currency": "EUR", "kind": "seat_reduction"},
        "source": "registry",
        "external_id": f"{smaller['id']}:2:seat_reduction",
    }
    assert m[f"{noticed['id']}:1:cancellation"]["time"] == "2027-07-01T00:00:00+00:00"
    assert len(m) == 4
    # Each was published as it happened, once, with the same identity and amount.
    for contract, kind, term, amount in (
        (dropped, "cancellation", 1, "5000.00"),
        (smaller, "seat_reduction", 2, "3000.00"),
        (cheaper, "renegotiation", 2, "500.00"),
        (noticed, "cancellation", 1, "3000.00"),
    ):
        [event] = await outbox_rows(app, "registry.saving.recorded", contract["id"])
        data = event["data"]
        assert (data["saving_id"], data["kind"], data["term"], data["annual_saving"]) == (
            f"{contract['id']}:{term}:{kind}",
            kind,
            term,
            amount,
        )
    assert await outbox_rows(app, "registry.saving.recorded", dearer["id"]) == []
    only = (await api.get("/v1/reports/savings", params={"from": "2028-01", "to": "2028-12"})).json()
    assert only["total_annual_saving"] == "3500.00"
    assert_problem(await api.get("/v1/reports/savings", params={"from": "2028-13"}), 422)


async def test_a_saving_in_another_currency_needs_its_rate(api):
    tool = await make_tool(api, "Abroad")
    contract = await make_contract(api, tool["id"], cost="1000.00", currency="USD")
    await api.post(f"/v1/contracts/{contract['id']}/cancel")
    assert assert_problem(await api.get("/v1/reports/savings"), 409)["missing_rates"] == ["USD"]
    await api.post("/v1/fx-rates", json={"currency": "USD", "rate": "0.9"})
    assert (await api.get("/v1/reports/savings")).json()["total_annual_saving"] == "900.00"


async def test_savings_become_kpi_measurements_through_nats(new_db, own_nats):  # noqa: F811
    """Registry and KPI in process on their own NATS: a cancellation, a seat reduction and a review's notice
    show in the KPI's `stack_savings`; a notice withdrawn by a renewal nets to nothing; the report's
    measurements posted again are duplicates."""
    reg_url, kpi_url = await new_db("registry"), await new_db("kpi")
    await upgrade_async("registry", reg_url)
    await upgrade_async("kpi", kpi_url)
    kpi_app = create_kpi(KpiSettings(database_url=kpi_url, nats_url=own_nats, outbox_poll_seconds=0.05))
    async with running(make_settings(reg_url, own_nats)) as app, kpi_app.router.lifespan_context(kpi_app):
        transport = httpx.ASGITransport(app=kpi_app, raise_app_exceptions=False)
        async with (
            client(app) as api,
            httpx.AsyncClient(transport=transport, base_url="http://kpi", headers=ADMIN) as kpi,
        ):
            a, b, c = [await make_tool(api, n) for n in ("Dropped", "Smaller", "Noticed")]
            dropped = await make_contract(api, a["id"], cost="5000.00")
            assert (await api.post(f"/v1/contracts/{dropped['id']}/cancel")).status_code == 200
            smaller = await make_contract(api, b["id"], cost="12000.00", seats=50)
            r = await api.post(f"/v1/contracts/{smaller['id']}/renew", json={"cost": "9000.00", "seats": 30})
            assert r.status_code == 200, r.text
            noticed = await make_contract(api, c["id"], cost="3000.00", end="2027-06-30")
            async with app.state.runtime.unit_of_work() as uow:  # a review decided to cancel, before the deadline
                await app.state.runtime.domain.reviews.on_outcome(
                    uow,
                    principal("service:workflow", "admin"),
                    instance_id="i-1",
                    contract_id=noticed["id"],
                    kind="rejected",
                    context={"term": 1},
                    decided_at=dt.datetime(2027, 3, 1, tzinfo=dt.UTC),
                )
            this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")

            async def month(period: str) -> str | None:
                first = dt.date.fromisoformat(f"{period}-01")
                last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
                r = await kpi.get(
                    "/v1/metrics/stack_savings/series",
                    params={"from": first.isoformat(), "to": last.isoformat(), "grain": "month"},
                )
                assert r.status_code == 200, r.text
                points = [p["value"] for s in r.json()["series"] for p in s["points"] if p["value"] is not None]
                return points[0] if points else None

            async def recorded() -> bool:
                return (await month(this_month), await month("2028-01"), await month("2027-07")) == (
                    "5000.00",
                    "3000.00",
                    "3000.00",
                )

            await eventually(recorded, timeout=20)
            report = (await api.get("/v1/reports/savings")).json()
            r = await kpi.post("/v1/measurements", json={"items": report["measurements"]})
            assert r.status_code == 200, r.text
            assert (r.json()["accepted"], r.json()["duplicates"]) == (0, 3)
            # The noticed term renews after all: its saving is taken back from the month it would have run.
            r = await api.post(f"/v1/contracts/{noticed['id']}/renew")
            assert r.status_code == 200, r.text

            async def withdrawn() -> bool:
                return await month("2027-07") == "0.00"

            await eventually(withdrawn, timeout=20)
            report = (await api.get("/v1/reports/savings")).json()
            assert {i["contract_id"] for i in report["items"]} == {dropped["id"], smaller["id"]}
            assert report["total_annual_saving"] == "8000.00"
