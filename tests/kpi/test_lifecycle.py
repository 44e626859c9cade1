"""CRM lifecycle facts: stored once per entity and stage, scoped like measurements, 422 naming the field."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.kpi.models import lifecycle_facts

pytestmark = pytest.mark.db


def fact(entity: str, stage: str, time: str = "2027-03-04T10:00:00Z", **dims: str) -> dict:
    return {"entity_id": entity, "stage": stage, "time": time, "dimensions": dims, "source": "crm"}


async def test_a_fact_is_stored_once_and_the_first_stays(kpi):
    items = [fact("L1", "lead", region="EMEA"), fact("L1", "mql", "2027-03-06T10:00:00Z"), fact("L2", "lead")]
    r = await kpi.client.post("/v1/lifecycle", json={"items": items})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0}
    again = [fact("L1", "mql", "2027-03-09T10:00:00Z"), fact("L3", "sql"), fact("L3", "sql", "2027-03-01T00:00:00Z")]
    assert (await kpi.client.post("/v1/lifecycle", json={"items": again})).json() == {"accepted": 1, "duplicates": 2}
    async with kpi.runtime.unit_of_work(readonly=True) as uow:
        rows = (await uow.execute(select(lifecycle_facts).order_by(lifecycle_facts.c.id))).all()
    got = {(r.entity_id, r.stage): r for r in rows}
    assert len(rows) == 4
    assert got[("L1", "mql")].time.day == 6  # the later repeat did not move it
    assert got[("L3", "sql")].time.day == 1  # the earliest of a batch's repeats
    assert got[("L1", "lead")].dimensions == {"region": "EMEA"}


@pytest.mark.parametrize(
    "item, field",
    [
        (fact("L1", "customer"), "items.1.stage"),
        (fact("", "lead"), "items.1.entity_id"),
        (fact("L1", "lead", "2027-03-04T10:00:00"), "items.1.time"),
        ({**fact("L1", "lead"), "dimensions": {"Bad Name": "x"}}, "items.1.dimensions"),
        ({**fact("L1", "lead"), "extra": 1}, "items.1.extra"),
    ],
)
async def test_a_bad_fact_is_422_naming_the_field_and_nothing_is_written(kpi, item, field):
    r = await kpi.client.post("/v1/lifecycle", json={"items": [fact("OK", "lead"), item]})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"].removeprefix("body.") for e in r.json()["errors"]], r.json()
    async with kpi.runtime.unit_of_work(readonly=True) as uow:
        assert (await uow.execute(select(lifecycle_facts))).all() == []


async def test_scopes_and_roles_bound_who_may_record(kpi):
    async with kpi.as_("pat", "partner", scopes=("region:EMEA",)) as partner:
        r = await partner.post("/v1/lifecycle", json={"items": [fact("L1", "lead", region="AMER")]})
        assert r.status_code == 403 or r.status_code == 422
        assert r.json()["errors"][0]["field"] == "items.0.dimensions"
        ok = await partner.post("/v1/lifecycle", json={"items": [fact("L1", "lead", region="EMEA")]})
        assert ok.json() == {"accepted": 1, "duplicates": 0}
    async with kpi.as_("ann", "analyst") as analyst:
        assert (await analyst.post("/v1/lifecycle", json={"items": [fact("L2", "lead")]})).status_code == 403
