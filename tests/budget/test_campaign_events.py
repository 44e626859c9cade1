"""A campaign's creation is announced (`budget.campaign.created`) with its dates, status and plan, in
the transaction that creates it: a refused campaign announces nothing."""

from __future__ import annotations

import pytest

from services.budget.events import CAMPAIGN_CREATED
from tests.budget.conftest import FINANCE
from tests.budget.test_campaigns import _campaign, _outbox

pytestmark = pytest.mark.db


async def test_a_created_campaign_is_published_with_its_dates_and_plan(budget):
    plan = await budget.plan()
    camp = await budget.ok("POST", "/v1/campaigns", 201, headers=FINANCE, json=_campaign(plan, status="active"))
    await budget.ok("POST", "/v1/campaigns", 422, headers=FINANCE, json=_campaign(plan, ends_on="2027-02-01"))
    published = await _outbox(budget, CAMPAIGN_CREATED.subject)
    assert published == [
        {
            "campaign_id": camp["id"],
            "plan_id": plan["id"],
            "plan_name": plan["name"],
            "code": "SPRING",
            "name": "Spring launch",
            "starts_on": "2027-03-01",
            "ends_on": "2027-05-31",
            "status": "active",
            "owner": "mark",
            "planned_cost": "5000.00",
            "currency": "EUR",
        }
    ]
    CAMPAIGN_CREATED.read(published[0])  # valid against the catalogue's model
